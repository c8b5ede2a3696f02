//! Starts and wires a node's actors: storage, signing keys, hasher pool, notify, the outbox
//! relay, and the supervised context actors. Addresses are handed back to the caller (the
//! binary), which gives the gateway only `Recipient`s.

use std::path::PathBuf;
use std::sync::Arc;

use crate::notify::sms::SmsSender;
use actix::prelude::*;
use chrono::Duration;
use keyward_config::Settings;
use keyward_messages::events::JOB_PREFIXES;
use keyward_messages::password_policy::PasswordPolicy;
use keyward_messages::profiles::Visibility;
use keyward_storage::Store;

use crate::access::{Access, AccessDeps, AccessHandle, Decisions};
use crate::accounts::{Accounts, AccountsDeps, ThrottlePolicy};
use crate::bus::amqp::AmqpPublisher;
use crate::bus::broadcast::{self, CacheListener};
use crate::bus::{Relay, Subscriber};
use crate::caches::{NodeCaches, INVALIDATING};
use crate::hasher::{HashParams, HasherPool};
use crate::keys::KeyRing;
use crate::metrics::Metrics;
use crate::notify::{Mailer, Notifications, Notify, NotifyDeps};
use crate::outbox::OutboxWriter;
use crate::profiles::erasure::Eraser;
use crate::profiles::{
    ProfileCache, ProfileIndex, ProfilePolicy, Profiles, ProfilesDeps, PROFILE_RECHECK,
};
use crate::sessions::{SessionGate, Sessions, SessionsDeps, SessionsHandle, TokenPolicy};
use crate::tokens::derive_key;
use crate::{Clock, StartError};

/// What the context actors of a node share, for starting more of them on other threads
/// ([`LocalContexts::start`]).
#[derive(Clone)]
pub struct LocalContexts {
    pub access: Arc<AccessDeps>,
    pub accounts: Arc<AccountsDeps>,
    pub sessions: Arc<SessionsDeps>,
    pub profiles: Arc<ProfilesDeps>,
    pub notify: Arc<NotifyDeps>,
    pub mfa: Arc<crate::mfa::MfaDeps>,
    pub federation: Arc<crate::federation::FederationDeps>,
}

/// One supervised actor of each context, on one thread.
pub struct ContextAddrs {
    pub access: Addr<Access>,
    pub accounts: Addr<Accounts>,
    pub sessions: Addr<Sessions>,
    pub profiles: Addr<Profiles>,
    pub notifications: Addr<Notifications>,
    pub mfa: Addr<crate::mfa::Mfa>,
    pub federation: Addr<crate::federation::Federation>,
}

impl LocalContexts {
    /// Starts a supervised actor of each context on the current thread's arbiter. They hold
    /// nothing but their deps, so any number of them may run side by side.
    pub fn start(&self) -> ContextAddrs {
        let d = self.access.clone();
        let access = Supervisor::start(move |_| Access::new(d));
        let d = self.accounts.clone();
        let accounts = Supervisor::start(move |_| Accounts::new(d));
        let d = self.sessions.clone();
        let sessions = Supervisor::start(move |_| Sessions::new(d));
        let d = self.profiles.clone();
        let profiles = Supervisor::start(move |_| Profiles::new(d));
        let d = self.notify.clone();
        let notifications = Supervisor::start(move |_| Notifications::new(d));
        let d = self.mfa.clone();
        let mfa = Supervisor::start(move |_| crate::mfa::Mfa::new(d));
        let d = self.federation.clone();
        let federation = Supervisor::start(move |_| crate::federation::Federation::new(d));
        ContextAddrs {
            access,
            accounts,
            sessions,
            profiles,
            notifications,
            mfa,
            federation,
        }
    }
}

/// Knobs the binary and tests set beyond the settings.
pub struct NodeOptions {
    /// The resolved public URL (issuer and link base), e.g. http://127.0.0.1:8080.
    pub public_url: String,
    pub clock: Clock,
    /// Overrides the argon2 parameters of the settings (tests use cheap ones).
    pub hash_params: Option<HashParams>,
    /// Test-only: registering this (normalized) email panics inside the accounts handler.
    pub danger_test_panic_on_register: Option<String>,
    /// Where this node's metrics go (served at /metrics).
    pub metrics: Metrics,
    /// Overrides the settings' session recheck interval.
    pub session_recheck: Option<std::time::Duration>,
    /// How often the eraser looks for accounts due for erasure (default 60 s).
    pub erase_every: Option<std::time::Duration>,
    /// How often the node reads the outbox for invalidations it may have missed on the
    /// broadcast (default 250 ms).
    pub feed_every: Option<std::time::Duration>,
}

