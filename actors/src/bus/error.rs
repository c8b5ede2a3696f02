//! [`chain`], which writes an error with all its causes for the log.

use std::error::Error;

/// An error and every cause under it, joined with ": ", for one log field.
///
/// NOTE: lapin, lettre and others print their cause inside their own message as well as
/// returning it from `source()`; a cause whose text ends the message above it adds nothing and
/// is left out, so the log shows each cause once.
pub fn chain(e: &dyn Error) -> String {
    let mut out = e.to_string();
    let mut above = out.clone();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !above.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        above = text;
        cause = c.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] Middle);

    /// Prints its cause in its own message too, as lapin and lettre do.
    #[derive(Debug, thiserror::Error)]
    #[error("middle: {0}")]
    struct Middle(#[source] std::io::Error);

    #[test]
    fn the_chain_shows_every_cause_once_in_order() {
        let e = Outer(Middle(std::io::Error::other("disk on fire")));
        assert_eq!(chain(&e), "outer: middle: disk on fire");
    }

    #[test]
    fn the_chain_of_an_error_without_a_cause_is_its_message() {
        assert_eq!(
            chain(&std::io::Error::other("disk on fire")),
            "disk on fire"
        );
    }
}
