//! The RabbitMQ side of the bus: the topology, a publisher with confirms, and the connection
//! helpers the worker shares.
//!
//! Topology (declared by [`declare_topology`], at every connect and reconnect; idempotent):
//! - `keyward.events`: topic exchange, durable; routing key = event type.
//! - `keyward.notify.email`: quorum queue, durable, fed through the default exchange; a message
//!   delivered [`EMAIL_DELIVERY_LIMIT`] times without an ack is dead-lettered.
//! - `keyward.notify`: direct exchange, durable, where products publish notification requests
//!   (routing key `send`) into the quorum queue `keyward.notify.requests`, which every node in
//!   distributed mode consumes ([`crate::notify::intake`]).
//! - `keyward.dead`: fanout exchange and durable queue of that name, for dead letters.
//! - `keyward.broadcast`: fanout exchange for node-local caches.
//!
//! The publisher keeps `keyward_amqp_connected` at 1 while its connection is up: set as it
//! connects or loses a publish, and checked every second, so an idle node shows an outage too.
//!
//! Refuses: marking anything sent before the broker confirmed it; treating a returned email job
//! as delivered. (An event that no queue is bound for is confirmed and reaches nobody: consumers
//! bind their own queues to `keyward.events`.)

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use keyward_messages::events::Envelope;
use keyward_messages::CommandError;
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use prometheus::IntGauge;
use tokio::sync::Mutex;

use super::broadcast::is_broadcast;
use super::{BusError, Deliver};
use crate::error::chain;

pub const EVENTS_EXCHANGE: &str = "keyward.events";
pub const EMAIL_QUEUE: &str = "keyward.notify.email";
pub const DEAD_EXCHANGE: &str = "keyward.dead";
pub const DEAD_QUEUE: &str = "keyward.dead";
pub const BROADCAST_EXCHANGE: &str = "keyward.broadcast";
pub const NOTIFY_EXCHANGE: &str = "keyward.notify";
pub const REQUESTS_QUEUE: &str = "keyward.notify.requests";
/// The routing key of a notification request on `keyward.notify`.
pub const SEND_KEY: &str = "send";
/// Deliveries of one email job before it goes to `keyward.dead`.
pub const EMAIL_DELIVERY_LIMIT: i32 = 6;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);
/// How often an idle publisher looks at its connection, for `keyward_amqp_connected`.
const STATUS_INTERVAL: Duration = Duration::from_secs(1);

fn durable() -> ExchangeDeclareOptions {
    ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    }
}

/// Declares every exchange and queue Keyward uses. Safe to call any number of times.
pub async fn declare_topology(ch: &Channel) -> lapin::Result<()> {
    ch.exchange_declare(
        EVENTS_EXCHANGE.into(),
        ExchangeKind::Topic,
        durable(),
        FieldTable::default(),
    )
    .await?;
    ch.exchange_declare(
        BROADCAST_EXCHANGE.into(),
        ExchangeKind::Fanout,
        durable(),
        FieldTable::default(),
    )
    .await?;
    ch.exchange_declare(
        DEAD_EXCHANGE.into(),
        ExchangeKind::Fanout,
        durable(),
        FieldTable::default(),
    )
    .await?;
    let q = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    ch.queue_declare(DEAD_QUEUE.into(), q, FieldTable::default())
        .await?;
    ch.queue_bind(
        DEAD_QUEUE.into(),
        DEAD_EXCHANGE.into(),
        "".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await?;
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString(LongString::from("quorum")),
    );
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(LongString::from(DEAD_EXCHANGE)),
    );
    args.insert(
        "x-delivery-limit".into(),
        AMQPValue::LongInt(EMAIL_DELIVERY_LIMIT),
    );
    ch.queue_declare(EMAIL_QUEUE.into(), q, args.clone())
        .await?;
    ch.exchange_declare(
        NOTIFY_EXCHANGE.into(),
        ExchangeKind::Direct,
        durable(),
        FieldTable::default(),
    )
    .await?;
    ch.queue_declare(REQUESTS_QUEUE.into(), q, args).await?;
    ch.queue_bind(
        REQUESTS_QUEUE.into(),
        NOTIFY_EXCHANGE.into(),
        SEND_KEY.into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await?;
    Ok(())
}

