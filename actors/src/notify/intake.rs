//! The AMQP intake of notification requests: products publish the send API's JSON to
//! `keyward.notify` (routing key `send`); every node in distributed mode consumes
//! `keyward.notify.requests` and sends each request as the built-in client `amqp` would
//! through the API (its idempotency keys are that client's).
//!
//! A request is acked only after its send committed (or was found already sent under its
//! idempotency key); one that can never be sent (not JSON, a bad member, an unknown template)
//! is published to `keyward.dead` with the reason in the `x-keyward-reason` header, then
//! acked; a failure worth a retry is requeued after a backoff, and the quorum queue's delivery
//! limit dead-letters a request that keeps failing.
//!
//! A database that does not answer is not the request's fault, and must not spend its
//! deliveries (an outage longer than the retries would dead-letter every product's
//! notifications): as in the worker, the request is held, no new one is taken, and it is sent
//! again once the database answers a ping.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use actix::Recipient;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use keyward_messages::access::{Caller, ClientPrincipal};
use keyward_messages::notify::{SendNotification, SendRequest};
use keyward_messages::{CommandError, FieldError, RequestMeta};
use keyward_storage::Store;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel};

use crate::bus::amqp::{connect, DEAD_EXCHANGE, REQUESTS_QUEUE};
use crate::bus::BusError;
use crate::error::chain;
use crate::notify::worker::{database_answers, wait_for_database};

/// Requests a node works on at once.
const PREFETCH: u16 = 16;
/// The header naming why a request was dead-lettered.
pub const REASON_HEADER: &str = "x-keyward-reason";
/// The client id the intake sends as.
pub const INTAKE_CLIENT: &str = "amqp";

/// What became of one request.
enum Verdict {
    Done,
    Poison(String),
    Retry(String),
    /// The context answered that the database is unavailable.
    Unavailable(String),
}

fn fields(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| format!("{}: {} ({})", e.field, e.message, e.code))
        .collect::<Vec<_>>()
        .join("; ")
}

fn request_of(d: &Delivery) -> Result<SendRequest, String> {
    let body: serde_json::Value =
        serde_json::from_slice(&d.data).map_err(|e| format!("not JSON: {e}"))?;
    let serde_json::Value::Object(map) = body else {
        return Err("expected a JSON object".to_owned());
    };
    SendRequest::from_json(&map).map_err(|e| fields(&e))
}

fn meta_of(d: &Delivery) -> RequestMeta {
    let p = &d.properties;
    let id = p
        .message_id()
        .as_ref()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_default();
    RequestMeta {
        correlation_id: p
            .correlation_id()
            .as_ref()
            .map_or_else(|| id.clone(), |c| c.as_str().to_owned()),
        request_id: id,
        ..RequestMeta::default()
    }
}

async fn judge(send: &Recipient<SendNotification>, d: &Delivery) -> Verdict {
    let request = match request_of(d) {
        Ok(r) => r,
        Err(reason) => return Verdict::Poison(reason),
    };
    let cmd = SendNotification {
        meta: meta_of(d),
        caller: Caller::Client(ClientPrincipal {
            client_id: INTAKE_CLIENT.to_owned(),
            scopes: vec!["notifications:send".to_owned()],
        }),
        request,
    };
    match send.send(cmd).await {
        Ok(Ok(_)) => Verdict::Done,
        Ok(Err(CommandError::Invalid { errors, detail, .. })) => {
            Verdict::Poison(if errors.is_empty() {
                detail
            } else {
                fields(&errors)
            })
        }
        Ok(Err(
            e @ (CommandError::Conflict { .. }
            | CommandError::NotFound { .. }
            | CommandError::Forbidden { .. }),
        )) => Verdict::Poison(e.to_string()),
        Ok(Err(e @ CommandError::Unavailable { .. })) => Verdict::Unavailable(e.to_string()),
        Ok(Err(e)) => Verdict::Retry(e.to_string()),
        Err(e) => Verdict::Retry(format!("the notify context did not answer: {e}")),
    }
}

