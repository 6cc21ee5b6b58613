//! Webhook secrets and Standard Webhooks signatures: the webhook key file,
//! the per-endpoint secrets derived from it, and the `webhook-signature`
//! header (`v1,` + base64 HMAC-SHA256 over `{id}.{timestamp}.{body}`).

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit as _, Mac as _};
use sha2::Sha256;
use subtle::ConstantTimeEq as _;
use zeroize::Zeroize as _;

use crate::keys::{self, KeyFileError};

/// Bytes in the webhook key.
pub const WEBHOOK_KEY_BYTES: usize = 32;
/// BLAKE3 `derive_key` context of endpoint secrets; changing it changes every secret.
pub const ENDPOINT_SECRET_CONTEXT: &str = "annal 2026 webhook endpoint secret v1";
/// BLAKE3 `derive_key` context of the key's fingerprint.
pub const FINGERPRINT_CONTEXT: &str = "annal 2026 webhook key fingerprint v1";
/// Shortest and longest secret `from_whsec` takes: the spec asks for at least
/// 24 bytes (its own test vectors use 24) and at most 512 bits.
pub const SECRET_BYTES_MIN: usize = 24;
pub const SECRET_BYTES_MAX: usize = 64;
/// The prefix that marks a serialised symmetric secret.
pub const WHSEC_PREFIX: &str = "whsec_";
/// Largest `webhook-signature` header `verify` looks at, and most signatures
/// in it: a sender signs with a handful of secrets during rotation.
pub const SIGNATURE_HEADER_BYTES_MAX: usize = 4096;
pub const SIGNATURES_PER_HEADER_MAX: usize = 16;
/// Bytes of an HMAC-SHA256 tag.
const TAG_BYTES: usize = 32;

type HmacSha256 = Hmac<Sha256>;

/// The webhook key: the root every endpoint secret is derived from, so the
/// database never holds a secret. Wiped on drop; never printed.
pub struct WebhookKey([u8; WEBHOOK_KEY_BYTES]);

impl core::fmt::Debug for WebhookKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("WebhookKey(..)")
    }
}

impl Drop for WebhookKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// Why a webhook key file could not be read or written. Never carries the
/// file's content.
#[derive(Debug)]
pub enum WebhookKeyError {
    /// Opening, reading or writing failed, or group/others may read it
    /// (the same checks as the signing key's file, `keys::read_secret_text`).
    File(KeyFileError),
    /// Not 64 hex digits with an optional trailing newline.
    Malformed { path: String },
    /// The OS gave no randomness.
    Random(String),
}

impl core::fmt::Display for WebhookKeyError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            WebhookKeyError::File(e) => e.fmt(f),
            WebhookKeyError::Malformed { path } => {
                write!(f, "{path}: not a webhook key (64 hex digits and a newline)")
            }
            WebhookKeyError::Random(e) => write!(f, "no randomness from the OS: {e}"),
        }
    }
}

impl std::error::Error for WebhookKeyError {}

impl WebhookKey {
    /// Reads a key file: exactly 64 hex digits (either case) and an optional
    /// trailing `\n`. Like the signing key, a file that group or others can
    /// read is refused unless it is a systemd credential.
    pub fn load(path: &Path) -> Result<WebhookKey, WebhookKeyError> {
        let mut text = keys::read_secret_text(path).map_err(WebhookKeyError::File)?;
        let key = decode_hex_key(text.strip_suffix('\n').unwrap_or(&text));
        text.zeroize();
        key.map(WebhookKey).ok_or_else(|| WebhookKeyError::Malformed { path: path.display().to_string() })
    }

    /// Generates a fresh key from the OS CSPRNG into `path` (mode 0600,
    /// created exclusively: an existing file is never overwritten), for
    /// development mode; production keys are provisioned by the operator.
    pub fn generate(path: &Path) -> Result<WebhookKey, WebhookKeyError> {
        let mut key = WebhookKey([0u8; WEBHOOK_KEY_BYTES]);
        getrandom::fill(&mut key.0).map_err(|e| WebhookKeyError::Random(e.to_string()))?;
        let mut text = encode_hex(&key.0);
        let written = keys::write_secret_text(path, &text);
        text.zeroize();
        written.map_err(WebhookKeyError::File)?;
        Ok(key)
    }

