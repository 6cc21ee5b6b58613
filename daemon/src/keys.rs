//! Signing-key files: generate one (mode 0600, never overwriting), read one
//! (refusing group- or world-readable files), and describe its public half.
//! The file holds a C2SP/Go-note signer key: `PRIVATE+KEY+<name>+<id>+<key>`.

use std::io::{Read as _, Write as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

use annal_chain::NoteSigner;

/// Largest key file read, in bytes; a real one is about 100.
const KEY_FILE_BYTES_MAX: u64 = 4096;

#[derive(Debug)]
pub enum KeyFileError {
    Io {
        path: String,
        error: std::io::Error,
    },
    /// Group or others may read it: a secret must be private to its owner.
    TooOpen {
        path: String,
        mode: u32,
    },
    Malformed {
        path: String,
    },
    BadName {
        name: String,
    },
    Random(String),
}

impl core::fmt::Display for KeyFileError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            KeyFileError::Io { path, error } => write!(f, "{path}: {error}"),
            KeyFileError::TooOpen { path, mode } => {
                write!(f, "{path}: mode {mode:o} lets group or others read a secret; chmod 600 it")
            }
            KeyFileError::Malformed { path } => write!(f, "{path}: not a signing key (PRIVATE+KEY+...)"),
            KeyFileError::BadName { name } => write!(f, "{name:?} is not a valid key name"),
            KeyFileError::Random(e) => write!(f, "no randomness from the OS: {e}"),
        }
    }
}

impl std::error::Error for KeyFileError {}

/// Generates a new key named `name` into `out`, which must not exist yet.
pub fn generate(out: &Path, name: &str) -> Result<NoteSigner, KeyFileError> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| KeyFileError::Random(e.to_string()))?;
    let signer = NoteSigner::new(name, &seed).ok_or_else(|| KeyFileError::BadName { name: name.into() });
    seed.fill(0);
    let signer = signer?;
    write_secret_text(out, &signer.to_skey())?;
    Ok(signer)
}

/// Reads a key file, refusing one that group or others can read.
pub fn read(path: &Path) -> Result<NoteSigner, KeyFileError> {
    let text = read_secret_text(path)?;
    NoteSigner::parse_skey(text.trim_end())
        .ok_or(KeyFileError::Malformed { path: path.display().to_string() })
}

/// Whether `path` is one of this service's systemd credentials
/// (`LoadCredential=`). systemd makes that directory readable by the service
/// alone, by ownership (systemd 252: mode 0400) or by an access-control
/// entry on a root-owned file (newer systemd), which shows as group bits:
/// there the mode says nothing about who else can read the secret.
fn is_credential(path: &Path) -> bool {
    std::env::var_os("CREDENTIALS_DIRECTORY").is_some_and(|dir| path.starts_with(dir))
}

/// Reads a secret file (bounded), refusing one that group or others can
/// read, unless it is a systemd credential (`is_credential`).
pub fn read_secret_text(path: &Path) -> Result<String, KeyFileError> {
    let shown = path.display().to_string();
    let io = |error| KeyFileError::Io { path: shown.clone(), error };
    let file = std::fs::File::open(path).map_err(io)?;
    let mode = file.metadata().map_err(io)?.permissions().mode();
    if mode & 0o077 != 0 && !is_credential(path) {
        return Err(KeyFileError::TooOpen { path: shown, mode: mode & 0o777 });
    }
    let mut text = String::new();
    file.take(KEY_FILE_BYTES_MAX).read_to_string(&mut text).map_err(io)?;
    Ok(text)
}

/// Writes a new secret file with mode 0600, never overwriting.
pub fn write_secret_text(path: &Path, text: &str) -> Result<(), KeyFileError> {
    let io = |error| KeyFileError::Io { path: path.display().to_string(), error };
    let mut file =
        std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(io)?;
    file.write_all(format!("{text}\n").as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)
}

/// The public description printed by `keys generate` and `keys show`.
pub fn describe(signer: &NoteSigner) -> String {
    format!(
        "name: {}\nkey_id: {}\nfingerprint: {}\npublic_key: ed25519:{}\nvkey: {}\n",
        signer.name(),
        signer.key_id(),
        signer.fingerprint(),
        base64_encode(&signer.public()),
        signer.vkey()
    )
}

fn base64_encode(bytes: &[u8; 32]) -> String {
    // The trusted-key form that annal-verify --trust-key takes.
    annal_chain::TrustedKey::from_public(*bytes).to_ed25519_string()["ed25519:".len()..].to_owned()
}
