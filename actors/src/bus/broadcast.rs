//! Invalidations reaching every node's [`NodeCaches`] (revoked sessions, changed profiles):
//! from the relay in embedded mode ([`CacheListener`]), and from `keyward.broadcast` in
//! distributed mode ([`listen`]: each node binds its own exclusive queue to the fanout
//! exchange).
//!
//! A node whose broadcast link drops forgets its beliefs when it reconnects, since it may have
//! missed messages meanwhile; while the link is down, the caches' recheck intervals bound how
//! stale it can be.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use futures::StreamExt;
use keyward_messages::events::Envelope;
use lapin::options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use prometheus::IntGauge;

use super::amqp::{connect, BROADCAST_EXCHANGE};
use super::{BusError, Deliver};
use crate::caches::{is_invalidating, NodeCaches};
use crate::error::chain;

/// The message types that go to `keyward.broadcast` as well as `keyward.events`.
pub fn is_broadcast(env: &Envelope) -> bool {
    is_invalidating(&env.kind)
}

/// The in-process subscriber for invalidating messages (embedded mode).
pub struct CacheListener(pub Arc<NodeCaches>);

impl Actor for CacheListener {
    type Context = Context<Self>;
}

impl Supervised for CacheListener {}

impl Handler<Deliver> for CacheListener {
    type Result = Result<(), BusError>;
    fn handle(&mut self, Deliver(env): Deliver, _: &mut Context<Self>) -> Self::Result {
        self.0.apply(&env);
        Ok(())
    }
}

/// Consumes `keyward.broadcast` into `caches` until the process ends, reconnecting with
/// backoff. `consuming` (`keyward_broadcast_consuming`) is 1 while it consumes.
pub async fn listen(url: String, caches: Arc<NodeCaches>, consuming: IntGauge) {
    let mut backoff = Duration::from_millis(250);
    loop {
        let result = consume_once(&url, &caches, &consuming).await;
        consuming.set(0);
        match result {
            Ok(()) => tracing::warn!("the broadcast consumer stopped; reconnecting"),
            Err(e) => {
                tracing::warn!(error = %chain(&e), retry_in_ms = backoff.as_millis() as u64, "cannot consume keyward.broadcast; retrying")
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn consume_once(
    url: &str,
    caches: &NodeCaches,
    consuming: &IntGauge,
) -> Result<(), BusError> {
    let (conn, ch) = connect(url, "keyward-node-broadcast").await?;
    // Exclusive and server-named: this node's own queue, gone with its connection.
    let q = ch
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(BusError::DeclareBroadcastQueue)?;
    ch.queue_bind(
        q.name().clone(),
        BROADCAST_EXCHANGE.into(),
        "".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .map_err(BusError::BindBroadcastQueue)?;
    let mut consumer = ch
        .basic_consume(
            q.name().clone(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(BusError::Consume)?;
    // Bound before forgetting: a revocation from now on is heard, one from before is re-read.
    caches.forget_beliefs();
    consuming.set(1);
    tracing::info!("listening on keyward.broadcast");
    while let Some(next) = consumer.next().await {
        let delivery = next.map_err(BusError::Consumer)?;
        match serde_json::from_slice::<Envelope>(&delivery.data) {
            Ok(env) => caches.apply(&env),
            Err(e) => tracing::warn!(error = %chain(&e), "undecodable broadcast message; ignored"),
        }
    }
    drop(conn);
    Ok(())
}
