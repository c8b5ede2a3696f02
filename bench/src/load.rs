//! A closed-loop load generator: `concurrency` workers each send one request at a time until
//! the duration is spent. Latencies are kept per request (microseconds) for percentiles.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

tokio::task_local! {
    /// The end of the running scenario, for waits inside a step.
    static DEADLINE: Instant;
}

/// Waits as a client told to retry later would, but never past the scenario's end (so a
/// trailing wait does not dilute its throughput).
pub async fn back_off(wait: Duration) {
    let until = Instant::now() + wait;
    let until = DEADLINE.try_with(|d| until.min(*d)).unwrap_or(until);
    tokio::time::sleep_until(until.into()).await;
}

/// What one request ended with: an HTTP status, or `None` when no answer came.
pub type Step = Pin<Box<dyn Future<Output = Option<u16>> + Send>>;

/// A scenario's request: `step(worker, iteration)`.
pub type StepFn = Arc<dyn Fn(usize, u64) -> Step + Send + Sync>;

/// The HTTP floor: `GET /v1/auth/login`, a fixed path among the first in the route table
/// whose only method is `POST`, so its 405 problem (with `Allow`) is served through the same
/// listener and middleware as every route, without any actor; it counts as served.
pub fn floor(c: &reqwest::Client, base: &str) -> StepFn {
    status_floor(c, base, "/v1/auth/login", 405)
}

/// The floor before session 23: `GET /bench/floor`, an unknown path. An unknown path is tried
/// against every route, so it pays the router's worst case and is slower than [`floor`]; kept
/// to compare with the numbers measured against it.
pub fn unknown_path_floor(c: &reqwest::Client, base: &str) -> StepFn {
    status_floor(c, base, "/bench/floor", 404)
}

/// `GET path`, whose `expected` status counts as served (200).
fn status_floor(c: &reqwest::Client, base: &str, path: &'static str, expected: u16) -> StepFn {
    let (c, base) = (c.clone(), base.to_owned());
    Arc::new(move |_, _| {
        let (c, b) = (c.clone(), base.clone());
        Box::pin(async move {
            let s = c.get(format!("{b}{path}")).send().await.ok()?.status();
            Some(if s.as_u16() == expected {
                200
            } else {
                s.as_u16()
            })
        })
    })
}

/// `POST /v1/auth/refresh` with the token in slot `pick(worker, iteration)`, keeping its
/// successor there for that slot's next turn.
pub fn refresh(
    c: &reqwest::Client,
    base: &str,
    tokens: Arc<Vec<tokio::sync::Mutex<String>>>,
    pick: impl Fn(usize, u64) -> usize + Send + Sync + 'static,
) -> StepFn {
    let (c, base, pick) = (c.clone(), base.to_owned(), Arc::new(pick));
    Arc::new(move |w, i| {
        let (c, b, tokens, k) = (c.clone(), base.clone(), tokens.clone(), pick(w, i));
        Box::pin(async move {
            let mut token = tokens[k].lock().await;
            let r = c
                .post(format!("{b}/v1/auth/refresh"))
                .json(&serde_json::json!({"refresh_token": *token}))
                .send()
                .await
                .ok()?;
            let status = r.status().as_u16();
            if let Ok(v) = r.json::<serde_json::Value>().await {
                if let Some(t) = v["refresh_token"].as_str() {
                    *token = t.to_owned();
                }
            }
            Some(status)
        })
    })
}

#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    pub scenario: String,
    pub target: String,
    pub concurrency: usize,
    pub seconds: f64,
    /// 2xx answers.
    pub ok: u64,
    /// 503 answers (load shed).
    pub shed: u64,
    /// Other answers by status (0: no answer).
    pub errors: BTreeMap<u16, u64>,
    pub throughput: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
}

impl Outcome {
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    f64::from(sorted[rank.min(sorted.len() - 1)]) / 1000.0
}

/// Runs `step(worker, iteration)` from `concurrency` workers for `duration`. Percentiles are
/// over accepted (2xx) requests.
pub async fn run(
    scenario: &str,
    target: &str,
    concurrency: usize,
    duration: Duration,
    step: StepFn,
) -> Outcome {
    sample(concurrency, duration, step)
        .await
        .outcome(scenario, target, concurrency)
}

/// What one or more runs of a scenario saw, before it is summed up: a scenario measured in
/// rounds interleaved with others adds each round's samples.
#[derive(Default)]
pub struct Samples {
    /// Latencies of accepted (2xx) requests, microseconds.
    lat: Vec<u32>,
    statuses: BTreeMap<u16, u64>,
    seconds: f64,
}

impl Samples {
    pub fn add(&mut self, other: Samples) {
        self.lat.extend(other.lat);
        for (k, v) in other.statuses {
            *self.statuses.entry(k).or_default() += v;
        }
        self.seconds += other.seconds;
    }

    pub fn outcome(mut self, scenario: &str, target: &str, concurrency: usize) -> Outcome {
        self.lat.sort_unstable();
        let ok: u64 = self
            .statuses
            .iter()
            .filter(|(s, _)| (200..300).contains(*s))
            .map(|(_, n)| n)
            .sum();
        let shed = self.statuses.get(&503).copied().unwrap_or(0);
        let lat = self.lat;
        let errors = self
            .statuses
            .into_iter()
            .filter(|(s, _)| !(200..300).contains(s) && *s != 503)
            .collect();
        Outcome {
            scenario: scenario.to_owned(),
            target: target.to_owned(),
            concurrency,
            seconds: self.seconds,
            ok,
            shed,
            errors,
            throughput: ok as f64 / self.seconds.max(1e-9),
            p50_ms: percentile(&lat, 50.0),
            p95_ms: percentile(&lat, 95.0),
            p99_ms: percentile(&lat, 99.0),
        }
    }
}

/// `concurrency` workers sending `step(worker, iteration)` for `duration`.
pub async fn sample(concurrency: usize, duration: Duration, step: StepFn) -> Samples {
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let step = step.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
            let mut i = 0u64;
            while Instant::now() < deadline {
                // NOTE: a step's latency is its answer's; a back-off after a 503 is not in it
                // (percentiles count 2xx answers only).
                let t = Instant::now();
                let status = DEADLINE.scope(deadline, step(w, i)).await.unwrap_or(0);
                let us = u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX);
                if (200..300).contains(&status) {
                    lat.push(us);
                }
                *statuses.entry(status).or_default() += 1;
                i += 1;
            }
            (lat, statuses)
        }));
    }
    let mut all = Samples::default();
    for t in tasks {
        if let Ok((lat, statuses)) = t.await {
            all.add(Samples {
                lat,
                statuses,
                seconds: 0.0,
            });
        }
    }
    all.seconds = started.elapsed().as_secs_f64();
    all
}
