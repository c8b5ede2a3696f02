#![allow(clippy::unwrap_used, clippy::expect_used)]
use super::load_env as load;
use crate::{CacheSettings, Settings};

#[test]
fn cache_capacities_default_to_the_sizes_measured_in_performance_md() {
    assert_eq!(
        Settings::default().cache,
        CacheSettings {
            tokens: 262_144,
            sessions: 262_144,
            profiles: 65_536,
            users: 100_000,
        }
    );
}

#[test]
fn cache_capacities_come_from_keyward_cache_variables() {
    let s = load(&[
        ("KEYWARD_CACHE__TOKENS", "8192"),
        ("KEYWARD_CACHE__SESSIONS", "1024"),
        ("KEYWARD_CACHE__PROFILES", "2048"),
        ("KEYWARD_CACHE__USERS", "8388608"),
    ])
    .unwrap();
    assert_eq!(
        s.cache,
        CacheSettings {
            tokens: 8192,
            sessions: 1024,
            profiles: 2048,
            users: 8_388_608,
        }
    );
}

#[test]
fn a_cache_capacity_out_of_range_names_its_variable_and_the_range() {
    for (name, value) in [
        ("KEYWARD_CACHE__TOKENS", "1023"),
        ("KEYWARD_CACHE__SESSIONS", "0"),
        ("KEYWARD_CACHE__PROFILES", "8388609"),
        ("KEYWARD_CACHE__USERS", "100000000000"),
        ("KEYWARD_CACHE__USERS", "lots"),
        ("KEYWARD_CACHE__TOKENS", "-1"),
    ] {
        let e = load(&[(name, value)]).unwrap_err();
        assert_eq!(e.key(), name, "{name}={value}: {e}");
    }
    let e = load(&[("KEYWARD_CACHE__TOKENS", "100")]).unwrap_err();
    assert!(e.to_string().contains("1024..=8388608"), "{e}");
}

#[test]
fn config_check_shows_the_cache_section() {
    let mut s = Settings::default();
    s.cache.profiles = 4096;
    let text = s.redacted_toml();
    assert!(text.contains("[cache]"), "{text}");
    assert!(text.contains("profiles = 4096"), "{text}");
}
