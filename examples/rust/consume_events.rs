//! Consume Keyward's events from RabbitMQ, with lapin.
//!
//! ```sh
//! cargo run --example consume_events -- [--amqp-url URL] [--pattern 'user.*'] [--expect TYPE --timeout S]
//! ```
//!
//! Declares a queue of its own (server-named, exclusive, auto-delete: it goes away with this
//! process), binds it to the `keyward.events` topic exchange with PATTERN (default `#`, every
//! event) and prints each envelope as one JSON line. With --expect, exits 0 once an event of
//! that type arrives and 1 if none did within --timeout seconds (default 30).
//!
//! --amqp-url falls back to AMQP_URL, then `amqp://guest:guest@127.0.0.1:5672/%2f`.
//!
//! A real service would declare a durable, named queue instead, so that events published while
//! it is down wait for it, and would drop duplicates by envelope id in its own database:
//! delivery is at least once.

use std::collections::{HashSet, VecDeque};
use std::process::ExitCode;
use std::time::Duration;

use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicQosOptions, BasicRejectOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties, ExchangeKind};
use serde_json::Value;

const EXCHANGE: &str = "keyward.events";
/// How many recent event ids are remembered to drop redeliveries (a stand-in for an inbox
/// table in the service's own database).
const SEEN_IDS: usize = 10_000;

type Error = Box<dyn std::error::Error>;

struct Args {
    amqp_url: String,
    pattern: String,
    expect: Option<String>,
    timeout: Duration,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        amqp_url: std::env::var("AMQP_URL")
            .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned()),
        pattern: "#".to_owned(),
        expect: None,
        timeout: Duration::from_secs(30),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let value = it.next().ok_or(format!("{arg} needs a value"))?;
        match arg.as_str() {
            "--amqp-url" => args.amqp_url = value,
            "--pattern" => args.pattern = value,
            "--expect" => args.expect = Some(value),
            "--timeout" => {
                let secs: f64 = value
                    .parse()
                    .map_err(|_| format!("--timeout: {value:?} is not a number of seconds"))?;
                args.timeout = Duration::try_from_secs_f64(secs)
                    .map_err(|_| format!("--timeout: {value:?} is out of range"))?;
            }
            _ => return Err(format!("unknown argument {arg}")),
        }
    }
    Ok(args)
}

/// Connects, binds a queue of its own and receives until done.
async fn consume(args: &Args) -> Result<bool, Error> {
    let conn = Connection::connect(&args.amqp_url, ConnectionProperties::default())
        .await
        .map_err(|e| format!("cannot connect to RabbitMQ: {e}"))?;
    let ch = conn.create_channel().await?;
    // The same declaration as Keyward's own (topic, durable): a no-op when it exists, and lets
    // this consumer start before the first Keyward node does.
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    ch.exchange_declare(
        EXCHANGE.into(),
        ExchangeKind::Topic,
        durable,
        FieldTable::default(),
    )
    .await?;
    let own = QueueDeclareOptions {
        exclusive: true,
        auto_delete: true,
        ..QueueDeclareOptions::default()
    };
    let queue = ch
        .queue_declare("".into(), own, FieldTable::default())
        .await?;
    let queue = queue.name().clone();
    ch.queue_bind(
        queue.clone(),
        EXCHANGE.into(),
        args.pattern.as_str().into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await?;
    ch.basic_qos(32, BasicQosOptions::default()).await?;
    let mut deliveries = ch
        .basic_consume(
            queue.clone(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    eprintln!("bound {queue} to {EXCHANGE} with {:?}", args.pattern);

    let outcome = receive(&mut deliveries, args).await;
    let _ = conn.close(200, "bye".into()).await;
    outcome
}

/// Prints and acks each new event; Ok(true) once the expected one arrived (or on Ctrl-C),
/// Ok(false) when the timeout passed first.
async fn receive(deliveries: &mut lapin::Consumer, args: &Args) -> Result<bool, Error> {
    let deadline = tokio::time::Instant::now() + args.timeout;
    let mut seen: HashSet<String> = HashSet::new();
    let mut order: VecDeque<String> = VecDeque::new();
    loop {
        let next = tokio::select! {
            d = deliveries.next() => d,
            _ = tokio::time::sleep_until(deadline), if args.expect.is_some() => return Ok(false),
            _ = tokio::signal::ctrl_c() => return Ok(true),
        };
        let delivery = next.ok_or("the broker closed the consumer")??;
        let Ok(Value::Object(envelope)) = serde_json::from_slice::<Value>(&delivery.data) else {
            eprintln!("consume_events: not an envelope, dropped");
            delivery.reject(BasicRejectOptions::default()).await?;
            continue;
        };
        let id = delivery
            .properties
            .message_id()
            .as_ref()
            .map(|s| s.to_string())
            .or_else(|| {
                envelope
                    .get("id")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .unwrap_or_default();
        if !seen.insert(id.clone()) {
            // A redelivery: already handled.
            delivery.ack(BasicAckOptions::default()).await?;
            continue;
        }
        order.push_back(id);
        if order.len() > SEEN_IDS {
            if let Some(old) = order.pop_front() {
                seen.remove(&old);
            }
        }
        let expected = args.expect.is_some()
            && envelope.get("type").and_then(Value::as_str) == args.expect.as_deref();
        // Handle the event here (commit your own state), then ack.
        println!("{}", Value::Object(envelope));
        delivery.ack(BasicAckOptions::default()).await?;
        if expected {
            return Ok(true);
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("consume_events: {e}");
            eprintln!(
                "usage: consume_events [--amqp-url URL] [--pattern P] [--expect TYPE --timeout S]"
            );
            return ExitCode::from(2);
        }
    };
    match consume(&args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!(
                "consume_events: no {} within {:?}",
                args.expect.as_deref().unwrap_or("event"),
                args.timeout
            );
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("consume_events: {e}");
            ExitCode::FAILURE
        }
    }
}