/// Connects (bounded by a timeout) and opens a channel with the topology declared.
pub async fn connect(url: &str, name: &str) -> Result<(Connection, Channel), BusError> {
    let props = ConnectionProperties::default().with_connection_name(name.into());
    let conn = tokio::time::timeout(CONNECT_TIMEOUT, Connection::connect(url, props))
        .await
        .map_err(|_| BusError::ConnectTimeout)?
        .map_err(BusError::Connect)?;
    let ch = conn.create_channel().await.map_err(BusError::Channel)?;
    declare_topology(&ch).await.map_err(BusError::Topology)?;
    Ok((conn, ch))
}

/// Where an envelope goes: events to the topic exchange by type, delivery jobs (email, push,
/// SMS) to the workers' queue.
pub fn route(env: &Envelope) -> (&'static str, String) {
    if env.is_job() {
        ("", EMAIL_QUEUE.to_owned())
    } else {
        (EVENTS_EXCHANGE, env.kind.clone())
    }
}

/// The documented AMQP properties of an envelope.
pub fn properties(env: &Envelope) -> BasicProperties {
    let mut p = BasicProperties::default()
        .with_message_id(env.id.to_string().into())
        .with_type(env.kind.clone().into())
        .with_content_type("application/json".into())
        .with_delivery_mode(2)
        .with_timestamp(u64::try_from(env.occurred_at.timestamp()).unwrap_or(0));
    let mut headers = FieldTable::default();
    if let Some(c) = &env.correlation_id {
        p = p.with_correlation_id(c.clone().into());
        headers.insert(
            CORRELATION_HEADER.into(),
            AMQPValue::LongString(c.as_str().into()),
        );
    }
    if let Some(r) = &env.request_id {
        headers.insert(
            REQUEST_HEADER.into(),
            AMQPValue::LongString(r.as_str().into()),
        );
    }
    p.with_headers(headers)
}

/// AMQP headers naming the HTTP request behind a message and its correlation id.
pub const REQUEST_HEADER: &str = "x-request-id";
pub const CORRELATION_HEADER: &str = "x-correlation-id";

struct Link {
    conn: Connection,
    channel: Channel,
}

/// Publishes the relay's envelopes to RabbitMQ. Connects lazily and again after any failure;
/// the relay's retry (with backoff) is what drives reconnection, so an outage never blocks a
/// request, and rows wait in the outbox until the broker is back.
pub struct AmqpPublisher {
    url: Arc<String>,
    link: Arc<Mutex<Option<Link>>>,
    /// `keyward_amqp_connected`.
    connected: IntGauge,
}

impl AmqpPublisher {
    pub fn new(url: String, connected: IntGauge) -> Self {
        connected.set(0);
        Self {
            url: Arc::new(url),
            link: Arc::new(Mutex::new(None)),
            connected,
        }
    }
}

/// Both the connection and the channel of a link are open.
fn live(l: &Link) -> bool {
    l.conn.status().connected() && l.channel.status().connected()
}

async fn ensure(
    url: &str,
    slot: &mut Option<Link>,
    connected: &IntGauge,
) -> Result<Channel, BusError> {
    if let Some(l) = slot.as_ref().filter(|l| live(l)) {
        return Ok(l.channel.clone());
    }
    *slot = None;
    connected.set(0);
    let (conn, channel) = connect(url, "keyward-node-publisher").await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(BusError::Confirms)?;
    tracing::info!(url = %keyward_config::safe_url(url), "connected to RabbitMQ");
    *slot = Some(Link {
        conn,
        channel: channel.clone(),
    });
    connected.set(1);
    Ok(channel)
}

async fn publish(
    url: Arc<String>,
    link: Arc<Mutex<Option<Link>>>,
    connected: IntGauge,
    env: Envelope,
) -> Result<(), BusError> {
    let mut slot = link.lock().await;
    let ch = ensure(&url, &mut slot, &connected).await?;
    let body = serde_json::to_vec(&env).map_err(BusError::Encode)?;
    let (exchange, key) = route(&env);
    let confirm = match confirmed(&ch, exchange, &key, true, &body, properties(&env)).await {
        Ok(c) => c,
        Err(e) => {
            *slot = None;
            connected.set(0);
            return Err(e);
        }
    };
    if let Some(returned) = confirm.take_message() {
        // NOTE: an event no queue is bound for reaches nobody, as pub/sub means; blocking the
        // ordered outbox on it would stall every later message. An email job must reach its
        // queue, so for those a return is a failure to retry.
        if exchange == EVENTS_EXCHANGE {
            tracing::debug!(kind = %env.kind, "no queue is bound for this event type");
        } else {
            return Err(BusError::Unroutable {
                key,
                reply: returned.reply_text.to_string(),
            });
        }
    }
    if is_broadcast(&env) {
        // Not mandatory: a node that is down has no queue, and forgets its beliefs on return.
        if let Err(e) = confirmed(&ch, BROADCAST_EXCHANGE, "", false, &body, properties(&env)).await
        {
            *slot = None;
            connected.set(0);
            return Err(e);
        }
    }
    Ok(())
}

