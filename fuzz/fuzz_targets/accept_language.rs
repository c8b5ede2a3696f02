//! `Locale::from_accept_language` on arbitrary header values: never panics, and
//! - is ASCII case-insensitive (language tags are);
//! - a header that starts with a supported language picks it, whatever follows;
//! - every locale round-trips through its own name, as a header and through `Locale::parse`.
#![no_main]

use keyward_messages::commands::Locale;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let header = String::from_utf8_lossy(data);
    let header = header.as_ref();
    let locale = Locale::from_accept_language(Some(header));

    assert_eq!(
        Locale::from_accept_language(Some(&header.to_ascii_uppercase())),
        locale,
        "{header:?}"
    );
    assert_eq!(
        Locale::from_accept_language(Some(&format!("ru-RU;q=0.9, {header}"))),
        Locale::Ru
    );
    assert_eq!(
        Locale::from_accept_language(Some(&format!("en-GB,{header}"))),
        Locale::En
    );
    assert_eq!(Locale::parse(locale.as_str()), locale);
    assert_eq!(Locale::from_accept_language(Some(locale.as_str())), locale);
    assert_eq!(
        Locale::parse(header).as_str() == "ru",
        header.eq_ignore_ascii_case("ru")
    );
});
