//! What a context handler fails with. A `CommandError` is the caller's answer and passes as
//! it is; anything else (storage) keeps its whole cause for the log and reaches the caller, at
//! the handler edge, as a safe `CommandError` without internal text.

use keyward_messages::CommandError;
use keyward_storage::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error("storage failed")]
    Storage(#[from] StorageError),
}

impl HandlerError {
    /// The caller's answer. A storage failure is logged here, with its cause chain.
    pub fn into_reply(self) -> CommandError {
        match self {
            HandlerError::Command(e) => e,
            HandlerError::Storage(StorageError::Conflict { what }) => CommandError::Conflict {
                code: "conflict",
                detail: format!("{what} already exists"),
                field: Some(what),
            },
            HandlerError::Storage(e @ StorageError::Backend(_)) => {
                tracing::error!(error = %chain(&e), "database error");
                CommandError::unavailable("the database is unavailable; retry shortly")
            }
            HandlerError::Storage(e @ StorageError::Corrupt { .. }) => {
                tracing::error!(error = %chain(&e), "corrupt data");
                CommandError::Internal
            }
        }
    }
}

/// An error and every `source()` below it, joined by ": ", for one log field. A cause whose
/// text the message above already ends with (lapin and lettre print their cause too) is not
/// written twice.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_conflict_names_its_field_and_a_command_error_passes_unchanged() {
        let e = HandlerError::from(StorageError::Conflict {
            what: "username".into(),
        })
        .into_reply();
        assert!(matches!(e, CommandError::Conflict { field: Some(ref f), .. } if f == "username"));
        let e = HandlerError::from(CommandError::Internal).into_reply();
        assert!(matches!(e, CommandError::Internal));
    }

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("connecting: {0}")]
    struct Echoing(#[source] std::io::Error);

    #[test]
    fn the_chain_names_every_cause_once() {
        let e = Outer(std::io::Error::other("disk on fire"));
        assert_eq!(chain(&e), "outer: disk on fire");
        let e = Echoing(std::io::Error::other("refused"));
        assert_eq!(chain(&e), "connecting: refused");
    }
}
