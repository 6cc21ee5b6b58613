//! The application context every handler shares, and how it is assembled at
//! startup: store, signing key, admin key, limiter, event queue.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use annal_chain::{LedgerName, LogName, NoteSigner, Origin, TenantId, TrustedKey};
use annal_store::{IdentityEntry, MigrationStatus, OpenError, OpenOptions, Store};

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
    /// The derived sled index; `None` when it could not be opened (the
    /// daemon serves without it: see `indexer`).
    pub index: Option<Arc<annal_store::Index>>,
    pub log: LogName,
    pub signer: Arc<NoteSigner>,
    pub admin: SecretDigest,
    pub limiter: Limiter,
    pub events: Events,
    pub state: State,
    /// The schema head found at start, and the one the config expects.
    pub migration: MigrationStatus,
    pub expected_head: Option<u32>,
    pub worker_enabled: bool,
    pub anchor_freshness_max_ms: u64,
    /// Whether the signing key is the identity log's current key. When not,
    /// nothing is signed and readiness stays red.
    pub signing_ok: bool,
    pub backup_dir: Option<PathBuf>,
    /// Good tenant authentications, voided by every admin write to tenants or keys.
    pub auth_cache: crate::api::auth_cache::AuthCache,
    /// Held while an online backup is written: one at a time.
    pub backup_running: Arc<tokio::sync::Mutex<()>>,
    /// One permit per export streaming (`EXPORTS_CONCURRENT_MAX`).
    pub exports: Arc<tokio::sync::Semaphore>,
    /// How long an export waits for its client to take the next chunk
    /// before it is cut: the request timeout.
    pub export_stall: std::time::Duration,
    /// Webhook delivery; `None` when no webhook key is configured.
    pub webhooks: Option<Arc<crate::webhook::Webhooks>>,
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

    /// The keys an export header declares: every key of the identity log, so
    /// checkpoints signed before a rotation still verify. An unreadable log
    /// fails the export rather than declaring no keys.
    pub fn vkeys(&self) -> Result<Vec<String>, annal_store::ReadError> {
        Ok(identity_keys(&self.store)?.iter().filter_map(TrustedKey::vkey).collect())
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
        let webhooks = load_webhooks(config, dev)?;
        let options = OpenOptions {
            expected_head: config.migrations.expected_head,
            apply_pending_migrations: config.apply_migrations_on_start(),
            ledgers_per_tenant_max: config.storage.ledgers_per_tenant_max,
            ..OpenOptions::default()
        };
        let store = Store::open(data_dir, options).map_err(|e| match e {
            // Schema trouble is the operator's to resolve: refuse like bad config.
            OpenError::HeadMismatch { .. }
            | OpenError::MigrationsPending { .. }
            | OpenError::MigrationChecksum { .. }
            | OpenError::UnknownMigration { .. }
            | OpenError::RolledBack { .. } => {
                StartError::Config(format!("store {}: {e}", data_dir.display()))
            }
            other => StartError::Store(format!("cannot open store in {}: {other}", data_dir.display())),
        })?;
        let migration = store
            .migration_status()
            .map_err(|e| StartError::Store(format!("cannot read the migration head: {e}")))?;
        let signing_ok = register_identity(&store, &signer)?;
        let index = crate::indexer::open(data_dir);
        let (events, rx) = Events::new(&config.events);
        let policy = |burst: u32, window_s: u64| Policy {
            burst: std::num::NonZeroU32::new(burst).expect("validated non-zero"),
            window: Duration::from_secs(window_s),
        };
        let r = &config.rate_limit;
        let limiter =
            Limiter::new(policy(r.key_burst, r.key_window_s), policy(r.tenant_burst, r.tenant_window_s));
        let app = App {
            store: Arc::new(store),
            index,
            log,
            signer: Arc::new(signer),
            admin,
            limiter,
            events,
            state: State::new(crate::VERSION),
            migration,
            expected_head: config.migrations.expected_head,
            worker_enabled: config.worker.enabled,
            anchor_freshness_max_ms: config.anchor.freshness_max_ms,
            signing_ok,
            backup_dir: config.storage.backup_dir.clone(),
            auth_cache: Default::default(),
            backup_running: Arc::default(),
            exports: Arc::new(tokio::sync::Semaphore::new(crate::limits::EXPORTS_CONCURRENT_MAX)),
            export_stall: std::time::Duration::from_millis(config.server.request_timeout_ms),
            webhooks,
        };
        Ok((app, rx))
    }
}

