//! C2SP signed notes and tlog checkpoints (docs/FORMAT.md, "Checkpoint").
//!
//! A checkpoint body is `<origin>\n<size>\n<base64 root>\n` plus optional
//! extension lines; a signed note is that body, a blank line, and one line per
//! signature: `— <key name> <base64(4-byte key id || 64-byte signature)>\n`.
//! The signature covers the body bytes exactly. Any signed-note verifier that
//! knows the public key can check our signatures.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest as _, Sha256};

use crate::limits::{
    KEY_NAME_BYTES_MAX, NOTE_BYTES_MAX, NOTE_EXTENSIONS_COUNT_MAX, NOTE_SIGNATURES_COUNT_MAX,
};
use crate::types::{Hash32, KeyId, Origin};

/// Signature-type byte for Ed25519 in C2SP signed-note key ids and vkeys.
pub const ED25519_ALG: u8 = 0x01;
const SIG_PREFIX: &str = "\u{2014} ";

/// Why a note or checkpoint could not be parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoteError {
    TooLarge,
    /// No blank line before signatures, a text that is not line-terminated,
    /// or a signature line of the wrong shape.
    Malformed,
    TooManySignatures,
    NoSignatures,
    /// The body is not `<origin>\n<size>\n<root>\n[extensions]`.
    BadCheckpoint,
}

impl core::fmt::Display for NoteError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            NoteError::TooLarge => "note too large",
            NoteError::Malformed => "malformed signed note",
            NoteError::TooManySignatures => "too many signatures",
            NoteError::NoSignatures => "note has no signatures",
            NoteError::BadCheckpoint => "malformed checkpoint body",
        })
    }
}

impl std::error::Error for NoteError {}

/// Why a signed note did not verify against the trusted keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignatureFailure {
    /// A signature line names a trusted key but does not verify under it.
    BadSignature,
    /// No signature line is from a trusted key.
    UnknownSigner,
}

/// A valid signing-key name: non-empty, no whitespace, no `+`.
pub fn valid_key_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= KEY_NAME_BYTES_MAX
        && name.chars().all(|c| !c.is_whitespace() && !c.is_control() && c != '+')
}

/// `SHA-256(name || 0x0A || 0x01 || public key)[..4]`.
pub fn key_id(name: &str, public: &[u8; 32]) -> KeyId {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', ED25519_ALG]);
    h.update(public);
    let digest = h.finalize();
    KeyId::from_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// The operator-facing fingerprint of a public key: `SHA256:` + unpadded
/// base64 of SHA-256(public key), the form OpenSSH made familiar.
pub fn fingerprint(public: &[u8; 32]) -> String {
    format!("SHA256:{}", STANDARD_NO_PAD.encode(Sha256::digest(public)))
}

/// A public key an auditor chose to trust, optionally bound to a key name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustedKey {
    name: Option<String>,
    public: [u8; 32],
}

impl TrustedKey {
    /// Parses `ed25519:<base64 public key>` (any name) or a C2SP verifier key
    /// `<name>+<hex key id>+<base64(0x01 || public key)>` (that name only).
    pub fn parse(text: &str) -> Option<TrustedKey> {
        if let Some(b64) = text.strip_prefix("ed25519:") {
            let public: [u8; 32] = STANDARD.decode(b64).ok()?.try_into().ok()?;
            VerifyingKey::from_bytes(&public).ok()?;
            return Some(TrustedKey { name: None, public });
        }
        let mut parts = text.splitn(3, '+');
        let (name, id_hex, key_b64) = (parts.next()?, parts.next()?, parts.next()?);
        if !valid_key_name(name) {
            return None;
        }
        let raw = STANDARD.decode(key_b64).ok()?;
        let (&alg, public) = raw.split_first()?;
        let public: [u8; 32] = public.try_into().ok()?;
        if alg != ED25519_ALG || VerifyingKey::from_bytes(&public).is_err() {
            return None;
        }
        let mut id = [0u8; 4];
        if !crate::hex::decode_exact(id_hex.as_bytes(), &mut id) || key_id(name, &public).as_bytes() != &id {
            return None;
        }
        Some(TrustedKey { name: Some(name.to_owned()), public })
    }

