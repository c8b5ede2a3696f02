//! The management bind: liveness (`/healthz`), readiness (`/readyz`, asking every configured
//! backend probe at once) and metrics (`/metrics`, Prometheus text format).
//!
//! Liveness says the process answers HTTP, and asks no backend: restarting a process does not
//! fix its database. Readiness says the process can do its work: a failed *required* probe
//! (a node's database) answers 503, so a load balancer sends its traffic elsewhere; a failed
//! probe of a backend it can work without (a node's RabbitMQ: events wait in the outbox) leaves
//! it ready and is named in `degraded`, since an outage shared by every node must not take every
//! node out of service at once.
//!
//! Refuses: serving anything of the public API, and logging each probe request (orchestrators
//! poll every few seconds). A failed check shows a safe one-line reason, never a cause chain.

use std::time::Duration;

use actix::{MailboxError, Recipient};
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpResponse};
use futures::future::join_all;
use keyward_messages::commands::CheckReady;
use serde_json::{json, Map, Value};

use crate::middleware::{problem_for_bare_405, security_headers};
use crate::routes::not_found;

/// Each probe gets this long; a slower backend counts as down.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// One backend `/readyz` asks about, and what its failure means.
pub struct Probe {
    /// The key of its answer in the body's `checks`.
    pub name: String,
    pub recipient: Recipient<CheckReady>,
    /// The process cannot do its work without this backend: its failure answers 503. Otherwise
    /// a failure only degrades the process, which stays ready and names it in `degraded`.
    pub required: bool,
}

impl Probe {
    /// A backend the process cannot work without (a node's database).
    pub fn required(name: impl Into<String>, recipient: Recipient<CheckReady>) -> Self {
        Self {
            name: name.into(),
            recipient,
            required: true,
        }
    }

    /// A backend the process can work without for a while (a node's RabbitMQ).
    pub fn degrades(name: impl Into<String>, recipient: Recipient<CheckReady>) -> Self {
        Self {
            name: name.into(),
            recipient,
            required: false,
        }
    }
}

/// The readiness probes and the metrics registry of a process.
pub(crate) struct Probes(pub Vec<Probe>, pub prometheus::Registry);

pub(crate) fn management_app(
    probes: web::Data<Probes>,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    App::new()
        .app_data(probes)
        .service(web::resource("/healthz").route(web::get().to(healthz)))
        .service(web::resource("/readyz").route(web::get().to(readyz)))
        .service(web::resource("/metrics").route(web::get().to(metrics)))
        .default_service(web::to(not_found))
        .wrap(from_fn(problem_for_bare_405))
        .wrap(security_headers())
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(json!({ "status": "ok" }))
}

async fn metrics(probes: web::Data<Probes>) -> HttpResponse {
    use prometheus::Encoder;
    let encoder = prometheus::TextEncoder::new();
    let mut body = Vec::new();
    if let Err(e) = encoder.encode(&probes.1.gather(), &mut body) {
        tracing::error!(error = %e, "encoding metrics failed");
        return HttpResponse::InternalServerError().finish();
    }
    HttpResponse::Ok()
        .content_type(encoder.format_type())
        .insert_header(("Cache-Control", "no-store"))
        .body(body)
}

async fn readyz(probes: web::Data<Probes>) -> HttpResponse {
    let answers = join_all(probes.0.iter().map(|p| async move {
        let outcome = p.recipient.send(CheckReady).timeout(PROBE_TIMEOUT).await;
        (p, outcome)
    }))
    .await;
    let mut ready = true;
    let mut checks = Map::new();
    let mut degraded = Vec::new();
    for (probe, outcome) in answers {
        let failure = match outcome {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(MailboxError::Timeout) => {
                Some(format!("no answer within {}s", PROBE_TIMEOUT.as_secs()))
            }
            Err(MailboxError::Closed) => Some("not running".to_owned()),
        };
        let name = probe.name.clone();
        let text = match failure {
            Some(text) if probe.required => {
                ready = false;
                tracing::warn!(check = %name, reason = %text, "readiness check failed: not ready");
                text
            }
            Some(text) => {
                tracing::info!(check = %name, reason = %text, "readiness check failed: ready, degraded");
                degraded.push(Value::String(name.clone()));
                text
            }
            None => "ok".to_owned(),
        };
        checks.insert(name, Value::String(text));
    }
    let (mut res, status) = if ready {
        (HttpResponse::Ok(), "ready")
    } else {
        (HttpResponse::ServiceUnavailable(), "not_ready")
    };
    res.insert_header(("Cache-Control", "no-store"))
        .json(json!({ "status": status, "checks": checks, "degraded": degraded }))
}
