//! The ledger export (JSON Lines) and its streaming verifier (docs/FORMAT.md, "Export").
//!
//! Line 1 is the header; then records in seq order with checkpoint lines where
//! they were issued; last, an end line with the counts. The verifier keeps a
//! compact range (≤ 64 hashes) and the previous hash, nothing per record, so
//! memory does not grow with the export.

use crate::failure::{Failure, Reason};
use crate::json::{Malformed, Parsed, Parser, write_string, write_u64};
use crate::limits::{EXPORT_KEYS_COUNT_MAX, EXPORT_LINE_BYTES_MAX};
use crate::merkle::{CompactRange, root_from_inclusion};
use crate::note::{SignatureFailure, SignedCheckpoint, SignedNote, TrustedKey};
use crate::record::{Record, RecordError};
use crate::recordjson::{Scratch, read_fields, read_hash_list, write_fields, write_hash_list};
use crate::types::{Hash32, Origin, Seq};

/// The export format version in the header line.
pub const EXPORT_FORMAT: u64 = 1;

/// Appends the header line.
pub fn write_header(out: &mut Vec<u8>, origin: &Origin, vkeys: &[String]) {
    out.extend_from_slice(b"{\"type\":\"header\",\"format\":");
    write_u64(out, EXPORT_FORMAT);
    out.extend_from_slice(b",\"origin\":");
    write_string(out, &origin.to_string());
    out.extend_from_slice(b",\"keys\":[");
    for (i, k) in vkeys.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_string(out, k);
    }
    out.extend_from_slice(b"]}\n");
}

/// Appends a record line. `parent_proofs[i]` is the inclusion proof of
/// same-ledger parent `i` in the tree of size `record.seq()` (the tree just
/// before this record); cross-ledger parents take an empty proof. The list is
/// omitted when the record has no parents.
pub fn write_record(out: &mut Vec<u8>, record: &Record, hash: &Hash32, parent_proofs: &[Vec<Hash32>]) {
    assert_eq!(parent_proofs.len(), record.parents().len(), "one proof per parent");
    out.extend_from_slice(b"{\"type\":\"record\",");
    write_fields(out, &record.view(), hash);
    if !parent_proofs.is_empty() {
        out.extend_from_slice(b",\"parent_proofs\":[");
        for (i, proof) in parent_proofs.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_hash_list(out, proof);
        }
        out.push(b']');
    }
    out.extend_from_slice(b"}\n");
}

/// Appends a checkpoint line.
pub fn write_checkpoint(out: &mut Vec<u8>, note: &SignedNote) {
    out.extend_from_slice(b"{\"type\":\"checkpoint\",\"note\":");
    write_string(out, &note.to_string());
    out.extend_from_slice(b"}\n");
}

/// Appends the end line.
pub fn write_end(out: &mut Vec<u8>, records: u64, checkpoints: u64) {
    out.extend_from_slice(b"{\"type\":\"end\",\"records\":");
    write_u64(out, records);
    out.extend_from_slice(b",\"checkpoints\":");
    write_u64(out, checkpoints);
    out.extend_from_slice(b"}\n");
}

/// What a fully verified export proved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportSummary {
    pub origin: Origin,
    pub records: u64,
    pub checkpoints: u64,
    /// Size and root of the last checkpoint: the records an auditor can hold
    /// the log to. Records past it verified as a chain but are not anchored.
    pub anchored_size: u64,
    pub anchored_root: Option<Hash32>,
    /// Root over every record in the export.
    pub root: Hash32,
    /// Lineage links to other ledgers: bound into the record hash, but their
    /// targets are proven only by a bundle, not by this export.
    pub external_parents: u64,
}

#[derive(Debug, PartialEq, Eq)]
enum Stage {
    Header,
    Body,
    Ended,
}

/// Verifies an export one line at a time in constant memory.
#[derive(Debug)]
pub struct ExportVerifier {
    trusted: Vec<TrustedKey>,
    expect_origin: Option<Origin>,
    stage: Stage,
    line: u64,
    origin: Option<Origin>,
    /// Trusted keys that the header also declares: only these may sign.
    signers: Vec<TrustedKey>,
    next_seq: u64,
    last_hash: Hash32,
    tree: CompactRange,
    checkpoints: u64,
    anchored: Option<(u64, Hash32)>,
    external_parents: u64,
    scratch: Scratch,
    proof: Vec<Hash32>,
    /// The canonical encoding of the record being hashed, reused.
    canonical: Vec<u8>,
}

impl ExportVerifier {
    pub fn new(trusted: Vec<TrustedKey>, expect_origin: Option<Origin>) -> ExportVerifier {
        ExportVerifier {
            trusted,
            expect_origin,
            stage: Stage::Header,
            line: 0,
            origin: None,
            signers: Vec::new(),
            next_seq: 0,
            last_hash: Hash32::ZERO,
            tree: CompactRange::new(),
            checkpoints: 0,
            anchored: None,
            external_parents: 0,
            scratch: Scratch::default(),
            proof: Vec::new(),
            canonical: Vec::with_capacity(1024),
        }
    }

