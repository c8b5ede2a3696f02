//! The `keyward` command: CLI parsing and process wiring only.

mod logs;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use keyward::{Node, StartOptions};
use keyward_config::Settings;

/// glibc's malloc kept freed memory in its per-thread arenas, and a long-running node grew
/// by it (docs/PERFORMANCE.md, "Soak"); mimalloc returns freed pages to the OS. Built
/// without transparent huge pages (Cargo.toml), so it returns them page by page.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Keyward: accounts, sessions and tokens for microservice products.
///
/// Configuration comes from defaults, then keyward.toml (KEYWARD_CONFIG or --config), then
/// KEYWARD_* environment variables. With no services configured it runs embedded: SQLite in
/// ./data, mail written as .eml files to ./data/mail, an in-process event bus.
#[derive(Parser)]
#[command(name = "keyward", version)]
struct Cli {
    /// Path to a keyward.toml (overrides KEYWARD_CONFIG).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node: public API on KEYWARD_BIND, /healthz /readyz on KEYWARD_MANAGEMENT_BIND.
    Serve,
    /// Run an email worker consuming keyward.notify.email (distributed mode).
    Worker,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Inspect configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Administrative operations on accounts.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Manage token signing keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Print the OpenAPI 3.1 description of the HTTP API (also served at /openapi.json).
    Openapi,
    /// Back up an embedded node's database and avatars into DIR, while it runs.
    ///
    /// Copies the SQLite database (a consistent copy even while the node writes), the data
    /// dir's avatars and a manifest with checksums into DIR, a new or empty directory. The
    /// master key is not copied: keep it elsewhere, never beside the backup. PostgreSQL: use
    /// pg_dump.
    Backup {
        /// Where the backup goes (created if missing; must be empty).
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
    /// Restore a backup made by `keyward backup` into a stopped node's data dir.
    ///
    /// Checks every file against the manifest (and the master key, when one is configured)
    /// before writing anything; refuses a data dir a node is serving from, and a non-empty
    /// one without --force. PostgreSQL: use pg_restore.
    Restore {
        /// The backup directory.
        #[arg(value_name = "DIR")]
        dir: PathBuf,
        /// Replace the database and avatars of a data dir that is not empty (never one a node
        /// is serving from).
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate and print the effective configuration (secrets redacted); non-zero on error.
    Check,
}

#[derive(Subcommand)]
// The subcommand names (create-user, block-user, …) are the documented CLI.
#[allow(clippy::enum_variant_names)]
enum AdminCommand {
    /// Create a verified user. The password is read from standard input.
    CreateUser {
        #[arg(long)]
        email: String,
        /// Read the password from standard input (required: passwords never go on the command line).
        #[arg(long, required = true)]
        password_stdin: bool,
        /// Grant a role (repeatable).
        #[arg(long = "role", value_name = "R")]
        roles: Vec<String>,
    },
    /// Block an account: its sessions end at once, and it cannot log in or refresh until
    /// unblocked. Running nodes publish user.blocked from the outbox.
    BlockUser {
        #[arg(long)]
        email: String,
        /// Why (kept in the audit log and the user.blocked event).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Unblock an account.
    UnblockUser {
        #[arg(long)]
        email: String,
    },
    /// Create a service client for one of the product's services. Prints `client_id: …` and
    /// `client_secret: …` once; only the secret's hash is kept.
    CreateClient {
        /// e.g. booking
        #[arg(long)]
        name: String,
        /// A scope (one of Keyward's permissions, e.g. access:check); repeatable.
        #[arg(long = "scope", value_name = "S", required = true)]
        scopes: Vec<String>,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// List signing keys (kid, created, retired).
    List,
    /// Generate a signing key: every running node publishes it at once and signs with it from
    /// KEYWARD_KEYS__PUBLISH_LEAD_SECS (600) on, when the active key retires; retired keys stay
    /// in JWKS until their last token expires.
    Rotate {
        /// Sign with the new key at once (a leaked key): verifiers that cached JWKS refuse its
        /// tokens until they fetch it again.
        #[arg(long)]
        now: bool,
    },
}

fn load_settings(cli: &Cli) -> anyhow::Result<Settings> {
    // Logging is set up from the settings, so the loader's warnings (an unknown variable or
    // key) go to stderr through a subscriber of their own; they would be lost otherwise.
    let early = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .finish();
    let settings = tracing::subscriber::with_default(early, || match &cli.config {
        Some(path) => {
            let env: Vec<(String, String)> = std::env::vars().collect();
            Settings::load_from(Some(path), &env)
        }
        None => Settings::load(),
    });
    settings.map_err(|e| anyhow::anyhow!("{e}"))
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let node = Node::start(&settings, StartOptions::default()).await?;
    let stop = shutdown_signal();
    // A closed stdout (e.g. a supervisor that stopped reading) must not stop the node.
    let mut out = std::io::stdout();
    let _ = writeln!(
        out,
        "keyward listening on http://{} (management http://{}, public URL {})",
        node.public_addr, node.management_addr, node.public_url
    );
    if let Some(dir) = &node.mail_dir {
        let _ = writeln!(out, "mail is written to {}", dir.display());
    }
    let _ = out.flush();
    stop.await;
    tracing::info!("shutting down");
    node.stop().await;
    Ok(())
}

async fn worker(settings: Settings) -> anyhow::Result<()> {
    use keyward_actors::notify::worker::{DatabaseProbe, Worker, WorkerProbe};
    use secrecy::ExposeSecret;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    let Some(amqp_url) = settings
        .amqp_url
        .as_ref()
        .map(|u| u.expose_secret().to_owned())
    else {
        anyhow::bail!(
            "KEYWARD_AMQP_URL: keyward worker consumes the RabbitMQ email queue; set it (e.g. amqp://user:pass@host:5672/%2f). In embedded mode `keyward serve` sends mail itself"
        );
    };
    let store = keyward_actors::system::open_store(&settings).await?;
    let smtp = settings
        .smtp_url
        .as_ref()
        .map(|u| u.expose_secret().to_owned());
    if smtp.is_none() {
        tracing::warn!(
            "KEYWARD_SMTP_URL is not set: the worker writes mail to the data dir's mail drop"
        );
    }
    let mailer =
        keyward_actors::notify::Mailer::new(smtp.as_deref(), settings.data_dir.join("mail"))?;
    let from = keyward_actors::notify::parse_from(&settings.mail_from)?;
    let master = keyward_actors::keys::master_key(&settings)?;
    let vapid = Some(Arc::new(keyward_actors::notify::push::Vapid::derive(
        &master,
        format!("mailto:{}", from.email),
    )?));
    let registry = prometheus::Registry::new();
    let metrics = keyward_actors::metrics::Metrics::register(&registry)?;
    let consuming = Arc::new(AtomicBool::new(false));
    let probe = actix::Actor::start(WorkerProbe {
        consuming: consuming.clone(),
    });
    let listener = std::net::TcpListener::bind(&settings.management_bind).map_err(|e| {
        anyhow::anyhow!(
            "KEYWARD_MANAGEMENT_BIND: cannot listen on {}: {e}",
            settings.management_bind
        )
    })?;
    let management_addr = listener.local_addr()?;
    let management = keyward_gateway::management_server(
        listener,
        // A worker's work is consuming: without the broker it has none to do, and without
        // its database it holds its jobs until the database answers.
        vec![
            keyward_gateway::Probe::required("rabbitmq", probe.recipient()),
            keyward_gateway::Probe::required(
                "database",
                actix::Actor::start(DatabaseProbe {
                    store: store.clone(),
                })
                .recipient(),
            ),
        ],
        registry,
    )?;
    let handle = management.handle();
    actix_rt::spawn(management);
    let stop = shutdown_signal();
    let mut out = std::io::stdout();
    let _ = writeln!(
        out,
        "keyward worker consuming keyward.notify.email (management http://{management_addr})"
    );
    let _ = out.flush();
    let pool = mailer.clone();
    let worker = Worker {
        metrics,
        amqp_url,
        mailer,
        from,
        store,
        clock: keyward_actors::system_clock(),
        consuming,
        templates: Default::default(),
        vapid,
        sms: Arc::new(keyward_actors::notify::sms::SmsSender::new(
            settings.sms.provider()?,
            &settings.data_dir,
        )?),
        http: Default::default(),
    };
    tokio::select! {
        _ = worker.run() => {}
        _ = stop => tracing::info!("worker shutting down"),
    }
    // Jobs still in flight were dropped unacknowledged: the broker redelivers them.
    pool.shutdown().await;
    handle.stop(true).await;
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C. The handlers are installed when this is called, not when it
/// is first awaited: a signal that arrives between "listening" and the await must not kill
/// the process with the default action.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate()).ok();
        let int = signal(SignalKind::interrupt()).ok();
        async move {
            match (term, int) {
                (Some(mut term), Some(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Openapi = cli.command {
        println!("{}", keyward_gateway::openapi_json()?);
        return Ok(());
    }
    let settings = load_settings(&cli)?;
    logs::init(&settings);
    match cli.command {
        Command::Openapi => Ok(()),
        Command::Serve => serve(settings).await,
        Command::Worker => worker(settings).await,
        Command::Migrate => {
            let store = keyward_actors::system::open_store(&settings).await?;
            println!("database is up to date");
            if let Some(report) = keyward_actors::admin::email_conflict_report(&store).await? {
                print!("\n{report}");
            }
            Ok(())
        }
        Command::Config {
            command: ConfigCommand::Check,
        } => {
            keyward_actors::keys::master_key(&settings)?;
            print!("{}", settings.redacted_toml());
            // Roles made through the admin API live in the database, which this does not
            // read: a default role declared nowhere here is only a warning.
            let declared = keyward_actors::access::policy::declared(&settings.access);
            for r in settings.access.default_role_list() {
                if !declared.iter().any(|d| d.name == r) {
                    eprintln!(
                        "warning: KEYWARD_ACCESS__DEFAULT_ROLES: role {r:?} is declared neither by the preset nor in [[access.roles]]; serve and migrate refuse to start unless it was created through the admin API"
                    );
                }
            }
            Ok(())
        }
        Command::Admin {
            command:
                AdminCommand::CreateUser {
                    email,
                    password_stdin: _,
                    roles,
                },
        } => {
            let mut password = String::new();
            std::io::stdin().read_to_string(&mut password)?;
            let password = password.trim_end_matches(['\r', '\n']);
            let store = keyward_actors::system::open_store(&settings).await?;
            let id =
                keyward_actors::admin::create_user(&settings, &store, &email, password, &roles)
                    .await?;
            println!("{id}");
            Ok(())
        }
        Command::Admin {
            command: AdminCommand::BlockUser { email, reason },
        } => {
            let store = keyward_actors::system::open_store(&settings).await?;
            let changed =
                keyward_actors::admin::set_blocked(&settings, &store, &email, true, reason).await?;
            println!(
                "{}",
                if changed {
                    "blocked"
                } else {
                    "already blocked"
                }
            );
            Ok(())
        }
        Command::Admin {
            command: AdminCommand::UnblockUser { email },
        } => {
            let store = keyward_actors::system::open_store(&settings).await?;
            let changed =
                keyward_actors::admin::set_blocked(&settings, &store, &email, false, None).await?;
            println!("{}", if changed { "unblocked" } else { "not blocked" });
            Ok(())
        }
        Command::Admin {
            command: AdminCommand::CreateClient { name, scopes },
        } => {
            let store = keyward_actors::system::open_store(&settings).await?;
            let c = keyward_actors::admin::create_client(&store, &name, &scopes).await?;
            println!("client_id: {}", c.client.client_id);
            println!("client_secret: {}", c.client_secret);
            Ok(())
        }
        Command::Backup { dir } => {
            for line in keyward_actors::backup::backup(&settings, &dir).await? {
                println!("{line}");
            }
            Ok(())
        }
        Command::Restore { dir, force } => {
            for line in keyward_actors::backup::restore(&settings, &dir, force).await? {
                println!("{line}");
            }
            Ok(())
        }
        Command::Keys { command } => {
            let store = keyward_actors::system::open_store(&settings).await?;
            match command {
                KeysCommand::List => {
                    for k in keyward_actors::keys::list(&store).await? {
                        let now = chrono::Utc::now();
                        let state = match (k.signs_from, k.retired_at) {
                            (Some(f), _) if f > now => format!("signs from {}", f.to_rfc3339()),
                            (_, Some(t)) if t > now => format!("signs until {}", t.to_rfc3339()),
                            (_, Some(t)) => format!("retired {}", t.to_rfc3339()),
                            (_, None) => "active".to_owned(),
                        };
                        println!(
                            "{}\t{}\tcreated {}\t{}\t{}",
                            k.kid,
                            k.algorithm,
                            k.created_at.to_rfc3339(),
                            state,
                            k.held
                        );
                    }
                }
                KeysCommand::Rotate { now } => {
                    let master = keyward_actors::keys::master_key(&settings)?;
                    let lead = if now {
                        chrono::Duration::zero()
                    } else {
                        chrono::Duration::seconds(
                            i64::try_from(settings.keys.publish_lead_secs).unwrap_or(i64::MAX),
                        )
                    };
                    let backend = settings
                        .keys
                        .backend()
                        .map_err(|e| keyward_actors::StartError::Config(e.to_string()))?;
                    let keys = keyward_actors::keys::Keys::connect(&backend)?;
                    let r = keyward_actors::keys::rotate(
                        &store,
                        &master,
                        &keys,
                        chrono::Utc::now(),
                        lead,
                    )
                    .await?;
                    println!("{}\tsigns from {}", r.kid, r.signs_from.to_rfc3339());
                }
            }
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let system = actix_rt::System::new();
    let result = system.block_on(run(cli));
    // NOTE: actors' unfinished futures are dropped with the system, after `run` returned. One
    // of them may hold a pooled database connection (a relay drain on PostgreSQL), and sqlx
    // returns it by spawning a task: outside the runtime's context that panics at exit.
    let runtime = system.runtime().tokio_runtime().handle().clone();
    {
        let _inside = runtime.enter();
        drop(system);
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keyward: {e:#}");
            ExitCode::FAILURE
        }
    }
}
