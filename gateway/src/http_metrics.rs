//! Request metrics of the public API: `keyward_http_requests_total{route,method,status}` and
//! `keyward_http_request_duration_seconds{route,method}`, recorded by a middleware around every
//! route (the handler's time included, and 5xx answers counted like any other).
//!
//! Refuses: the raw path as a label. `route` is the pattern that matched (`/v1/sessions/{id}`),
//! or `unmatched`: paths carry ids and tokens, and one series per path would have no bound.
//! `method` is one of the methods HTTP defines, or `other`.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{web, Error};
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

use crate::state::AppState;

/// From 1 ms (a JWKS read) to 10 s (a login stuck behind a full hasher queue).
const BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The `route` of a request that matched no route (a 404).
pub const UNMATCHED: &str = "unmatched";

/// The public API's request metrics, registered on the process's registry. Cheap to clone.
#[derive(Clone)]
pub struct HttpMetrics {
    requests: IntCounterVec,
    duration: HistogramVec,
}

impl std::fmt::Debug for HttpMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpMetrics").finish_non_exhaustive()
    }
}

impl HttpMetrics {
    /// Registers both metrics; fails when `registry` already has them.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let requests = IntCounterVec::new(
            Opts::new(
                "keyward_http_requests_total",
                "Public API requests by route pattern, method and status",
            ),
            &["route", "method", "status"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "keyward_http_request_duration_seconds",
                "Time to answer a public API request, by route pattern and method",
            )
            .buckets(BUCKETS.to_vec()),
            &["route", "method"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        Ok(Self { requests, duration })
    }

    fn observe(&self, route: &str, method: &str, status: &str, seconds: f64) {
        self.requests
            .with_label_values(&[route, method, status])
            .inc();
        self.duration
            .with_label_values(&[route, method])
            .observe(seconds);
    }
}

/// A method as a label: the standard ones by name, anything else as `other`.
fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

/// Times and counts every request when the app state carries metrics (the tests' apps may not).
pub(crate) async fn track(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let Some(metrics) = req
        .app_data::<web::Data<AppState>>()
        .and_then(|s| s.metrics.clone())
    else {
        return next.call(req).await;
    };
    let method = method_label(req.method());
    let started = Instant::now();
    let outcome = next.call(req).await;
    // NOTE: read from the routed request: its resource is known, so no pattern is matched
    // again (each `{parameter}` resource passed is a regex run). A known path with the wrong
    // method still has its pattern (and its 405). An error escaping the app brings no request
    // back; none of the app's layers makes one, they answer with a problem.
    let (status, route) = match &outcome {
        Ok(res) => (res.status(), res.request().match_pattern()),
        Err(err) => (err.as_response_error().status_code(), None),
    };
    metrics.observe(
        route.as_deref().unwrap_or(UNMATCHED),
        method,
        status.as_str(),
        started.elapsed().as_secs_f64(),
    );
    outcome
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use std::time::Duration;

    use actix_web::http::StatusCode;
    use actix_web::test::{self, TestRequest};
    use keyward_messages::CommandError;
    use prometheus::Encoder;

    use super::*;
    use crate::public_app;
    use crate::tests::{bearer, Fake, GOOD_TOKEN, LIMIT, SESSION};

    /// Sends each request through one app that counts into a fresh registry; returns the
    /// statuses and the registry's text exposition.
    async fn exposition(fake: Fake, reqs: Vec<TestRequest>) -> (Vec<StatusCode>, String) {
        let registry = Registry::new();
        let state = web::Data::new(
            AppState::new(fake.recipients(), Duration::from_secs(5))
                .with_metrics(HttpMetrics::register(&registry).unwrap()),
        );
        let app = test::init_service(public_app(state, LIMIT)).await;
        let mut statuses = Vec::new();
        for req in reqs {
            statuses.push(test::call_service(&app, req.to_request()).await.status());
        }
        let mut text = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&registry.gather(), &mut text)
            .unwrap();
        (statuses, String::from_utf8(text).unwrap())
    }

    #[actix_web::test]
    async fn requests_are_counted_by_route_pattern_never_by_path() {
        let id = SESSION.to_string();
        let (statuses, text) = exposition(
            Fake::default(),
            vec![
                bearer(
                    TestRequest::delete().uri(&format!("/v1/sessions/{id}")),
                    GOOD_TOKEN,
                ),
                TestRequest::get().uri(&format!("/v1/nothing/{id}?token=secret")),
                TestRequest::get().uri("/v1/auth/login"),
                TestRequest::default()
                    .method(Method::from_bytes(b"BREW").unwrap())
                    .uri("/v1/auth/login"),
            ],
        )
        .await;
        assert_eq!(
            statuses,
            [
                StatusCode::NO_CONTENT,
                StatusCode::NOT_FOUND,
                StatusCode::METHOD_NOT_ALLOWED,
                StatusCode::METHOD_NOT_ALLOWED
            ]
        );
        for line in [
            r#"keyward_http_requests_total{method="DELETE",route="/v1/sessions/{id}",status="204"} 1"#,
            r#"keyward_http_requests_total{method="GET",route="unmatched",status="404"} 1"#,
            r#"keyward_http_requests_total{method="GET",route="/v1/auth/login",status="405"} 1"#,
            r#"keyward_http_requests_total{method="other",route="/v1/auth/login",status="405"} 1"#,
            r#"keyward_http_request_duration_seconds_count{method="DELETE",route="/v1/sessions/{id}"} 1"#,
            r#"keyward_http_request_duration_seconds_bucket{method="GET",route="unmatched",le="10"} 1"#,
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
        assert!(!text.contains(&id), "no raw path in {text}");
        assert!(
            !text.contains("secret") && !text.contains("nothing"),
            "{text}"
        );
    }

    #[actix_web::test]
    async fn a_server_error_is_counted_with_its_status() {
        let (statuses, text) = exposition(
            Fake::failing(CommandError::Internal),
            vec![TestRequest::post()
                .uri("/v1/auth/login")
                .set_json(serde_json::json!({"login": "alice", "password": "pw"}))],
        )
        .await;
        assert_eq!(statuses, [StatusCode::INTERNAL_SERVER_ERROR]);
        let line =
            r#"keyward_http_requests_total{method="POST",route="/v1/auth/login",status="500"} 1"#;
        assert!(text.contains(line), "{line} in {text}");
    }

    #[actix_web::test]
    async fn an_app_without_metrics_serves_as_before() {
        let state = web::Data::new(AppState::new(
            Fake::default().recipients(),
            Duration::from_secs(5),
        ));
        let app = test::init_service(public_app(state, LIMIT)).await;
        let res = test::call_service(&app, TestRequest::get().uri("/nope").to_request()).await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND);
    }
}
