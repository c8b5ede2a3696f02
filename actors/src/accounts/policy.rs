//! Pure rules of the accounts context.

use chrono::{DateTime, Duration, Utc};
use keyward_messages::{codes, CommandError};

/// The link a verification email carries.
pub fn verification_link(public_url: &str, token: &str) -> String {
    format!("{public_url}/v1/auth/verify-email?token={token}")
}

/// The link a reset email carries. It points at the API; a product puts its own page in front.
pub fn reset_link(public_url: &str, token: &str) -> String {
    format!("{public_url}/v1/auth/password/reset?token={token}")
}

/// How long a key (account or client IP) must wait before its next login attempt, or None when
/// it may try now. Below `limit` failures in the window nothing waits; from then on each
/// further failure doubles the delay, starting at `base` and capped at `window`, counted from
/// the latest failure.
pub fn throttle_delay(
    failures: u64,
    latest: Option<DateTime<Utc>>,
    limit: u32,
    base: Duration,
    window: Duration,
    now: DateTime<Utc>,
) -> Option<u64> {
    if failures < u64::from(limit) {
        return None;
    }
    let doublings = u32::try_from(failures - u64::from(limit))
        .unwrap_or(u32::MAX)
        .min(20);
    let delay = (base * 2i32.pow(doublings)).min(window);
    let until = latest? + delay;
    (now < until).then(|| {
        let ms = (until - now).num_milliseconds();
        u64::try_from((ms + 999) / 1000).unwrap_or(1).max(1)
    })
}

/// The one reply for a wrong password and for an unknown account.
pub fn invalid_credentials() -> CommandError {
    CommandError::unauthenticated(
        codes::INVALID_CREDENTIALS,
        "the login or password is incorrect",
    )
}

/// The `outcome` label of `keyward_logins_total` for a login's answer (one of
/// [`crate::metrics::LOGIN_OUTCOMES`]). A failure that is none of the login's own answers
/// (storage down, a hasher that cannot be reached) is an `error`.
pub fn login_outcome(answer: Result<(), &CommandError>) -> &'static str {
    let Err(e) = answer else {
        return "success";
    };
    match (e, e.code()) {
        (CommandError::RateLimited { .. }, _) => "throttled",
        (CommandError::Unauthenticated { .. }, codes::INVALID_CREDENTIALS) => "invalid_credentials",
        (CommandError::Forbidden { .. }, codes::ACCOUNT_BLOCKED) => "blocked",
        (CommandError::Forbidden { .. }, codes::EMAIL_NOT_VERIFIED) => "email_not_verified",
        (CommandError::Unavailable { .. }, codes::OVERLOADED) => "overloaded",
        _ => "error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_answer_of_a_login_has_its_outcome_label() {
        let forbidden = |code| CommandError::Forbidden {
            code,
            detail: "no".into(),
        };
        let cases = [
            (Ok(()), "success"),
            (Err(invalid_credentials()), "invalid_credentials"),
            (
                Err(CommandError::RateLimited {
                    retry_after_secs: 30,
                }),
                "throttled",
            ),
            (Err(forbidden(codes::ACCOUNT_BLOCKED)), "blocked"),
            (
                Err(forbidden(codes::EMAIL_NOT_VERIFIED)),
                "email_not_verified",
            ),
            (Err(CommandError::overloaded(1)), "overloaded"),
            (Err(CommandError::unavailable("hasher gone")), "error"),
            (Err(CommandError::Internal), "error"),
        ];
        for (answer, outcome) in cases {
            assert_eq!(login_outcome(answer.as_ref().map(|_| ())), outcome);
            assert!(crate::metrics::LOGIN_OUTCOMES.contains(&outcome));
        }
    }

    #[test]
    fn throttling_starts_at_the_limit_and_the_delay_doubles_up_to_the_window() {
        let now = Utc::now();
        let (base, window) = (Duration::seconds(30), Duration::seconds(900));
        let d = |failures| throttle_delay(failures, Some(now), 5, base, window, now);
        assert_eq!(d(4), None);
        assert_eq!(d(5), Some(30));
        assert_eq!(d(6), Some(60));
        assert_eq!(d(7), Some(120));
        assert_eq!(d(40), Some(900));
        // The delay runs from the latest failure.
        let later = now + Duration::seconds(31);
        assert_eq!(throttle_delay(5, Some(now), 5, base, window, later), None);
    }

    #[test]
    fn links_carry_the_token_as_a_query_parameter() {
        assert_eq!(
            verification_link("https://id.example.com", "abc"),
            "https://id.example.com/v1/auth/verify-email?token=abc"
        );
        assert!(reset_link("http://h", "t").ends_with("?token=t"));
    }
}
