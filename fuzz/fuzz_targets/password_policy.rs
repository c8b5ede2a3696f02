//! The password policy (default lengths 8..=256) on arbitrary passwords and account context.
//! The input is `password [0x00 context]`, capped at PASSWORD_MAX_BYTES like a real request
//! body, so zxcvbn's cost is the one production pays. Invariants:
//! - never panics; a refusal names the field and uses one of the policy's codes;
//! - fewer than 8 characters is always `too_short`, more than 256 always `too_long`
//!   (characters, not bytes).
#![no_main]

use keyward_messages::password_policy::PasswordPolicy;
use keyward_messages::values::PASSWORD_MAX_BYTES;
use libfuzzer_sys::fuzz_target;

const CODES: [&str; 4] = [
    "too_short",
    "too_long",
    "too_common",
    "derived_from_account",
];

fuzz_target!(|data: &[u8]| {
    if data.len() > PASSWORD_MAX_BYTES {
        return;
    }
    let (password, context) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let password = String::from_utf8_lossy(password);
    let context = String::from_utf8_lossy(context);
    let policy = PasswordPolicy {
        min_length: 8,
        max_length: 256,
    };
    let account = ["alice@example.com", "alice_w", context.as_ref()];

    let verdict = policy.check("password", &password, &account);
    let chars = password.chars().count();
    match &verdict {
        Ok(()) => assert!((8..=256).contains(&chars), "{chars} characters accepted"),
        Err(e) => {
            assert_eq!(e.field, "password");
            assert!(CODES.contains(&e.code.as_str()), "code {:?}", e.code);
            if (8..=256).contains(&chars) {
                assert!(
                    !matches!(e.code.as_str(), "too_short" | "too_long"),
                    "{e:?}"
                );
            }
        }
    }
    if chars < 8 {
        assert_eq!(
            verdict.as_ref().map_err(|e| e.code.as_str()),
            Err("too_short")
        );
    }
    if chars > 256 {
        assert_eq!(
            verdict.as_ref().map_err(|e| e.code.as_str()),
            Err("too_long")
        );
    }
});
