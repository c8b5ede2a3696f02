//! What can go wrong on the bus (the relay's subscribers, the AMQP publisher and consumers), and
//! [`chain`], which writes an error with all its causes for the log.
//!
//! Refuses: putting a URL, a credential or a message body in an error; the AMQP URL is only
//! ever logged masked (`keyward_config::safe_url`), never carried here.

use std::error::Error;

use crate::notify::MailError;

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

/// A failure on the bus. Every one is worth a retry: the relay keeps the row, the worker and
/// the broadcast listener reconnect with backoff.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("timed out connecting to RabbitMQ")]
    ConnectTimeout,
    #[error("connecting to RabbitMQ")]
    Connect(#[source] lapin::Error),
    #[error("opening a channel")]
    Channel(#[source] lapin::Error),
    #[error("declaring the topology")]
    Topology(#[source] lapin::Error),
    #[error("enabling publisher confirms")]
    Confirms(#[source] lapin::Error),
    #[error("encoding the envelope")]
    Encode(#[source] serde_json::Error),
    #[error("publishing to {exchange:?}")]
    Publish {
        exchange: &'static str,
        #[source]
        source: lapin::Error,
    },
    #[error("no publisher confirm in time from {exchange:?}")]
    ConfirmTimeout { exchange: &'static str },
    #[error("the broker refused (nack) the message for {exchange:?}")]
    Nacked { exchange: &'static str },
    /// The broker returned a mandatory message: no queue is bound for `key`.
    #[error("unroutable: {key} ({reply})")]
    Unroutable { key: String, reply: String },
    #[error("declaring the broadcast queue")]
    DeclareBroadcastQueue(#[source] lapin::Error),
    #[error("binding the broadcast queue")]
    BindBroadcastQueue(#[source] lapin::Error),
    #[error("basic_qos")]
    Qos(#[source] lapin::Error),
    #[error("basic_consume")]
    Consume(#[source] lapin::Error),
    /// The consumer's stream failed (typically the connection was lost).
    #[error("consumer")]
    Consumer(#[source] lapin::Error),
    #[error("ack")]
    Ack(#[source] lapin::Error),
    #[error("nack")]
    Nack(#[source] lapin::Error),
    /// The subscriber's mailbox is closed or full.
    #[error("subscriber unreachable")]
    Unreachable(#[source] actix::MailboxError),
    /// The notify subscriber could not send an email job (embedded mode).
    #[error(transparent)]
    Mail(#[from] MailError),
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
            chain(&BusError::ConnectTimeout),
            "timed out connecting to RabbitMQ"
        );
    }

    #[test]
    fn a_mail_failure_on_the_bus_reads_as_the_mail_failure() {
        let Err(cause) = "not an address".parse::<lettre::Address>() else {
            return;
        };
        let mail = MailError::Recipient(cause);
        assert_eq!(chain(&BusError::from(mail)), format!("recipient: {cause}"));
    }
}
