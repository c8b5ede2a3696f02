//! SMTP with connection reuse: lettre's pool behind a handle that owns its shutdown.
//!
//! A new SMTP connection costs a TCP connect, the greeting and EHLO (and STARTTLS and AUTH when
//! configured): about 105 ms a mail against a local sink, against 7 ms on a reused connection.
//! So idle connections are kept (up to [`POOL_MAX`], each checked with a NOOP before reuse and
//! closed after [`POOL_IDLE`] unused), and concurrent sends each take their own.
//!
//! NOTE: lettre's pool hands a connection back after each send, and closes itself, by spawning
//! tokio tasks from `Drop`; dropped outside a runtime's context, that panics. actix drops actors
//! and their unfinished futures after leaving the runtime's context when a process or a test's
//! system stops, which is why the pool was once removed. So nothing of lettre's is ever dropped
//! outside the runtime that built it:
//! - each send runs as a task of that runtime: a send whose job is dropped is aborted, and the
//!   runtime drops it inside its own context;
//! - [`SmtpPool::shutdown`] closes the idle connections and the pool's cleanup task at an
//!   orderly stop; sends after it fail (and are retried by another worker);
//! - the last handle enters that runtime's context to drop the pool, whoever drops it, even
//!   after the runtime itself is gone (a spawn then just drops its task).
//!
//! Refuses: logging the SMTP URL (it may carry a password).

use std::time::Duration;

use lettre::transport::smtp::PoolConfig;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use super::MailError;
use crate::error::chain;
use crate::StartError;

/// Idle connections kept for reuse: more than a worker's concurrent sends, so a burst does not
/// close connections it is about to need again.
pub const POOL_MAX: u32 = 16;
/// An idle connection is closed after this long (SMTP servers drop idle clients after minutes).
pub const POOL_IDLE: Duration = Duration::from_secs(60);

/// A pooled SMTP transport, bound to the runtime it was built on.
pub struct SmtpPool {
    /// `Some` until the pool is dropped (then taken, to drop it inside the runtime).
    transport: Option<AsyncSmtpTransport<Tokio1Executor>>,
    runtime: Handle,
}

impl SmtpPool {
    /// Builds the pool for `url` (smtp:// plain, `?tls=required` for STARTTLS, smtps://
    /// implicit TLS). No connection is made until the first send. Must run on the runtime that
    /// will send.
    pub fn new(url: &str) -> Result<Self, StartError> {
        let runtime = Handle::try_current().map_err(|_| {
            StartError::Mail("the SMTP pool must be built inside the async runtime".to_owned())
        })?;
        let builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(url).map_err(|e| {
            StartError::Mail(format!(
                "KEYWARD_SMTP_URL: {} (expected smtp://host:port or smtps://user:pass@host)",
                chain(&e)
            ))
        })?;
        let pool = PoolConfig::new().max_size(POOL_MAX).idle_timeout(POOL_IDLE);
        // Entered explicitly: building the pool spawns its cleanup task.
        let _inside = runtime.enter();
        let transport = builder.pool_config(pool).build();
        Ok(Self {
            transport: Some(transport),
            runtime,
        })
    }

    /// Sends one mail on a pooled connection (a new one when none is idle).
    pub async fn send(&self, mail: Message) -> Result<(), MailError> {
        let Some(transport) = self.transport.clone() else {
            return Err(MailError::SmtpClosed);
        };
        let mut task = AbortOnDrop(
            self.runtime
                .spawn(async move { transport.send(mail).await.map(|_| ()) }),
        );
        match (&mut task.0).await {
            Ok(sent) => sent.map_err(MailError::Smtp),
            Err(e) => Err(MailError::SmtpTask(e)),
        }
    }

    /// Closes the idle connections and stops the pool's cleanup task. Sends after this fail;
    /// a send in flight finishes and closes its connection instead of parking it.
    pub async fn shutdown(&self) {
        if let Some(t) = &self.transport {
            t.shutdown().await;
        }
    }
}

impl Drop for SmtpPool {
    fn drop(&mut self) {
        let _inside = self.runtime.enter();
        drop(self.transport.take());
    }
}

/// Aborts the send task when the job awaiting it is dropped, so a dropped job sends nothing
/// later (the runtime drops the aborted task inside its own context).
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn a_pool_dropped_after_its_runtime_is_gone_does_not_panic() {
        let rt = runtime();
        let pool = rt.block_on(async { SmtpPool::new("smtp://127.0.0.1:1").unwrap() });
        drop(rt);

        drop(pool);
    }

    #[test]
    fn a_pool_dropped_on_a_thread_outside_any_runtime_does_not_panic() {
        let rt = runtime();
        let pool = rt.block_on(async { SmtpPool::new("smtp://127.0.0.1:1").unwrap() });

        let dropped = std::thread::spawn(move || drop(pool)).join();

        assert!(dropped.is_ok());
        drop(rt);
    }

    #[test]
    fn a_pool_built_outside_a_runtime_is_a_start_error_not_a_panic() {
        let built = SmtpPool::new("smtp://127.0.0.1:1");

        assert!(matches!(built, Err(StartError::Mail(_))));
    }

    #[test]
    fn a_bad_smtp_url_names_the_setting_and_not_the_password() {
        let rt = runtime();
        let built = rt.block_on(async { SmtpPool::new("smtp://u:hunter2@host:notaport") });

        let e = built.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.starts_with("mail: KEYWARD_SMTP_URL"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn a_send_after_shutdown_fails_for_a_retry() {
        let rt = runtime();
        let sent = rt.block_on(async {
            let pool = SmtpPool::new("smtp://127.0.0.1:1").unwrap();
            pool.shutdown().await;
            let mail = Message::builder()
                .from("a@example.com".parse().unwrap())
                .to("b@example.com".parse().unwrap())
                .subject("s")
                .body(String::from("b"))
                .unwrap();
            pool.send(mail).await
        });

        assert!(matches!(sent, Err(MailError::Smtp(_))), "{sent:?}");
    }
}
