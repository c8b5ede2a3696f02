//! keyward-gateway: the thin actix-web layer of Keyward. It turns HTTP requests into the typed
//! commands of `keyward-messages`, sends them to the context actors through `Recipient`s, and
//! maps their replies and errors to HTTP (errors as RFC 9457 problem+json).
//!
//! Refuses: storage, actors, hashing and business rules. It never imports storage or actors; a
//! handler parses, sends and maps. It binds no socket itself: the binary passes listeners in.

mod connection;
mod extract;
mod http_metrics;
mod input;
mod management;
mod middleware;
mod problem;
mod routes;
mod state;

#[cfg(test)]
mod tests;

use std::net::TcpListener;
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{Server, ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};

use crate::management::{management_app, Probes};
use crate::state::AppState;

pub use crate::http_metrics::HttpMetrics;
pub use crate::management::Probe;
pub use crate::routes::openapi::spec_json as openapi_json;
pub use crate::routes::{
    AccessApi, AccountsApi, FederationApi, MfaApi, NotifyApi, ProfilesApi, SessionsApi,
};

/// Seconds a stopping server gives in-flight requests.
const SHUTDOWN_TIMEOUT_SECS: u64 = 5;

/// Declares what one context's routes send: a struct with a `Recipient` per message, and
/// `of(&addr)`, which takes them all from the one actor that handles them. A new message is
/// one line here, in its context's route module.
macro_rules! recipients {
    ($(#[$doc:meta])* pub struct $name:ident { $($field:ident: $msg:ty,)* }) => {
        $(#[$doc])*
        #[derive(Clone)]
        pub struct $name {
            $(pub(crate) $field: ::actix::Recipient<$msg>,)*
        }

        impl $name {
            /// Every recipient, from the actor that handles all these messages.
            pub fn of<A>(addr: &::actix::Addr<A>) -> Self
            where
                A: ::actix::Actor<Context = ::actix::Context<A>> $(+ ::actix::Handler<$msg>)*,
            {
                Self {
                    $($field: addr.clone().recipient(),)*
                }
            }
        }
    };
}
pub(crate) use recipients;

/// Everything the HTTP layer can ask for, per context. Built by the binary from actor
/// addresses.
#[derive(Clone)]
pub struct Recipients {
    pub access: AccessApi,
    pub accounts: AccountsApi,
    pub sessions: SessionsApi,
    pub profiles: ProfilesApi,
    pub notify: NotifyApi,
    pub mfa: MfaApi,
    pub federation: FederationApi,
}

/// Limits of the public server.
#[derive(Clone, Debug)]
pub struct GatewayOptions {
    /// JSON bodies beyond this many bytes (after decompression) get a 413 problem.
    pub max_body_bytes: usize,
    /// Every send to an actor gives up after this long with a 503 problem (Retry-After: 1).
    pub request_timeout: Duration,
    /// actix-web workers; 0 keeps actix's default (one per core).
    pub workers: usize,
    /// Proxies whose `X-Forwarded-For` names the client; empty: the client is the TCP peer.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// A client must send its whole request head within this long, or gets 408 and is dropped.
    pub header_timeout: Duration,
    /// Once the head is in, the body must arrive within this long, or the client gets 408.
    pub body_timeout: Duration,
    /// Browser origins allowed cross-origin; empty: none (no CORS headers are ever sent).
    pub cors_origins: Vec<String>,
    /// An idle keep-alive connection is closed after this long.
    pub keep_alive: Duration,
    /// A connection older than this is closed after its next reply; one stuck in any state is
    /// cut once this plus the head, body and request deadlines have passed.
    pub connection_max: Duration,
    /// Concurrent connections on the public port (spread over the workers); the rest wait in
    /// the listen backlog.
    pub max_connections: usize,
}

/// The public API on `listener` (port 0 allowed), counting and timing its requests in
/// `metrics`. `recipients` runs once on each HTTP worker's thread: recipients of actors started
/// there keep a request on its thread. Signals are not handled: the binary stops the returned
/// `Server` through its handle.
pub fn public_server<F>(
    listener: TcpListener,
    recipients: F,
    opts: GatewayOptions,
    metrics: HttpMetrics,
) -> std::io::Result<Server>
where
    F: Fn() -> Recipients + Send + Clone + 'static,
{
    let limit = opts.max_body_bytes;
    let origins = opts.cors_origins.clone();
    let (timeout, trusted, body_timeout, connection_max) = (
        opts.request_timeout,
        opts.trusted_proxies.clone(),
        opts.body_timeout,
        opts.connection_max,
    );
    let workers = match opts.workers {
        0 => std::thread::available_parallelism().map_or(1, usize::from),
        n => n,
    };
    let limits = connection::Limits {
        workers,
        max_connections: opts.max_connections,
        keep_alive: opts.keep_alive,
        header_timeout: opts.header_timeout,
        hard_lifetime: connection_max + opts.header_timeout + body_timeout + timeout,
        shutdown_timeout: SHUTDOWN_TIMEOUT_SECS,
    };
    connection::serve(listener, limits, move || {
        let state = web::Data::new(
            AppState::new(recipients(), timeout)
                .with_trusted_proxies(trusted.clone())
                .with_body_timeout(body_timeout)
                .with_connection_max(connection_max)
                .with_metrics(metrics.clone()),
        );
        public_app(state, limit).wrap(cors(&origins))
    })
}

/// The management API on `listener`: `GET /healthz`, `GET /readyz` (which asks every probe
/// concurrently; 503 only when a required one fails) and `GET /metrics` (the registry,
/// Prometheus text format).
pub fn management_server(
    listener: TcpListener,
    probes: Vec<Probe>,
    metrics: prometheus::Registry,
) -> std::io::Result<Server> {
    let probes = web::Data::new(Probes(probes, metrics));
    Ok(HttpServer::new(move || management_app(probes.clone()))
        .workers(1)
        .shutdown_timeout(SHUTDOWN_TIMEOUT_SECS)
        .disable_signals()
        .listen(listener)?
        .run())
}

/// The public app: routes, body limits, middleware. Shared by `public_server` and the tests.
/// Strict CORS: only the configured origins, only what the API uses, no credentials (the API
/// takes bearer tokens, not cookies). A request from another origin gets no CORS headers, so
/// browsers refuse to hand its answer to the page.
pub(crate) fn cors(origins: &[String]) -> actix_web::middleware::Condition<actix_cors::Cors> {
    let mut c = actix_cors::Cors::default()
        .allowed_methods(["GET", "POST", "PUT", "PATCH", "DELETE"])
        .allowed_headers([
            actix_web::http::header::AUTHORIZATION,
            actix_web::http::header::CONTENT_TYPE,
            actix_web::http::header::ACCEPT,
            actix_web::http::header::ACCEPT_LANGUAGE,
        ])
        .expose_headers(["x-request-id", "x-correlation-id", "retry-after"])
        .max_age(600);
    for o in origins {
        c = c.allowed_origin(o);
    }
    actix_web::middleware::Condition::new(!origins.is_empty(), c)
}

pub(crate) fn public_app(
    state: web::Data<AppState>,
    max_body_bytes: usize,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    // NOTE: wrap order is inside-out: the request-id layer is outermost so its access line
    // sees the final status, and the 405 rewrite sits inside the security headers. The metrics
    // layer sits just inside it, so it times everything the app does (CORS preflights, which
    // the CORS layer outside the app answers, are not counted).
    App::new()
        .app_data(state)
        .app_data(input::json_config(max_body_bytes))
        .app_data(input::query_config())
        .configure(routes::configure)
        .wrap(from_fn(middleware::problem_for_bare_405))
        .wrap(from_fn(middleware::body_guard))
        .wrap(middleware::security_headers())
        .wrap(from_fn(http_metrics::track))
        .wrap(from_fn(middleware::request_context))
}
