//! annald: the annal ledger daemon. `annald serve` runs it; the other
//! subcommands are the operator's tools. Exit codes: 0 ok, 1 failed,
//! 2 usage, 66 no input, 78 configuration refused (sysexits).

#![forbid(unsafe_code)]

mod api;
#[allow(dead_code)] // wired into the admin and tenant API next
mod auth;
mod config;
mod keys;
mod limits;
#[allow(dead_code)] // wired into the tenant API next
mod ratelimit;
mod server;
mod state;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::config::{Config, Overrides};

const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("ANNAL_GIT_HASH"), ")");
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
}

#[derive(Subcommand, Debug)]
enum ConfigCommand {
    /// Validate a configuration (file + ANNAL_* environment) without starting.
    Check {
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
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
            match serve(config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    log::error!("annald: {e:#}");
                    ExitCode::from(EX_SOFTWARE)
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

fn init_logging() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp_millis()
        .init();
}

fn serve(config: Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.server.listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.server.listen))?;
        let local = listener.local_addr()?;
        let state = Arc::new(state::State::new(VERSION));
        log::info!(
            "annald starting: environment={} version={} data_dir={} listen={}",
            config.environment.as_str(),
            VERSION,
            config.storage.data_dir.display(),
            local
        );
        let limits = server::ServerLimits {
            header_read_timeout: Duration::from_millis(config.server.header_read_timeout_ms),
            request_timeout: Duration::from_millis(config.server.request_timeout_ms),
            connections_max: config.server.connections_max,
            grace: Duration::from_millis(config.shutdown.grace_ms),
        };
        let shutdown = shutdown_signal(state.clone());
        log::info!("listening on {local}");
        let stopped = server::run(listener, api::app(state), limits, shutdown).await;
        match stopped {
            server::Stopped::Drained => log::info!("drained; exiting"),
            server::Stopped::DeadlinePassed { connections } => {
                log::warn!("grace period over with {connections} connection(s) open; exiting")
            }
        }
        Ok(())
    })
}

/// Resolves on the first SIGTERM or SIGINT, after turning readiness red. A
/// second signal exits at once.
async fn shutdown_signal(state: Arc<state::State>) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => log::info!("SIGTERM: draining"),
        _ = int.recv() => log::info!("SIGINT: draining"),
    }
    state.start_draining();
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
        log::warn!("second signal: exiting now");
        std::process::exit(1);
    });
}
