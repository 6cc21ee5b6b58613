//! The proof bundle: everything needed to verify one record offline
//! (docs/FORMAT.md, "Bundle").
//!
//! Members, in order: `type` ("bundle"), `format`, `origin`, `record`
//! (the record object), `checkpoint` (signed note text), `inclusion` (hex
//! hashes), `parents` (one per record parent: `ledger`, `seq`, `hash`,
//! `checkpoint` (note or null), `inclusion`).

use crate::export::signature_reason;
use crate::failure::{Failure, Reason};
use crate::json::{Malformed, Parsed, Parser, write_string, write_u64};
use crate::limits::BUNDLE_BYTES_MAX;
use crate::merkle::root_from_inclusion;
use crate::note::{SignedCheckpoint, SignedNote, TrustedKey};
use crate::record::{Parent, Record, RecordError};
use crate::recordjson::{
    Scratch, read_fields, read_hash, read_hash_list, write_fields, write_hash, write_hash_list,
};
use crate::types::{Hash32, LedgerName, Origin, Seq};

/// The bundle format version.
pub const BUNDLE_FORMAT: u64 = 1;

/// The proof for one lineage parent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParentProof {
    /// `None`: proven in the record's own checkpoint (same ledger only).
    pub checkpoint: Option<SignedNote>,
    pub inclusion: Vec<Hash32>,
}

/// Writes a bundle as one line of JSON (with a final newline).
pub fn write_bundle(
    out: &mut Vec<u8>,
    origin: &Origin,
    record: &Record,
    checkpoint: &SignedNote,
    inclusion: &[Hash32],
    parents: &[ParentProof],
) {
    assert_eq!(parents.len(), record.parents().len(), "one proof per parent");
    out.extend_from_slice(b"{\"type\":\"bundle\",\"format\":");
    write_u64(out, BUNDLE_FORMAT);
    out.extend_from_slice(b",\"origin\":");
    write_string(out, &origin.to_string());
    out.extend_from_slice(b",\"record\":{");
    write_fields(out, &record.view(), &record.hash());
    out.extend_from_slice(b"},\"checkpoint\":");
    write_string(out, &checkpoint.to_string());
    out.extend_from_slice(b",\"inclusion\":");
    write_hash_list(out, inclusion);
    out.extend_from_slice(b",\"parents\":[");
    for (i, (link, proof)) in record.parents().iter().zip(parents).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"ledger\":");
        write_string(out, link.ledger.as_str());
        out.extend_from_slice(b",\"seq\":");
        write_u64(out, link.seq.get());
        out.extend_from_slice(b",\"hash\":");
        write_hash(out, &link.hash);
        out.extend_from_slice(b",\"checkpoint\":");
        match &proof.checkpoint {
            Some(note) => write_string(out, &note.to_string()),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"inclusion\":");
        write_hash_list(out, &proof.inclusion);
        out.push(b'}');
    }
    out.extend_from_slice(b"]}\n");
}

/// What a verified bundle proved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BundleSummary {
    pub origin: Origin,
    pub seq: Seq,
    pub hash: Hash32,
    pub checkpoint_size: u64,
    pub checkpoint_root: Hash32,
    pub parents: u64,
}

struct ReadParent {
    parent: Parent,
    checkpoint: Option<String>,
    inclusion: Vec<Hash32>,
}

