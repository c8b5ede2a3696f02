//! What can go wrong on the bus: the relay's subscribers, the AMQP publisher and consumers.
//! The log writes these with `crate::error::chain`.
//!
//! Refuses: putting a URL, a credential or a message body in an error; the AMQP URL is only
//! ever logged masked (`keyward_config::safe_url`), never carried here.

use crate::notify::MailError;

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
    use crate::error::chain;

    #[test]
    fn a_mail_failure_on_the_bus_reads_as_the_mail_failure() {
        let Err(cause) = "not an address".parse::<lettre::Address>() else {
            return;
        };
        let mail = MailError::Recipient(cause);
        assert_eq!(chain(&BusError::from(mail)), format!("recipient: {cause}"));
    }
}
