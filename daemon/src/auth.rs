//! Credentials: tenant API keys and the admin key. Keys are stored only as
//! digests and compared in constant time over fixed-size digests (subtle's
//! slice `ct_eq` returns early on a length mismatch, so we never compare the
//! presented text itself).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use subtle::ConstantTimeEq as _;

/// Prefix of every tenant API key, so leaked keys are easy to grep for.
pub const API_KEY_PREFIX: &str = "annal_";
const KEY_ID_HEX_LEN: usize = 16;
const SECRET_BYTES: usize = 32;
/// Shortest admin key accepted: 128 bits of base64 or hex is ~22-32 chars.
pub const ADMIN_KEY_CHARS_MIN: usize = 32;

/// A digest of a secret: the only form in which a key is stored.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SecretDigest([u8; 32]);

impl core::fmt::Debug for SecretDigest {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("SecretDigest(..)")
    }
}

impl SecretDigest {
    fn of(domain: &str, secret: &[u8]) -> SecretDigest {
        let mut h = blake3::Hasher::new_derive_key(domain);
        h.update(secret);
        SecretDigest(*h.finalize().as_bytes())
    }

    pub fn from_bytes(bytes: [u8; 32]) -> SecretDigest {
        SecretDigest(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Constant-time equality.
    pub fn matches(&self, other: &SecretDigest) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

/// A tenant API key as presented: `annal_<16 hex key id>_<base64url secret>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresentedKey {
    pub key_id: String,
    pub digest: SecretDigest,
}

const API_KEY_DOMAIN: &str = "annal 2026-11 tenant api key v1";
const ADMIN_KEY_DOMAIN: &str = "annal 2026-11 admin key v1";

/// A newly issued key: the token is shown once, the digest is stored.
pub struct IssuedKey {
    pub key_id: String,
    pub token: String,
    pub digest: SecretDigest,
}

impl core::fmt::Debug for IssuedKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("IssuedKey").field("key_id", &self.key_id).finish_non_exhaustive()
    }
}

/// Issues a new random API key.
pub fn issue_api_key() -> Result<IssuedKey, getrandom::Error> {
    let mut raw = [0u8; KEY_ID_HEX_LEN / 2 + SECRET_BYTES];
    getrandom::fill(&mut raw)?;
    let key_id: String = raw[..KEY_ID_HEX_LEN / 2].iter().map(|b| format!("{b:02x}")).collect();
    let secret = &raw[KEY_ID_HEX_LEN / 2..];
    let token = format!("{API_KEY_PREFIX}{key_id}_{}", base64url(secret));
    let digest = SecretDigest::of(API_KEY_DOMAIN, secret);
    raw.fill(0);
    Ok(IssuedKey { key_id, token, digest })
}

/// Parses a presented API key. `None` for anything not of the exact shape, so
/// a malformed key costs no store lookup (and gets the same 401 as a wrong one).
pub fn parse_api_key(token: &str) -> Option<PresentedKey> {
    let rest = token.strip_prefix(API_KEY_PREFIX)?;
    let (key_id, secret_text) = rest.split_at_checked(KEY_ID_HEX_LEN)?;
    let secret_text = secret_text.strip_prefix('_')?;
    if !key_id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return None;
    }
    let secret = base64url_decode(secret_text)?;
    if secret.len() != SECRET_BYTES {
        return None;
    }
    Some(PresentedKey { key_id: key_id.to_owned(), digest: SecretDigest::of(API_KEY_DOMAIN, &secret) })
}

/// The admin key's digest, from the secret file's content (trailing newline
/// trimmed). Too short a key is refused.
pub fn admin_digest(secret: &str) -> Option<SecretDigest> {
    let secret = secret.trim_end_matches(['\n', '\r']);
    (secret.len() >= ADMIN_KEY_CHARS_MIN && !secret.chars().any(char::is_whitespace))
        .then(|| SecretDigest::of(ADMIN_KEY_DOMAIN, secret.as_bytes()))
}

/// Whether a presented bearer token is the admin key.
pub fn is_admin(presented: &str, admin: &SecretDigest) -> bool {
    SecretDigest::of(ADMIN_KEY_DOMAIN, presented.as_bytes()).matches(admin)
}

/// Generates a fresh admin key (development mode only).
pub fn generate_admin_key() -> Result<String, getrandom::Error> {
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw)?;
    let text = format!("annal_admin_{}", base64url(&raw));
    raw.fill(0);
    Ok(text)
}

/// The token from `Authorization: Bearer <token>`, if that is the header's shape.
pub fn bearer(header: Option<&str>) -> Option<&str> {
    let value = header?;
    let (scheme, token) = value.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && !token.contains(' ')).then_some(token)
}

fn base64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Strict: no padding, canonical trailing bits, so one key has one spelling.
fn base64url_decode(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_keys_parse_back_to_their_digest() {
        let k = issue_api_key().unwrap();
        assert!(k.token.starts_with("annal_"));
        let p = parse_api_key(&k.token).unwrap();
        assert_eq!(p.key_id, k.key_id);
        assert!(p.digest.matches(&k.digest));
        let other = issue_api_key().unwrap();
        assert!(!parse_api_key(&other.token).unwrap().digest.matches(&k.digest));
    }

    #[test]
    fn malformed_keys_are_refused() {
        let k = issue_api_key().unwrap().token;
        let check = |t: &str| assert!(parse_api_key(t).is_none(), "{t:?}");
        check("");
        check(&k[..k.len() - 1]);
        check(&format!("{k}A"));
        check(&k.replacen("annal_", "annul_", 1));
        check(&k.replacen('_', "-", 2));
        check(&k.to_uppercase());
        check("annal_0123456789abcdef_");
        check("annal_0123456789abcdef_====");
    }

    #[test]
    fn admin_key_rules() {
        assert!(admin_digest("short").is_none());
        assert!(admin_digest(&format!("{} x", "a".repeat(40))).is_none());
        let d = admin_digest(&format!("{}\n", "a".repeat(40))).unwrap();
        assert!(is_admin(&"a".repeat(40), &d));
        assert!(!is_admin(&"a".repeat(41), &d));
        assert!(!is_admin("", &d));
        let generated = generate_admin_key().unwrap();
        assert!(admin_digest(&generated).is_some());
    }

    #[test]
    fn bearer_shapes() {
        assert_eq!(bearer(Some("Bearer abc")), Some("abc"));
        assert_eq!(bearer(Some("bearer abc")), Some("abc"));
        assert_eq!(bearer(Some("Basic abc")), None);
        assert_eq!(bearer(Some("Bearer")), None);
        assert_eq!(bearer(Some("Bearer a b")), None);
        assert_eq!(bearer(None), None);
    }

    #[test]
    fn base64url_round_trip() {
        for n in 0..40 {
            let data: Vec<u8> = (0..n).map(|i| (i * 37 + 11) as u8).collect();
            assert_eq!(base64url_decode(&base64url(&data)).unwrap(), data);
        }
        assert!(base64url_decode("A").is_none());
        assert!(base64url_decode("AB").is_none(), "non-canonical trailing bits");
    }
}