    /// Records verified so far.
    pub fn records(&self) -> u64 {
        self.next_seq
    }

    fn at_line(&self, reason: Reason) -> Failure {
        Failure::new(reason, self.line, self.line)
    }

    fn at_seq(&self, reason: Reason, seq: u64) -> Failure {
        Failure::new(reason, seq, self.line)
    }

    /// Feeds one line, without its terminating newline.
    pub fn push_line(&mut self, line: &[u8]) -> Result<(), Failure> {
        self.line += 1;
        if self.stage == Stage::Ended {
            return Err(self.at_line(Reason::TrailingData));
        }
        if line.len() > EXPORT_LINE_BYTES_MAX {
            return Err(self.at_line(Reason::Malformed));
        }
        let text = std::str::from_utf8(line).map_err(|_| self.at_line(Reason::Malformed))?;
        let mut p = Parser::new(text);
        let kind = line_type(&mut p).map_err(|_| self.at_line(Reason::Malformed))?;
        match (&self.stage, kind) {
            (Stage::Header, LineType::Header) => self.header(&mut p),
            (Stage::Body, LineType::Record) => self.record(&mut p),
            (Stage::Body, LineType::Checkpoint) => self.checkpoint(&mut p),
            (Stage::Body, LineType::End) => self.end(&mut p),
            _ => Err(self.at_line(Reason::Malformed)),
        }
    }

    /// Call after the last line; an export without its end line is truncated.
    pub fn finish(self) -> Result<ExportSummary, Failure> {
        if self.stage != Stage::Ended {
            return Err(Failure::new(Reason::Truncated, self.next_seq, self.line));
        }
        Ok(ExportSummary {
            origin: self.origin.expect("header was read"),
            records: self.next_seq,
            checkpoints: self.checkpoints,
            anchored_size: self.anchored.map_or(0, |(s, _)| s),
            anchored_root: self.anchored.map(|(_, r)| r),
            root: self.tree.root(),
            external_parents: self.external_parents,
        })
    }

    fn header(&mut self, p: &mut Parser<'_>) -> Result<(), Failure> {
        let malformed = |_| Failure::new(Reason::Malformed, 1, 1);
        p.key("format").map_err(malformed)?;
        let format = p.u64().map_err(malformed)?;
        if format != EXPORT_FORMAT {
            return Err(self.at_line(Reason::UnsupportedVersion));
        }
        p.key("origin").map_err(malformed)?;
        let origin =
            Origin::parse(&p.string().map_err(malformed)?).ok_or(Failure::new(Reason::Malformed, 1, 1))?;
        p.key("keys").map_err(malformed)?;
        let mut declared = Vec::new();
        (|| -> Parsed<()> {
            p.begin_array()?;
            while p.next_element()? {
                if declared.len() == EXPORT_KEYS_COUNT_MAX {
                    return Err(Malformed);
                }
                declared.push(TrustedKey::parse(&p.string()?).ok_or(Malformed)?);
            }
            p.end_object()?;
            p.end()
        })()
        .map_err(malformed)?;
        if self.expect_origin.as_ref().is_some_and(|o| *o != origin) {
            return Err(self.at_line(Reason::OriginMismatch));
        }
        // A signature counts only from a key the auditor trusts *and* the
        // export declares; so an edited header key cannot pass unnoticed.
        self.signers = self
            .trusted
            .iter()
            .filter_map(|t| {
                let d = declared.iter().find(|d| d.public() == t.public())?;
                match (t.name(), d.name()) {
                    (Some(a), Some(b)) if a != b => None,
                    (None, _) => Some(d.clone()),
                    _ => Some(t.clone()),
                }
            })
            .collect();
        self.origin = Some(origin);
        self.stage = Stage::Body;
        Ok(())
    }

