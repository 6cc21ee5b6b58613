//! The application context every handler shares, and how it is assembled at
//! startup: store, signing key, admin key, limiter, event queue.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use annal_chain::{LedgerName, LogName, NoteSigner, Origin, TenantId, TrustedKey};
use annal_store::{IdentityEntry, OpenOptions, Store};

use crate::auth::{self, SecretDigest};
use crate::config::{Config, Environment};
use crate::events::Events;
use crate::keys;
use crate::ratelimit::{Limiter, Policy};
use crate::state::State;

/// Everything a request handler may touch.
#[derive(Debug)]
pub struct App {
    pub store: Arc<Store>,
    pub log: LogName,
    pub signer: Arc<NoteSigner>,
    pub admin: SecretDigest,
    pub limiter: Limiter,
    pub events: Events,
    pub state: State,
}

/// Why the daemon could not start. Each maps to an exit code in main.
#[derive(Debug)]
pub enum StartError {
    /// Configuration or secrets refused (exit 78).
    Config(String),
    /// The store could not be opened (exit 70 unless it is a config matter).
    Store(String),
}

impl core::fmt::Display for StartError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            StartError::Config(m) | StartError::Store(m) => f.write_str(m),
        }
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl App {
    pub fn origin(&self, tenant: &TenantId, ledger: &LedgerName) -> Origin {
        Origin::new(self.log.clone(), tenant.clone(), ledger.clone())
    }

    /// The keys an export header declares.
    pub fn vkeys(&self) -> Vec<String> {
        vec![self.signer.vkey()]
    }

    /// The keys `/v1/verify` trusts: this daemon's own signing key.
    pub fn trusted(&self) -> Vec<TrustedKey> {
        vec![self.signer.trusted_key()]
    }

    /// Opens everything, in the documented order: store, signing identity,
    /// admin key. Blocking; call before the runtime serves.
    pub fn start(
        config: &Config,
    ) -> Result<(App, tokio::sync::mpsc::Receiver<crate::events::Event>), StartError> {
        let data_dir = &config.storage.data_dir;
        std::fs::create_dir_all(data_dir)
            .map_err(|e| StartError::Store(format!("cannot create data dir {}: {e}", data_dir.display())))?;
        let log = LogName::new(&config.log_name).map_err(|e| StartError::Config(format!("log_name: {e}")))?;
        let dev = config.environment == Environment::Development;
        let signer = load_signer(config.secrets.signing_key_file.as_deref(), data_dir, dev, log.as_str())?;
        let admin = load_admin(config.secrets.admin_key_file.as_deref(), data_dir, dev)?;
        let store = Store::open(data_dir, OpenOptions::default())
            .map_err(|e| StartError::Store(format!("cannot open store in {}: {e:?}", data_dir.display())))?;
        register_identity(&store, &signer)?;
        let (events, rx) = Events::new();
        let policy = |burst: u32, window_s: u64| Policy {
            burst: std::num::NonZeroU32::new(burst).expect("validated non-zero"),
            window: Duration::from_secs(window_s),
        };
        let r = &config.rate_limit;
        let limiter =
            Limiter::new(policy(r.key_burst, r.key_window_s), policy(r.tenant_burst, r.tenant_window_s));
        let app = App {
            store: Arc::new(store),
            log,
            signer: Arc::new(signer),
            admin,
            limiter,
            events,
            state: State::new(crate::VERSION),
        };
        Ok((app, rx))
    }
}

/// The first start records the signing key as the identity log's genesis.
/// A later start with another key is refused until rotation lands properly.
fn register_identity(store: &Store, signer: &NoteSigner) -> Result<(), StartError> {
    let log =
        store.identity_log().map_err(|e| StartError::Store(format!("identity log unreadable: {e:?}")))?;
    match log.last() {
        None => {
            let entry = IdentityEntry {
                seq: 0,
                key_name: signer.name().to_owned(),
                public: signer.public(),
                timestamp_ms: now_ms(),
                statement: "genesis".to_owned(),
            };
            match store.append_identity(entry).wait() {
                Ok(Ok(_)) => {
                    log::info!("identity log: registered genesis key {}", signer.fingerprint());
                    Ok(())
                }
                other => Err(StartError::Store(format!("cannot record genesis identity: {other:?}"))),
            }
        }
        Some(current) if current.public == signer.public() => Ok(()),
        Some(current) => Err(StartError::Config(format!(
            "signing key {} is not the current identity {}; refusing to sign as an undelegated key",
            signer.fingerprint(),
            annal_chain::fingerprint(&current.public)
        ))),
    }
}

fn dev_secret_path(data_dir: &Path, name: &str) -> PathBuf {
    data_dir.join(name)
}

fn load_signer(
    file: Option<&Path>,
    data_dir: &Path,
    dev: bool,
    name: &str,
) -> Result<NoteSigner, StartError> {
    let err = |e: keys::KeyFileError| StartError::Config(format!("signing key: {e}"));
    match file {
        Some(path) => keys::read(path).map_err(err),
        None if dev => {
            let path = dev_secret_path(data_dir, "dev-signing.key");
            if path.exists() {
                keys::read(&path).map_err(err)
            } else {
                let signer = keys::generate(&path, name).map_err(err)?;
                log::warn!(
                    "development: generated signing key {} at {}",
                    signer.fingerprint(),
                    path.display()
                );
                Ok(signer)
            }
        }
        None => Err(StartError::Config("secrets.signing_key_file is required outside development".into())),
    }
}

fn load_admin(file: Option<&Path>, data_dir: &Path, dev: bool) -> Result<SecretDigest, StartError> {
    let read = |path: &Path| -> Result<SecretDigest, StartError> {
        let text = keys::read_secret_text(path).map_err(|e| StartError::Config(format!("admin key: {e}")))?;
        auth::admin_digest(&text).ok_or_else(|| {
            StartError::Config(format!(
                "admin key in {} is shorter than {} characters or has whitespace",
                path.display(),
                auth::ADMIN_KEY_CHARS_MIN
            ))
        })
    };
    match file {
        Some(path) => read(path),
        None if dev => {
            let path = dev_secret_path(data_dir, "dev-admin.key");
            if !path.exists() {
                let key = auth::generate_admin_key().map_err(|e| StartError::Config(e.to_string()))?;
                keys::write_secret_text(&path, &key)
                    .map_err(|e| StartError::Config(format!("admin key: {e}")))?;
                // The location, once; never the value.
                log::warn!(
                    "development: generated admin key at {} (use it as the Bearer token)",
                    path.display()
                );
            }
            read(&path)
        }
        None => Err(StartError::Config("secrets.admin_key_file is required outside development".into())),
    }
}
