//! Verification outcomes: a small closed set of reasons with the failing index.

use core::fmt;

/// Why an artifact failed verification. The string forms are a stable
/// contract (CLI, JSON output, HTTP `/v1/verify`, metrics labels).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// Not the documented shape: bad JSON, a missing or extra field, bad hex
    /// or base64, an invalid name or content type.
    Malformed,
    /// The input ends before the export's end line, or mid-line.
    Truncated,
    /// A format version this verifier does not know.
    UnsupportedVersion,
    /// A record's seq is past the next expected one (a record is missing).
    SeqGap,
    /// A record's seq is before the next expected one (repeated or reordered).
    SeqDuplicate,
    /// A record's `prev` is not the hash of the record before it.
    ChainMismatch,
    /// A record's stated hash is not the hash of its contents.
    RecordHashMismatch,
    /// A lineage parent is not proven: wrong hash, bad proof, not earlier,
    /// repeated, or in another tenant.
    LineageMismatch,
    /// A checkpoint does not commit to the records before it: wrong size or
    /// root, or an inclusion proof that does not reach its root.
    AnchorMismatch,
    /// Checkpoint sizes do not strictly increase.
    CheckpointOrder,
    /// A signature line that claims a trusted key does not verify.
    BadSignature,
    /// No signature from a trusted key.
    UnknownSigner,
    /// The artifact is for another log, tenant or ledger than expected.
    OriginMismatch,
    /// The end line's counts differ from what was read.
    CountMismatch,
    /// Data after the end line.
    TrailingData,
}

impl Reason {
    pub const ALL: [Reason; 15] = [
        Reason::Malformed,
        Reason::Truncated,
        Reason::UnsupportedVersion,
        Reason::SeqGap,
        Reason::SeqDuplicate,
        Reason::ChainMismatch,
        Reason::RecordHashMismatch,
        Reason::LineageMismatch,
        Reason::AnchorMismatch,
        Reason::CheckpointOrder,
        Reason::BadSignature,
        Reason::UnknownSigner,
        Reason::OriginMismatch,
        Reason::CountMismatch,
        Reason::TrailingData,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::Malformed => "malformed",
            Reason::Truncated => "truncated",
            Reason::UnsupportedVersion => "unsupported_version",
            Reason::SeqGap => "seq_gap",
            Reason::SeqDuplicate => "seq_duplicate",
            Reason::ChainMismatch => "chain_mismatch",
            Reason::RecordHashMismatch => "record_hash_mismatch",
            Reason::LineageMismatch => "lineage_mismatch",
            Reason::AnchorMismatch => "anchor_mismatch",
            Reason::CheckpointOrder => "checkpoint_order",
            Reason::BadSignature => "bad_signature",
            Reason::UnknownSigner => "unknown_signer",
            Reason::OriginMismatch => "origin_mismatch",
            Reason::CountMismatch => "count_mismatch",
            Reason::TrailingData => "trailing_data",
        }
    }

    /// One sentence for humans; fixed text, so output stays deterministic.
    pub const fn describe(self) -> &'static str {
        match self {
            Reason::Malformed => "input is not in the documented format",
            Reason::Truncated => "input ends before the export's end line",
            Reason::UnsupportedVersion => "unknown format version",
            Reason::SeqGap => "a record is missing before this seq",
            Reason::SeqDuplicate => "a record is repeated or out of order at this seq",
            Reason::ChainMismatch => "prev does not match the previous record's hash",
            Reason::RecordHashMismatch => "stated hash does not match the record's contents",
            Reason::LineageMismatch => "a lineage parent is not proven",
            Reason::AnchorMismatch => "checkpoint does not commit to these records",
            Reason::CheckpointOrder => "checkpoint sizes do not strictly increase",
            Reason::BadSignature => "a signature from a trusted key does not verify",
            Reason::UnknownSigner => "not signed by any trusted key",
            Reason::OriginMismatch => "artifact is for another log, tenant or ledger",
            Reason::CountMismatch => "end line counts differ from the records and checkpoints read",
            Reason::TrailingData => "data after the end line",
        }
    }

    pub fn parse(text: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.as_str() == text)
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A verification failure: the reason and where.
///
/// `index` is the seq of the first record that cannot be trusted, or for a
/// checkpoint the tree size it had to have; for line-level problems
/// (`malformed`, `trailing_data`, header failures) it is the 1-based line
/// number in an export (0 in a bundle). `line` is always the export line
/// (0 for bundles and single checkpoints). docs/FORMAT.md lists every case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Failure {
    pub reason: Reason,
    pub index: u64,
    pub line: u64,
}

impl Failure {
    pub const fn new(reason: Reason, index: u64, line: u64) -> Failure {
        Failure { reason, index, line }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FAILED at index {}: {}: {}", self.index, self.reason, self.reason.describe())?;
        if self.line != 0 {
            write!(f, " (line {})", self.line)?;
        }
        Ok(())
    }
}

impl std::error::Error for Failure {}
