//! Pure rules of the accounts context.

use keyward_messages::{codes, CommandError};

/// The link a verification email carries.
pub fn verification_link(public_url: &str, token: &str) -> String {
    format!("{public_url}/v1/auth/verify-email?token={token}")
}

/// The link a reset email carries. It points at the API; a product puts its own page in front.
pub fn reset_link(public_url: &str, token: &str) -> String {
    format!("{public_url}/v1/auth/password/reset?token={token}")
}

/// The one reply for a wrong password and for an unknown account.
pub fn invalid_credentials() -> CommandError {
    CommandError::unauthenticated(
        codes::INVALID_CREDENTIALS,
        "the login or password is incorrect",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_carry_the_token_as_a_query_parameter() {
        assert_eq!(
            verification_link("https://id.example.com", "abc"),
            "https://id.example.com/v1/auth/verify-email?token=abc"
        );
        assert!(reset_link("http://h", "t").ends_with("?token=t"));
    }
}