/// Publishes one message and waits (bounded) for the broker's confirm; a nack is an error.
async fn confirmed(
    ch: &Channel,
    exchange: &'static str,
    key: &str,
    mandatory: bool,
    body: &[u8],
    props: BasicProperties,
) -> Result<lapin::Confirmation, BusError> {
    let attempt = async {
        let confirm = ch
            .basic_publish(
                exchange.into(),
                key.into(),
                BasicPublishOptions {
                    mandatory,
                    ..BasicPublishOptions::default()
                },
                body,
                props,
            )
            .await?
            .await?;
        Ok::<_, lapin::Error>(confirm)
    };
    let confirm = match tokio::time::timeout(CONFIRM_TIMEOUT, attempt).await {
        Ok(Ok(c)) => c,
        Ok(Err(source)) => return Err(BusError::Publish { exchange, source }),
        Err(_) => return Err(BusError::ConfirmTimeout { exchange }),
    };
    if !confirm.is_ack() {
        return Err(BusError::Nacked { exchange });
    }
    Ok(confirm)
}

impl Actor for AmqpPublisher {
    type Context = Context<Self>;

    /// Connects (and declares the topology) at start, so consumers can bind before the first
    /// event; a broker that is down now is retried by the relay's next delivery.
    fn started(&mut self, ctx: &mut Context<Self>) {
        let (url, link, connected) = (self.url.clone(), self.link.clone(), self.connected.clone());
        // NOTE: a busy link (connecting or publishing) is skipped: that path sets the gauge.
        ctx.run_interval(STATUS_INTERVAL, |act, _| {
            if let Ok(slot) = act.link.try_lock() {
                act.connected
                    .set(i64::from(slot.as_ref().is_some_and(live)));
            }
        });
        ctx.spawn(
            async move {
                let mut slot = link.lock().await;
                if let Err(e) = ensure(&url, &mut slot, &connected).await {
                    tracing::warn!(error = %chain(&e), "RabbitMQ is not reachable yet; events wait in the outbox");
                }
            }
            .into_actor(self),
        );
    }
}

impl Supervised for AmqpPublisher {}

impl Handler<Deliver> for AmqpPublisher {
    type Result = ResponseFuture<Result<(), BusError>>;
    fn handle(&mut self, Deliver(env): Deliver, _: &mut Context<Self>) -> Self::Result {
        Box::pin(publish(
            self.url.clone(),
            self.link.clone(),
            self.connected.clone(),
            env,
        ))
    }
}

impl Handler<keyward_messages::commands::CheckReady> for AmqpPublisher {
    type Result = ResponseFuture<Result<(), CommandError>>;
    fn handle(
        &mut self,
        _: keyward_messages::commands::CheckReady,
        _: &mut Context<Self>,
    ) -> Self::Result {
        let (url, link, connected) = (self.url.clone(), self.link.clone(), self.connected.clone());
        Box::pin(async move {
            let mut slot = link.lock().await;
            ensure(&url, &mut slot, &connected)
                .await
                .map(|_| ())
                .map_err(|e| {
                    tracing::warn!(error = %chain(&e), "RabbitMQ is not reachable");
                    CommandError::unavailable("RabbitMQ is not reachable")
                })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_rt::test]
    async fn a_failed_connection_never_shows_the_password_of_the_url() {
        // Nothing listens on port 1.
        let result = connect("amqp://keyward:hunter2@127.0.0.1:1/%2f", "test").await;

        let e = result.err().map(|e| chain(&e)).unwrap_or_default();
        assert!(
            e.starts_with("connecting to RabbitMQ") || e.starts_with("timed out"),
            "{e}"
        );
        assert!(!e.contains("hunter2"), "{e}");
    }
}
