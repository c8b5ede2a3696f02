//! The HTTP edge under hostile clients, through raw sockets: bodies that never end or never
//! arrive (chunked and Content-Length alike), connections kept idle or alive forever, clients
//! that never read their replies, and floods of connections. After any reply whose body was not
//! read to its end the connection is closed; every connection's idle time and lifetime are
//! bounded; a flood of public connections never takes the management port down.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{spawn_app_with, Options, TestApp};

const HEAD_CHUNKED: &str = "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";

/// A node whose body deadline is 1 s, so stalled bodies end quickly.
async fn node(tweak: impl Fn(&mut keyward_config::Settings) + Send + Sync + 'static) -> TestApp {
    spawn_app_with(Options {
        settings: Some(Box::new(move |s| {
            s.http.body_timeout_secs = 1;
            tweak(s);
        })),
        ..Options::default()
    })
    .await
}

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(app.node.public_addr).await.unwrap()
}

/// Reads until the server closes the connection, for at most `limit`: the text read, and
/// whether the server closed it in time.
async fn read_until_closed(conn: &mut TcpStream, limit: Duration) -> (String, bool) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, conn.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&buf).into_owned(), true),
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => return (String::from_utf8_lossy(&buf).into_owned(), false),
        }
    }
}

fn status_of(reply: &str) -> Option<u16> {
    reply.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// Sends `head` and nothing more: the server must answer `expected` and close the connection.
async fn stalled_body_is_answered_and_closed(app: &TestApp, head: &str, expected: u16) {
    let mut conn = connect(app).await;
    conn.write_all(head.as_bytes()).await.unwrap();
    let (reply, closed) = read_until_closed(&mut conn, Duration::from_secs(10)).await;
    assert_eq!(status_of(&reply), Some(expected), "{head}\n---\n{reply}");
    assert!(closed, "still open 10 s after a stalled body: {head}");
    assert!(
        reply.to_ascii_lowercase().contains("connection: close"),
        "{reply}"
    );
}

#[actix_web::test]
async fn asvs_v15_2_2_a_chunked_body_that_never_arrives_gets_408_and_its_connection_closes() {
    let app = node(|_| {}).await;
    let head = format!("POST /v1/auth/login HTTP/1.1\r\nHost: keyward\r\n{HEAD_CHUNKED}");
    stalled_body_is_answered_and_closed(&app, &head, 408).await;
    // Half a chunk, then nothing.
    let head = format!("{head}40\r\n{{\"login\":");
    stalled_body_is_answered_and_closed(&app, &head, 408).await;
}

#[actix_web::test]
async fn asvs_v15_2_2_routes_that_answer_before_reading_a_body_close_its_connection() {
    let app = node(|_| {}).await;
    let cases = [
        // A bearer route without a bearer: 401 before the body.
        ("POST /v1/auth/logout", HEAD_CHUNKED.to_owned(), 401),
        (
            "POST /v1/auth/logout",
            "Content-Length: 100000\r\n\r\n".to_owned(),
            401,
        ),
        // No such route: 404 before the body.
        ("POST /no/such/route", HEAD_CHUNKED.to_owned(), 404),
        (
            "PUT /no/such/route",
            "Content-Length: 5000\r\n\r\n{".to_owned(),
            404,
        ),
        // Over the size limit by its declared length: 413 without reading it.
        (
            "POST /v1/auth/login",
            "Content-Type: application/json\r\nContent-Length: 10000000\r\n\r\n".to_owned(),
            413,
        ),
    ];
    for (line, rest, expected) in cases {
        let head = format!("{line} HTTP/1.1\r\nHost: keyward\r\n{rest}");
        stalled_body_is_answered_and_closed(&app, &head, expected).await;
    }
}

#[actix_web::test]
async fn asvs_v15_2_2_a_chunked_body_trickled_a_byte_at_a_time_is_cut_at_the_body_deadline() {
    let app = node(|_| {}).await;
    let mut conn = connect(&app).await;
    let head = format!("POST /v1/auth/login HTTP/1.1\r\nHost: keyward\r\n{HEAD_CHUNKED}");
    conn.write_all(head.as_bytes()).await.unwrap();
    let (mut rd, mut wr) = conn.into_split();
    // One one-byte chunk every 200 ms, for at most 30 s.
    let trickle = tokio::spawn(async move {
        for _ in 0..150 {
            if wr.write_all(b"1\r\n \r\n").await.is_err() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        false
    });
    let mut reply = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), rd.read_to_end(&mut reply)).await;
    let reply = String::from_utf8_lossy(&reply);
    assert!(
        read.is_ok(),
        "the trickling connection was still open after 10 s"
    );
    assert_eq!(status_of(&reply), Some(408), "{reply}");
    assert!(
        trickle.await.unwrap(),
        "the server kept reading the trickle"
    );
}

