//! What can go wrong with one email job. The job's own faults (a recipient or a message lettre
//! refuses) are poison: [`deliver`](super::deliver) records and drops those instead of
//! returning them. What it returns is worth a retry.
//!
//! Refuses: carrying the message, its link or any credential (an SMTP URL is never put here).

use keyward_storage::StorageError;

/// A failure to send an email job, or to build or record one.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// The job's recipient is not an address lettre accepts.
    #[error("recipient")]
    Recipient(#[source] lettre::address::AddressError),
    /// lettre refuses to build the message.
    #[error("building the message")]
    Build(#[source] lettre::error::Error),
    #[error("writing to the mail drop")]
    File(#[source] lettre::transport::file::Error),
    #[error("sending by SMTP")]
    Smtp(#[source] lettre::transport::smtp::Error),
    /// The send task ended without an answer (aborted at shutdown, or it panicked).
    #[error("sending by SMTP: the send task ended")]
    SmtpTask(#[source] tokio::task::JoinError),
    /// The SMTP pool was already dropped.
    #[error("sending by SMTP: the transport is closed")]
    SmtpClosed,
    /// A push service did not take a message; worth a retry.
    #[error("sending a push message: {0}")]
    Push(String),
    /// The SMS provider did not take a text; worth a retry. Never the text itself.
    #[error("sending an SMS: {0}")]
    Sms(String),
    /// The inbox (de-duplication by message id) cannot be read or written.
    #[error("inbox")]
    Inbox(#[source] StorageError),
}
