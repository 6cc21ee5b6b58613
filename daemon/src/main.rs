//! annald: the annal ledger daemon. `annald serve` runs it; the other
//! subcommands are the operator's tools. Exit codes: 0 ok, 1 failed,
//! 2 usage, 66 no input, 78 configuration refused (sysexits).

#![forbid(unsafe_code)]

mod anchor;
mod api;
mod app;
mod auth;
mod config;
mod events;
mod indexer;
mod keys;
mod limits;
mod metrics;
mod ratelimit;
mod server;
mod state;
mod webhook;

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::config::{Config, Overrides};

pub(crate) const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("ANNAL_GIT_HASH"), ")");
const EX_NOINPUT: u8 = 66;
const EX_CANTCREAT: u8 = 73;
const EX_CONFIG: u8 = 78;
const EX_SOFTWARE: u8 = 70;

#[derive(Parser, Debug)]
#[command(name = "annald", version = VERSION, about = "annal: a tamper-evident ledger daemon")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the daemon.
    Serve {
        /// Config file (TOML). Without one, development defaults apply.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Listen address, e.g. 127.0.0.1:7878 (port 0 picks a free port).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Data directory.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Write a consistent snapshot of a stopped daemon's store into an empty
    /// directory (a running daemon: POST /admin/v1/backups).
    Backup {
        #[arg(long)]
        to: PathBuf,
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Copy a backup into an empty data directory (never over live data).
    Restore {
        #[arg(long)]
        from: PathBuf,
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Re-verify every record hash, chain link, Merkle root at every
    /// checkpoint and every signature; exit 1 at the first failure.
    Check {
        #[arg(long)]
        data_dir: PathBuf,
        /// Trust this key for checkpoint signatures (default: the identity log's keys).
        #[arg(long = "trust-key", value_name = "KEY")]
        trust_key: Vec<String>,
    },
    /// Export one ledger (JSON Lines, the annal-verify format) from a stopped
    /// daemon's store; a running daemon serves the same at .../export.
    Export {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        ledger: String,
        /// Output file (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Schema migrations.
    Migrate {
        #[command(subcommand)]
        command: MigrateCommand,
    },
    /// Signing-key tools.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// The derived sled index.
    Index {
        #[command(subcommand)]
        command: IndexCommand,
    },
}

#[derive(Subcommand, Debug)]
enum IndexCommand {
    /// Delete the sled index and rebuild it from the store (the daemon must
    /// be stopped). Only needed when the index directory is damaged: a
    /// missing or stale index catches up by itself while annald runs.
    Rebuild {
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum MigrateCommand {
    /// Show the schema head, applied steps and pending steps.
    Status {
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Apply pending steps in one transaction (the daemon must be stopped).
    Up {
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum KeysCommand {
    /// Generate a signing key into a new file (mode 0600); prints only the public half.
    Generate {
        #[arg(long)]
        out: PathBuf,
        /// Key name on signed notes, e.g. the log's host name.
        #[arg(long, default_value = "annal")]
        name: String,
    },
    /// Print a key file's public key, fingerprint, key id and vkey.
    Show { file: PathBuf },
    /// Generate a webhook key into a new file (mode 0600): the root every
    /// webhook endpoint secret is derived from. Prints only its fingerprint.
    GenerateWebhookKey {
        #[arg(long)]
        out: PathBuf,
    },
    /// Record a rotation from the configured key to a new one in the
    /// identity log, signed by both. Run with the daemon stopped, then give
    /// the daemon the new key (secrets.signing_key_file, or the
    /// annal-signing-key credential's file) and start it.
    Rotate {
        /// The new signing key (from `keys generate`).
        #[arg(long)]
        new: PathBuf,
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum ConfigCommand {
    /// Validate a configuration (file + ANNAL_* environment) without starting.
    Check {
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

/// mimalloc instead of glibc malloc: under append load glibc's arenas and
/// cross-thread frees (HTTP workers allocate, the committer frees) took about
/// a fifth of the daemon's CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // No transparent huge pages for this process. mimalloc asks for them on
    // its arenas and returns idle memory to the kernel, so under load freed
    // buffers (redb's pages, sled's I/O buffers) came back as fresh 2 MiB
    // pages that the kernel zeroed whole on first touch: ~6% of the daemon's
    // CPU in `clear_page_erms`. With 4 KiB pages annald used about 8% less
    // CPU per append (docs/PERFORMANCE.md). The flag is process-wide.
    let thp = nix::sys::prctl::set_thp_disable(true);
    let cli = Cli::parse();
    let env = |name: &str| std::env::var(name).ok();
    match cli.command {
        Command::Serve { config, listen, data_dir } => {
            let overrides = Overrides { listen, data_dir };
            let config = match Config::load(config.as_deref(), &env, &overrides) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("annald: configuration refused: {e}");
                    return ExitCode::from(EX_CONFIG);
                }
            };
            init_logging();
            if let Err(e) = thp {
                log::warn!("could not disable transparent huge pages (costs CPU, nothing else): {e}");
            }
            match serve(config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(ServeError::Start(app::StartError::Config(e))) => {
                    log::error!("annald: refusing to start: {e}");
                    ExitCode::from(EX_CONFIG)
                }
                Err(e) => {
                    log::error!("annald: {e}");
                    ExitCode::from(EX_SOFTWARE)
                }
            }
        }
        Command::Migrate { command } => migrate(command, &env),
        Command::Export { tenant, ledger, out, config, data_dir } => {
            let config = match Config::load(config.as_deref(), &env, &Overrides { listen: None, data_dir }) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("annald: configuration refused: {e}");
                    return ExitCode::from(EX_CONFIG);
                }
            };
            match export_offline(&config, &tenant, &ledger, out.as_deref()) {
                Ok(stats) => {
                    eprintln!("exported {} records, {} checkpoints", stats.records, stats.checkpoints);
                    ExitCode::SUCCESS
                }
                Err((code, e)) => {
                    eprintln!("annald: {e}");
                    ExitCode::from(code)
                }
            }
        }
        Command::Backup { to, config, data_dir } => {
            let config = match Config::load(config.as_deref(), &env, &Overrides { listen: None, data_dir }) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("annald: configuration refused: {e}");
                    return ExitCode::from(EX_CONFIG);
                }
            };
            let options = annal_store::OpenOptions { apply_pending_migrations: false, ..Default::default() };
            let result = annal_store::Store::open(&config.storage.data_dir, options)
                .map_err(|e| {
                    format!("cannot open the store (is annald running? use POST /admin/v1/backups): {e}")
                })
                .and_then(|store| {
                    let stats = store.backup(&to).map_err(|e| format!("backup failed: {e:?}"))?;
                    store.close().map_err(|e| format!("store did not close cleanly: {e:?}"))?;
                    Ok(stats)
                });
            match result {
                Ok(stats) => {
                    println!("backup written to {}: {} records", to.display(), stats.records_total);
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("annald: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Restore { from, data_dir } => match annal_store::restore(&from, &data_dir) {
            Ok(()) => {
                println!(
                    "restored {} into {}; run `annald check --data-dir {}` before serving it",
                    from.display(),
                    data_dir.display(),
                    data_dir.display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("annald: restore refused: {e:?}");
                ExitCode::from(1)
            }
        },
        Command::Check { data_dir, trust_key } => {
            let mut trusted = Vec::new();
            for k in &trust_key {
                match annal_chain::TrustedKey::parse(k) {
                    Some(key) => trusted.push(key),
                    None => {
                        eprintln!("annald: --trust-key {k:?} is not a key");
                        return ExitCode::from(2);
                    }
                }
            }
            if !data_dir.join(annal_store::DB_FILE_NAME).exists() {
                eprintln!("annald: no database in {}", data_dir.display());
                return ExitCode::from(EX_NOINPUT);
            }
            match annal_store::check(&data_dir, &trusted) {
                Ok(report) => match report.failure {
                    None => {
                        println!(
                            "check ok: {} ledgers, {} records, {} checkpoints",
                            report.ledgers, report.records, report.checkpoints
                        );
                        ExitCode::SUCCESS
                    }
                    Some(f) => {
                        println!(
                            "CHECK FAILED at {}/{} seq {}: {}",
                            f.tenant,
                            f.ledger,
                            f.seq.map_or("-".to_owned(), |s| s.to_string()),
                            f.what
                        );
                        ExitCode::from(1)
                    }
                },
                Err(e) => {
                    println!("CHECK FAILED: {e:?}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Keys { command: KeysCommand::Generate { out, name } } => match keys::generate(&out, &name) {
            Ok(signer) => {
                print!("wrote {}\n{}", out.display(), keys::describe(&signer));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("annald: {e}");
                ExitCode::from(if matches!(e, keys::KeyFileError::BadName { .. }) { 2 } else { EX_CANTCREAT })
            }
        },
        Command::Keys { command: KeysCommand::GenerateWebhookKey { out } } => {
            match webhook::sign::WebhookKey::generate(&out) {
                Ok(key) => {
                    println!("wrote {}\nfingerprint {}", out.display(), key.fingerprint());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("annald: {e}");
                    ExitCode::from(EX_CANTCREAT)
                }
            }
        }
        Command::Keys { command: KeysCommand::Show { file } } => match keys::read(&file) {
            Ok(signer) => {
                print!("{}", keys::describe(&signer));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("annald: {e}");
                ExitCode::from(if matches!(e, keys::KeyFileError::Io { .. }) {
                    EX_NOINPUT
                } else {
                    EX_CONFIG
                })
            }
        },
        Command::Keys { command: KeysCommand::Rotate { new, config, data_dir } } => {
            let config = match Config::load(config.as_deref(), &env, &Overrides { listen: None, data_dir }) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("annald: configuration refused: {e}");
                    return ExitCode::from(EX_CONFIG);
                }
            };
            match app::rotate(&config, &new) {
                Ok((seq, old, new_signer)) => {
                    println!(
                        "rotated: identity log entry {seq}, from {} to {}",
                        old.fingerprint(),
                        new_signer.fingerprint()
                    );
                    println!(
                        "next: give annald {} as its signing key (secrets.signing_key_file, or the file behind the annal-signing-key credential) and start it",
                        new.display()
                    );
                    ExitCode::SUCCESS
                }
                Err(app::RotateError::Config(e)) => {
                    eprintln!("annald: {e}");
                    ExitCode::from(EX_CONFIG)
                }
                Err(app::RotateError::Refused(e)) => {
                    eprintln!("annald: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Index { command: IndexCommand::Rebuild { config, data_dir } } => {
            let config = match Config::load(config.as_deref(), &env, &Overrides { listen: None, data_dir }) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("annald: configuration refused: {e}");
                    return ExitCode::from(EX_CONFIG);
                }
            };
            match rebuild_index(&config.storage.data_dir) {
                Ok(n) => {
                    println!("index rebuilt: {n} records indexed");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("annald: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Config { command: ConfigCommand::Check { config } } => {
            match Config::load(config.as_deref(), &env, &Overrides::default()) {
                Ok(c) => {
                    println!("config ok: environment {}, listen {}", c.environment.as_str(), c.server.listen);
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("annald: configuration refused: {e}");
                    ExitCode::from(EX_CONFIG)
                }
            }
        }
    }
}

fn migrate(command: MigrateCommand, env: &dyn Fn(&str) -> Option<String>) -> ExitCode {
    let (config, data_dir, up) = match command {
        MigrateCommand::Status { config, data_dir } => (config, data_dir, false),
        MigrateCommand::Up { config, data_dir } => (config, data_dir, true),
    };
    let config = match Config::load(config.as_deref(), env, &Overrides { listen: None, data_dir }) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("annald: configuration refused: {e}");
            return ExitCode::from(EX_CONFIG);
        }
    };
    let dir = &config.storage.data_dir;
    if !up && !dir.join(annal_store::DB_FILE_NAME).exists() {
        eprintln!("annald: no database in {}", dir.display());
        return ExitCode::from(EX_NOINPUT);
    }
    let result = if up { annal_store::migrate_up(dir) } else { annal_store::migration_status(dir) };
    match result {
        Ok(status) => {
            let applied: Vec<String> = annal_store::MIGRATION_STEPS
                .iter()
                .filter(|m| m.id <= status.head)
                .map(|m| format!("{} {}", m.id, m.name))
                .collect();
            println!("head: {}", status.head);
            println!("code_head: {}", status.code_head);
            println!("applied: [{}]", applied.join(", "));
            println!("pending: {:?}", status.pending);
            if let Some(expected) = config.migrations.expected_head {
                let ok = expected == status.head;
                println!("expected_head: {expected} ({})", if ok { "ok" } else { "MISMATCH" });
                if !ok {
                    return ExitCode::from(1);
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("annald: {e}");
            ExitCode::from(1)
        }
    }
}

/// Streams one ledger's export from a stopped daemon's store.
fn export_offline(
    config: &Config,
    tenant: &str,
    ledger: &str,
    out: Option<&std::path::Path>,
) -> Result<annal_store::ExportStats, (u8, String)> {
    let tenant = annal_chain::TenantId::new(tenant).map_err(|e| (2, format!("--tenant: {e}")))?;
    let ledger = annal_chain::LedgerName::new(ledger).map_err(|e| (2, format!("--ledger: {e}")))?;
    let log =
        annal_chain::LogName::new(&config.log_name).map_err(|e| (EX_CONFIG, format!("log_name: {e}")))?;
    let dir = &config.storage.data_dir;
    if !dir.join(annal_store::DB_FILE_NAME).exists() {
        return Err((EX_NOINPUT, format!("no database in {}", dir.display())));
    }
    let options = annal_store::OpenOptions { apply_pending_migrations: false, ..Default::default() };
    let store = annal_store::Store::open(dir, options)
        .map_err(|e| (1, format!("cannot open the store (is annald running? use the HTTP export): {e}")))?;
    let vkeys: Vec<String> = app::identity_keys(&store)
        .map_err(|e| (1, format!("identity log: {e:?}")))?
        .iter()
        .filter_map(annal_chain::TrustedKey::vkey)
        .collect();
    let origin = annal_chain::Origin::new(log, tenant, ledger);
    let mut sink: Box<dyn std::io::Write> = match out {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create_new(path)
                .map_err(|e| (EX_CANTCREAT, format!("{}: {e}", path.display())))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let stats = store.export(&origin, &vkeys, &mut sink).map_err(|e| (1, format!("export failed: {e:?}")))?;
    sink.flush().map_err(|e| (1, format!("cannot write the export: {e}")))?;
    Ok(stats)
}

/// `annald index rebuild`: a fresh directory, so even a damaged one is replaced.
fn rebuild_index(data_dir: &std::path::Path) -> Result<u64, String> {
    if !data_dir.join(annal_store::DB_FILE_NAME).exists() {
        return Err(format!("no database in {}", data_dir.display()));
    }
    let options = annal_store::OpenOptions { apply_pending_migrations: false, ..Default::default() };
    let store = annal_store::Store::open(data_dir, options)
        .map_err(|e| format!("cannot open the store (is annald running?): {e}"))?;
    let dir = indexer::index_dir(data_dir);
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot remove {}: {e}", dir.display())),
    }
    let index = annal_store::Index::open_with_events(&dir, indexer::event_ledger())
        .map_err(|e| format!("cannot create the index in {}: {e}", dir.display()))?;
    let n = index.rebuild(&store).map_err(|e| format!("rebuild failed: {e}"))?;
    drop(index);
    store.close().map_err(|e| format!("store did not close cleanly: {e:?}"))?;
    Ok(n)
}

fn init_logging() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp_millis()
        .init();
}

fn serve(config: Config) -> Result<(), ServeError> {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(ServeError::Runtime)?;
    let served = runtime.block_on(async move {
        // Startup order: config (done) -> logging (done) -> store, migrations,
        // signing identity -> workers -> bind -> ready.
        let (app, events_rx) = app::App::start(&config).map_err(ServeError::Start)?;
        let app = Arc::new(app);
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        // The event writer stops last: the other workers record events
        // (a webhook given up while draining) until they have stopped.
        let (events_stop_tx, events_stop_rx) = tokio::sync::watch::channel(false);
        let events_worker = tokio::spawn(events::run(
            app.store.clone(),
            events_rx,
            app.events.recorded_counter(),
            app.events.summarizer(),
            events_stop_rx,
        ));
        let anchor_app = app.clone();
        let anchor_stop = stop_rx.clone();
        let interval = Duration::from_millis(config.anchor.interval_ms);
        let anchor_worker = config.worker.enabled.then(|| {
            anchor_app.state.set_anchoring(true);
            tokio::spawn(async move {
                anchor::run(
                    anchor_app.store.clone(),
                    anchor_app.signer.clone(),
                    anchor_app.log.clone(),
                    interval,
                    anchor_app.signing_ok,
                    anchor_stop,
                )
                .await;
                anchor_app.state.set_anchoring(false);
            })
        });
        let webhook_worker = match (&app.webhooks, config.worker.enabled) {
            (Some(hooks), true) => {
                let (app, hooks, stop) = (app.clone(), hooks.clone(), stop_rx.clone());
                app.state.set_delivering(true);
                Some(tokio::spawn(async move {
                    webhook::worker::run(app.clone(), hooks, stop).await;
                    app.state.set_delivering(false);
                }))
            }
            _ => None,
        };
        // The indexer is a worker like anchoring; without an index it has
        // nothing to do (see indexer.rs).
        let index_worker = match (&app.index, config.worker.enabled) {
            (Some(index), true) => Some(tokio::spawn(indexer::run(
                app.store.clone(),
                index.clone(),
                Duration::from_millis(limits::INDEX_INTERVAL_MS),
                stop_rx.clone(),
            ))),
            _ => None,
        };
        let listener = tokio::net::TcpListener::bind(config.server.listen)
            .await
            .map_err(|e| ServeError::Bind(config.server.listen, e))?;
        let local = listener.local_addr().map_err(|e| ServeError::Bind(config.server.listen, e))?;
        log::info!(
            "annald starting: environment={} version={} migration_head={} expected_head={} log_name={} data_dir={} signer={} listen={} workers={} webhook_key={}",
            config.environment.as_str(),
            VERSION,
            app.migration.head,
            config.migrations.expected_head.map_or("unset".to_owned(), |h| h.to_string()),
            app.log,
            config.storage.data_dir.display(),
            app.signer.fingerprint(),
            local,
            if config.worker.enabled { "enabled" } else { "disabled" },
            app.webhooks.as_ref().map_or("off".to_owned(), |w| w.key.fingerprint()),
        );
        let limits = server::ServerLimits {
            header_read_timeout: Duration::from_millis(config.server.header_read_timeout_ms),
            connections_max: config.server.connections_max,
            grace: Duration::from_millis(config.shutdown.grace_ms),
        };
        let shutdown = shutdown_signal(app.clone());
        log::info!("listening on {local}");
        // Only now is the store open and checked and the socket bound.
        if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
            log::warn!("sd_notify READY failed: {e}");
        }
        let request_timeout = Duration::from_millis(config.server.request_timeout_ms);
        let stopped = server::run(listener, api::build(app.clone(), request_timeout), limits, shutdown).await;
        match stopped {
            server::Stopped::Drained => log::info!("connections drained"),
            server::Stopped::DeadlinePassed { connections } => {
                log::warn!("grace period over with {connections} connection(s) open; cut them")
            }
        }
        // Workers finish their current item, then stop.
        let _ = stop_tx.send(true);
        if let Some(worker) = anchor_worker {
            let _ = worker.await;
        }
        if let Some(worker) = index_worker {
            let _ = worker.await;
        }
        if let Some(worker) = webhook_worker {
            let _ = worker.await;
        }
        let _ = events_stop_tx.send(true);
        let _ = events_worker.await;
        match Arc::try_unwrap(app) {
            Ok(app) => match Arc::try_unwrap(app.store) {
                Ok(store) => store.close().map_err(|e| ServeError::Close(format!("{e:?}")))?,
                Err(_) => log::warn!("store still shared at exit; dropping it closes it"),
            },
            Err(_) => log::warn!("requests still hold the app at exit; the store closes on drop"),
        }
        log::info!("stopped cleanly");
        Ok(())
    });
    // The store is closed by now; a blocking thread still waiting (a slow
    // DNS lookup of a webhook host) must not hold the exit.
    runtime.shutdown_timeout(Duration::from_secs(1));
    served
}

#[derive(Debug)]
enum ServeError {
    Runtime(std::io::Error),
    Start(app::StartError),
    Bind(SocketAddr, std::io::Error),
    Close(String),
}

impl core::fmt::Display for ServeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ServeError::Runtime(e) => write!(f, "cannot start the runtime: {e}"),
            ServeError::Start(e) => write!(f, "{e}"),
            ServeError::Bind(addr, e) => write!(f, "cannot listen on {addr}: {e}"),
            ServeError::Close(e) => write!(f, "store did not close cleanly: {e}"),
        }
    }
}

/// Installs the signal handlers now (not when first polled: a SIGHUP that
/// arrives between "listening" and the first poll would otherwise kill
/// the process) and returns a future that resolves on the first SIGTERM or
/// SIGINT, after turning readiness red. A second signal exits at once
/// (status 1). SIGHUP is logged and ignored.
fn shutdown_signal(app: Arc<app::App>) -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    // SIGHUP would otherwise kill the process abruptly; annald has no reload.
    let mut hup = signal(SignalKind::hangup()).expect("SIGHUP handler");
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            log::warn!("SIGHUP ignored: annald does not reload; restart it to apply a new configuration");
        }
    });
    async move { signalled(app, term, int).await }
}

async fn signalled(
    app: Arc<app::App>,
    mut term: tokio::signal::unix::Signal,
    mut int: tokio::signal::unix::Signal,
) {
    tokio::select! {
        _ = term.recv() => log::info!("SIGTERM: draining"),
        _ = int.recv() => log::info!("SIGINT: draining"),
    }
    app.state.start_draining();
    if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Stopping]) {
        log::warn!("sd_notify STOPPING failed: {e}");
    }
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
        log::warn!("second signal: exiting now");
        std::process::exit(1);
    });
}
