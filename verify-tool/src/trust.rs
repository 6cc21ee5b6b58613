//! The keys an auditor trusts: `--trust-key` values and `--trust-file` lines.

use std::io::Read as _;
use std::path::Path;

use annal_chain::TrustedKey;

/// Largest trust file, in bytes: far above any real list of keys.
const TRUST_FILE_BYTES_MAX: usize = 1024 * 1024;
/// Most keys one trust file may name.
const TRUST_FILE_KEYS_COUNT_MAX: usize = 1024;

pub const KEY_FORMS: &str =
    "expected `ed25519:<base64 public key>` or a C2SP verifier key `<name>+<hex key id>+<base64>`";

/// Reads a trust file: one key per line, `#` comment lines and blank lines
/// ignored, surrounding whitespace trimmed. An error is a usage error message.
pub fn read_trust_file(path: &Path) -> Result<Vec<TrustedKey>, String> {
    let shown = path.display();
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(TRUST_FILE_BYTES_MAX as u64 + 1).read_to_end(&mut bytes))
        .map_err(|e| format!("cannot read --trust-file {shown}: {e}"))?;
    if bytes.len() > TRUST_FILE_BYTES_MAX {
        return Err(format!("--trust-file {shown} is larger than {TRUST_FILE_BYTES_MAX} bytes"));
    }
    let text = String::from_utf8(bytes).map_err(|_| format!("--trust-file {shown} is not UTF-8"))?;
    let mut keys = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if keys.len() == TRUST_FILE_KEYS_COUNT_MAX {
            return Err(format!("--trust-file {shown} names more than {TRUST_FILE_KEYS_COUNT_MAX} keys"));
        }
        let key = TrustedKey::parse(line)
            .ok_or_else(|| format!("--trust-file {shown} line {}: not a key: {KEY_FORMS}", i + 1))?;
        keys.push(key);
    }
    if keys.is_empty() {
        return Err(format!("--trust-file {shown} names no key"));
    }
    Ok(keys)
}
