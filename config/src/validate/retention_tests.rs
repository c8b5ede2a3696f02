#![allow(clippy::unwrap_used, clippy::expect_used)]
use super::load_env as load;
use crate::{RetentionSettings, Settings};

#[test]
fn retention_defaults_keep_the_audit_log_forever() {
    let r = Settings::default().retention;
    assert_eq!(
        r,
        RetentionSettings {
            every_secs: 3600,
            batch_size: 1000,
            outbox_days: 7,
            inbox_days: 7,
            sessions_days: 30,
            login_failures_days: 7,
            audit_days: None,
        }
    );
}

#[test]
fn retention_comes_from_keyward_retention_variables() {
    let s = load(&[
        ("KEYWARD_RETENTION__EVERY_SECS", "60"),
        ("KEYWARD_RETENTION__BATCH_SIZE", "50"),
        ("KEYWARD_RETENTION__OUTBOX_DAYS", "2"),
        ("KEYWARD_RETENTION__INBOX_DAYS", "3"),
        ("KEYWARD_RETENTION__SESSIONS_DAYS", "4"),
        ("KEYWARD_RETENTION__LOGIN_FAILURES_DAYS", "5"),
        ("KEYWARD_RETENTION__AUDIT_DAYS", "400"),
    ])
    .unwrap();
    assert_eq!(
        s.retention,
        RetentionSettings {
            every_secs: 60,
            batch_size: 50,
            outbox_days: 2,
            inbox_days: 3,
            sessions_days: 4,
            login_failures_days: 5,
            audit_days: Some(400),
        }
    );
    // Empty is unset: the audit log is kept.
    let s = load(&[("KEYWARD_RETENTION__AUDIT_DAYS", "")]).unwrap();
    assert_eq!(s.retention.audit_days, None);
}

#[test]
fn bad_retention_values_name_their_variable() {
    for (name, value) in [
        ("KEYWARD_RETENTION__EVERY_SECS", "604801"),
        ("KEYWARD_RETENTION__BATCH_SIZE", "0"),
        ("KEYWARD_RETENTION__OUTBOX_DAYS", "0"),
        ("KEYWARD_RETENTION__INBOX_DAYS", "0"),
        ("KEYWARD_RETENTION__SESSIONS_DAYS", "36501"),
        ("KEYWARD_RETENTION__LOGIN_FAILURES_DAYS", "0"),
        ("KEYWARD_RETENTION__AUDIT_DAYS", "0"),
        ("KEYWARD_RETENTION__AUDIT_DAYS", "forever"),
    ] {
        let e = load(&[(name, value)]).unwrap_err();
        assert_eq!(e.key(), name, "{name}={value}: {e}");
    }
}

#[test]
fn failed_logins_are_kept_at_least_as_long_as_the_throttle_counts_them() {
    let e = load(&[
        ("KEYWARD_THROTTLE__WINDOW_SECS", "172800"),
        ("KEYWARD_RETENTION__LOGIN_FAILURES_DAYS", "1"),
    ])
    .unwrap_err();
    assert_eq!(e.key(), "KEYWARD_RETENTION__LOGIN_FAILURES_DAYS");
    assert!(
        e.to_string().contains("KEYWARD_THROTTLE__WINDOW_SECS"),
        "{e}"
    );
    load(&[
        ("KEYWARD_THROTTLE__WINDOW_SECS", "172800"),
        ("KEYWARD_RETENTION__LOGIN_FAILURES_DAYS", "2"),
    ])
    .unwrap();
}

#[test]
fn config_check_shows_the_retention_section() {
    let mut s = Settings::default();
    s.retention.audit_days = Some(90);
    let text = s.redacted_toml();
    assert!(text.contains("[retention]"), "{text}");
    assert!(text.contains("audit_days = 90"), "{text}");
}
