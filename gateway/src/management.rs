//! The management bind: liveness (`/healthz`), readiness (`/readyz`, asking every configured
//! backend probe at once) and metrics (`/metrics`, Prometheus text format).
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

/// The readiness probes and the metrics registry of a process.
pub(crate) struct Probes(
    pub Vec<(String, Recipient<CheckReady>)>,
    pub prometheus::Registry,
);

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
    let answers = join_all(probes.0.iter().map(|(name, probe)| async move {
        let outcome = probe.send(CheckReady).timeout(PROBE_TIMEOUT).await;
        (name.clone(), outcome)
    }))
    .await;
    let mut ready = true;
    let mut checks = Map::new();
    for (name, outcome) in answers {
        let failure = match outcome {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(MailboxError::Timeout) => {
                Some(format!("no answer within {}s", PROBE_TIMEOUT.as_secs()))
            }
            Err(MailboxError::Closed) => Some("not running".to_owned()),
        };
        let text = if let Some(text) = failure {
            ready = false;
            tracing::warn!(check = %name, reason = %text, "readiness check failed");
            text
        } else {
            "ok".to_owned()
        };
        checks.insert(name, Value::String(text));
    }
    let (mut res, status) = if ready {
        (HttpResponse::Ok(), "ready")
    } else {
        (HttpResponse::ServiceUnavailable(), "not_ready")
    };
    res.insert_header(("Cache-Control", "no-store"))
        .json(json!({ "status": status, "checks": checks }))
}
