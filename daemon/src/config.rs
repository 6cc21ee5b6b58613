//! Configuration: one TOML file (unknown keys refused), `ANNAL_*` environment
//! overrides, then command-line flags; validated before anything starts.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::limits;

/// Where the daemon runs; production refuses every development convenience.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    Production,
    Staging,
    #[default]
    Development,
}

impl Environment {
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Production => "production",
            Environment::Staging => "staging",
            Environment::Development => "development",
        }
    }

    fn parse(text: &str) -> Option<Environment> {
        match text {
            "production" => Some(Environment::Production),
            "staging" => Some(Environment::Staging),
            "development" => Some(Environment::Development),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub header_read_timeout_ms: u64,
    pub request_timeout_ms: u64,
    pub connections_max: usize,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 7878)),
            header_read_timeout_ms: limits::HEADER_READ_TIMEOUT_MS_DEFAULT,
            request_timeout_ms: limits::REQUEST_TIMEOUT_MS_DEFAULT,
            connections_max: limits::CONNECTIONS_MAX_DEFAULT,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    pub data_dir: PathBuf,
    /// Where `POST /admin/v1/backups` writes snapshots (unset: online backup off).
    pub backup_dir: Option<PathBuf>,
    /// Most ledgers one tenant may have (an append creating one more is
    /// refused with 409 `ledger.limit_reached`).
    pub ledgers_per_tenant_max: u64,
}