    /// Wraps raw key bytes, for tests.
    #[cfg(test)]
    pub fn from_bytes(bytes: [u8; WEBHOOK_KEY_BYTES]) -> WebhookKey {
        WebhookKey(bytes)
    }

    /// The secret of version `version` of endpoint `endpoint_id`:
    ///
    /// ```text
    /// secret = BLAKE3-derive_key(
    ///     context  = "annal 2026 webhook endpoint secret v1",
    ///     material = key (32 bytes)
    ///             || u32-LE(byte length of endpoint_id in UTF-8)
    ///             || endpoint_id (UTF-8 bytes)
    ///             || u32-LE(version))            -> 32 bytes
    /// ```
    ///
    /// The length prefix keeps (id, version) pairs from running into each
    /// other. Rotating a secret is bumping `version`; nothing is stored.
    pub fn endpoint_secret(&self, endpoint_id: &str, version: u32) -> EndpointSecret {
        // An id of 4 GiB is not an id: endpoint ids are made by the daemon.
        let id_len = u32::try_from(endpoint_id.len()).expect("endpoint id shorter than 4 GiB");
        let mut hasher = blake3::Hasher::new_derive_key(ENDPOINT_SECRET_CONTEXT);
        hasher.update(&self.0);
        hasher.update(&id_len.to_le_bytes());
        hasher.update(endpoint_id.as_bytes());
        hasher.update(&version.to_le_bytes());
        let mut out = *hasher.finalize().as_bytes();
        let secret = EndpointSecret::from_slice(&out);
        out.zeroize();
        secret
    }

    /// A short public name for the key, safe to log: the first 8 bytes, in
    /// hex, of `BLAKE3-derive_key("annal 2026 webhook key fingerprint v1", key)`.
    pub fn fingerprint(&self) -> String {
        let digest = blake3::derive_key(FINGERPRINT_CONTEXT, &self.0);
        encode_hex(&digest[..8])
    }
}

/// One endpoint's HMAC secret, 24 to 64 bytes (derived ones are 32). Wiped
/// on drop; `Debug` is redacted.
#[derive(Clone)]
pub struct EndpointSecret {
    bytes: [u8; SECRET_BYTES_MAX],
    len: usize,
}

impl core::fmt::Debug for EndpointSecret {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("EndpointSecret(..)")
    }
}

impl Drop for EndpointSecret {
    fn drop(&mut self) {
        self.bytes.zeroize();
    }
}

/// Why a `whsec_` string is not a secret. Never carries the string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretError {
    /// It does not start with `whsec_`.
    NoPrefix,
    /// The rest is not standard base64.
    NotBase64,
    /// It decodes to fewer than 24 or more than 64 bytes.
    BadLength,
}

impl core::fmt::Display for SecretError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SecretError::NoPrefix => write!(f, "a webhook secret starts with {WHSEC_PREFIX}"),
            SecretError::NotBase64 => f.write_str("a webhook secret is standard base64 after the prefix"),
            SecretError::BadLength => {
                write!(f, "a webhook secret is {SECRET_BYTES_MIN} to {SECRET_BYTES_MAX} bytes")
            }
        }
    }
}

impl std::error::Error for SecretError {}