    pub fn from_public(public: [u8; 32]) -> TrustedKey {
        TrustedKey { name: None, public }
    }

    pub fn public(&self) -> &[u8; 32] {
        &self.public
    }

    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The C2SP vkey of a named key; `None` for an unnamed `ed25519:` key.
    pub fn vkey(&self) -> Option<String> {
        let name = self.name.as_deref()?;
        let mut raw = [0u8; 33];
        raw[0] = ED25519_ALG;
        raw[1..].copy_from_slice(&self.public);
        Some(format!("{name}+{}+{}", key_id(name, &self.public), STANDARD.encode(raw)))
    }

    /// A key bound to a name, as an identity-log entry names it.
    pub fn named(name: &str, public: [u8; 32]) -> Option<TrustedKey> {
        (valid_key_name(name) && VerifyingKey::from_bytes(&public).is_ok())
            .then(|| TrustedKey { name: Some(name.to_owned()), public })
    }

    /// `ed25519:<base64>`.
    pub fn to_ed25519_string(&self) -> String {
        format!("ed25519:{}", STANDARD.encode(self.public))
    }

    fn matches(&self, sig: &NoteSignature) -> bool {
        self.name.as_deref().is_none_or(|n| n == sig.name) && key_id(&sig.name, &self.public) == sig.key_id
    }
}

/// One signature line of a note.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteSignature {
    pub name: String,
    pub key_id: KeyId,
    pub signature: [u8; 64],
}

/// A note: text plus signatures. The text always ends in `\n` and holds no
/// blank line, so the split between text and signatures is unambiguous.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedNote {
    text: String,
    signatures: Vec<NoteSignature>,
}

impl SignedNote {
    pub fn parse(note: &str) -> Result<SignedNote, NoteError> {
        if note.len() > NOTE_BYTES_MAX {
            return Err(NoteError::TooLarge);
        }
        let split = note.find("\n\n").ok_or(NoteError::Malformed)?;
        let (text, sigs) = (&note[..split + 1], &note[split + 2..]);
        if !valid_text(text) {
            return Err(NoteError::Malformed);
        }
        let Some(sigs) = sigs.strip_suffix('\n') else {
            return Err(NoteError::Malformed);
        };
        let mut signatures = Vec::new();
        for line in sigs.split('\n') {
            if signatures.len() == NOTE_SIGNATURES_COUNT_MAX {
                return Err(NoteError::TooManySignatures);
            }
            signatures.push(parse_signature_line(line).ok_or(NoteError::Malformed)?);
        }
        Ok(SignedNote { text: text.to_owned(), signatures })
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn signatures(&self) -> &[NoteSignature] {
        &self.signatures
    }

    /// Checks the signatures against `trusted`. Succeeds with the indexes (in
    /// `trusted`) of the keys that signed, when at least one trusted key signed
    /// and no line that claims a trusted key fails. Lines from unknown keys are
    /// ignored, as C2SP asks of verifiers.
    pub fn verify(&self, trusted: &[TrustedKey]) -> Result<Vec<usize>, SignatureFailure> {
        let mut signers = Vec::new();
        for sig in &self.signatures {
            for (i, key) in trusted.iter().enumerate().filter(|(_, k)| k.matches(sig)) {
                let vk = VerifyingKey::from_bytes(&key.public).map_err(|_| SignatureFailure::BadSignature)?;
                let signature = Signature::from_bytes(&sig.signature);
                vk.verify_strict(self.text.as_bytes(), &signature)
                    .map_err(|_| SignatureFailure::BadSignature)?;
                if !signers.contains(&i) {
                    signers.push(i);
                }
            }
        }
        if signers.is_empty() { Err(SignatureFailure::UnknownSigner) } else { Ok(signers) }
    }
}

impl core::fmt::Display for SignedNote {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.text)?;
        f.write_str("\n")?;
        for sig in &self.signatures {
            let mut blob = [0u8; 68];
            blob[..4].copy_from_slice(sig.key_id.as_bytes());
            blob[4..].copy_from_slice(&sig.signature);
            writeln!(f, "{SIG_PREFIX}{} {}", sig.name, STANDARD.encode(blob))?;
        }
        Ok(())
    }
}

