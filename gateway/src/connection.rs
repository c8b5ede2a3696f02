//! The public server's connections: each TCP stream is wrapped so that a request layer can close
//! it after its reply, and so that no connection outlives a hard deadline whatever state it is
//! stuck in (a client that never reads its reply included).
//!
//! Why: actix-http keeps reading (and discarding) a request body the app did not read, even
//! after a `Connection: close` reply, so a chunked body that never ends, or never arrives, held
//! its socket for as long as the client liked. Ending the read side here makes the dispatcher
//! flush the reply and shut the connection at once.
//!
//! Refuses: reading or parsing HTTP; that stays actix-http's.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::net::TcpListener;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use actix_http::{HttpService, KeepAlive, Protocol};
use actix_rt::net::TcpStream;
use actix_rt::time::Sleep;
use actix_server::Server;
use actix_service::{fn_service, map_config, IntoServiceFactory, ServiceFactoryExt};
use actix_web::body::MessageBody;
use actix_web::dev::{AppConfig, Extensions, ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::http::ConnectionType;
use actix_web::Error;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A connection as the request layer sees it (in the connection's extensions).
#[derive(Clone)]
pub(crate) struct Connection(Rc<Shared>);

struct Shared {
    born: Instant,
    closing: Cell<bool>,
    reader: RefCell<Option<Waker>>,
}

impl Connection {
    /// How long ago the connection was accepted.
    pub(crate) fn age(&self) -> Duration {
        self.0.born.elapsed()
    }

    /// Marks `res` `Connection: close` and ends the connection once it is written: its read side
    /// reports end of stream, so whatever the client still sends is never read.
    pub(crate) fn close_after<B>(&self, res: &mut ServiceResponse<B>) {
        res.response_mut()
            .head_mut()
            .set_connection_type(ConnectionType::Close);
        self.0.closing.set(true);
        if let Some(w) = self.0.reader.borrow_mut().take() {
            w.wake();
        }
    }
}

/// A TCP stream that reads as ended once its connection is closing and fails every operation
/// past its hard deadline.
struct Guarded {
    io: TcpStream,
    conn: Connection,
    deadline: Pin<Box<Sleep>>,
}

impl Guarded {
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        self.deadline.as_mut().poll(cx).is_ready()
    }
}

fn deadline_passed() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "connection lifetime exceeded")
}

impl AsyncRead for Guarded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.conn.0.closing.get() {
            return Poll::Ready(Ok(()));
        }
        if self.expired(cx) {
            return Poll::Ready(Err(deadline_passed()));
        }
        {
            let mut reader = self.conn.0.reader.borrow_mut();
            if !reader.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *reader = Some(cx.waker().clone());
            }
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.expired(cx) {
            return Poll::Ready(Err(deadline_passed()));
        }
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.expired(cx) {
            return Poll::Ready(Err(deadline_passed()));
        }
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.expired(cx) {
            return Poll::Ready(Err(deadline_passed()));
        }
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Connection limits of the public server.
#[derive(Clone, Debug)]
pub(crate) struct Limits {
    pub workers: usize,
    pub max_connections: usize,
    pub keep_alive: Duration,
    pub header_timeout: Duration,
    /// No connection lives longer than this, whatever it is doing.
    pub hard_lifetime: Duration,
    pub shutdown_timeout: u64,
}

/// Serves `app` on `listener` with [`Guarded`] connections: HTTP/1.1 only, as `HttpServer` would
/// serve it, with the connection cap spread over the workers.
pub(crate) fn serve<F, I, S, B>(listener: TcpListener, limits: Limits, app: F) -> io::Result<Server>
where
    F: Fn() -> I + Send + Clone + 'static,
    I: IntoServiceFactory<S, actix_http::Request>,
    S: ServiceFactory<
            actix_http::Request,
            Config = AppConfig,
            Response = ServiceResponse<B>,
            Error = Error,
            InitError = (),
        > + 'static,
    S::Future: 'static,
    B: MessageBody + 'static,
{
    let addr = listener.local_addr()?;
    let per_worker = limits
        .max_connections
        .div_ceil(limits.workers.max(1))
        .max(1);
    Server::build()
        .workers(limits.workers.max(1))
        .max_concurrent_connections(per_worker)
        .shutdown_timeout(limits.shutdown_timeout)
        .disable_signals()
        .listen("keyward-public", listener, move || {
            let lifetime = limits.hard_lifetime;
            let http = HttpService::<Guarded, _, _>::build()
                .keep_alive(KeepAlive::Timeout(limits.keep_alive))
                .client_request_timeout(limits.header_timeout)
                .local_addr(addr)
                .on_connect_ext(|io: &Guarded, ext: &mut Extensions| {
                    ext.insert(io.conn.clone());
                })
                .finish(map_config(
                    app()
                        .into_factory()
                        .map_err(|e: Error| e.as_response_error().error_response()),
                    |_| AppConfig::default(),
                ));
            fn_service(move |io: TcpStream| async move {
                let _ = io.set_nodelay(true);
                let peer = io.peer_addr().ok();
                let conn = Connection(Rc::new(Shared {
                    born: Instant::now(),
                    closing: Cell::new(false),
                    reader: RefCell::new(None),
                }));
                let deadline = Box::pin(actix_rt::time::sleep(lifetime));
                Ok::<_, actix_http::error::DispatchError>((
                    Guarded { io, conn, deadline },
                    Protocol::Http1,
                    peer,
                ))
            })
            .and_then(http)
        })
        .map(|b| b.run())
}

/// The connection a request arrived on (absent in `actix_web::test` calls).
pub(crate) fn of(req: &ServiceRequest) -> Option<Connection> {
    req.conn_data::<Connection>().cloned()
}
