//! The signing-identity log (docs/FORMAT.md, "Identity log"): the genesis key,
//! then one rotation per entry, each a signed note by the old key *and* the
//! new key. An auditor who trusts only the genesis key (the trust root) can
//! derive every key the log has legitimately used, and nothing else.

use crate::failure::{Failure, Reason};
use crate::json::{Malformed, Parsed, Parser, write_string, write_u64};
use crate::note::{SignedNote, TrustedKey};

/// The identity log format version.
pub const IDENTITY_FORMAT: u64 = 1;
/// First line of every rotation statement.
pub const ROTATION_TAG: &str = "annal identity rotation v1";
/// The statement of the first entry, which nothing signs: the trust root is
/// given to the auditor out of band.
pub const GENESIS_STATEMENT: &str = "genesis";
/// Most entries an identity log may have.
pub const IDENTITY_ENTRIES_MAX: usize = 1024;

/// The note text a rotation to entry `seq` signs: tag, seq, old vkey, new vkey.
pub fn rotation_text(seq: u64, old_vkey: &str, new_vkey: &str) -> String {
    format!("{ROTATION_TAG}\n{seq}\n{old_vkey}\n{new_vkey}\n")
}

/// One entry as written: `key` is a C2SP vkey, `statement` is `genesis` or
/// the rotation note.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityLogEntry {
    pub seq: u64,
    pub key: String,
    pub timestamp_ms: u64,
    pub statement: String,
}

/// Appends the identity log JSON:
/// `{"type":"identity_log","format":1,"entries":[{"seq","key","timestamp_ms","statement"}]}`.
pub fn write_identity_log(out: &mut Vec<u8>, entries: &[IdentityLogEntry]) {
    out.extend_from_slice(b"{\"type\":\"identity_log\",\"format\":");
    write_u64(out, IDENTITY_FORMAT);
    out.extend_from_slice(b",\"entries\":[");
    for (i, e) in entries.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"seq\":");
        write_u64(out, e.seq);
        out.extend_from_slice(b",\"key\":");
        write_string(out, &e.key);
        out.extend_from_slice(b",\"timestamp_ms\":");
        write_u64(out, e.timestamp_ms);
        out.extend_from_slice(b",\"statement\":");
        write_string(out, &e.statement);
        out.push(b'}');
    }
    out.extend_from_slice(b"]}\n");
}

/// Verifies an identity log from the trust root and returns every key it
/// delegates to, in order (the root first). Failure indexes are entry seqs.
pub fn verify_identity_log(bytes: &[u8], root: &TrustedKey) -> Result<Vec<TrustedKey>, Failure> {
    let malformed = Failure::new(Reason::Malformed, 0, 0);
    let text = std::str::from_utf8(bytes).map_err(|_| malformed)?;
    let mut p = Parser::new(text);
    let entries = parse(&mut p).map_err(|_| malformed)?;
    verify_identity_entries(&entries, root)
}

/// [`verify_identity_log`] for entries already read (a store's own log),
/// with the same limits and answers as for their JSON.
pub fn verify_identity_entries(
    entries: &[IdentityLogEntry],
    root: &TrustedKey,
) -> Result<Vec<TrustedKey>, Failure> {
    let malformed = |i: u64| Failure::new(Reason::Malformed, i, 0);
    if entries.len() > IDENTITY_ENTRIES_MAX {
        return Err(malformed(0));
    }
    let mut keys: Vec<TrustedKey> = Vec::with_capacity(entries.len());
    for (i, e) in entries.iter().enumerate() {
        let seq = i as u64;
        if e.seq != seq {
            return Err(Failure::new(
                if e.seq > seq { Reason::SeqGap } else { Reason::SeqDuplicate },
                seq,
                0,
            ));
        }
        let key = TrustedKey::parse(&e.key).filter(|k| k.name().is_some()).ok_or(malformed(seq))?;
        match keys.last() {
            None => {
                if key.public() != root.public() || root.name().is_some_and(|n| Some(n) != key.name()) {
                    return Err(Failure::new(Reason::UnknownSigner, seq, 0));
                }
                if e.statement != GENESIS_STATEMENT {
                    return Err(malformed(seq));
                }
            }
            Some(old) => {
                let note = SignedNote::parse(&e.statement).map_err(|_| malformed(seq))?;
                let old_vkey = vkey_of(old);
                if note.text() != rotation_text(seq, &old_vkey, &e.key) {
                    return Err(Failure::new(Reason::ChainMismatch, seq, 0));
                }
                // Both halves of the handover must sign: the old key vouches
                // for the new one, and the new key proves it is held.
                for signer in [old, &key] {
                    note.verify(std::slice::from_ref(signer))
                        .map_err(|e| Failure::new(crate::export::signature_reason(e), seq, 0))?;
                }
            }
        }
        keys.push(key);
    }
    if keys.is_empty() {
        return Err(malformed(0));
    }
    Ok(keys)
}

