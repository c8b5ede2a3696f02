//! What every handler shares: the context actors' recipients and the timeout on every send.
//!
//! Refuses: holding actor addresses or anything but `Recipient`s, so the gateway cannot reach
//! past the message vocabulary.

use std::time::Duration;

use actix::{Message, Recipient};
use keyward_messages::CommandError;

use crate::http_metrics::HttpMetrics;
use crate::problem::ApiError;
use crate::Recipients;

pub(crate) struct AppState {
    pub(crate) to: Recipients,
    timeout: Duration,
    /// Proxies whose X-Forwarded-For is believed.
    pub(crate) trusted_proxies: Vec<ipnet::IpNet>,
    /// Deadline for reading a request body, from the end of its head.
    pub(crate) body_timeout: Duration,
    /// A connection older than this is closed after its next reply.
    pub(crate) connection_max: Duration,
    /// Where requests are counted and timed; None: nowhere (the unit tests' apps).
    pub(crate) metrics: Option<HttpMetrics>,
}

impl AppState {
    pub(crate) fn new(to: Recipients, timeout: Duration) -> Self {
        Self {
            to,
            timeout,
            trusted_proxies: Vec::new(),
            body_timeout: Duration::from_secs(10),
            connection_max: Duration::from_secs(300),
            metrics: None,
        }
    }

    pub(crate) fn with_metrics(mut self, m: HttpMetrics) -> Self {
        self.metrics = Some(m);
        self
    }

    pub(crate) fn with_body_timeout(mut self, t: Duration) -> Self {
        self.body_timeout = t;
        self
    }

    pub(crate) fn with_connection_max(mut self, t: Duration) -> Self {
        self.connection_max = t;
        self
    }

    pub(crate) fn with_trusted_proxies(mut self, nets: Vec<ipnet::IpNet>) -> Self {
        self.trusted_proxies = nets;
        self
    }

    /// Sends a command and maps both ways it can fail: the actor's answer, or no answer in time.
    pub(crate) async fn ask<M, T>(&self, to: &Recipient<M>, msg: M) -> Result<T, ApiError>
    where
        M: Message<Result = Result<T, CommandError>> + Send + 'static,
        T: Send + 'static,
    {
        match to.send(msg).timeout(self.timeout).await {
            Ok(reply) => reply.map_err(ApiError::from),
            Err(err) => Err(ApiError::mailbox(err, short_type_name::<M>())),
        }
    }
}

pub(crate) fn short_type_name<M>() -> &'static str {
    let full = std::any::type_name::<M>();
    full.rsplit("::").next().unwrap_or(full)
}