fn valid_text(text: &str) -> bool {
    text.ends_with('\n') && !text.contains("\n\n") && !text.starts_with('\n') && !text.contains('\r')
}

fn parse_signature_line(line: &str) -> Option<NoteSignature> {
    let rest = line.strip_prefix(SIG_PREFIX)?;
    let (name, b64) = rest.split_once(' ')?;
    if !valid_key_name(name) {
        return None;
    }
    let blob = STANDARD.decode(b64).ok()?;
    if blob.len() != 68 {
        return None;
    }
    let key_id = KeyId::from_bytes(blob[..4].try_into().ok()?);
    let signature: [u8; 64] = blob[4..].try_into().ok()?;
    Some(NoteSignature { name: name.to_owned(), key_id, signature })
}

/// An Ed25519 signing key with the name it signs notes under.
pub struct NoteSigner {
    name: String,
    key: SigningKey,
}

impl core::fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Never print key material.
        f.debug_struct("NoteSigner").field("name", &self.name).field("key_id", &self.key_id()).finish()
    }
}

impl NoteSigner {
    /// `None` if the name is not a valid key name.
    pub fn new(name: &str, secret: &[u8; 32]) -> Option<NoteSigner> {
        valid_key_name(name)
            .then(|| NoteSigner { name: name.to_owned(), key: SigningKey::from_bytes(secret) })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn public(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    pub fn key_id(&self) -> KeyId {
        key_id(&self.name, &self.public())
    }

    /// The C2SP verifier key: `<name>+<hex key id>+<base64(0x01 || public key)>`.
    pub fn vkey(&self) -> String {
        let mut raw = [0u8; 33];
        raw[0] = ED25519_ALG;
        raw[1..].copy_from_slice(&self.public());
        format!("{}+{}+{}", self.name, self.key_id(), STANDARD.encode(raw))
    }

    pub fn trusted_key(&self) -> TrustedKey {
        TrustedKey { name: Some(self.name.clone()), public: self.public() }
    }

    /// Parses a signer key in the Go `note` package's format,
    /// `PRIVATE+KEY+<name>+<hex key id>+<base64(0x01 || 32-byte seed)>`,
    /// so keys move between annal and other signed-note tooling. `None` for
    /// any other shape, algorithm, or a key id that does not match.
    pub fn parse_skey(text: &str) -> Option<NoteSigner> {
        let rest = text.trim_end_matches('\n').strip_prefix("PRIVATE+KEY+")?;
        let mut parts = rest.splitn(3, '+');
        let (name, id_hex, key_b64) = (parts.next()?, parts.next()?, parts.next()?);
        let raw = STANDARD.decode(key_b64).ok()?;
        let (&alg, seed) = raw.split_first()?;
        let seed: [u8; 32] = seed.try_into().ok()?;
        if alg != ED25519_ALG {
            return None;
        }
        let signer = NoteSigner::new(name, &seed)?;
        let mut id = [0u8; 4];
        (crate::hex::decode_exact(id_hex.as_bytes(), &mut id) && signer.key_id().as_bytes() == &id)
            .then_some(signer)
    }

    /// The signer key in the format [`NoteSigner::parse_skey`] reads. This is
    /// secret material: write it only to a file the operator asked for.
    pub fn to_skey(&self) -> String {
        let mut raw = [0u8; 33];
        raw[0] = ED25519_ALG;
        raw[1..].copy_from_slice(self.key.as_bytes());
        let text = format!("PRIVATE+KEY+{}+{}+{}", self.name, self.key_id(), STANDARD.encode(raw));
        raw.fill(0);
        text
    }

    /// The operator-facing fingerprint of this key's public half.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.public())
    }

    /// Signs `text` (which must be a valid note text) as a new note.
    pub fn sign_text(&self, text: &str) -> SignedNote {
        assert!(valid_text(text), "note text must be non-empty lines ending in a newline");
        let mut note = SignedNote { text: text.to_owned(), signatures: Vec::new() };
        self.cosign(&mut note);
        note
    }

    /// Adds this key's signature to a note (rotation overlap: old and new key).
    pub fn cosign(&self, note: &mut SignedNote) {
        let signature = self.key.sign(note.text.as_bytes()).to_bytes();
        note.signatures.push(NoteSignature { name: self.name.clone(), key_id: self.key_id(), signature });
    }
}

/// A tlog checkpoint: the log commits to (origin, size, root).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: Origin,
    pub size: u64,
    pub root: Hash32,
    /// Extra body lines after the root; signed, otherwise opaque.
    pub extensions: Vec<String>,
}