impl EndpointSecret {
    /// `bytes` must be 24..=64 long; the callers here pass 32 or checked lengths.
    fn from_slice(bytes: &[u8]) -> EndpointSecret {
        debug_assert!((SECRET_BYTES_MIN..=SECRET_BYTES_MAX).contains(&bytes.len()));
        let mut secret = EndpointSecret { bytes: [0u8; SECRET_BYTES_MAX], len: bytes.len() };
        secret.bytes[..bytes.len()].copy_from_slice(bytes);
        secret
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    /// `whsec_` + standard base64 of the secret: the form the API shows once
    /// and receivers' Standard Webhooks libraries take.
    pub fn to_whsec(&self) -> String {
        format!("{WHSEC_PREFIX}{}", STANDARD.encode(self.as_bytes()))
    }

    /// Parses the `whsec_` form (receivers and tests).
    #[cfg_attr(not(test), allow(dead_code, reason = "receiver side: for tests and integrators"))]
    pub fn from_whsec(s: &str) -> Result<EndpointSecret, SecretError> {
        let b64 = s.strip_prefix(WHSEC_PREFIX).ok_or(SecretError::NoPrefix)?;
        // Longer text than a maximal secret's base64 is refused before decoding.
        if b64.len() > SECRET_BYTES_MAX.div_ceil(3) * 4 {
            return Err(SecretError::BadLength);
        }
        let mut bytes = STANDARD.decode(b64).map_err(|_| SecretError::NotBase64)?;
        let secret = (SECRET_BYTES_MIN..=SECRET_BYTES_MAX)
            .contains(&bytes.len())
            .then(|| EndpointSecret::from_slice(&bytes))
            .ok_or(SecretError::BadLength);
        bytes.zeroize();
        secret
    }
}

/// HMAC-SHA256 of `{msg_id}.{timestamp_s}.{body}` under `secret`.
fn tag(secret: &EndpointSecret, msg_id: &str, timestamp_s: u64, body: &[u8]) -> [u8; TAG_BYTES] {
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp_s.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().into()
}

/// One Standard Webhooks signature: `v1,` + base64 HMAC-SHA256(secret,
/// `{msg_id}.{timestamp_s}.{body}`). `msg_id` must not contain `.` (the spec
/// forbids it: it would let the id and timestamp shift); the worker's ids never do.
pub fn signature(secret: &EndpointSecret, msg_id: &str, timestamp_s: u64, body: &[u8]) -> String {
    debug_assert!(!msg_id.contains('.'), "webhook ids contain no '.'");
    format!("v1,{}", STANDARD.encode(tag(secret, msg_id, timestamp_s, body)))
}

/// The `webhook-signature` header value: one signature per secret, in the
/// given order, separated by single spaces (several during a rotation, so a
/// receiver holding either secret accepts the message).
pub fn signature_header(secrets: &[EndpointSecret], msg_id: &str, timestamp_s: u64, body: &[u8]) -> String {
    secrets.iter().map(|secret| signature(secret, msg_id, timestamp_s, body)).collect::<Vec<_>>().join(" ")
}

/// Why a received webhook did not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyError {
    /// `webhook-timestamp` is more than the tolerance before now (a replay).
    TimestampTooOld,
    /// `webhook-timestamp` is more than the tolerance after now.
    TimestampTooNew,
    /// The header is longer than `SIGNATURE_HEADER_BYTES_MAX` or has more
    /// than `SIGNATURES_PER_HEADER_MAX` signatures.
    HeaderTooLong,
    /// `webhook-id` contains a `.`, which would make the signed content ambiguous.
    BadMsgId,
    /// No `v1` signature in the header matches.
    NoMatch,
}

impl core::fmt::Display for VerifyError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            VerifyError::TimestampTooOld => "webhook-timestamp is too old",
            VerifyError::TimestampTooNew => "webhook-timestamp is too far in the future",
            VerifyError::HeaderTooLong => "webhook-signature has too many signatures",
            VerifyError::BadMsgId => "webhook-id contains '.'",
            VerifyError::NoMatch => "no webhook-signature matches",
        })
    }
}

impl std::error::Error for VerifyError {}