    fn record(&mut self, p: &mut Parser<'_>) -> Result<(), Failure> {
        let line = self.line;
        let malformed = |_| Failure::new(Reason::Malformed, line, line);
        let rec = read_fields(p, &mut self.scratch).map_err(malformed)?;
        let has_proofs = p.optional_key("parent_proofs").map_err(malformed)?;
        let seq = rec.seq.get();
        if seq != self.next_seq {
            let reason = if seq > self.next_seq { Reason::SeqGap } else { Reason::SeqDuplicate };
            return Err(self.at_seq(reason, self.next_seq));
        }
        if rec.prev != self.last_hash {
            return Err(self.at_seq(Reason::ChainMismatch, seq));
        }
        let origin = self.origin.as_ref().expect("body follows header");
        let view = rec.view(origin.tenant().as_str(), origin.ledger().as_str(), &self.scratch);
        match view.check() {
            Ok(()) => {}
            Err(RecordError::ParentNotEarlier | RecordError::DuplicateParent) => {
                return Err(self.at_seq(Reason::LineageMismatch, seq));
            }
            Err(RecordError::BadPrev) => return Err(self.at_seq(Reason::ChainMismatch, seq)),
            Err(_) => return Err(malformed(Malformed)),
        }
        let hash = view.hash_with(&mut self.canonical);
        if hash != rec.stated_hash {
            return Err(self.at_seq(Reason::RecordHashMismatch, seq));
        }
        // Same-ledger parents are proven against the tree just before this
        // record, which the compact range holds right now.
        if has_proofs == self.scratch.parents.is_empty() {
            return Err(malformed(Malformed));
        }
        if has_proofs {
            let (root_before, size_before) = (self.tree.root(), self.tree.size());
            let mut lineage_ok = true;
            let mut external = 0;
            let parsed = (|| -> Parsed<()> {
                p.begin_array()?;
                for parent in &self.scratch.parents {
                    if !p.next_element()? {
                        return Err(Malformed);
                    }
                    read_hash_list(p, &mut self.proof)?;
                    if parent.ledger == *origin.ledger() {
                        let root =
                            root_from_inclusion(parent.seq.get(), size_before, &parent.hash, &self.proof);
                        lineage_ok &= root == Some(root_before);
                    } else {
                        lineage_ok &= self.proof.is_empty();
                        external += 1;
                    }
                }
                if p.next_element()? {
                    return Err(Malformed);
                }
                Ok(())
            })();
            parsed.map_err(malformed)?;
            if !lineage_ok {
                return Err(self.at_seq(Reason::LineageMismatch, seq));
            }
            self.external_parents += external;
        }
        p.end_object().and_then(|()| p.end()).map_err(malformed)?;
        self.tree.append(hash);
        self.last_hash = hash;
        self.next_seq = Seq::new(seq).next().map(Seq::get).ok_or(malformed(Malformed))?;
        Ok(())
    }

    fn checkpoint(&mut self, p: &mut Parser<'_>) -> Result<(), Failure> {
        let at = self.next_seq;
        let malformed = self.at_line(Reason::Malformed);
        let note = (|| -> Parsed<_> {
            p.key("note")?;
            let note = p.string()?;
            p.end_object()?;
            p.end()?;
            Ok(note)
        })()
        .map_err(|_| malformed)?;
        let signed = SignedCheckpoint::parse(&note).map_err(|_| malformed)?;
        let cp = &signed.checkpoint;
        if Some(&cp.origin) != self.origin.as_ref() {
            return Err(self.at_seq(Reason::OriginMismatch, at));
        }
        signed.note.verify(&self.signers).map_err(|e| self.at_seq(signature_reason(e), at))?;
        if cp.size != self.next_seq || cp.root != self.tree.root() {
            return Err(self.at_seq(Reason::AnchorMismatch, at));
        }
        // Both roots come from one leaf stream, so consecutive checkpoints are
        // consistent by construction; what is left to check is their order.
        if cp.size == 0 || self.anchored.is_some_and(|(size, _)| size >= cp.size) {
            return Err(self.at_seq(Reason::CheckpointOrder, at));
        }
        self.anchored = Some((cp.size, cp.root));
        self.checkpoints += 1;
        Ok(())
    }

    fn end(&mut self, p: &mut Parser<'_>) -> Result<(), Failure> {
        let counts = (|| -> Parsed<(u64, u64)> {
            p.key("records")?;
            let records = p.u64()?;
            p.key("checkpoints")?;
            let checkpoints = p.u64()?;
            p.end_object()?;
            p.end()?;
            Ok((records, checkpoints))
        })()
        .map_err(|_| self.at_line(Reason::Malformed))?;
        if counts != (self.next_seq, self.checkpoints) {
            return Err(self.at_seq(Reason::CountMismatch, self.next_seq));
        }
        self.stage = Stage::Ended;
        Ok(())
    }
}

pub(crate) fn signature_reason(e: SignatureFailure) -> Reason {
    match e {
        SignatureFailure::BadSignature => Reason::BadSignature,
        SignatureFailure::UnknownSigner => Reason::UnknownSigner,
    }
}

enum LineType {
    Header,
    Record,
    Checkpoint,
    End,
}

fn line_type(p: &mut Parser<'_>) -> Parsed<LineType> {
    p.begin_object()?;
    p.key("type")?;
    // Nearly every line is a record: skip the general string read for it.
    if p.plain_literal("record") {
        return Ok(LineType::Record);
    }
    Ok(match &*p.string()? {
        "header" => LineType::Header,
        "record" => LineType::Record,
        "checkpoint" => LineType::Checkpoint,
        "end" => LineType::End,
        _ => return Err(Malformed),
    })
}
