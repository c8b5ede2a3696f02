//! Wiring of a Keyward node: starts the actors, hands their `Recipient`s to the gateway, binds
//! the public and management listeners. `main.rs` only parses the CLI; tests start nodes
//! through [`Node::start`] exactly as `keyward serve` does.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::time::Duration;

use keyward_actors::system::{self, Contexts, NodeOptions};
use keyward_actors::{hasher::HashParams, Clock, StartError};
use keyward_config::Settings;
use keyward_gateway::{
    AccessApi, AccountsApi, FederationApi, GatewayOptions, MfaApi, NotifyApi, Probe, ProfilesApi,
    Recipients, SessionsApi,
};

/// A running node.
pub struct Node {
    pub public_addr: SocketAddr,
    pub management_addr: SocketAddr,
    pub public_url: String,
    pub mail_dir: Option<PathBuf>,
    pub contexts: Contexts,
    public: actix_web::dev::ServerHandle,
    management: actix_web::dev::ServerHandle,
    /// Embedded mode: the node's shared hold on its data dir, so `keyward restore` cannot
    /// write there while it serves.
    _data_dir: Option<keyward_actors::backup::DataDirLock>,
}

/// Test and embedding knobs beyond the settings.
#[derive(Default)]
pub struct StartOptions {
    pub clock: Option<Clock>,
    pub hash_params: Option<HashParams>,
    pub danger_test_panic_on_register: Option<String>,
    /// Overrides `KEYWARD_TOKENS__SESSION_RECHECK_MS` beyond its bound (tests that must see a
    /// revocation arrive by broadcast, not by the recheck).
    pub session_recheck: Option<Duration>,
    /// How often accounts due for erasure are looked for (tests make it short).
    pub erase_every: Option<Duration>,
    /// How often the node reads the outbox for invalidations (default 250 ms; tests that must
    /// see one arrive by broadcast make it long).
    pub feed_every: Option<Duration>,
}

fn bind(addr: &str, key: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).map_err(|e| anyhow::anyhow!("{key}: cannot listen on {addr}: {e}"))
}