async fn dead_letter(ch: &Channel, d: &Delivery, reason: &str) -> Result<(), BusError> {
    let mut headers = d.properties.headers().clone().unwrap_or_default();
    headers.insert(
        REASON_HEADER.into(),
        AMQPValue::LongString(LongString::from(reason)),
    );
    let props: BasicProperties = d.properties.clone().with_headers(headers);
    ch.basic_publish(
        DEAD_EXCHANGE.into(),
        REQUESTS_QUEUE.into(),
        BasicPublishOptions::default(),
        &d.data,
        props,
    )
    .await
    .map_err(|source| BusError::Publish {
        exchange: DEAD_EXCHANGE,
        source,
    })?;
    Ok(())
}

async fn handle(
    ch: &Channel,
    send: &Recipient<SendNotification>,
    store: &Store,
    waiting: &AtomicBool,
    d: Delivery,
) -> Result<(), BusError> {
    let verdict = loop {
        match judge(send, &d).await {
            Verdict::Unavailable(reason) if !database_answers(store).await => {
                tracing::warn!(%reason, "the database does not answer; holding the notification request until it does");
                wait_for_database(store, waiting).await;
                tracing::info!("the database answers again; sending the held notification request");
            }
            verdict => break verdict,
        }
    };
    if matches!(verdict, Verdict::Done) {
        // It went through the database: it answers.
        waiting.store(false, Ordering::SeqCst);
    }
    match verdict {
        Verdict::Done => {}
        Verdict::Poison(reason) => {
            tracing::warn!(%reason, "a notification request can never be sent; dead-lettered");
            dead_letter(ch, &d, &reason).await?;
        }
        Verdict::Retry(reason) | Verdict::Unavailable(reason) => {
            tracing::warn!(%reason, "a notification request failed; requeueing");
            tokio::time::sleep(Duration::from_millis(500)).await;
            return d
                .nack(BasicNackOptions {
                    requeue: true,
                    ..BasicNackOptions::default()
                })
                .await
                .map(|_| ())
                .map_err(BusError::Nack);
        }
    }
    d.ack(BasicAckOptions::default())
        .await
        .map(|_| ())
        .map_err(BusError::Ack)
}

async fn consume_once(
    url: &str,
    send: &Recipient<SendNotification>,
    store: &Store,
) -> Result<(), BusError> {
    let (conn, ch) = connect(url, "keyward-notify-intake").await?;
    ch.basic_qos(PREFETCH, BasicQosOptions::default())
        .await
        .map_err(BusError::Qos)?;
    let tag = format!("keyward-intake-{}", uuid::Uuid::new_v4());
    let mut consumer = ch
        .basic_consume(
            REQUESTS_QUEUE.into(),
            tag.as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(BusError::Consume)?;
    tracing::info!(queue = REQUESTS_QUEUE, "notification intake consuming");
    // NOTE: while a request waits for the database no new one is taken (as in the worker);
    // with none held the flag cannot clear, so one is taken to find out.
    let waiting = AtomicBool::new(false);
    let mut jobs = FuturesUnordered::new();
    loop {
        let taking = jobs.len() < usize::from(PREFETCH)
            && (jobs.is_empty() || !waiting.load(Ordering::SeqCst));
        tokio::select! {
            next = consumer.next(), if taking => match next {
                Some(d) => jobs.push(handle(&ch, send, store, &waiting, d.map_err(BusError::Consumer)?)),
                None => break,
            },
            Some(done) = jobs.next(), if !jobs.is_empty() => done?,
        }
    }
    while let Some(done) = jobs.next().await {
        done?;
    }
    drop(conn);
    Ok(())
}

/// Consumes until the process ends; reconnects with backoff (at most a second apart).
pub async fn run(url: String, send: Recipient<SendNotification>, store: Store) {
    let mut backoff = Duration::from_millis(250);
    loop {
        match consume_once(&url, &send, &store).await {
            Ok(()) => tracing::warn!("notification intake stopped; reconnecting"),
            Err(e) => {
                tracing::warn!(error = %chain(&e), "notification intake cannot consume; retrying")
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}