/// The first start records the signing key as the identity log's genesis.
/// Later starts must sign with the log's current key; with any other key the
/// daemon starts but signs nothing and never becomes ready (`Ok(false)`), and
/// the log names both fingerprints.
fn register_identity(store: &Store, signer: &NoteSigner) -> Result<bool, StartError> {
    // The current identity is the last key the log proves, never merely the
    // last entry stored: an entry without a valid rotation (signed by the
    // old and the new key) delegates nothing.
    let proven = match store.proven_identity_keys() {
        Ok(Ok(keys)) => keys,
        Ok(Err(broken)) => {
            log::error!(
                "identity log does not verify at entry {}: {}; nothing will be signed and readiness stays red",
                broken.seq.map_or("?".to_owned(), |s| s.to_string()),
                broken.what
            );
            return Ok(false);
        }
        Err(e) => return Err(StartError::Store(format!("identity log unreadable: {e:?}"))),
    };
    match proven.last() {
        None => {
            let entry = IdentityEntry {
                seq: 0,
                key_name: signer.name().to_owned(),
                public: signer.public(),
                timestamp_ms: now_ms(),
                statement: annal_chain::GENESIS_STATEMENT.to_owned(),
            };
            match store.append_identity(entry).wait() {
                Ok(Ok(_)) => {
                    log::info!("identity log: registered genesis key {}", signer.fingerprint());
                    Ok(true)
                }
                other => Err(StartError::Store(format!("cannot record genesis identity: {other:?}"))),
            }
        }
        Some(current) if *current.public() == signer.public() && current.name() == Some(signer.name()) => {
            Ok(true)
        }
        Some(current) => {
            log::error!(
                "signing key {} is not the current identity {} (identity log entry {}); \
                 it was not delegated by a rotation, so nothing will be signed and readiness stays red",
                signer.fingerprint(),
                annal_chain::fingerprint(current.public()),
                proven.len() - 1
            );
            Ok(false)
        }
    }
}

/// Every key the identity log has delegated, oldest first: the keys it
/// proves from its genesis. A log that does not verify is a corruption, so
/// nothing is verified or declared with the keys it claims.
pub fn identity_keys(store: &Store) -> Result<Vec<TrustedKey>, annal_store::ReadError> {
    store.proven_identity_keys()?.map_err(|broken| {
        annal_store::ReadError::Corrupt(annal_store::Corruption {
            tenant: String::new(),
            ledger: "identity".into(),
            seq: broken.seq,
            what: "identity log does not verify",
        })
    })
}

/// The identity log as `GET /v1/identity` serves it and `annal-verify
/// --identity-log` reads it.
pub fn identity_log_json(store: &Store) -> Result<Vec<u8>, annal_store::ReadError> {
    let entries: Vec<annal_chain::IdentityLogEntry> = store
        .identity_log()?
        .into_iter()
        .filter_map(|e| {
            Some(annal_chain::IdentityLogEntry {
                seq: e.seq,
                key: TrustedKey::named(&e.key_name, e.public)?.vkey()?,
                timestamp_ms: e.timestamp_ms,
                statement: e.statement,
            })
        })
        .collect();
    let mut out = Vec::new();
    annal_chain::write_identity_log(&mut out, &entries);
    Ok(out)
}

fn dev_secret_path(data_dir: &Path, name: &str) -> PathBuf {
    data_dir.join(name)
}

/// A secret's file: the configured path, else the systemd credential of that
/// name (`LoadCredential=`), else none.
fn secret_file(configured: Option<&Path>, credential: &str) -> Option<PathBuf> {
    configured.map(Path::to_path_buf).or_else(|| {
        let dir = std::env::var_os("CREDENTIALS_DIRECTORY")?;
        let path = Path::new(&dir).join(credential);
        path.exists().then_some(path)
    })
}

/// systemd credential names for the secrets.
pub const SIGNING_KEY_CREDENTIAL: &str = "annal-signing-key";
pub const ADMIN_KEY_CREDENTIAL: &str = "annal-admin-key";
pub const WEBHOOK_KEY_CREDENTIAL: &str = "annal-webhook-key";

