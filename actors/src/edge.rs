//! The handler edge: every context handler's future runs inside `guarded`, which turns a
//! panic into a 500 reply, logs it, and stops the actor so its `Supervisor` restarts it.
//! (actix's Supervisor restarts an actor that stops, not one that panics.)

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::task::{Context, Poll};

use actix::{Actor, Addr, Handler, Message, Response};
use futures::FutureExt;
use keyward_messages::{CommandError, RequestMeta};
use tracing::Instrument;

use crate::error::HandlerError;

/// Tells a context actor to stop so its supervisor restarts it.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Restart;

fn panic_text(p: &(dyn Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".into())
}

/// Runs a handler's future inside a span carrying the request id (so every log line of a
/// request names it, in the gateway and in the actors alike) and catches its panic.
///
/// The future is polled once at once: a handler that answers from memory (a bearer check, a
/// permission check) replies without a task of its own. One that waits is polled again by the
/// task it then runs in, whose waker replaces the no-op one of the first poll, as every
/// future's contract says.
pub(crate) fn guarded<A, T, F>(
    addr: Addr<A>,
    handler: &'static str,
    meta: &RequestMeta,
    fut: F,
) -> Response<Result<T, CommandError>>
where
    A: Actor + Handler<Restart>,
    A::Context: actix::dev::ToEnvelope<A, Restart>,
    T: 'static,
    F: Future<Output = Result<T, HandlerError>> + 'static,
{
    let span = tracing::info_span!(
        "handler",
        handler,
        request_id = %meta.request_id,
        correlation_id = %meta.correlation_id
    );
    let guarded = async move {
        match AssertUnwindSafe(fut).catch_unwind().await {
            Ok(r) => r.map_err(HandlerError::into_reply),
            Err(p) => {
                tracing::error!(handler, panic = %panic_text(&*p), "handler panicked; answering 500 and restarting the actor");
                addr.do_send(Restart);
                Err(CommandError::Internal)
            }
        }
    };
    let mut fut = Box::pin(guarded.instrument(span));
    let mut first = Context::from_waker(futures::task::noop_waker_ref());
    match fut.as_mut().poll(&mut first) {
        Poll::Ready(reply) => Response::reply(reply),
        Poll::Pending => Response::fut(fut),
    }
}

/// Every context's handlers, in one style: each message goes to an async fn of the context's
/// deps and the message, run under [`guarded`]. `Msg => Reply: f;` calls `f(deps, msg)`;
/// `Msg => Reply: |deps, m| expr;` for a call that takes the message apart.
macro_rules! handlers {
    ($actor:ident { $($msg:ident => $reply:ty: $($f:ident)? $(|$d:ident, $m:ident| $call:expr)?;)* }) => {$(
        impl ::actix::Handler<$msg> for $actor {
            type Result = ::actix::Response<Result<$reply, ::keyward_messages::CommandError>>;
            fn handle(&mut self, m: $msg, ctx: &mut ::actix::Context<Self>) -> Self::Result {
                let meta = m.meta.clone();
                let deps = self.deps.clone();
                $(let fut = $f(deps, m);)?
                $(let fut = { let ($d, $m) = (deps, m); $call };)?
                $crate::edge::guarded(::actix::AsyncContext::address(ctx), stringify!($msg), &meta, fut)
            }
        }
    )*};
}
pub(crate) use handlers;