/// The running contexts of a node.
pub struct Contexts {
    pub access: Addr<Access>,
    pub accounts: Addr<Accounts>,
    pub sessions: Addr<Sessions>,
    pub profiles: Addr<Profiles>,
    pub notifications: Addr<Notifications>,
    pub mfa: Addr<crate::mfa::Mfa>,
    pub federation: Addr<crate::federation::Federation>,
    /// What the context actors share, for starting more of them.
    pub local: LocalContexts,
    /// The mail sender, in embedded mode.
    pub notify: Option<Addr<Notify>>,
    /// The RabbitMQ publisher, in distributed mode.
    pub amqp: Option<Addr<AmqpPublisher>>,
    pub relay: Addr<Relay>,
    pub store: Store,
    /// Where mail is written in embedded mode.
    pub mail_dir: Option<PathBuf>,
    /// The notify actor's transport, in embedded mode: shut down when the node stops.
    pub mailer: Option<Mailer>,
}

/// Creates the data dir (embedded mode) and opens and migrates the database.
pub async fn open_store(settings: &Settings) -> Result<Store, StartError> {
    if settings.is_sqlite() {
        std::fs::create_dir_all(&settings.data_dir).map_err(StartError::io(&settings.data_dir))?;
    }
    let store = Store::connect(&settings.database_url).await?;
    let ran = store.migrate().await?;
    if ran > 0 {
        tracing::info!(migrations = ran, "database migrated");
    }
    crate::access::sync_declared(settings, &store, chrono::Utc::now()).await?;
    crate::notify::templates::sync_shipped(&store, chrono::Utc::now()).await?;
    if let Some(path) = &settings.notify.templates_file {
        let n = crate::notify::templates::sync_declared(&store, path, chrono::Utc::now()).await?;
        tracing::info!(written = n, file = %path.display(), "templates from KEYWARD_NOTIFY__TEMPLATES_FILE");
    }
    Ok(store)
}

fn secs(s: u64) -> Duration {
    Duration::seconds(i64::try_from(s).unwrap_or(i64::MAX / 1000))
}