/// Receiver-side check, as integrators should do it: the timestamp is within
/// `tolerance_s` of `now_s` (the spec suggests 5 minutes), and some `v1`
/// signature in the space-separated `header` matches, compared in constant
/// time. Signatures of other schemes (`v1a`, ...) are skipped.
#[cfg_attr(not(test), allow(dead_code, reason = "receiver side: for tests and integrators"))]
pub fn verify(
    secret: &EndpointSecret,
    msg_id: &str,
    timestamp_s: u64,
    body: &[u8],
    header: &str,
    now_s: u64,
    tolerance_s: u64,
) -> Result<(), VerifyError> {
    if timestamp_s.saturating_add(tolerance_s) < now_s {
        return Err(VerifyError::TimestampTooOld);
    }
    if timestamp_s > now_s.saturating_add(tolerance_s) {
        return Err(VerifyError::TimestampTooNew);
    }
    if msg_id.contains('.') {
        return Err(VerifyError::BadMsgId);
    }
    if header.len() > SIGNATURE_HEADER_BYTES_MAX {
        return Err(VerifyError::HeaderTooLong);
    }
    let entries: Vec<&str> = header.split(' ').filter(|entry| !entry.is_empty()).collect();
    if entries.len() > SIGNATURES_PER_HEADER_MAX {
        return Err(VerifyError::HeaderTooLong);
    }
    let expected = tag(secret, msg_id, timestamp_s, body);
    let mut matched = subtle::Choice::from(0);
    for entry in entries {
        let Some(("v1", b64)) = entry.split_once(',') else { continue };
        let Ok(presented) = STANDARD.decode(b64) else { continue };
        // Fixed-size comparison: subtle's slice ct_eq returns early on a length mismatch.
        let Ok(presented) = <[u8; TAG_BYTES]>::try_from(presented.as_slice()) else { continue };
        matched |= presented.ct_eq(&expected);
    }
    if bool::from(matched) { Ok(()) } else { Err(VerifyError::NoMatch) }
}

fn encode_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}