impl Default for StorageConfig {
    fn default() -> StorageConfig {
        StorageConfig {
            data_dir: PathBuf::from("./annal-data"),
            backup_dir: None,
            ledgers_per_tenant_max: limits::LEDGERS_PER_TENANT_MAX_DEFAULT,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShutdownConfig {
    pub grace_ms: u64,
}

impl Default for ShutdownConfig {
    fn default() -> ShutdownConfig {
        ShutdownConfig { grace_ms: limits::SHUTDOWN_GRACE_MS_DEFAULT }
    }
}

/// Where secrets come from: files (or systemd credentials), never the TOML itself.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecretsConfig {
    /// File holding the admin bearer key. In development, when unset, one is
    /// generated into the data directory on first run.
    pub admin_key_file: Option<PathBuf>,
    /// File holding the signing key (`annald keys generate`). In development,
    /// when unset, one is generated into the data directory on first run.
    pub signing_key_file: Option<PathBuf>,
    /// File holding the webhook key (`annald keys generate-webhook-key`), the
    /// root every endpoint secret is derived from. In development, when
    /// unset, one is generated into the data directory on first run;
    /// elsewhere, without one, webhooks are off.
    pub webhook_key_file: Option<PathBuf>,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Requests one API key may make per window, as a burst.
    pub key_burst: u32,
    pub key_window_s: u64,
    /// Requests all keys of one tenant may make per window.
    pub tenant_burst: u32,
    pub tenant_window_s: u64,
}

impl Default for RateLimitConfig {
    fn default() -> RateLimitConfig {
        RateLimitConfig {
            key_burst: limits::RATE_KEY_BURST_DEFAULT,
            key_window_s: 1,
            tenant_burst: limits::RATE_TENANT_BURST_DEFAULT,
            tenant_window_s: 1,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// System events (all but admin actions) recorded one by one in a
    /// burst; past the budget they are counted and summarised per second.
    pub burst: u32,
    /// Events recorded one by one per second after the burst.
    pub per_s: u32,
}

impl Default for EventsConfig {
    fn default() -> EventsConfig {
        EventsConfig { burst: limits::EVENTS_BURST_DEFAULT, per_s: limits::EVENTS_PER_S_DEFAULT }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MigrationsConfig {
    /// Refuse to start (and report not ready) unless the schema head is this.
    pub expected_head: Option<u32>,
    /// Apply pending migration steps at start. Defaults to true in
    /// development only; elsewhere run `annald migrate up` deliberately.
    pub apply_on_start: Option<bool>,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerConfig {
    /// Run the background workers (anchoring). Readiness reports whether the
    /// workers' state matches this.
    pub enabled: bool,
}

impl Default for WorkerConfig {
    fn default() -> WorkerConfig {
        WorkerConfig { enabled: true }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnchorConfig {
    /// How often the anchoring worker signs checkpoints of changed ledgers.
    pub interval_ms: u64,
    /// Readiness fails when a record has waited longer than this for a
    /// checkpoint (0: no bound).
    pub freshness_max_ms: u64,
}

impl Default for AnchorConfig {
    fn default() -> AnchorConfig {
        AnchorConfig {
            interval_ms: limits::ANCHOR_INTERVAL_MS_DEFAULT,
            freshness_max_ms: limits::ANCHOR_FRESHNESS_MS_DEFAULT,
        }
    }
}

/// Webhook delivery: retries, timeouts, and where deliveries may go.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    /// Deliver to loopback, private and link-local addresses too. Defaults
    /// to true in development only; outside it, it is refused as an insecure
    /// override (any tenant could aim deliveries at internal services).
    pub allow_private_destinations: Option<bool>,
    /// Extra CA certificates (PEM) trusted for https receivers, besides the
    /// Mozilla roots built in.
    pub ca_file: Option<PathBuf>,
    /// Attempts per delivery before it is given up (and recorded as a
    /// `webhook.delivery_failed` system event).
    pub attempts_max: u32,
    /// Wait before the first retry; it doubles per attempt, up to `retry_max_ms`.
    pub retry_base_ms: u64,
    pub retry_max_ms: u64,
    /// Time one delivery may take, connect to response.
    pub timeout_ms: u64,
    /// Deliveries in flight at once.
    pub concurrency: usize,
}

impl Default for WebhooksConfig {
    fn default() -> WebhooksConfig {
        WebhooksConfig {
            allow_private_destinations: None,
            ca_file: None,
            attempts_max: limits::WEBHOOK_ATTEMPTS_MAX_DEFAULT,
            retry_base_ms: limits::WEBHOOK_RETRY_BASE_MS_DEFAULT,
            retry_max_ms: limits::WEBHOOK_RETRY_MAX_MS_DEFAULT,
            timeout_ms: limits::WEBHOOK_TIMEOUT_MS_DEFAULT,
            concurrency: limits::WEBHOOK_CONCURRENCY_DEFAULT,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub environment: Environment,
    /// The log's name: the first part of every checkpoint origin and the
    /// signing key's default name.
    pub log_name: String,
    pub server: ServerConfig,
    pub storage: StorageConfig,
    pub secrets: SecretsConfig,
    pub rate_limit: RateLimitConfig,
    pub events: EventsConfig,
    pub anchor: AnchorConfig,
    pub migrations: MigrationsConfig,
    pub worker: WorkerConfig,
    pub shutdown: ShutdownConfig,
    pub webhooks: WebhooksConfig,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            environment: Environment::default(),
            log_name: "annal.local".to_owned(),
            server: ServerConfig::default(),
            storage: StorageConfig::default(),
            secrets: SecretsConfig::default(),
            rate_limit: RateLimitConfig::default(),
            events: EventsConfig::default(),
            anchor: AnchorConfig::default(),
            migrations: MigrationsConfig::default(),
            worker: WorkerConfig::default(),
            shutdown: ShutdownConfig::default(),
            webhooks: WebhooksConfig::default(),
        }
    }
}

/// Why a configuration was refused. Every variant names what is wrong; the
/// binary maps all of them to exit code 78 (EX_CONFIG).
#[derive(Debug)]
pub enum ConfigError {
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    TooLarge {
        path: PathBuf,
    },
    Parse {
        path: PathBuf,
        message: String,
    },
    Env {
        name: &'static str,
        value: String,
    },
    OutOfRange {
        key: &'static str,
        value: String,
        range: String,
    },
    BadValue {
        key: &'static str,
        value: String,
        why: &'static str,
    },
    /// Production must name its config file: no embedded defaults there.
    ProductionNeedsFile,
    /// A development convenience is switched on outside development.
    InsecureOverride {
        what: String,
    },
}

impl core::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ConfigError::Read { path, error } => write!(f, "cannot read config {}: {error}", path.display()),
            ConfigError::TooLarge { path } => write!(f, "config {} is larger than 1 MiB", path.display()),
            ConfigError::Parse { path, message } => write!(f, "config {}: {message}", path.display()),
            ConfigError::Env { name, value } => {
                write!(f, "environment variable {name}={value:?} is not valid")
            }
            ConfigError::OutOfRange { key, value, range } => {
                write!(f, "config key {key} = {value} is outside {range}")
            }
            ConfigError::BadValue { key, value, why } => write!(f, "config key {key} = {value:?}: {why}"),
            ConfigError::InsecureOverride { what } => {
                write!(f, "refusing a development convenience outside development: {what}")
            }
            ConfigError::ProductionNeedsFile => f.write_str(
                "environment is production but no --config file was given; refusing embedded defaults",
            ),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Flags that override the file and the environment.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
}

impl Config {
    /// Whether webhooks may be delivered to non-public addresses.
    pub fn webhooks_allow_private(&self) -> bool {
        self.webhooks.allow_private_destinations.unwrap_or(self.environment == Environment::Development)
    }

    /// Whether pending migrations are applied at start.
    pub fn apply_migrations_on_start(&self) -> bool {
        self.migrations.apply_on_start.unwrap_or(self.environment == Environment::Development)
    }

    /// Reads the file (if any), applies `ANNAL_*` variables from `env`, then
    /// the flags, then validates.
    pub fn load(
        file: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
        overrides: &Overrides,
    ) -> Result<Config, ConfigError> {
        let mut config = match file {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        if let Some(v) = env("ANNAL_ENVIRONMENT") {
            config.environment =
                Environment::parse(&v).ok_or(ConfigError::Env { name: "ANNAL_ENVIRONMENT", value: v })?;
        }
        if let Some(v) = env("ANNAL_LISTEN") {
            config.server.listen =
                v.parse().map_err(|_| ConfigError::Env { name: "ANNAL_LISTEN", value: v })?;
        }
        if let Some(v) = env("ANNAL_DATA_DIR") {
            config.storage.data_dir = PathBuf::from(v);
        }
        if let Some(listen) = overrides.listen {
            config.server.listen = listen;
        }
        if let Some(dir) = &overrides.data_dir {
            config.storage.data_dir = dir.clone();
        }
        if let Some(v) = env("ANNAL_MIGRATIONS_EXPECTED_HEAD") {
            config.migrations.expected_head = Some(
                v.parse()
                    .map_err(|_| ConfigError::Env { name: "ANNAL_MIGRATIONS_EXPECTED_HEAD", value: v })?,
            );
        }
        if file.is_none() && config.environment == Environment::Production {
            return Err(ConfigError::ProductionNeedsFile);
        }
        if config.environment != Environment::Development {
            // Verbose request logging is a development convenience.
            if let Some(level) = env("RUST_LOG")
                && (level.contains("debug") || level.contains("trace"))
            {
                return Err(ConfigError::InsecureOverride { what: format!("RUST_LOG={level}") });
            }
            if config.migrations.apply_on_start == Some(true) && config.environment == Environment::Production
            {
                return Err(ConfigError::InsecureOverride {
                    what: "migrations.apply_on_start = true".into(),
                });
            }
            if config.webhooks.allow_private_destinations == Some(true) {
                return Err(ConfigError::InsecureOverride {
                    what: "webhooks.allow_private_destinations = true".into(),
                });
            }
        }
        config.validate()?;
        Ok(config)
    }

    fn from_file(path: &Path) -> Result<Config, ConfigError> {
        use std::io::Read as _;
        let file =
            std::fs::File::open(path).map_err(|error| ConfigError::Read { path: path.into(), error })?;
        let mut text = String::new();
        file.take(limits::CONFIG_FILE_BYTES_MAX + 1)
            .read_to_string(&mut text)
            .map_err(|error| ConfigError::Read { path: path.into(), error })?;
        if text.len() as u64 > limits::CONFIG_FILE_BYTES_MAX {
            return Err(ConfigError::TooLarge { path: path.into() });
        }
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.into(),
            message: e.to_string().split_whitespace().collect::<Vec<_>>().join(" "),
        })
    }

    fn validate(&self) -> Result<(), ConfigError> {
        fn check<T: PartialOrd + core::fmt::Debug + core::fmt::Display>(
            key: &'static str,
            value: T,
            range: &core::ops::RangeInclusive<T>,
        ) -> Result<(), ConfigError> {
            if range.contains(&value) {
                Ok(())
            } else {
                Err(ConfigError::OutOfRange { key, value: value.to_string(), range: format!("{range:?}") })
            }
        }
        let s = &self.server;
        check(
            "server.header_read_timeout_ms",
            s.header_read_timeout_ms,
            &limits::HEADER_READ_TIMEOUT_MS_RANGE,
        )?;
        check("server.request_timeout_ms", s.request_timeout_ms, &limits::REQUEST_TIMEOUT_MS_RANGE)?;
        check("server.connections_max", s.connections_max, &limits::CONNECTIONS_MAX_RANGE)?;
        check("shutdown.grace_ms", self.shutdown.grace_ms, &limits::SHUTDOWN_GRACE_MS_RANGE)?;
        let r = &self.rate_limit;
        check("rate_limit.key_burst", r.key_burst, &limits::RATE_BURST_RANGE)?;
        check("rate_limit.tenant_burst", r.tenant_burst, &limits::RATE_BURST_RANGE)?;
        check("rate_limit.key_window_s", r.key_window_s, &limits::RATE_WINDOW_S_RANGE)?;
        check("rate_limit.tenant_window_s", r.tenant_window_s, &limits::RATE_WINDOW_S_RANGE)?;
        check(
            "storage.ledgers_per_tenant_max",
            self.storage.ledgers_per_tenant_max,
            &limits::LEDGERS_PER_TENANT_MAX_RANGE,
        )?;
        check("events.burst", self.events.burst, &limits::EVENTS_BURST_RANGE)?;
        check("events.per_s", self.events.per_s, &limits::EVENTS_PER_S_RANGE)?;
        check("anchor.interval_ms", self.anchor.interval_ms, &limits::ANCHOR_INTERVAL_MS_RANGE)?;
        check("anchor.freshness_max_ms", self.anchor.freshness_max_ms, &limits::ANCHOR_FRESHNESS_MS_RANGE)?;
        let w = &self.webhooks;
        check("webhooks.attempts_max", w.attempts_max, &limits::WEBHOOK_ATTEMPTS_MAX_RANGE)?;
        check("webhooks.retry_base_ms", w.retry_base_ms, &limits::WEBHOOK_RETRY_MS_RANGE)?;
        check("webhooks.retry_max_ms", w.retry_max_ms, &limits::WEBHOOK_RETRY_MS_RANGE)?;
        check("webhooks.timeout_ms", w.timeout_ms, &limits::WEBHOOK_TIMEOUT_MS_RANGE)?;
        check("webhooks.concurrency", w.concurrency, &limits::WEBHOOK_CONCURRENCY_RANGE)?;
        if w.retry_max_ms < w.retry_base_ms {
            return Err(ConfigError::BadValue {
                key: "webhooks.retry_max_ms",
                value: w.retry_max_ms.to_string(),
                why: "must be at least webhooks.retry_base_ms",
            });
        }
        if annal_chain::LogName::new(&self.log_name).is_err() {
            return Err(ConfigError::BadValue {
                key: "log_name",
                value: self.log_name.clone(),
                why: "must be [a-z0-9][a-z0-9._-]*, at most 128 bytes",
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = std::env::temp_dir().join(format!("annal-config-test-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("annal.toml");
        std::fs::write(&path, text).unwrap();
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
        let lookup = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        let result = Config::load(Some(&path), &lookup, &Overrides::default());
        std::fs::remove_dir_all(&dir).unwrap();
        result
    }

    #[test]
    fn defaults_and_overrides() {
        let c = load_text("", &[]).unwrap();
        assert_eq!(c, Config::default());
        let c = load_text("environment = \"staging\"\n[server]\nlisten = \"127.0.0.1:9000\"\n", &[]).unwrap();
        assert_eq!((c.environment, c.server.listen.port()), (Environment::Staging, 9000));
        let c = load_text("[server]\nlisten = \"127.0.0.1:9000\"\n", &[("ANNAL_LISTEN", "127.0.0.1:9001")])
            .unwrap();
        assert_eq!(c.server.listen.port(), 9001);
    }

    #[test]
    fn refusals_name_the_problem() {
        let check = |text: &str, env: &[(&str, &str)], needle: &str| {
            let err = load_text(text, env).unwrap_err().to_string();
            assert!(err.contains(needle), "{err:?} should mention {needle:?}");
        };
        check("listen_port = 1\n", &[], "listen_port");
        check("[server]\nlisten = \"nope\"\n", &[], "listen");
        check("[server]\nheader_read_timeout_ms = 0\n", &[], "server.header_read_timeout_ms");
        check("[server]\nconnections_max = 0\n", &[], "server.connections_max");
        check("environment = \"prod\"\n", &[], "environment");
        check("[webhooks]\nattempts_max = 0\n", &[], "webhooks.attempts_max");
        check("[webhooks]\nretry_base_ms = 5000\nretry_max_ms = 100\n", &[], "webhooks.retry_max_ms");
        check(
            "environment = \"staging\"\n[webhooks]\nallow_private_destinations = true\n",
            &[],
            "webhooks.allow_private_destinations",
        );
        check("", &[("ANNAL_ENVIRONMENT", "live")], "ANNAL_ENVIRONMENT");
    }

    #[test]
    fn production_needs_a_file() {
        let env = |name: &str| (name == "ANNAL_ENVIRONMENT").then(|| "production".to_owned());
        let err = Config::load(None, &env, &Overrides::default()).unwrap_err();
        assert!(matches!(err, ConfigError::ProductionNeedsFile));
    }
}