impl Checkpoint {
    pub fn new(origin: Origin, size: u64, root: Hash32) -> Checkpoint {
        Checkpoint { origin, size, root, extensions: Vec::new() }
    }

    /// The body text that gets signed.
    pub fn body(&self) -> String {
        let mut out = format!("{}\n{}\n{}\n", self.origin, self.size, STANDARD.encode(self.root.as_bytes()));
        for ext in &self.extensions {
            out.push_str(ext);
            out.push('\n');
        }
        out
    }

    pub fn parse_body(text: &str) -> Result<Checkpoint, NoteError> {
        let body = text.strip_suffix('\n').ok_or(NoteError::BadCheckpoint)?;
        let mut lines = body.split('\n');
        let origin = lines.next().and_then(Origin::parse).ok_or(NoteError::BadCheckpoint)?;
        let size = lines.next().and_then(parse_decimal_u64).ok_or(NoteError::BadCheckpoint)?;
        let root = lines
            .next()
            .and_then(|l| STANDARD.decode(l).ok())
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .map(Hash32::from_bytes)
            .ok_or(NoteError::BadCheckpoint)?;
        let extensions: Vec<String> = lines.map(str::to_owned).collect();
        if extensions.len() > NOTE_EXTENSIONS_COUNT_MAX || extensions.iter().any(|e| e.is_empty()) {
            return Err(NoteError::BadCheckpoint);
        }
        Ok(Checkpoint { origin, size, root, extensions })
    }

    pub fn sign(&self, signer: &NoteSigner) -> SignedNote {
        signer.sign_text(&self.body())
    }
}

/// A checkpoint together with its signed note, parsed from note text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedCheckpoint {
    pub checkpoint: Checkpoint,
    pub note: SignedNote,
}

impl SignedCheckpoint {
    pub fn parse(note_text: &str) -> Result<SignedCheckpoint, NoteError> {
        let note = SignedNote::parse(note_text)?;
        let checkpoint = Checkpoint::parse_body(note.text())?;
        Ok(SignedCheckpoint { checkpoint, note })
    }
}