fn decode_hex_key(text: &str) -> Option<[u8; WEBHOOK_KEY_BYTES]> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let digits = text.as_bytes();
    if digits.len() != WEBHOOK_KEY_BYTES * 2 {
        return None;
    }
    let mut key = [0u8; WEBHOOK_KEY_BYTES];
    for (byte, pair) in key.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(key)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    const TOLERANCE_S: u64 = 300;

    /// The Standard Webhooks reference libraries' signing vectors:
    /// libraries/go/webhook_test.go (`TestWebhookSign`) and
    /// libraries/rust/src/lib.rs (`test_sign`) in github.com/standard-webhooks/standard-webhooks.
    const SPEC_VECTORS: &[(&str, &str, u64, &str, &str)] = &[
        (
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            r#"{"test": 2432232314}"#,
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        ),
        (
            "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
            "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
            1_649_367_553,
            r#"{"email":"test@example.com","username":"test_user"}"#,
            "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=",
        ),
    ];

    fn test_key(seed: u8) -> WebhookKey {
        WebhookKey::from_bytes(core::array::from_fn(|i| seed.wrapping_add(i as u8)))
    }

    #[test]
    fn spec_vectors_sign_and_verify() {
        for &(whsec, id, ts, body, expected) in SPEC_VECTORS {
            let secret = EndpointSecret::from_whsec(whsec).expect("spec secret");
            assert_eq!(signature(&secret, id, ts, body.as_bytes()), expected, "{id}");
            assert_eq!(verify(&secret, id, ts, body.as_bytes(), expected, ts, TOLERANCE_S), Ok(()));
            assert_eq!(secret.to_whsec(), whsec, "whsec round trip");
        }
    }

    #[test]
    fn verify_refuses_what_it_must() {
        let key = test_key(1);
        let secret = key.endpoint_secret("ep_1", 1);
        let other = key.endpoint_secret("ep_1", 2);
        let (id, ts, body) = ("msg_1", 1_700_000_000, b"{\"seq\":7}".as_slice());
        let header = signature(&secret, id, ts, body);
        let check = |secret: &EndpointSecret, id: &str, body: &[u8], header: &str, now: u64| {
            verify(secret, id, ts, body, header, now, TOLERANCE_S)
        };
        assert_eq!(check(&secret, id, body, &header, ts), Ok(()));
        assert_eq!(check(&secret, id, body, &header, ts + TOLERANCE_S), Ok(()), "edge of tolerance");
        assert_eq!(check(&secret, id, body, &header, ts - TOLERANCE_S), Ok(()), "edge of tolerance");
        assert_eq!(check(&other, id, body, &header, ts), Err(VerifyError::NoMatch), "wrong secret");
        assert_eq!(
            check(&secret, id, b"{\"seq\":8}", &header, ts),
            Err(VerifyError::NoMatch),
            "tampered body"
        );
        assert_eq!(check(&secret, "msg_2", body, &header, ts), Err(VerifyError::NoMatch), "other id");
        assert_eq!(check(&secret, "msg.1", body, &header, ts), Err(VerifyError::BadMsgId));
        assert_eq!(
            check(&secret, id, body, &header, ts + TOLERANCE_S + 1),
            Err(VerifyError::TimestampTooOld)
        );
        assert_eq!(
            check(&secret, id, body, &header, ts - TOLERANCE_S - 1),
            Err(VerifyError::TimestampTooNew)
        );
        // The signature of another timestamp does not carry over.
        let moved = signature(&secret, id, ts + 1, body);
        assert_eq!(check(&secret, id, body, &moved, ts), Err(VerifyError::NoMatch));
        // Malformed and foreign entries are skipped, not fatal.
        let (_, b64) = header.split_once(',').expect("v1,");
        for junk in ["", "v1", "v1,", "v1,!!!", "v2,abc", &format!("v1a,{b64}"), &format!("v1,{b64}AA")] {
            assert_eq!(check(&secret, id, body, junk, ts), Err(VerifyError::NoMatch), "{junk:?}");
            let mixed = format!("{junk}  {header}");
            assert_eq!(check(&secret, id, body, &mixed, ts), Ok(()), "{mixed:?}");
        }
        let many = vec!["v1,AAAA"; SIGNATURES_PER_HEADER_MAX + 1].join(" ");
        assert_eq!(check(&secret, id, body, &many, ts), Err(VerifyError::HeaderTooLong));
        let long = "v".repeat(SIGNATURE_HEADER_BYTES_MAX + 1);
        assert_eq!(check(&secret, id, body, &long, ts), Err(VerifyError::HeaderTooLong));
    }

    #[test]
    fn rotation_header_verifies_with_either_secret() {
        let key = test_key(2);
        let (old, new, third) =
            (key.endpoint_secret("ep", 1), key.endpoint_secret("ep", 2), key.endpoint_secret("ep", 3));
        let (id, ts, body) = ("msg_r", 1_700_000_000, b"{}".as_slice());
        let header = signature_header(&[new.clone(), old.clone()], id, ts, body);
        assert_eq!(
            header,
            format!("{} {}", signature(&new, id, ts, body), signature(&old, id, ts, body)),
            "order kept, one space"
        );
        for secret in [&old, &new] {
            assert_eq!(verify(secret, id, ts, body, &header, ts, TOLERANCE_S), Ok(()));
        }
        assert_eq!(verify(&third, id, ts, body, &header, ts, TOLERANCE_S), Err(VerifyError::NoMatch));
        assert_eq!(signature_header(&[], id, ts, body), "");
    }

    #[test]
    fn derivation_is_deterministic_and_separated() {
        let key = test_key(3);
        let secret = |id: &str, version: u32| key.endpoint_secret(id, version).to_whsec();
        assert!(secret("ep_a", 1) == test_key(3).endpoint_secret("ep_a", 1).to_whsec(), "deterministic");
        let all = [
            secret("ep_a", 1),
            secret("ep_a", 2),
            secret("ep_b", 1),
            secret("ep_a", 0),
            secret("", 1),
            // The length prefix keeps the id from absorbing the version's bytes.
            secret("ep_a\u{1}", 0),
            test_key(4).endpoint_secret("ep_a", 1).to_whsec(),
        ];
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert!(a != b, "secrets {i} and a later one collide");
            }
        }
        assert_eq!(EndpointSecret::from_whsec(&all[0]).expect("parse").as_bytes().len(), 32);
    }

    /// Known-answer vector for docs/FORMAT.md: the key is bytes 0x00..=0x1f,
    /// endpoint "ep_01", version 1. Computed independently with the Python
    /// `blake3` package from the bytes documented on `endpoint_secret`.
    #[test]
    fn derivation_known_answer() {
        let key = WebhookKey::from_bytes(core::array::from_fn(|i| i as u8));
        assert_eq!(key.endpoint_secret("ep_01", 1).to_whsec(), KAT_SECRET);
        assert_eq!(key.fingerprint(), KAT_FINGERPRINT);
    }
    const KAT_SECRET: &str = "whsec_XCUy8XlmyaXiO80aNYTfCs0BNSCOdabZKYsQ4VpO/PM=";
    const KAT_FINGERPRINT: &str = "06a3554130c412ac";

    #[test]
    fn from_whsec_refuses_bad_input() {
        let check = |s: &str, expected: SecretError| {
            assert_eq!(EndpointSecret::from_whsec(s).map(|_| ()), Err(expected), "{s:?}");
        };
        check("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", SecretError::NoPrefix);
        check("whsec_not base64!", SecretError::NotBase64);
        for len in [0, SECRET_BYTES_MIN - 1, SECRET_BYTES_MAX + 1, 4096] {
            check(&format!("whsec_{}", STANDARD.encode(vec![7u8; len])), SecretError::BadLength);
        }
        for len in [SECRET_BYTES_MIN, 32, SECRET_BYTES_MAX] {
            let text = format!("whsec_{}", STANDARD.encode(vec![7u8; len]));
            assert_eq!(EndpointSecret::from_whsec(&text).expect("in range").to_whsec(), text);
        }
    }

    #[test]
    fn debug_never_shows_secrets() {
        let key = test_key(5);
        assert_eq!(format!("{key:?}"), "WebhookKey(..)");
        assert_eq!(format!("{:?}", key.endpoint_secret("ep", 1)), "EndpointSecret(..)");
        let fingerprint = key.fingerprint();
        assert_eq!(fingerprint.len(), 16);
        assert!(!encode_hex(&key.0).contains(&fingerprint), "fingerprint is not a prefix of the key");
    }

    #[test]
    fn key_file_round_trip_and_refusals() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("webhook.key");
        let generated = WebhookKey::generate(&path).expect("generate");
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let loaded = WebhookKey::load(&path).expect("load");
        assert_eq!(loaded.fingerprint(), generated.fingerprint());
        assert!(
            loaded.endpoint_secret("ep", 1).to_whsec() == generated.endpoint_secret("ep", 1).to_whsec(),
            "the loaded key derives the same secrets"
        );
        // Never overwrites.
        assert!(matches!(WebhookKey::generate(&path), Err(WebhookKeyError::File(KeyFileError::Io { .. }))));
        assert_eq!(WebhookKey::load(&path).expect("still there").fingerprint(), generated.fingerprint());

        let write = |name: &str, text: &str, mode: u32| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).expect("write");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
            path
        };
        let hex = "Ab".repeat(32);
        assert_eq!(
            WebhookKey::load(&write("upper", &hex, 0o600)).expect("no newline, mixed case").fingerprint(),
            WebhookKey::from_bytes([0xab; 32]).fingerprint()
        );
        assert!(matches!(
            WebhookKey::load(&write("open", &hex, 0o640)),
            Err(WebhookKeyError::File(KeyFileError::TooOpen { .. }))
        ));
        for (i, bad) in [
            String::new(),
            "ab".repeat(31),
            "ab".repeat(33),
            format!("{hex}\n\n"),
            format!("{hex}\r\n"),
            format!(" {hex}"),
            format!("{}zz", "ab".repeat(31)),
        ]
        .iter()
        .enumerate()
        {
            let error = WebhookKey::load(&write(&format!("bad{i}"), bad, 0o600)).expect_err("malformed");
            assert!(matches!(error, WebhookKeyError::Malformed { .. }), "case {i}");
            assert!(!error.to_string().contains("abab"), "errors never echo the file");
        }
        assert!(matches!(
            WebhookKey::load(&dir.path().join("missing")),
            Err(WebhookKeyError::File(KeyFileError::Io { .. }))
        ));
    }
}
