//! What every handler shares: the context actors' recipients and the timeout on every send.
//!
//! Refuses: holding actor addresses or anything but `Recipient`s, so the gateway cannot reach
//! past the message vocabulary.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use actix::{MailboxError, Message, Recipient};
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
        match within(to.send(msg), self.timeout).await {
            Some(Ok(reply)) => reply.map_err(ApiError::from),
            Some(Err(err)) => Err(ApiError::mailbox(err, short_type_name::<M>())),
            None => Err(ApiError::mailbox(
                MailboxError::Timeout,
                short_type_name::<M>(),
            )),
        }
    }
}

/// `answer`'s output, or `None` once `timeout` has passed without it. The timer starts only
/// if the answer did not come within one turn of this worker's tasks: the context actors run
/// on the worker's own thread, and one that answers from memory (a bearer or permission
/// check) has answered by then. Arming a timer for every message (the runtime's timer wheel,
/// a waker) cost 1.5 to 1.8% of the node's CPU in forward-auth (docs/PERFORMANCE.md).
async fn within<F: Future>(answer: F, timeout: Duration) -> Option<F::Output> {
    // NOTE: actix-http polls a handler twice in the task poll that reads its request (once
    // when it calls the service, once for the response), so "a turn has passed" is the third
    // poll. Until then each Pending wakes the task again, so a poll always follows.
    const UNTIMED_POLLS: u8 = 2;
    let mut answer = std::pin::pin!(answer);
    let mut polls = 0u8;
    let mut timer: Option<Pin<Box<tokio::time::Sleep>>> = None;
    std::future::poll_fn(|cx| {
        if let Poll::Ready(out) = answer.as_mut().poll(cx) {
            return Poll::Ready(Some(out));
        }
        if polls < UNTIMED_POLLS {
            polls += 1;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let timer = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        timer.as_mut().poll(cx).map(|()| None)
    })
    .await
}

pub(crate) fn short_type_name<M>() -> &'static str {
    let full = std::any::type_name::<M>();
    full.rsplit("::").next().unwrap_or(full)
}