/// Decimal without sign, leading zeros or overflow: one spelling per number.
pub(crate) fn parse_decimal_u64(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    if b.is_empty() || b.len() > 20 || (b[0] == b'0' && b.len() > 1) || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer(seed: u8) -> NoteSigner {
        NoteSigner::new("annal.test", &[seed; 32]).unwrap()
    }

    fn checkpoint() -> Checkpoint {
        Checkpoint::new(Origin::parse("annal.test/acme/orders").unwrap(), 42, Hash32::from_bytes([3; 32]))
    }

    #[test]
    fn sign_parse_verify_round_trip() {
        let s = signer(1);
        let note = checkpoint().sign(&s);
        let text = note.to_string();
        let parsed = SignedCheckpoint::parse(&text).unwrap();
        assert_eq!(parsed.checkpoint, checkpoint());
        assert_eq!(parsed.note.verify(&[s.trusted_key()]), Ok(vec![0]));
        assert_eq!(parsed.note.verify(&[signer(2).trusted_key()]), Err(SignatureFailure::UnknownSigner));
        assert_eq!(parsed.note.verify(&[]), Err(SignatureFailure::UnknownSigner));
    }

    #[test]
    fn cosigned_note_verifies_under_either_key() {
        let (old, new) = (signer(1), signer(2));
        let mut note = checkpoint().sign(&old);
        new.cosign(&mut note);
        let parsed = SignedNote::parse(&note.to_string()).unwrap();
        assert_eq!(parsed.verify(&[new.trusted_key()]), Ok(vec![0]));
        assert_eq!(parsed.verify(&[old.trusted_key(), new.trusted_key()]), Ok(vec![0, 1]));
    }

    #[test]
    fn tampered_body_fails_signature() {
        let s = signer(1);
        let text = checkpoint().sign(&s).to_string().replacen("42", "43", 1);
        let parsed = SignedNote::parse(&text).unwrap();
        assert_eq!(parsed.verify(&[s.trusted_key()]), Err(SignatureFailure::BadSignature));
    }

    #[test]
    fn trusted_key_forms() {
        let s = signer(1);
        let vkey = TrustedKey::parse(&s.vkey()).unwrap();
        assert_eq!(vkey.name(), Some("annal.test"));
        let bare = TrustedKey::parse(&s.trusted_key().to_ed25519_string()).unwrap();
        assert_eq!(bare.public(), &s.public());
        // a vkey whose id does not match its key is refused
        let mut bad = s.vkey();
        bad.replace_range(11..12, if &bad[11..12] == "0" { "1" } else { "0" });
        assert_eq!(TrustedKey::parse(&bad), None);
        assert_eq!(TrustedKey::parse("ed25519:AAAA"), None);
        // a key bound to another name does not match
        let other = TrustedKey::parse(&NoteSigner::new("other", &[1; 32]).unwrap().vkey()).unwrap();
        let note = SignedNote::parse(&checkpoint().sign(&s).to_string()).unwrap();
        assert_eq!(note.verify(&[other]), Err(SignatureFailure::UnknownSigner));
    }

    #[test]
    fn skey_round_trip_and_refusals() {
        let s = signer(7);
        let skey = s.to_skey();
        assert!(skey.starts_with("PRIVATE+KEY+annal.test+"));
        let back = NoteSigner::parse_skey(&skey).unwrap();
        assert_eq!((back.name(), back.public()), (s.name(), s.public()));
        assert!(NoteSigner::parse_skey(&format!("{skey}\n")).is_some());
        // The vkey half of the pair names the same key.
        assert!(s.vkey().starts_with(&format!("annal.test+{}+", s.key_id())));
        let wrong_id = skey.replacen(&s.key_id().to_string(), "00000000", 1);
        for bad in [
            wrong_id.as_str(),
            "PRIVATE+KEY+x",
            "",
            &skey[..skey.len() - 4],
            &skey.replace("PRIVATE", "PUBLIC"),
        ] {
            assert!(NoteSigner::parse_skey(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn parse_rejects() {
        let good = checkpoint().sign(&signer(1)).to_string();
        let check = |text: &str| assert!(SignedCheckpoint::parse(text).is_err(), "{text:?}");
        check("");
        check(&good.replace("\n\n", "\n"));
        check(good.trim_end());
        check(&good.replace('\u{2014}', "-"));
        check(&good.replace("\n42\n", "\n042\n"));
        check(&good.replace("\n42\n", "\n+42\n"));
        check(&good.replace("annal.test/acme/orders", "annal.test/acme"));
        check(&format!("{good}\u{2014} x y\n"));
    }

    #[test]
    fn decimal_one_spelling() {
        assert_eq!(parse_decimal_u64("0"), Some(0));
        assert_eq!(parse_decimal_u64("18446744073709551615"), Some(u64::MAX));
        for bad in ["", "00", "01", "-1", "+1", "18446744073709551616", " 1", "1 "] {
            assert_eq!(parse_decimal_u64(bad), None, "{bad:?}");
        }
    }
}
