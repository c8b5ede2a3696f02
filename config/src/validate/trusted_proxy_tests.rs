#![allow(clippy::unwrap_used)]
use crate::Settings;

#[test]
fn trusted_proxies_take_ips_and_cidrs_and_a_bad_one_names_the_key() {
    let mut s = Settings::default();
    s.http.trusted_proxies = " 127.0.0.1, 10.0.0.0/8 ,::1".into();
    assert_eq!(s.http.trusted_proxy_nets().unwrap().len(), 3);
    assert!(s.validate().is_ok());
    s.http.trusted_proxies = "10.0.0.0/8, nginx".into();
    let e = s.validate().unwrap_err();
    assert!(
        e.to_string().contains("KEYWARD_HTTP__TRUSTED_PROXIES"),
        "{e}"
    );
}

#[test]
fn cors_origins_must_be_bare_origins() {
    let mut s = Settings::default();
    s.http.cors_origins = "https://app.example.com, http://localhost:3000".into();
    assert_eq!(s.http.cors_origin_list().unwrap().len(), 2);
    for bad in [
        "https://app.example.com/path",
        "app.example.com",
        "ftp://x.example.com",
        "https://app.example.com/",
    ] {
        s.http.cors_origins = bad.into();
        let e = s.validate().unwrap_err();
        assert!(
            e.to_string().contains("KEYWARD_HTTP__CORS_ORIGINS"),
            "{bad}: {e}"
        );
    }
}