impl Node {
    /// Binds both listeners, starts every actor and both HTTP servers. Runs inside an actix
    /// `System` (as `#[actix_web::main]` and `#[actix_web::test]` provide).
    pub async fn start(settings: &Settings, opts: StartOptions) -> anyhow::Result<Node> {
        let data_dir = if settings.is_sqlite() {
            Some(keyward_actors::backup::hold_data_dir(&settings.data_dir)?)
        } else {
            None
        };
        let public_listener = bind(&settings.bind, "KEYWARD_BIND")?;
        let management_listener = bind(&settings.management_bind, "KEYWARD_MANAGEMENT_BIND")?;
        let public_addr = public_listener.local_addr()?;
        let management_addr = management_listener.local_addr()?;
        let public_url = settings
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{public_addr}"));
        let registry = prometheus::Registry::new();
        let metrics = keyward_actors::metrics::Metrics::register(&registry)?;
        let contexts = system::start(
            settings,
            NodeOptions {
                metrics,
                public_url: public_url.clone(),
                clock: opts.clock.unwrap_or_else(keyward_actors::system_clock),
                hash_params: opts.hash_params,
                danger_test_panic_on_register: opts.danger_test_panic_on_register,
                session_recheck: opts.session_recheck,
                erase_every: opts.erase_every,
                feed_every: opts.feed_every,
            },
        )
        .await
        .map_err(start_error)?;
        let s = &contexts.sessions;
        let local = contexts.local.clone();
        // NOTE: each HTTP worker gets its own context actors on its own thread (they share
        // `Deps`; their state lives in storage), so a request never waits on another thread's
        // mailbox. The node-wide actors stay for the CLI, the probes and the tests.
        let recipients = move || recipients_of(&local.start());
        let opts = GatewayOptions {
            max_body_bytes: settings.http.max_body_bytes,
            request_timeout: Duration::from_secs(settings.http.request_timeout_secs),
            workers: settings.http.workers,
            trusted_proxies: settings
                .http
                .trusted_proxy_nets()
                .map_err(|e| anyhow::anyhow!("KEYWARD_HTTP__TRUSTED_PROXIES: {e}"))?,
            header_timeout: Duration::from_secs(settings.http.header_timeout_secs),
            body_timeout: Duration::from_secs(settings.http.body_timeout_secs),
            cors_origins: settings
                .http
                .cors_origin_list()
                .map_err(|e| anyhow::anyhow!("KEYWARD_HTTP__CORS_ORIGINS: {e}"))?,
            keep_alive: Duration::from_secs(settings.http.keep_alive_secs),
            connection_max: Duration::from_secs(settings.http.connection_max_secs),
            max_connections: connection_cap(settings.http.max_connections),
        };
        let http_metrics = keyward_gateway::HttpMetrics::register(&registry)?;
        let public =
            keyward_gateway::public_server(public_listener, recipients, opts, http_metrics)?;
        // NOTE: readiness means "this node can serve its API". Without its database it cannot.
        // Without RabbitMQ it can (events wait in the outbox), and without the avatar store
        // all but avatar uploads work; both outages are shared by every node, and taking
        // every node out of service at once would turn a degradation into a full outage.
        let mut probes = vec![Probe::required("database", s.clone().recipient())];
        if let Some(amqp) = &contexts.amqp {
            probes.push(Probe::degrades("rabbitmq", amqp.clone().recipient()));
        }
        if settings.avatars.s3_endpoint.is_some() {
            probes.push(Probe::degrades(
                "avatars",
                contexts.profiles.clone().recipient(),
            ));
        }
        let management = keyward_gateway::management_server(management_listener, probes, registry)?;
        let node = Node {
            public_addr,
            management_addr,
            public_url,
            mail_dir: contexts.mail_dir.clone(),
            contexts,
            public: public.handle(),
            management: management.handle(),
            _data_dir: data_dir,
        };
        for srv in [public, management] {
            actix_rt::spawn(srv);
        }
        Ok(node)
    }

    /// Stops both HTTP servers gracefully (in-flight requests finish), then closes pooled
    /// SMTP connections.
    pub async fn stop(&self) {
        self.public.stop(true).await;
        self.management.stop(true).await;
        if let Some(mailer) = &self.contexts.mailer {
            mailer.shutdown().await;
        }
    }
}

/// Every command the gateway sends, to these context actors.
fn recipients_of(c: &keyward_actors::system::ContextAddrs) -> Recipients {
    Recipients {
        access: AccessApi::of(&c.access),
        accounts: AccountsApi::of(&c.accounts),
        sessions: SessionsApi::of(&c.sessions),
        profiles: ProfilesApi::of(&c.profiles),
        notify: NotifyApi::of(&c.notifications),
        mfa: MfaApi::of(&c.mfa),
        federation: FederationApi::of(&c.federation),
    }
}

/// Raises this process's descriptor soft limit to its hard limit and returns how many
/// connections the public port may hold: `configured`, or 3/4 of the limit (at most 10,000)
/// when 0, and never so many that the management port, the database pool, the broker and the
/// mail drop run out of descriptors.
fn connection_cap(configured: usize) -> usize {
    let limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "could not raise the open-file limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft)
        }
    };
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let ceiling = limit.saturating_sub((limit / 4).clamp(64, 4096)).max(1);
    let cap = match configured {
        0 => ceiling.min(10_000),
        n if n > ceiling => {
            tracing::warn!(
                configured = n,
                cap = ceiling,
                open_file_limit = limit,
                "KEYWARD_HTTP__MAX_CONNECTIONS is above what the open-file limit leaves room for; using the lower cap"
            );
            ceiling
        }
        n => n,
    };
    tracing::info!(
        max_connections = cap,
        open_file_limit = limit,
        "public port connection cap"
    );
    cap
}

fn start_error(e: StartError) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}
