//! The management bind, and one smoke test of each server over a real socket.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};

use actix_web::test::TestRequest;

use super::*;
use crate::management::{management_app, Probes};
use crate::{management_server, public_server, GatewayOptions, HttpMetrics, Probe};

async fn probe_call(probes: Vec<Probe>, req: TestRequest) -> Reply {
    let app = test::init_service(management_app(web::Data::new(Probes(
        probes,
        prometheus::Registry::new(),
    ))))
    .await;
    let res = test::call_service(&app, req.to_request()).await;
    let (status, headers) = (res.status(), res.headers().clone());
    let body = test::read_body(res).await.to_vec();
    Reply {
        status,
        headers,
        body,
    }
}

fn probe(fake: Fake) -> Recipient<CheckReady> {
    fake.start().recipient()
}

#[actix_web::test]
async fn healthz_answers_ok() {
    let r = probe_call(vec![], TestRequest::get().uri("/healthz")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json(), json!({"status": "ok"}));
}

#[actix_web::test]
async fn readyz_is_200_when_every_check_passes() {
    let probes = vec![
        Probe::required("database", probe(Fake::default())),
        Probe::degrades("bus", probe(Fake::default())),
    ];
    let r = probe_call(probes, TestRequest::get().uri("/readyz")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.json(),
        json!({"status": "ready", "checks": {"database": "ok", "bus": "ok"}, "degraded": []})
    );
}

#[actix_web::test]
async fn readyz_is_503_naming_the_failed_required_check() {
    let down = Fake::failing(CommandError::unavailable("database unreachable"));
    let probes = vec![
        Probe::required("database", probe(down)),
        Probe::degrades("bus", probe(Fake::default())),
    ];
    let r = probe_call(probes, TestRequest::get().uri("/readyz")).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        r.json(),
        json!({"status": "not_ready", "checks": {"database": "database unreachable", "bus": "ok"}, "degraded": []})
    );
}

#[actix_web::test]
async fn readyz_stays_200_when_a_backend_the_process_can_work_without_fails_and_names_it() {
    let down = Fake::failing(CommandError::unavailable("RabbitMQ is not reachable"));
    let probes = vec![
        Probe::required("database", probe(Fake::default())),
        Probe::degrades("rabbitmq", probe(down)),
    ];
    let r = probe_call(probes, TestRequest::get().uri("/readyz")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.json(),
        json!({
            "status": "ready",
            "checks": {"database": "ok", "rabbitmq": "RabbitMQ is not reachable"},
            "degraded": ["rabbitmq"]
        })
    );
}

#[actix_web::test]
async fn readyz_is_503_when_a_required_check_fails_even_if_another_only_degrades() {
    let probes = vec![
        Probe::required(
            "database",
            probe(Fake::failing(CommandError::unavailable(
                "database unreachable",
            ))),
        ),
        Probe::degrades(
            "rabbitmq",
            probe(Fake::failing(CommandError::unavailable(
                "RabbitMQ is not reachable",
            ))),
        ),
    ];
    let r = probe_call(probes, TestRequest::get().uri("/readyz")).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.json()["status"], "not_ready");
    assert_eq!(r.json()["degraded"], json!(["rabbitmq"]));
}

#[actix_web::test]
async fn management_has_no_public_routes() {
    let r = probe_call(vec![], TestRequest::get().uri("/v1/users/me")).await;
    r.assert_problem(404, "not_found");
}

fn raw_http(addr: SocketAddr, request: String) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[actix_web::test]
async fn both_servers_serve_on_the_listeners_they_are_given() {
    let public = TcpListener::bind("127.0.0.1:0").unwrap();
    let management = TcpListener::bind("127.0.0.1:0").unwrap();
    let (public_addr, management_addr) = (
        public.local_addr().unwrap(),
        management.local_addr().unwrap(),
    );
    let opts = GatewayOptions {
        max_body_bytes: LIMIT,
        request_timeout: Duration::from_secs(5),
        workers: 1,
        trusted_proxies: vec![],
        header_timeout: Duration::from_secs(5),
        body_timeout: Duration::from_secs(10),
        cors_origins: vec![],
        keep_alive: Duration::from_secs(5),
        connection_max: Duration::from_secs(300),
        max_connections: 64,
    };
    let registry = prometheus::Registry::new();
    let metrics = HttpMetrics::register(&registry).unwrap();
    let fake = Fake::default();
    let public = public_server(public, move || fake.recipients(), opts, metrics).unwrap();
    let management = management_server(
        management,
        vec![Probe::required("db", probe(Fake::default()))],
        registry,
    )
    .unwrap();
    let handles = [public.handle(), management.handle()];
    actix_web::rt::spawn(public);
    actix_web::rt::spawn(management);

    let body = r#"{"login":"alice","password":"pw"}"#;
    let login = format!(
        "POST /v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let ready = "GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_owned();
    let (login, ready) = actix_web::rt::task::spawn_blocking(move || {
        (
            raw_http(public_addr, login),
            raw_http(management_addr, ready),
        )
    })
    .await
    .unwrap();

    assert!(login.starts_with("HTTP/1.1 200"), "{login}");
    assert!(
        login.to_ascii_lowercase().contains("x-request-id:"),
        "{login}"
    );
    assert!(login.contains("\"access_token\":\"at\""), "{login}");
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    assert!(ready.contains("\"status\":\"ready\""), "{ready}");
    // The public server counts into the registry the management bind serves.
    let scrape = "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_owned();
    let scrape = actix_web::rt::task::spawn_blocking(move || raw_http(management_addr, scrape))
        .await
        .unwrap();
    assert!(
        scrape.contains(
            r#"keyward_http_requests_total{method="POST",route="/v1/auth/login",status="200"} 1"#
        ),
        "{scrape}"
    );
    for h in handles {
        h.stop(true).await;
    }
}
