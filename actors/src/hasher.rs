//! The password hasher: argon2id on a `SyncArbiter` pool sized to the cores, off the async
//! runtime, behind a bounded queue. When the queue is full the caller gets `Unavailable`
//! (503 + Retry-After) at once instead of waiting behind everyone else.
//!
//! Metrics: jobs admitted (`keyward_hasher_in_flight`), those of them still waiting for a thread
//! (`keyward_hasher_queue_depth`), each job's wait and run (`keyward_hasher_wait_seconds`,
//! `keyward_hasher_duration_seconds`), and jobs refused (`keyward_hasher_shed_total`).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use actix::{Actor, Addr, Handler, Message, SyncArbiter, SyncContext};
use argon2::password_hash::{Output, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use keyward_messages::CommandError;
use secrecy::{ExposeSecret, SecretString};

use crate::error::chain;
use crate::metrics::Metrics;

/// A password could not be hashed. None of these depends on the password: each means the
/// parameters or the system's randomness are wrong.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("argon2 parameters")]
    Params(#[source] argon2::Error),
    #[error("decoding the salt")]
    Salt(#[source] argon2::password_hash::Error),
    #[error("hashing")]
    Hash(#[source] argon2::Error),
    /// The hash cannot be written as a PHC string.
    #[error("encoding the hash")]
    Encode(#[source] argon2::password_hash::Error),
}

/// argon2id cost parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashParams {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl HashParams {
    /// The argon2 parameters of the settings.
    pub fn from_settings(settings: &keyward_config::Settings) -> HashParams {
        HashParams {
            memory_kib: settings.passwords.argon2_memory_kib,
            iterations: settings.passwords.argon2_iterations,
            parallelism: settings.passwords.argon2_parallelism,
        }
    }

    /// OWASP's argon2id recommendation (m=19456 KiB, t=2, p=1).
    pub const OWASP: HashParams = HashParams {
        memory_kib: 19456,
        iterations: 2,
        parallelism: 1,
    };

    /// Cheap parameters for tests only: never use them for real passwords.
    pub const DANGER_TEST_ONLY: HashParams = HashParams {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };

    fn argon2(&self) -> Result<Argon2<'static>, argon2::Error> {
        let p = Params::new(self.memory_kib, self.iterations, self.parallelism, None)?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, p))
    }
}

thread_local! {
    /// One argon2 working area per hashing thread, reused from hash to hash. Allocating it
    /// per hash (19 MiB at the OWASP parameters) costs page faults every time, and glibc keeps
    /// freed blocks in per-thread arenas, which took peak RSS under login load to 243 MiB
    /// (docs/PERFORMANCE.md).
    static WORK_AREA: std::cell::RefCell<Vec<argon2::Block>> =
        const { std::cell::RefCell::new(Vec::new()) };
    /// Only the pool's threads keep their area; any other thread (start-up's dummy hash, the
    /// CLI) frees it after each hash, so an idle node holds none.
    static KEEPS_WORK_AREA: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs argon2 with this thread's working area, sized for `argon`'s parameters.
fn hash_into(
    argon: &Argon2<'_>,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
) -> Result<(), argon2::Error> {
    WORK_AREA.with(|area| {
        let mut area = area.borrow_mut();
        let blocks = argon.params().block_count();
        if area.len() != blocks {
            *area = vec![argon2::Block::default(); blocks];
        }
        let r = argon.hash_password_into_with_memory(password, salt, out, &mut area[..]);
        if !KEEPS_WORK_AREA.with(std::cell::Cell::get) {
            *area = Vec::new();
        }
        r
    })
}

/// Hashes `password` into a PHC string (argon2id, a fresh 128-bit salt).
pub fn hash_blocking(params: HashParams, password: &str) -> Result<String, HashError> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    let argon = params.argon2().map_err(HashError::Params)?;
    let mut salt_bytes = [0u8; 64];
    let salt_bytes = salt.decode_b64(&mut salt_bytes).map_err(HashError::Salt)?;
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    hash_into(&argon, password.as_bytes(), salt_bytes, &mut out).map_err(HashError::Hash)?;
    let phc = PasswordHash {
        algorithm: argon2::ARGON2ID_IDENT,
        version: Some(Version::V0x13.into()),
        params: argon.params().try_into().map_err(HashError::Encode)?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).map_err(HashError::Encode)?),
    };
    Ok(phc.to_string())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, actix::MessageResponse)]
pub struct Verified {
    pub matches: bool,
    /// The stored hash uses other parameters (or algorithm) than the current ones.
    pub needs_rehash: bool,
}