/// The webhook key and what delivery needs. Without a key (outside
/// development, where one is generated) webhooks are off: `None`.
fn load_webhooks(config: &Config, dev: bool) -> Result<Option<Arc<crate::webhook::Webhooks>>, StartError> {
    use crate::webhook::{Webhooks, client::TlsConfig, sign::WebhookKey, target::Policy};
    let err = |e: crate::webhook::sign::WebhookKeyError| StartError::Config(format!("webhook key: {e}"));
    let key = match secret_file(config.secrets.webhook_key_file.as_deref(), WEBHOOK_KEY_CREDENTIAL) {
        Some(path) => WebhookKey::load(&path).map_err(err)?,
        None if dev => {
            let path = dev_secret_path(&config.storage.data_dir, "dev-webhook.key");
            if path.exists() {
                WebhookKey::load(&path).map_err(err)?
            } else {
                let key = WebhookKey::generate(&path).map_err(err)?;
                eprintln!(
                    "annald: development: generated webhook key {} at {}",
                    key.fingerprint(),
                    path.display()
                );
                key
            }
        }
        None => {
            log::info!(
                "webhooks off: no secrets.webhook_key_file and no {WEBHOOK_KEY_CREDENTIAL} credential"
            );
            return Ok(None);
        }
    };
    let tls = TlsConfig::new(config.webhooks.ca_file.as_deref())
        .map_err(|e| StartError::Config(format!("webhooks.ca_file: {e}")))?;
    let policy = Policy { allow_private: config.webhooks_allow_private() };
    Ok(Some(Arc::new(Webhooks { key, policy, tls, settings: config.webhooks.clone() })))
}