#[actix_web::test]
async fn asvs_v15_2_2_an_endless_fast_chunked_body_gets_413_and_is_not_read_on() {
    let app = node(|_| {}).await;
    let conn = connect(&app).await;
    let (mut rd, mut wr) = conn.into_split();
    let head = format!("POST /v1/auth/login HTTP/1.1\r\nHost: keyward\r\n{HEAD_CHUNKED}");
    wr.write_all(head.as_bytes()).await.unwrap();
    // 16 KiB chunks as fast as the server takes them, up to 256 MiB.
    let flood = tokio::spawn(async move {
        let chunk = format!("4000\r\n{}\r\n", "a".repeat(0x4000));
        let mut sent = 0usize;
        while sent < 256 << 20 {
            if wr.write_all(chunk.as_bytes()).await.is_err() {
                return Some(sent);
            }
            sent += 0x4000;
        }
        None
    });
    let mut reply = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), rd.read_to_end(&mut reply)).await;
    assert!(
        read.is_ok(),
        "the flooded connection was still open after 20 s"
    );
    let reply = String::from_utf8_lossy(&reply);
    assert_eq!(status_of(&reply), Some(413), "{reply}");
    let sent = flood.await.unwrap();
    assert!(
        sent.is_some_and(|n| n < 64 << 20),
        "the server read on: {sent:?} bytes sent before the connection broke"
    );
}

#[actix_web::test]
async fn a_request_whose_body_is_read_to_its_end_keeps_its_connection_alive() {
    let app = node(|_| {}).await;
    let mut conn = connect(&app).await;
    let body = r#"{"login":"nobody@example.com","password":"not this one"}"#;
    let chunked = format!("{:x}\r\n{body}\r\n0\r\n\r\n", body.len());
    let requests = [
        format!(
            "POST /v1/auth/login HTTP/1.1\r\nHost: keyward\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
        format!("POST /v1/auth/login HTTP/1.1\r\nHost: keyward\r\n{HEAD_CHUNKED}{chunked}"),
        "GET /.well-known/jwks.json HTTP/1.1\r\nHost: keyward\r\n\r\n".to_owned(),
    ];
    for req in requests {
        conn.write_all(req.as_bytes()).await.unwrap();
        let head = read_head(&mut conn).await;
        assert!(matches!(status_of(&head), Some(200 | 401)), "{head}");
        assert!(
            !head.to_ascii_lowercase().contains("connection: close"),
            "{head}"
        );
    }
}

/// Reads one reply's head and its Content-Length body.
async fn read_head(conn: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut byte))
            .await
            .expect("a reply within 10 s")
            .unwrap();
        assert_eq!(n, 1, "closed mid-reply: {}", String::from_utf8_lossy(&buf));
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    conn.read_exact(&mut body).await.unwrap();
    head
}