/// Starts every actor of a node. Must run inside an actix `System`.
pub async fn start(settings: &Settings, opts: NodeOptions) -> Result<Contexts, StartError> {
    let clock = opts.clock.clone();
    let master = crate::keys::master_key(settings)?;
    let store = open_store(settings).await?;
    // The profile search's typo index, built now rather than at the first typo search.
    let warm = store.clone();
    actix_rt::spawn(async move {
        if let Err(e) = warm.search_index().load_typo_index().await {
            tracing::warn!(error = %e, "profile search: building the typo index failed");
        }
    });
    let t = &settings.tokens;
    let tokens = TokenPolicy {
        issuer: opts.public_url.trim_end_matches('/').to_owned(),
        audience: t.audience.clone(),
        access_ttl: secs(t.access_ttl_secs),
        refresh_idle: secs(t.refresh_idle_ttl_secs),
        refresh_absolute: secs(t.refresh_absolute_ttl_secs),
        refresh_grace: secs(t.refresh_grace_secs),
    };
    let backend = settings
        .keys
        .backend()
        .map_err(|e| StartError::Config(e.to_string()))?;
    let lead = secs(settings.keys.publish_lead_secs);
    let keys = KeyRing::load_or_create(
        &store,
        &master,
        clock.clone(),
        tokens.access_ttl,
        &crate::keys::Keys::connect(&backend)?,
        lead,
        Some(opts.metrics.clone()),
    )
    .await?;

    let p = &settings.passwords;
    let threads = if p.hasher_threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        p.hasher_threads
    };
    let queue = if p.hasher_queue == 0 {
        4 * threads
    } else {
        p.hasher_queue
    };
    let params = opts
        .hash_params
        .unwrap_or_else(|| HashParams::from_settings(settings));
    let metrics = opts.metrics.clone();
    let hasher = HasherPool::start(threads, queue, params, metrics.clone())
        .map_err(|e| StartError::Config(crate::error::chain(&e)))?;

    use secrecy::ExposeSecret;
    let smtp = settings
        .smtp_url
        .as_ref()
        .map(|s| s.expose_secret().to_owned());
    let amqp_url = settings
        .amqp_url
        .as_ref()
        .map(|s| s.expose_secret().to_owned());
    let recheck = opts
        .session_recheck
        .unwrap_or_else(|| std::time::Duration::from_millis(settings.tokens.session_recheck_ms));
    let cap = &settings.cache;
    let gate = Arc::new(SessionGate::new(recheck, cap.tokens, cap.sessions));
    let profiles = Arc::new(ProfileCache::new(PROFILE_RECHECK, cap.profiles));
    let decisions = Arc::new(Decisions::new(cap.users));
    let live = Arc::new(crate::notify::live::LiveInbox::new(store.clone()));
    let caches = Arc::new(NodeCaches::new(vec![
        gate.clone(),
        profiles.clone(),
        decisions.clone(),
        Arc::new(crate::notify::live::LiveFeed(live.clone())),
        Arc::new(crate::keys::KeyRingCache {
            ring: keys.clone(),
            store: store.clone(),
            master,
        }),
    ]));
    let l = live.clone();
    actix_rt::spawn(async move {
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(30)).await;
            l.prune();
        }
    });
    let feed_every = opts
        .feed_every
        .unwrap_or(std::time::Duration::from_millis(250));
    actix_rt::spawn(crate::caches::follow_outbox(
        store.clone(),
        caches.clone(),
        clock.clone(),
        feed_every,
    ));
    let templates = Arc::new(crate::notify::TemplateCache::default());
    let vapid = Arc::new(crate::notify::push::Vapid::derive(
        &master,
        format!(
            "mailto:{}",
            crate::notify::parse_from(&settings.mail_from)?.email
        ),
    )?);
    let mut mail_dir = None;
    let mut notify = None;
    let mut node_mailer = None;
    let mut amqp = None;
    let intake_url = amqp_url.clone();
    let subscribers = match amqp_url {
        // Distributed: everything goes to RabbitMQ; `keyward worker` sends the mail, and
        // revocations come back to every node's gate through keyward.broadcast.
        Some(url) => {
            let consuming = metrics.broadcast_consuming.clone();
            actix_rt::spawn(broadcast::listen(url.clone(), caches.clone(), consuming));
            let connected = metrics.amqp_connected.clone();
            let publisher = Supervisor::start(move |_| AmqpPublisher::new(url, connected));
            amqp = Some(publisher.clone());
            vec![Subscriber {
                name: "rabbitmq",
                prefix: "",
                recipient: publisher.recipient(),
            }]
        }
        None => {
            let dir = settings.data_dir.join("mail");
            let mailer = Mailer::new(smtp.as_deref(), dir.clone())?;
            node_mailer = Some(mailer.clone());
            let notify_actor = Notify::new(crate::notify::Mailroom {
                mailer,
                from: crate::notify::parse_from(&settings.mail_from)?,
                store: store.clone(),
                clock: clock.clone(),
                metrics: metrics.clone(),
                templates: templates.clone(),
                vapid: Some(vapid.clone()),
                http: reqwest::Client::new(),
                sms: Arc::new(SmsSender::new(
                    settings
                        .sms
                        .provider()
                        .map_err(|e| StartError::Config(e.to_string()))?,
                    &settings.data_dir,
                )?),
            });
            let addr = Supervisor::start(move |_| notify_actor);
            notify = Some(addr.clone());
            mail_dir = smtp.is_none().then_some(dir);
            // NOTE: this node updates its caches itself after each change; the relay also
            // brings changes written by other processes on this database (the CLI).
            let c = caches.clone();
            let listener = Supervisor::start(move |_| CacheListener(c));
            let mut subs: Vec<_> = JOB_PREFIXES
                .iter()
                .map(|&prefix| Subscriber {
                    name: "notify",
                    prefix,
                    recipient: addr.clone().recipient(),
                })
                .collect();
            subs.extend(INVALIDATING.iter().map(|kind| Subscriber {
                name: "caches",
                prefix: kind,
                recipient: listener.clone().recipient(),
            }));
            subs
        }
    };
    let relay_store = store.clone();
    let relay_clock = clock.clone();
    let relay_metrics = metrics.clone();
    let relay = Supervisor::start(move |_| {
        Relay::new(relay_store, relay_clock, subscribers, relay_metrics)
    });

    let outbox = OutboxWriter::new(clock.clone(), relay.clone().recipient());
    let throttle = ThrottlePolicy {
        account_max_failures: settings.throttle.account_max_failures,
        ip_max_failures: settings.throttle.ip_max_failures,
        window: secs(settings.throttle.window_secs),
        base_delay: secs(settings.throttle.base_delay_secs),
        mail_per_address: settings.throttle.mail_per_address_per_hour,
        mail_per_ip: settings.throttle.mail_per_ip_per_hour,
        ceremonies_per_ip: settings.throttle.ceremonies_per_ip_per_hour,
    };
    let index = ProfileIndex::from_settings(settings);
    let rotator = crate::sessions::rotation::Rotator::start(
        store.clone(),
        decisions.clone(),
        clock.clone(),
        tokens.refresh_idle,
        keys.signs_here(),
    );
    let sessions = Arc::new(SessionsDeps {
        index,
        store: store.clone(),
        keys: keys.clone(),
        clock: clock.clone(),
        rotator,
        tokens: tokens.clone(),
        refresh_secret: derive_key(&master, "refresh-successor"),
        outbox: outbox.clone(),
        gate,
        decisions: decisions.clone(),
        metrics: metrics.clone(),
    });
    let access = Arc::new(AccessDeps {
        store: store.clone(),
        clock: clock.clone(),
        outbox: outbox.clone(),
        decisions: decisions.clone(),
        default_roles: settings.access.default_role_list(),
        keys,
        tokens,
        client_token_ttl: secs(settings.access.client_token_ttl_secs),
        throttle: throttle.clone(),
        metrics: metrics.clone(),
        sessions: SessionsHandle::new(sessions.clone()),
    });
    let accounts = Arc::new(AccountsDeps {
        store: store.clone(),
        hasher,
        clock: clock.clone(),
        public_url: opts.public_url.trim_end_matches('/').to_owned(),
        verification_ttl: secs(t.verification_ttl_secs),
        reset_ttl: secs(t.reset_ttl_secs),
        throttle,
        password_policy: PasswordPolicy {
            min_length: p.min_length,
            max_length: p.max_length,
        },
        outbox: outbox.clone(),
        profiles: profiles.clone(),
        index,
        sessions: SessionsHandle::new(sessions.clone()),
        access: AccessHandle::new(access.clone()),
        metrics: metrics.clone(),
        danger_test_panic_on_register: opts.danger_test_panic_on_register,
    });
    let ps = &settings.profiles;
    let profiles = Arc::new(ProfilesDeps {
        store: store.clone(),
        clock: clock.clone(),
        outbox: outbox.clone(),
        cache: profiles,
        hasher: accounts.hasher.clone(),
        sessions: SessionsHandle::new(sessions.clone()),
        policy: ProfilePolicy {
            attributes: ps.attributes.clone(),
            default_visibility: Visibility::parse("default_visibility", &ps.default_visibility)
                .map_err(|e| StartError::Config(e.message))?,
            deletion_grace: Duration::days(i64::from(ps.deletion_grace_days)),
        },
        index,
        access: AccessHandle::new(access.clone()),
        avatars: crate::avatars::AvatarStore::from_settings(&settings.avatars, &settings.data_dir)?,
        pipeline: crate::avatars::AvatarPipeline::from_settings(&settings.avatars),
        public_url: accounts.public_url.clone(),
        code_key: derive_key(&master, "phone-code"),
        sms_budget: crate::notify::sms::SmsBudget::from_settings(&settings.sms),
        metrics: metrics.clone(),
    });
    let notify_deps = Arc::new(NotifyDeps {
        store: store.clone(),
        clock: clock.clone(),
        outbox,
        access: AccessHandle::new(access.clone()),
        templates: templates.clone(),
        categories: crate::notify::policy::Categories::from_settings(&settings.notify),
        live,
        vapid_public: vapid.public_key.clone(),
        allow_loopback_push: settings.notify.allow_loopback_push,
        metrics,
    });
    let filled = index.backfill(&store).await?;
    if filled > 0 {
        tracing::info!(accounts = filled, "search index filled from the accounts");
    }
    let d = profiles.clone();
    let every = opts
        .erase_every
        .unwrap_or(std::time::Duration::from_secs(60));
    Supervisor::start(move |_| Eraser::new(d.clone(), every));
    actix_rt::spawn(crate::notify::dispatch::run_schedule(
        notify_deps.clone(),
        std::time::Duration::from_millis(250),
    ));
    let issuer = url::Url::parse(&opts.public_url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_else(|| "Keyward".to_owned());
    let webauthn = settings
        .mfa
        .relying_party(&opts.public_url)
        .map_err(|e| e.to_string())
        .and_then(|rp| crate::mfa::passkeys::relying_party(&rp, &issuer));
    match &webauthn {
        Ok(_) => {}
        Err(why) => tracing::warn!("passkeys are unavailable: {why}"),
    }
    let mfa = Arc::new(crate::mfa::MfaDeps {
        store: store.clone(),
        clock: clock.clone(),
        outbox: accounts.outbox.clone(),
        sessions: SessionsHandle::new(sessions.clone()),
        access: AccessHandle::new(access.clone()),
        secret_key: derive_key(&master, "mfa-secrets"),
        issuer,
        throttle: accounts.throttle.clone(),
        sms_budget: crate::notify::sms::SmsBudget::from_settings(&settings.sms),
        webauthn,
        metrics: accounts.metrics.clone(),
    });
    let (prune_store, prune_clock) = (store.clone(), clock.clone());
    actix_rt::spawn(async move {
        // Expired login challenges and sent codes are refused anyway; this keeps the tables
        // small.
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(60)).await;
            if let Err(e) = prune_store.mfa().prune_expired(prune_clock()).await {
                tracing::warn!(error = %crate::error::chain(&e), "pruning expired mfa challenges failed; retrying");
            }
        }
    });
    let federation = Arc::new(crate::federation::FederationDeps {
        store: store.clone(),
        clock: clock.clone(),
        outbox: accounts.outbox.clone(),
        sessions: SessionsHandle::new(sessions.clone()),
        hasher: accounts.hasher.clone(),
        secret_key: derive_key(&master, "oauth-flows"),
        providers: crate::federation::providers(settings)?,
        allowlist: settings
            .oauth
            .redirect_uris()
            .map_err(|e| StartError::Config(e.to_string()))?,
        public_url: opts.public_url.trim_end_matches('/').to_owned(),
        http: crate::federation::http_client()?,
        default_roles: settings.access.default_role_list(),
        index: accounts.index,
        profiles: profiles.clone(),
        throttle: accounts.throttle.clone(),
        metrics: accounts.metrics.clone(),
    });
    let (prune_store, prune_clock) = (store.clone(), clock.clone());
    actix_rt::spawn(async move {
        // Expired flows and codes are refused anyway; this keeps the tables small.
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(60)).await;
            if let Err(e) = prune_store.federation().prune_expired(prune_clock()).await {
                tracing::warn!(error = %crate::error::chain(&e), "pruning expired social login flows failed; retrying");
            }
        }
    });
    crate::retention::start(&settings.retention, &store, &clock, &accounts.metrics);
    let local = LocalContexts {
        access,
        accounts,
        sessions,
        profiles,
        notify: notify_deps,
        mfa,
        federation,
    };
    let ContextAddrs {
        access,
        accounts,
        sessions,
        profiles,
        notifications,
        mfa,
        federation,
    } = local.start();
    if let Some(url) = intake_url {
        actix_rt::spawn(crate::notify::intake::run(
            url,
            notifications.clone().recipient(),
            store.clone(),
        ));
    }
    Ok(Contexts {
        access,
        accounts,
        sessions,
        profiles,
        notifications,
        mfa,
        federation,
        local,
        notify,
        amqp,
        relay,
        store,
        mail_dir,
        mailer: node_mailer,
    })
}