fn load_signer(
    file: Option<&Path>,
    data_dir: &Path,
    dev: bool,
    name: &str,
) -> Result<NoteSigner, StartError> {
    let err = |e: keys::KeyFileError| StartError::Config(format!("signing key: {e}"));
    let file = secret_file(file, SIGNING_KEY_CREDENTIAL);
    match file.as_deref() {
        Some(path) => keys::read(path).map_err(err),
        None if dev => {
            let path = dev_secret_path(data_dir, "dev-signing.key");
            if path.exists() {
                keys::read(&path).map_err(err)
            } else {
                let signer = keys::generate(&path, name).map_err(err)?;
                // Printed, as the admin key's location is: whatever RUST_LOG says.
                eprintln!(
                    "annald: development: generated signing key {} at {}",
                    signer.fingerprint(),
                    path.display()
                );
                Ok(signer)
            }
        }
        None => Err(StartError::Config(format!(
            "no signing key: set secrets.signing_key_file or the {SIGNING_KEY_CREDENTIAL} credential (required outside development)"
        ))),
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
    let file = secret_file(file, ADMIN_KEY_CREDENTIAL);
    match file.as_deref() {
        Some(path) => read(path),
        None if dev => {
            let path = dev_secret_path(data_dir, "dev-admin.key");
            if !path.exists() {
                let key = auth::generate_admin_key().map_err(|e| StartError::Config(e.to_string()))?;
                keys::write_secret_text(&path, &key)
                    .map_err(|e| StartError::Config(format!("admin key: {e}")))?;
                // The location, once; never the value. Printed rather than
                // logged: whoever started annald needs it whatever RUST_LOG says.
                eprintln!(
                    "annald: development: generated admin key at {} (use it as the Bearer token)",
                    path.display()
                );
            }
            read(&path)
        }
        None => Err(StartError::Config(format!(
            "no admin key: set secrets.admin_key_file or the {ADMIN_KEY_CREDENTIAL} credential (required outside development)"
        ))),
    }
}

/// Why a rotation was refused; exit codes in main.
#[derive(Debug)]
pub enum RotateError {
    /// Keys or config unusable (78).
    Config(String),
    /// The store refused or failed (1).
    Refused(String),
}

/// `annald keys rotate`: appends to the identity log a rotation from the
/// configured (current) key to `new`, signed by both. History is never
/// re-signed; the daemon must be stopped (the store allows one process).
pub fn rotate(config: &Config, new: &Path) -> Result<(u64, NoteSigner, NoteSigner), RotateError> {
    let data_dir = &config.storage.data_dir;
    let file = secret_file(config.secrets.signing_key_file.as_deref(), SIGNING_KEY_CREDENTIAL)
        .or_else(|| {
            (config.environment == Environment::Development)
                .then(|| dev_secret_path(data_dir, "dev-signing.key"))
        })
        .ok_or_else(|| RotateError::Config("no current signing key configured".into()))?;
    let old = keys::read(&file).map_err(|e| RotateError::Config(format!("current signing key: {e}")))?;
    let new = keys::read(new).map_err(|e| RotateError::Config(format!("new signing key: {e}")))?;
    if new.public() == old.public() {
        return Err(RotateError::Config("the new key is the current key".into()));
    }
    let options =
        OpenOptions { expected_head: None, apply_pending_migrations: false, ..OpenOptions::default() };
    let store = Store::open(data_dir, options)
        .map_err(|e| RotateError::Refused(format!("cannot open the store (is annald stopped?): {e}")))?;
    let log = store.identity_log().map_err(|e| RotateError::Refused(format!("identity log: {e:?}")))?;
    let current =
        log.last().ok_or_else(|| RotateError::Refused("identity log is empty: start once first".into()))?;
    if current.public != old.public() {
        return Err(RotateError::Refused(format!(
            "the configured key {} is not the current identity {}",
            old.fingerprint(),
            annal_chain::fingerprint(&current.public)
        )));
    }
    let seq = current.seq + 1;
    let mut note = old.sign_text(&annal_chain::rotation_text(seq, &old.vkey(), &new.vkey()));
    new.cosign(&mut note);
    let entry = IdentityEntry {
        seq,
        key_name: new.name().to_owned(),
        public: new.public(),
        timestamp_ms: now_ms(),
        statement: note.to_string(),
    };
    match store.append_identity(entry).wait() {
        Ok(Ok(_)) => {}
        other => return Err(RotateError::Refused(format!("identity log refused the rotation: {other:?}"))),
    }
    store.close().map_err(|e| RotateError::Refused(format!("store did not close cleanly: {e:?}")))?;
    Ok((seq, old, new))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer(name: &str, seed: u8) -> NoteSigner {
        NoteSigner::new(name, &[seed; 32]).expect("valid test key name")
    }

    fn entry(seq: u64, key: &NoteSigner, statement: String) -> IdentityEntry {
        IdentityEntry {
            seq,
            key_name: key.name().to_owned(),
            public: key.public(),
            timestamp_ms: 1,
            statement,
        }
    }

    fn rotation(seq: u64, old: &NoteSigner, new: &NoteSigner, cosign: bool) -> IdentityEntry {
        let mut note = old.sign_text(&annal_chain::rotation_text(seq, &old.vkey(), &new.vkey()));
        if cosign {
            new.cosign(&mut note);
        }
        entry(seq, new, note.to_string())
    }

    /// Invariant 5: only a key the identity log proves is the current
    /// identity. An entry appended without the old and the new key's
    /// signatures delegates nothing: neither its key nor the key before it
    /// may sign, and the keys served for verification are refused.
    #[test]
    fn only_a_proven_identity_signs() {
        let (a, b, c) = (signer("annal.test", 1), signer("annal.test", 2), signer("annal.test", 3));
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), OpenOptions::default()).expect("open");
        assert!(register_identity(&store, &a).expect("genesis"), "the first key becomes the genesis");
        store.append_identity(rotation(1, &a, &b, true)).wait().expect("commit").expect("appended");
        assert!(register_identity(&store, &b).expect("start"), "a rotated-to key signs");
        assert!(!register_identity(&store, &a).expect("start"), "the key before a rotation does not");
        assert_eq!(identity_keys(&store).expect("proven").len(), 2);

        // Signed by the old key only: the new key never proved it holds itself.
        store.append_identity(rotation(2, &b, &c, false)).wait().expect("commit").expect("appended");
        for key in [&a, &b, &c] {
            assert!(!register_identity(&store, key).expect("start"), "{} must not sign", key.name());
        }
        assert!(matches!(identity_keys(&store), Err(annal_store::ReadError::Corrupt(_))));
    }
}