/// The vkey text of a named trusted key.
fn vkey_of(key: &TrustedKey) -> String {
    key.vkey().expect("identity keys are named")
}

fn parse(p: &mut Parser<'_>) -> Parsed<Vec<IdentityLogEntry>> {
    p.begin_object()?;
    p.key("type")?;
    if p.string()? != "identity_log" {
        return Err(Malformed);
    }
    p.key("format")?;
    if p.u64()? != IDENTITY_FORMAT {
        return Err(Malformed);
    }
    p.key("entries")?;
    p.begin_array()?;
    let mut entries = Vec::new();
    while p.next_element()? {
        if entries.len() == IDENTITY_ENTRIES_MAX {
            return Err(Malformed);
        }
        p.begin_object()?;
        p.key("seq")?;
        let seq = p.u64()?;
        p.key("key")?;
        let key = p.string()?.into_owned();
        p.key("timestamp_ms")?;
        let timestamp_ms = p.u64()?;
        p.key("statement")?;
        let statement = p.string()?.into_owned();
        p.end_object()?;
        entries.push(IdentityLogEntry { seq, key, timestamp_ms, statement });
    }
    p.end_object()?;
    p.end()?;
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::note::NoteSigner;

    fn signer(seed: u8) -> NoteSigner {
        NoteSigner::new("annal.test", &[seed; 32]).unwrap()
    }

    fn rotation(seq: u64, old: &NoteSigner, new: &NoteSigner) -> IdentityLogEntry {
        let mut note = old.sign_text(&rotation_text(seq, &old.vkey(), &new.vkey()));
        new.cosign(&mut note);
        IdentityLogEntry { seq, key: new.vkey(), timestamp_ms: 10 + seq, statement: note.to_string() }
    }

    fn log(entries: &[IdentityLogEntry]) -> Vec<u8> {
        let mut out = Vec::new();
        write_identity_log(&mut out, entries);
        out
    }

    fn genesis(s: &NoteSigner) -> IdentityLogEntry {
        IdentityLogEntry { seq: 0, key: s.vkey(), timestamp_ms: 1, statement: GENESIS_STATEMENT.into() }
    }

    #[test]
    fn rotations_delegate_from_the_root() {
        let (a, b, c) = (signer(1), signer(2), signer(3));
        let bytes = log(&[genesis(&a), rotation(1, &a, &b), rotation(2, &b, &c)]);
        let keys = verify_identity_log(&bytes, &a.trusted_key()).unwrap();
        let publics: Vec<_> = keys.iter().map(|k| *k.public()).collect();
        assert_eq!(publics, vec![a.public(), b.public(), c.public()]);
        // Trusting another root: nothing is delegated.
        let err = verify_identity_log(&bytes, &b.trusted_key()).unwrap_err();
        assert_eq!((err.reason, err.index), (Reason::UnknownSigner, 0));
    }

    #[test]
    fn a_rotation_needs_both_keys() {
        let (a, b, x) = (signer(1), signer(2), signer(9));
        let check = |entries: &[IdentityLogEntry], reason: Reason, index: u64| {
            let err = verify_identity_log(&log(entries), &a.trusted_key()).unwrap_err();
            assert_eq!((err.reason, err.index), (reason, index));
        };
        // Only the new key signed (a self-appointed key).
        let mut only_new = rotation(1, &a, &b);
        only_new.statement = b.sign_text(&rotation_text(1, &a.vkey(), &b.vkey())).to_string();
        check(&[genesis(&a), only_new], Reason::UnknownSigner, 1);
        // Only the old key signed (the new key's holder never agreed).
        let mut only_old = rotation(1, &a, &b);
        only_old.statement = a.sign_text(&rotation_text(1, &a.vkey(), &b.vkey())).to_string();
        check(&[genesis(&a), only_old], Reason::UnknownSigner, 1);
        // The statement names another key than the entry.
        let mut swapped = rotation(1, &a, &b);
        swapped.key = x.vkey();
        check(&[genesis(&a), swapped], Reason::ChainMismatch, 1);
        // Rotation signed by an outsider instead of the current key.
        check(&[genesis(&a), rotation(1, &x, &b)], Reason::ChainMismatch, 1);
        // Gaps and repeats.
        check(&[genesis(&a), rotation(2, &a, &b)], Reason::SeqGap, 1);
        check(&[], Reason::Malformed, 0);
    }
}