#[actix_web::test]
async fn asvs_v15_2_2_an_idle_keep_alive_connection_is_closed() {
    let app = node(|s| s.http.keep_alive_secs = 1).await;
    let mut conn = connect(&app).await;
    conn.write_all(b"GET /.well-known/jwks.json HTTP/1.1\r\nHost: keyward\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(status_of(&read_head(&mut conn).await), Some(200));
    let (rest, closed) = read_until_closed(&mut conn, Duration::from_secs(3)).await;
    assert!(closed, "an idle connection was still open after 3 s");
    assert_eq!(rest, "", "nothing more was sent");
}

#[actix_web::test]
async fn asvs_v15_2_2_a_connection_past_its_lifetime_is_closed_after_its_next_reply() {
    let app = node(|s| s.http.connection_max_secs = 1).await;
    let mut conn = connect(&app).await;
    let get = b"GET /.well-known/jwks.json HTTP/1.1\r\nHost: keyward\r\n\r\n";
    conn.write_all(get).await.unwrap();
    let first = read_head(&mut conn).await;
    assert!(
        !first.to_ascii_lowercase().contains("connection: close"),
        "{first}"
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    conn.write_all(get).await.unwrap();
    let second = read_head(&mut conn).await;
    assert_eq!(status_of(&second), Some(200), "{second}");
    assert!(
        second.to_ascii_lowercase().contains("connection: close"),
        "{second}"
    );
    let (_, closed) = read_until_closed(&mut conn, Duration::from_secs(5)).await;
    assert!(closed);
}

#[actix_web::test]
async fn asvs_v15_2_2_a_client_that_never_reads_its_replies_is_cut_at_the_hard_lifetime() {
    // Hard lifetime: connection_max + head + body + request deadlines = 4 s.
    let app = node(|s| {
        s.http.connection_max_secs = 1;
        s.http.header_timeout_secs = 1;
        s.http.request_timeout_secs = 1;
    })
    .await;
    let mut conn = connect(&app).await;
    // Pipelined requests for a large document, and never a read: the replies fill both
    // socket buffers and the server's writes block.
    let get = "GET /openapi.json HTTP/1.1\r\nHost: keyward\r\n\r\n".repeat(400);
    let started = Instant::now();
    let _ = tokio::time::timeout(Duration::from_secs(3), conn.write_all(get.as_bytes())).await;
    let rest = Duration::from_secs(8).saturating_sub(started.elapsed());
    tokio::time::sleep(rest).await;
    // Now read: what was sent before the cut, then the end; never all the replies.
    let (replies, closed) = read_until_closed(&mut conn, Duration::from_secs(10)).await;
    assert!(
        closed,
        "a connection that never read was still open after 18 s"
    );
    let served = replies.matches("HTTP/1.1 200").count();
    assert!(
        served < 400,
        "all {served} replies were written: nothing was cut"
    );
}

#[actix_web::test]
async fn asvs_v15_2_2_a_connection_flood_waits_in_the_backlog_and_the_management_port_answers() {
    let app = node(|s| {
        s.http.max_connections = 4;
        s.http.workers = 2;
        s.http.header_timeout_secs = 2;
    })
    .await;
    // Twelve clients connect and say nothing: four are taken, the rest wait in the backlog.
    let mut idle = Vec::new();
    for _ in 0..12 {
        idle.push(connect(&app).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = app
        .client
        .get(format!("{}/healthz", app.management))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "the management port answers");
    // A thirteenth client is not served while the cap is full...
    let mut late = connect(&app).await;
    late.write_all(b"GET /.well-known/jwks.json HTTP/1.1\r\nHost: keyward\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 1];
    let early = tokio::time::timeout(Duration::from_millis(800), late.peek(&mut first)).await;
    assert!(early.is_err(), "served beyond the connection cap");
    // ...and is once the silent ones are cut at the head deadline.
    assert_eq!(status_of(&read_head(&mut late).await), Some(200));
    drop(idle);
}

#[test]
fn keyward_serve_raises_its_open_file_limit_to_the_hard_limit() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let mut serve = std::process::Command::new("sh")
        .args([
            "-c",
            "ulimit -Sn 256 && exec \"$0\" serve",
            env!("CARGO_BIN_EXE_keyward"),
        ])
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("KEYWARD_DATA_DIR", dir.path().join("data"))
        .env("KEYWARD_BIND", "127.0.0.1:0")
        .env("KEYWARD_MANAGEMENT_BIND", "127.0.0.1:0")
        .env("KEYWARD_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(serve.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", serve.id())).unwrap();
    let _ = serve.kill();
    let _ = serve.wait();
    let open_files: Vec<&str> = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap()
        .split_whitespace()
        .collect();
    // "Max open files <soft> <hard> files"
    assert!(line.contains("http://"), "{line}");
    assert_eq!(open_files[3], open_files[4], "{limits}");
    assert_ne!(open_files[3], "256", "{limits}");
}