fn verify_blocking(params: HashParams, password: &str, phc: &str) -> Verified {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return Verified {
            matches: false,
            needs_rehash: true,
        };
    };
    let matches = recompute(password, &parsed).unwrap_or(false);
    let current = parsed.algorithm.as_str() == "argon2id"
        && Params::try_from(&parsed).is_ok_and(|p| {
            p.m_cost() == params.memory_kib
                && p.t_cost() == params.iterations
                && p.p_cost() == params.parallelism
        });
    Verified {
        matches,
        needs_rehash: !current,
    }
}

/// Recomputes the stored hash with the stored parameters in this thread's working area;
/// `Output`'s equality is constant-time.
fn recompute(password: &str, parsed: &PasswordHash<'_>) -> Option<bool> {
    let algorithm = Algorithm::try_from(parsed.algorithm).ok()?;
    let version = parsed
        .version
        .map_or(Ok(Version::V0x13), Version::try_from)
        .ok()?;
    let expected = parsed.hash?;
    // The stored hash's length is part of its parameters.
    let params = Params::try_from(parsed).ok()?;
    let argon = Argon2::new(algorithm, version, params);
    let mut salt = [0u8; 64];
    let salt = parsed.salt?.decode_b64(&mut salt).ok()?;
    let mut out = vec![0u8; expected.len()];
    hash_into(&argon, password.as_bytes(), salt, &mut out).ok()?;
    Some(Output::new(&out).ok()? == expected)
}

struct Hasher {
    params: HashParams,
}

impl Actor for Hasher {
    type Context = SyncContext<Self>;
}

/// A job's place in the queue, travelling with its message: counted in the queue depth from
/// admission until a thread starts it, or until it is dropped unstarted (actix drops a job
/// whose caller went away without running it).
struct Ticket {
    admitted: Instant,
    metrics: Metrics,
    waiting: bool,
}

impl Ticket {
    fn new(metrics: &Metrics) -> Self {
        metrics.hasher_queue_depth.inc();
        Self {
            admitted: Instant::now(),
            metrics: metrics.clone(),
            waiting: true,
        }
    }

    /// Leaves the queue, records the wait, and times `job`.
    fn run<T>(mut self, job: impl FnOnce() -> T) -> T {
        self.waiting = false;
        self.metrics.hasher_queue_depth.dec();
        self.metrics
            .hasher_wait
            .observe(self.admitted.elapsed().as_secs_f64());
        let started = Instant::now();
        let out = job();
        self.metrics
            .hasher_duration
            .observe(started.elapsed().as_secs_f64());
        out
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.waiting {
            self.metrics.hasher_queue_depth.dec();
        }
    }
}

#[derive(Message)]
#[rtype(result = "Result<String, HashError>")]
struct Hash(SecretString, Ticket);

#[derive(Message)]
#[rtype(result = "Verified")]
struct Verify(SecretString, String, Ticket);

impl Handler<Hash> for Hasher {
    type Result = Result<String, HashError>;
    fn handle(&mut self, Hash(password, ticket): Hash, _: &mut SyncContext<Self>) -> Self::Result {
        ticket.run(|| hash_blocking(self.params, password.expose_secret()))
    }
}

impl Handler<Verify> for Hasher {
    type Result = Verified;
    fn handle(
        &mut self,
        Verify(password, phc, ticket): Verify,
        _: &mut SyncContext<Self>,
    ) -> Verified {
        ticket.run(|| verify_blocking(self.params, password.expose_secret(), &phc))
    }
}

/// A handle on the pool; cheap to clone.
#[derive(Clone)]
pub struct HasherPool {
    addr: Addr<Hasher>,
    in_flight: Arc<AtomicUsize>,
    capacity: usize,
    params: HashParams,
    dummy: Arc<String>,
    metrics: Metrics,
    started: Instant,
    /// The second (since `started`, plus one) of the last shedding warning.
    shed_warned: Arc<AtomicU64>,
}

/// A place in the pool taken ahead of its job; released when dropped.
pub struct Reservation(#[allow(dead_code)] Slot);

/// Releases a queue slot however the job ends.
struct Slot(Arc<AtomicUsize>, prometheus::IntGauge);
impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
        self.1.dec();
    }
}

impl HasherPool {
    /// Starts `threads` hasher threads; at most `threads + queue` jobs are admitted at once.
    pub fn start(
        threads: usize,
        queue: usize,
        params: HashParams,
        metrics: Metrics,
    ) -> Result<Self, HashError> {
        params.argon2().map_err(HashError::Params)?;
        // The dummy hash makes a check for an unknown account cost one real verify.
        let dummy = hash_blocking(params, &crate::tokens::random_token())?;
        let threads = threads.max(1);
        let addr = SyncArbiter::start(threads, move || {
            KEEPS_WORK_AREA.with(|k| k.set(true));
            Hasher { params }
        });
        Ok(Self {
            addr,
            in_flight: Arc::new(AtomicUsize::new(0)),
            capacity: threads + queue,
            params,
            dummy: Arc::new(dummy),
            metrics,
            started: Instant::now(),
            shed_warned: Arc::new(AtomicU64::new(0)),
        })
    }

