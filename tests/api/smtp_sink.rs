//! A minimal SMTP server for tests that must see how a worker talks SMTP: how many connections
//! it opens, and how many mails it has in flight at once. The final answer to a mail (the 250
//! after its DATA) waits until `hold` mails are in flight together, or 5 s passed, so a sender
//! that sends one mail at a time cannot pass for a concurrent one.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

const HOLD_AT_MOST: Duration = Duration::from_secs(5);

#[derive(Default)]
struct Stats {
    connections: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    delivered: Mutex<Vec<String>>,
}

pub struct SmtpSink {
    /// `smtp://127.0.0.1:PORT`, for KEYWARD_SMTP_URL.
    pub url: String,
    stats: Arc<Stats>,
    task: tokio::task::JoinHandle<()>,
}

impl SmtpSink {
    pub async fn start(hold: usize) -> SmtpSink {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("smtp://{}", listener.local_addr().unwrap());
        let stats = Arc::new(Stats::default());
        let s = stats.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                s.connections.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(session(stream, s.clone(), hold));
            }
        });
        SmtpSink { url, stats, task }
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.stats.connections.load(Ordering::SeqCst)
    }

    /// The most mails that were between their DATA and its answer at the same time.
    pub fn max_in_flight(&self) -> usize {
        self.stats.max_in_flight.load(Ordering::SeqCst)
    }

    /// The recipient of every mail accepted so far.
    pub fn delivered(&self) -> Vec<String> {
        self.stats.delivered.lock().unwrap().clone()
    }

    /// Waits (up to `within`) until `n` mails were accepted.
    pub async fn wait_for(&self, n: usize, within: Duration) -> Vec<String> {
        let deadline = Instant::now() + within;
        loop {
            let got = self.delivered();
            if got.len() >= n || Instant::now() > deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn session(stream: TcpStream, stats: Arc<Stats>, hold: usize) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    if write.write_all(b"220 sink ESMTP\r\n").await.is_err() {
        return;
    }
    let mut rcpt = Vec::new();
    while let Ok(Some(line)) = lines.next_line().await {
        let verb = line
            .split([' ', ':'])
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" | "HELO" => b"250 sink\r\n",
            "MAIL" | "NOOP" => b"250 OK\r\n",
            "RSET" => {
                rcpt.clear();
                b"250 OK\r\n"
            }
            "RCPT" => {
                let to = line
                    .split_once('<')
                    .and_then(|(_, r)| r.split_once('>'))
                    .map_or("", |(a, _)| a);
                rcpt.push(to.to_lowercase());
                b"250 OK\r\n"
            }
            "DATA" => {
                if write.write_all(b"354 go ahead\r\n").await.is_err() {
                    return;
                }
                loop {
                    match lines.next_line().await {
                        Ok(Some(l)) if l == "." => break,
                        Ok(Some(_)) => {}
                        _ => return,
                    }
                }
                hold_until(&stats, hold).await;
                stats.delivered.lock().unwrap().append(&mut rcpt);
                b"250 OK queued\r\n"
            }
            "QUIT" => {
                let _ = write.write_all(b"221 bye\r\n").await;
                return;
            }
            _ => b"502 not implemented\r\n",
        };
        if write.write_all(reply).await.is_err() {
            return;
        }
    }
}

/// Counts this mail in flight, and waits until `hold` were in flight at once (or 5 s).
async fn hold_until(stats: &Stats, hold: usize) {
    let now = stats.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    stats.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let deadline = Instant::now() + HOLD_AT_MOST;
    while stats.max_in_flight.load(Ordering::SeqCst) < hold && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stats.in_flight.fetch_sub(1, Ordering::SeqCst);
}