/// Verifies a bundle against the trusted keys (and an expected origin).
///
/// The record hash is recomputed, the inclusion proof is folded into a root,
/// and only then is the checkpoint consulted: its size and root must be the
/// ones the proof produced, and its signature must verify. A signature on
/// some other root proves nothing about this record.
pub fn verify_bundle(
    bytes: &[u8],
    trusted: &[TrustedKey],
    expect_origin: Option<&Origin>,
) -> Result<BundleSummary, Failure> {
    let malformed = |index: u64| Failure::new(Reason::Malformed, index, 0);
    let fail = |reason: Reason, index: u64| Failure::new(reason, index, 0);
    if bytes.len() > BUNDLE_BYTES_MAX {
        return Err(malformed(0));
    }
    let text = std::str::from_utf8(bytes).map_err(|_| malformed(0))?;
    let mut p = Parser::new(text);
    let mut scratch = Scratch::default();
    let mut read_parents: Vec<ReadParent> = Vec::new();
    let mut inclusion = Vec::new();
    let mut format = 0;
    let parsed = (|| -> Parsed<_> {
        p.begin_object()?;
        p.key("type")?;
        if p.string()? != "bundle" {
            return Err(Malformed);
        }
        p.key("format")?;
        format = p.u64()?;
        if format != BUNDLE_FORMAT {
            return Ok(None);
        }
        p.key("origin")?;
        let origin = Origin::parse(&p.string()?).ok_or(Malformed)?;
        p.key("record")?;
        p.begin_object()?;
        let rec = read_fields(&mut p, &mut scratch)?;
        p.end_object()?;
        p.key("checkpoint")?;
        let checkpoint = p.string()?.into_owned();
        p.key("inclusion")?;
        read_hash_list(&mut p, &mut inclusion)?;
        p.key("parents")?;
        p.begin_array()?;
        while p.next_element()? {
            if read_parents.len() == scratch.parents.len() {
                return Err(Malformed);
            }
            p.begin_object()?;
            p.key("ledger")?;
            let ledger = LedgerName::new(&p.string()?).map_err(|_| Malformed)?;
            p.key("seq")?;
            let seq = Seq::new(p.u64()?);
            p.key("hash")?;
            let hash = read_hash(&mut p)?;
            p.key("checkpoint")?;
            let checkpoint = if p.is_null()? { None } else { Some(p.string()?.into_owned()) };
            p.key("inclusion")?;
            let mut proof = Vec::new();
            read_hash_list(&mut p, &mut proof)?;
            p.end_object()?;
            read_parents.push(ReadParent {
                parent: Parent { ledger, seq, hash },
                checkpoint,
                inclusion: proof,
            });
        }
        p.end_object()?;
        p.end()?;
        Ok(Some((origin, rec, checkpoint)))
    })();
    let (origin, rec, checkpoint_text) = match parsed {
        Ok(Some(v)) => v,
        Ok(None) => return Err(fail(Reason::UnsupportedVersion, 0)),
        Err(Malformed) => return Err(malformed(0)),
    };
    let seq = rec.seq.get();
    if expect_origin.is_some_and(|o| *o != origin) {
        return Err(fail(Reason::OriginMismatch, seq));
    }
    let view = rec.view(origin.tenant().as_str(), origin.ledger().as_str(), &scratch);
    match view.check() {
        Ok(()) => {}
        Err(RecordError::ParentNotEarlier | RecordError::DuplicateParent) => {
            return Err(fail(Reason::LineageMismatch, seq));
        }
        Err(RecordError::BadPrev) => return Err(fail(Reason::ChainMismatch, seq)),
        Err(_) => return Err(malformed(seq)),
    }
    let hash = view.hash();
    if hash != rec.stated_hash {
        return Err(fail(Reason::RecordHashMismatch, seq));
    }
    let anchor = anchor(&checkpoint_text, &origin, trusted, seq)?;
    if root_from_inclusion(seq, anchor.size, &hash, &inclusion) != Some(anchor.root) {
        return Err(fail(Reason::AnchorMismatch, seq));
    }
    // Every parent the record names must be proven, in the same order, with
    // exactly the hash the record committed to.
    if read_parents.len() != scratch.parents.len() {
        return Err(fail(Reason::LineageMismatch, seq));
    }
    for (named, proven) in scratch.parents.iter().zip(&read_parents) {
        if *named != proven.parent {
            return Err(fail(Reason::LineageMismatch, seq));
        }
        let parent_anchor = match &proven.checkpoint {
            None if named.ledger == *origin.ledger() => anchor.clone(),
            None => return Err(fail(Reason::LineageMismatch, seq)),
            Some(text) => {
                // A parent lives in the same log and tenant, in the ledger it names.
                let parent_origin = origin.with_ledger(named.ledger.clone());
                anchor_for_parent(text, &parent_origin, trusted, seq)?
            }
        };
        let root = root_from_inclusion(named.seq.get(), parent_anchor.size, &named.hash, &proven.inclusion);
        if root != Some(parent_anchor.root) {
            return Err(fail(Reason::LineageMismatch, seq));
        }
    }
    Ok(BundleSummary {
        origin,
        seq: rec.seq,
        hash,
        checkpoint_size: anchor.size,
        checkpoint_root: anchor.root,
        parents: read_parents.len() as u64,
    })
}

#[derive(Clone)]
struct Anchor {
    size: u64,
    root: Hash32,
}

fn anchor(text: &str, origin: &Origin, trusted: &[TrustedKey], seq: u64) -> Result<Anchor, Failure> {
    let signed = SignedCheckpoint::parse(text).map_err(|_| Failure::new(Reason::Malformed, seq, 0))?;
    if signed.checkpoint.origin != *origin {
        return Err(Failure::new(Reason::OriginMismatch, seq, 0));
    }
    signed.note.verify(trusted).map_err(|e| Failure::new(signature_reason(e), seq, 0))?;
    Ok(Anchor { size: signed.checkpoint.size, root: signed.checkpoint.root })
}

/// A parent's checkpoint from another origin is a lineage problem, not the
/// bundle's own origin problem: report it as such.
fn anchor_for_parent(
    text: &str,
    origin: &Origin,
    trusted: &[TrustedKey],
    seq: u64,
) -> Result<Anchor, Failure> {
    anchor(text, origin, trusted, seq).map_err(|f| match f.reason {
        Reason::OriginMismatch => Failure::new(Reason::LineageMismatch, seq, 0),
        _ => f,
    })
}

/// What a verified standalone checkpoint says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointSummary {
    pub origin: Origin,
    pub size: u64,
    pub root: Hash32,
    /// The trusted keys that signed it (their `ed25519:` forms).
    pub signers: Vec<String>,
}

/// Verifies a signed checkpoint note on its own.
pub fn verify_checkpoint(
    bytes: &[u8],
    trusted: &[TrustedKey],
    expect_origin: Option<&Origin>,
) -> Result<CheckpointSummary, Failure> {
    let malformed = Failure::new(Reason::Malformed, 0, 0);
    let text = std::str::from_utf8(bytes).map_err(|_| malformed)?;
    let signed = SignedCheckpoint::parse(text).map_err(|_| malformed)?;
    let size = signed.checkpoint.size;
    if expect_origin.is_some_and(|o| *o != signed.checkpoint.origin) {
        return Err(Failure::new(Reason::OriginMismatch, size, 0));
    }
    let signers = signed.note.verify(trusted).map_err(|e| Failure::new(signature_reason(e), size, 0))?;
    Ok(CheckpointSummary {
        origin: signed.checkpoint.origin,
        size,
        root: signed.checkpoint.root,
        signers: signers.into_iter().map(|i| trusted[i].to_ed25519_string()).collect(),
    })
}
