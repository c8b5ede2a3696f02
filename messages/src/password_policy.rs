//! Password rules (NIST 800-63B, ASVS V6): a length range counted in characters, no
//! composition rules, no truncation, and refusal of common passwords and of passwords built
//! from the account's own email or username. Pure: the accounts context applies it.

use zxcvbn::matching::patterns::MatchPattern;
use zxcvbn::matching::Match;

use crate::error::FieldError;

/// How many of the most common passwords are refused.
pub const COMMON_RANK_LIMIT: usize = 10_000;
// NOTE: zxcvbn does not export its DictionaryType; its Debug name is the only handle on it.
fn dictionary_is(d: &zxcvbn::matching::patterns::DictionaryPattern, name: &str) -> bool {
    format!("{:?}", d.dictionary_name) == name
}

/// zxcvbn's matching grows quickly with length; longer passwords are not "common" anyway.
const PATTERN_CHECK_MAX_CHARS: usize = 64;

#[derive(Clone, Copy, Debug)]
pub struct PasswordPolicy {
    pub min_length: usize,
    pub max_length: usize,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        Self {
            min_length: 8,
            max_length: 256,
        }
    }
}

impl PasswordPolicy {
    /// Checks `password` for the account identified by `context` (email, username). The first
    /// rule broken is reported, with a message that says what to do instead.
    pub fn check(&self, field: &str, password: &str, context: &[&str]) -> Result<(), FieldError> {
        let n = password.chars().count();
        if n < self.min_length {
            return Err(FieldError::new(
                field,
                "too_short",
                format!(
                    "use at least {} characters; a few unrelated words make a strong password",
                    self.min_length
                ),
            ));
        }
        if n > self.max_length {
            return Err(FieldError::new(
                field,
                "too_long",
                format!("use at most {} characters", self.max_length),
            ));
        }
        if n > PATTERN_CHECK_MAX_CHARS {
            return Ok(());
        }
        let inputs: Vec<String> = context
            .iter()
            .flat_map(|c| {
                let c = c.to_lowercase();
                let mut parts = vec![c.clone()];
                parts.extend(
                    c.split(|ch: char| !ch.is_alphanumeric())
                        .filter(|p| p.len() >= 3)
                        .map(str::to_owned),
                );
                parts
            })
            .collect();
        let input_refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        let entropy = zxcvbn::zxcvbn(password, &input_refs);
        let seq = entropy.sequence();
        if let [only] = seq {
            if is_common(only, n) {
                return Err(FieldError::new(
                    field,
                    "too_common",
                    "this password is among the most common ones; choose something less predictable",
                ));
            }
        }
        let from_inputs: usize = seq
            .iter()
            .filter(|m| matches!(&m.pattern, MatchPattern::Dictionary(d) if dictionary_is(d, "UserInputs")))
            .map(|m| m.token.chars().count())
            .sum();
        if from_inputs * 2 >= n {
            return Err(FieldError::new(
                field,
                "derived_from_account",
                "do not build the password from your email address or username",
            ));
        }
        Ok(())
    }
}

fn is_common(m: &Match, len: usize) -> bool {
    match &m.pattern {
        MatchPattern::Dictionary(d) => {
            dictionary_is(d, "Passwords")
                && d.rank <= COMMON_RANK_LIMIT
                && m.i == 0
                && m.j + 1 == len
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn check(p: &str) -> Result<(), FieldError> {
        PasswordPolicy::default().check("password", p, &["alice@example.com", "alice_w"])
    }

    #[test]
    fn a_short_password_says_how_long_it_must_be() {
        let e = check("abc12").unwrap_err();
        assert_eq!(e.code, "too_short");
        assert!(e.message.contains('8'));
    }

    #[test]
    fn length_counts_characters_not_bytes() {
        // 8 Cyrillic letters are 16 bytes but 8 characters: long enough.
        assert!(check("щиповник").is_ok());
    }

    #[test]
    fn the_configured_minimum_applies() {
        let p = PasswordPolicy {
            min_length: 15,
            max_length: 256,
        };
        assert_eq!(
            p.check("password", "velvet-otter-42", &[]).map(|_| ()),
            Ok(())
        );
        assert_eq!(
            p.check("password", "velvet-otter4", &[]).unwrap_err().code,
            "too_short"
        );
    }

    #[test]
    fn common_passwords_are_refused() {
        for p in [
            "password",
            "password1",
            "12345678",
            "iloveyou",
            "qwertyuiop",
            "Password123",
        ] {
            assert_eq!(check(p).unwrap_err().code, "too_common", "{p}");
        }
    }

    #[test]
    fn passwords_built_from_the_email_or_username_are_refused() {
        assert_eq!(
            check("alice@example.com").unwrap_err().code,
            "derived_from_account"
        );
        assert_eq!(
            check("alice_w2024").unwrap_err().code,
            "derived_from_account"
        );
    }

    #[test]
    fn no_composition_rules_apply() {
        assert!(check("correct horse battery staple").is_ok());
        assert!(check("velvetotterlantern").is_ok());
    }

    #[test]
    fn an_over_long_password_is_refused_not_truncated() {
        assert_eq!(check(&"x".repeat(257)).unwrap_err().code, "too_long");
    }
}