    pub fn params(&self) -> HashParams {
        self.params
    }

    /// Jobs admitted and not yet finished.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    fn admit(&self) -> Result<Slot, CommandError> {
        let before = self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.metrics.hasher_in_flight.inc();
        let slot = Slot(
            self.in_flight.clone(),
            self.metrics.hasher_in_flight.clone(),
        );
        if before >= self.capacity {
            self.metrics.hasher_shed.inc();
            // NOTE: one line per second at most: under overload a line per shed request would
            // cost the CPU that shedding is there to save. The counter has every one.
            let second = self.started.elapsed().as_secs() + 1;
            if self.shed_warned.swap(second, Ordering::Relaxed) != second {
                tracing::warn!(
                    capacity = self.capacity,
                    shed_total = self.metrics.hasher_shed.get(),
                    "hasher queue full; shedding (keyward_hasher_shed_total counts each)"
                );
            }
            return Err(CommandError::overloaded(1));
        }
        Ok(slot)
    }

    pub async fn hash(&self, password: &str) -> Result<String, CommandError> {
        let _slot = self.admit()?;
        match self
            .addr
            .send(Hash(
                SecretString::from(password.to_owned()),
                Ticket::new(&self.metrics),
            ))
            .await
        {
            Ok(Ok(h)) => Ok(h),
            Ok(Err(e)) => {
                tracing::error!(error = %chain(&e), "password hashing failed");
                Err(CommandError::Internal)
            }
            Err(e) => {
                tracing::error!(error = %chain(&e), "hasher pool unreachable");
                Err(CommandError::unavailable(
                    "the password hasher is unavailable",
                ))
            }
        }
    }

    /// Takes a place in the pool now, for a verify that follows other work: a caller that
    /// would be shed learns it before doing that work.
    pub fn reserve(&self) -> Result<Reservation, CommandError> {
        self.admit().map(Reservation)
    }

    pub async fn verify(&self, password: &str, phc: &str) -> Result<Verified, CommandError> {
        let place = self.reserve()?;
        self.verify_reserved(place, password, phc).await
    }

    /// `verify` in a place taken earlier with [`reserve`](Self::reserve).
    pub async fn verify_reserved(
        &self,
        place: Reservation,
        password: &str,
        phc: &str,
    ) -> Result<Verified, CommandError> {
        let _slot = place;
        self.addr
            .send(Verify(
                SecretString::from(password.to_owned()),
                phc.to_owned(),
                Ticket::new(&self.metrics),
            ))
            .await
            .map_err(|e| {
                tracing::error!(error = %chain(&e), "hasher pool unreachable");
                CommandError::unavailable("the password hasher is unavailable")
            })
    }

    /// Costs what a real verify costs and always fails: used for unknown accounts.
    pub async fn dummy_verify(
        &self,
        place: Reservation,
        password: &str,
    ) -> Result<(), CommandError> {
        let dummy = self.dummy.clone();
        self.verify_reserved(place, password, &dummy)
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_hash_verifies_and_a_wrong_password_does_not() {
        let p = HashParams::DANGER_TEST_ONLY;
        let h = hash_blocking(p, "velvet otter").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_blocking(p, "velvet otter", &h).matches);
        assert!(!verify_blocking(p, "velvet otteR", &h).matches);
        assert!(!verify_blocking(p, "velvet otter", &h).needs_rehash);
    }

    #[test]
    fn a_hash_with_old_parameters_asks_for_a_rehash() {
        let old = hash_blocking(HashParams::DANGER_TEST_ONLY, "pw").unwrap();
        let v = verify_blocking(
            HashParams {
                memory_kib: 128,
                ..HashParams::DANGER_TEST_ONLY
            },
            "pw",
            &old,
        );
        assert!(v.matches);
        assert!(v.needs_rehash);
    }

    #[test]
    fn hashes_interoperate_with_the_standard_argon2_api_both_ways() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let p = HashParams::DANGER_TEST_ONLY;
        // Ours verifies with the crate's own verifier, with the documented PHC shape.
        let ours = hash_blocking(p, "velvet otter").unwrap();
        assert!(ours.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{ours}");
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(Argon2::default()
            .verify_password(b"velvet otter", &parsed)
            .is_ok());
        assert!(Argon2::default()
            .verify_password(b"velvet otte", &parsed)
            .is_err());
        // The crate's hashes (argon2id and argon2i, other lengths) verify with ours.
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        for (alg, len) in [(Algorithm::Argon2id, 32), (Algorithm::Argon2i, 48)] {
            let params = Params::new(64, 1, 1, Some(len)).unwrap();
            let theirs = Argon2::new(alg, Version::V0x13, params)
                .hash_password(b"velvet otter", &salt)
                .unwrap()
                .to_string();
            assert!(
                verify_blocking(p, "velvet otter", &theirs).matches,
                "{theirs}"
            );
            assert!(
                !verify_blocking(p, "velvet otte", &theirs).matches,
                "{theirs}"
            );
        }
        // The working area is resized when parameters change between calls.
        let big = HashParams {
            memory_kib: 256,
            iterations: 1,
            parallelism: 1,
        };
        let h = hash_blocking(big, "pw").unwrap();
        assert!(verify_blocking(p, "pw", &h).matches);
        assert!(verify_blocking(p, "pw", &hash_blocking(p, "pw").unwrap()).matches);
    }

    #[test]
    fn a_garbage_hash_never_matches() {
        assert!(!verify_blocking(HashParams::DANGER_TEST_ONLY, "pw", "not a phc").matches);
    }

    #[test]
    fn parameters_argon2_refuses_stop_the_pool_from_starting() {
        let metrics = Metrics::register(&prometheus::Registry::new()).unwrap();
        let params = HashParams {
            memory_kib: 1,
            ..HashParams::DANGER_TEST_ONLY
        };

        let started = HasherPool::start(1, 0, params, metrics);

        let Err(e) = started else {
            unreachable!("a pool with parameters argon2 refuses started")
        };
        assert!(matches!(e, HashError::Params(_)), "{e:?}");
        assert!(
            chain(&e).starts_with("argon2 parameters: "),
            "{}",
            chain(&e)
        );
    }

    /// One thread, `queue` waiting places, and a hash slow enough (8 MiB, t=3) for jobs to
    /// overlap.
    fn slow_pool(queue: usize) -> (HasherPool, Metrics) {
        let metrics = Metrics::register(&prometheus::Registry::new()).unwrap();
        let params = HashParams {
            memory_kib: 8192,
            iterations: 3,
            parallelism: 1,
        };
        let pool = HasherPool::start(1, queue, params, metrics.clone()).unwrap();
        (pool, metrics)
    }

    #[actix_rt::test]
    async fn a_full_queue_sheds_instead_of_waiting() {
        let (pool, metrics) = slow_pool(0);
        let (a, b) = futures::join!(pool.hash("one password"), pool.hash("two password"));
        let shed = [a.is_err(), b.is_err()].iter().filter(|x| **x).count();
        assert_eq!(shed, 1, "one job runs, the other is refused");
        assert_eq!(pool.in_flight(), 0);
        assert_eq!(metrics.hasher_shed.get(), 1);
        assert_eq!(metrics.hasher_in_flight.get(), 0);
        assert_eq!(metrics.hasher_queue_depth.get(), 0);
        assert_eq!(
            metrics.hasher_wait.get_sample_count(),
            1,
            "a shed job never waits"
        );
    }

    #[actix_rt::test]
    async fn a_queued_job_counts_in_the_queue_depth_until_a_thread_takes_it() {
        let (pool, metrics) = slow_pool(1);
        let depths = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = depths.clone();
        let m = metrics.clone();
        let (a, b, ()) = futures::join!(
            pool.hash("one password"),
            pool.hash("two password"),
            async move {
                // Both were admitted on the first poll, before any thread could start one.
                seen.lock().unwrap().push(m.hasher_queue_depth.get());
            }
        );
        assert!(a.is_ok() && b.is_ok());
        assert_eq!(depths.lock().unwrap().as_slice(), [2]);
        assert_eq!(metrics.hasher_queue_depth.get(), 0);
        assert_eq!(metrics.hasher_wait.get_sample_count(), 2);
        assert_eq!(metrics.hasher_duration.get_sample_count(), 2);
        assert!(
            metrics.hasher_wait.get_sample_sum() >= metrics.hasher_duration.get_sample_sum() / 4.0,
            "the second job waited for the first one's run"
        );
    }

    #[actix_rt::test]
    async fn a_job_whose_caller_gave_up_leaves_the_queue() {
        use futures::FutureExt;
        let (pool, metrics) = slow_pool(1);
        let first = pool.hash("one password");
        futures::pin_mut!(first);
        assert!(
            first.as_mut().now_or_never().is_none(),
            "the first job runs"
        );
        // Admitted and queued behind it, then abandoned before a thread took it.
        assert!(pool.hash("two password").now_or_never().is_none());
        assert!(first.await.is_ok());
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        while metrics.hasher_queue_depth.get() != 0 {
            assert!(
                Instant::now() < deadline,
                "the abandoned job left the queue"
            );
            actix_rt::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(metrics.hasher_in_flight.get(), 0);
    }
}
