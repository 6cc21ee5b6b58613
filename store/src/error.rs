//! One error enum per operation family. Expected refusals (conflicts, bad
//! input) are the inner `Result` of a write, so `?` cannot hide them.

use core::fmt;
use std::path::PathBuf;

use annal_chain::{NoteError, RecordError, Seq};

/// A stored value that does not match what the store wrote: a record whose
/// recomputed hash or chain link differs, a value that does not decode, a
/// missing Merkle node. Never served as valid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Corruption {
    pub tenant: String,
    pub ledger: String,
    /// The record (or tree position) that failed; `None` for the ledger row.
    pub seq: Option<u64>,
    pub what: &'static str,
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "corruption in ledger {}/{}", self.tenant, self.ledger)?;
        if let Some(seq) = self.seq {
            write!(f, " at seq {seq}")?;
        }
        write!(f, ": {}", self.what)
    }
}

/// Why the store could not be opened.
#[derive(Debug)]
pub enum OpenError {
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    /// redb refused to open or read the database.
    Database(String),
    /// The database records a migration step this code does not know: it was
    /// written by newer code.
    UnknownMigration {
        id: u32,
    },
    /// An applied step's checksum differs from the code's definition.
    MigrationChecksum {
        id: u32,
        expected: String,
        actual: String,
    },
    /// The schema head is not the one the caller requires; nothing was
    /// applied.
    HeadMismatch {
        expected: u32,
        /// The database's head, or the head it would have after the pending
        /// steps the open would apply.
        actual: u32,
    },
    /// Steps are pending and the caller did not ask to apply them.
    MigrationsPending {
        head: u32,
        pending: Vec<u32>,
    },
    /// The database is behind its high-water mark, or holds another
    /// history than the one acknowledged: an older copy (or another
    /// database) was put in place of the live file, or a backup's files were
    /// copied over the data directory. Opening it would fork history.
    RolledBack {
        /// `tenant/ledger` when one ledger's marked history is missing or
        /// differs; `None` for the store-wide mark.
        ledger: Option<String>,
        /// What the mark holds (seq and record hash) and what the database has.
        detail: String,
    },
    /// A high-water-mark file exists but cannot be used: neither slot of
    /// `annal.hwm` is valid, or `annal.marks` is damaged before its last group.
    HwmUnreadable {
        path: PathBuf,
        detail: String,
    },
    /// A stored value did not decode or check at open.
    Corrupt(Corruption),
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::Io { path, error } => write!(f, "{}: {error}", path.display()),
            OpenError::Database(e) => write!(f, "database: {e}"),
            OpenError::UnknownMigration { id } => {
                write!(f, "database has migration {id}, unknown to this version (written by newer code)")
            }
            OpenError::MigrationChecksum { id, expected, actual } => write!(
                f,
                "migration {id} checksum differs: expected {expected} (code), actual {actual} (database)"
            ),
            OpenError::HeadMismatch { expected, actual } => {
                write!(f, "migration head mismatch: expected {expected}, actual {actual}")
            }
            OpenError::MigrationsPending { head, pending } => {
                write!(f, "migrations pending: head {head}, pending {pending:?}; run `migrate up`")
            }
            OpenError::RolledBack { detail, .. } => write!(
                f,
                "database is behind or differs from its high-water mark ({detail}); \
                 refusing to open an old copy or another history in place"
            ),
            OpenError::HwmUnreadable { path, detail } => {
                write!(f, "{}: unreadable high-water mark ({detail})", path.display())
            }
            OpenError::Corrupt(c) => write!(f, "{c}"),
        }
    }
}

impl std::error::Error for OpenError {}

/// Why a write was not applied, beyond the caller's control.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteError {
    /// The queue is full: retry later.
    Overloaded,
    /// The store failed (an I/O error) and refuses all use until reopened.
    Failed(String),
    /// The store is closing or closed.
    Closed,
    /// A stored value the write depends on is corrupt.
    Corrupt(Corruption),
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WriteError::Overloaded => f.write_str("store overloaded"),
            WriteError::Failed(e) => write!(f, "store failed: {e}"),
            WriteError::Closed => f.write_str("store closed"),
            WriteError::Corrupt(c) => write!(f, "{c}"),
        }
    }
}

impl std::error::Error for WriteError {}

/// Why an append was refused: expected outcomes of bad input or a conflict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AppendRefusal {
    Invalid(RecordError),
    IdempotencyKeyInvalid,
    /// The key was used before with other content; `seq` is the record it made.
    IdempotencyConflict {
        seq: Seq,
    },
    /// `Position::Exact` named a seq that exists; `next` is the head.
    SeqExists {
        next: Seq,
    },
    /// `Position::Exact` named a seq past the head: it would leave a gap.
    SeqGap {
        next: Seq,
    },
    /// `Position::Exact` named a `prev` that is not the head's hash.
    PrevMismatch,
    /// Lineage parent `index` does not exist in this tenant.
    ParentNotFound {
        index: usize,
    },
    /// Lineage parent `index` exists with another hash.
    ParentHashMismatch {
        index: usize,
    },
    /// The append would create a ledger past the tenant's limit
    /// (`OpenOptions::ledgers_per_tenant_max`).
    LedgerLimit {
        max: u64,
    },
}

impl fmt::Display for AppendRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AppendRefusal::Invalid(e) => write!(f, "invalid record: {e}"),
            AppendRefusal::IdempotencyKeyInvalid => f.write_str("idempotency key empty or too long"),
            AppendRefusal::IdempotencyConflict { seq } => {
                write!(f, "idempotency key reused with different content (record {seq})")
            }
            AppendRefusal::SeqExists { next } => write!(f, "seq exists; next is {next}"),
            AppendRefusal::SeqGap { next } => write!(f, "seq would leave a gap; next is {next}"),
            AppendRefusal::PrevMismatch => f.write_str("prev is not the head hash"),
            AppendRefusal::ParentNotFound { index } => write!(f, "lineage parent {index} not found"),
            AppendRefusal::ParentHashMismatch { index } => write!(f, "lineage parent {index} hash differs"),
            AppendRefusal::LedgerLimit { max } => write!(f, "the tenant has its limit of {max} ledgers"),
        }
    }
}

impl std::error::Error for AppendRefusal {}

/// Why a checkpoint was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckpointRefusal {
    Malformed(NoteError),
    /// The checkpoint's origin names another tenant or ledger.
    WrongLedger,
    NoLedger,
    /// Its size is not greater than the last stored checkpoint's.
    NotNewer {
        last: u64,
    },
    /// Its size is past the ledger's head.
    BeyondHead {
        size: u64,
    },
    /// Its root is not the store's root at its size.
    RootMismatch {
        size: u64,
    },
}

impl fmt::Display for CheckpointRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckpointRefusal::Malformed(e) => write!(f, "malformed checkpoint: {e}"),
            CheckpointRefusal::WrongLedger => f.write_str("checkpoint origin is another ledger"),
            CheckpointRefusal::NoLedger => f.write_str("no such ledger"),
            CheckpointRefusal::NotNewer { last } => write!(f, "checkpoint not newer than size {last}"),
            CheckpointRefusal::BeyondHead { size } => write!(f, "ledger has only {size} records"),
            CheckpointRefusal::RootMismatch { size } => {
                write!(f, "root differs from the store's at size {size}")
            }
        }
    }
}

impl std::error::Error for CheckpointRefusal {}

/// Why an identity-log entry was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdentityRefusal {
    /// The entry's seq is not the log's next.
    NotNext {
        next: u64,
    },
    BadKeyName,
}

/// Why a read failed. A missing ledger or record is `Ok(None)`, not an error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadError {
    Failed(String),
    Corrupt(Corruption),
    NoLedger,
    /// A seq or size past the ledger's tree size (`size`), or `old > new`.
    OutOfRange {
        size: u64,
    },
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Failed(e) => write!(f, "store failed: {e}"),
            ReadError::Corrupt(c) => write!(f, "{c}"),
            ReadError::NoLedger => f.write_str("no such ledger"),
            ReadError::OutOfRange { size } => write!(f, "out of range: tree size is {size}"),
        }
    }
}

impl std::error::Error for ReadError {}

/// Why an export stopped. Bytes already written are a truncated export, which
/// a verifier rejects (no end line).
#[derive(Debug)]
pub enum ExportError {
    Read(ReadError),
    Write(std::io::Error),
}

impl fmt::Display for ExportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExportError::Read(e) => write!(f, "{e}"),
            ExportError::Write(e) => write!(f, "writing export: {e}"),
        }
    }
}

impl std::error::Error for ExportError {}

impl From<ReadError> for ExportError {
    fn from(e: ReadError) -> ExportError {
        ExportError::Read(e)
    }
}

/// Backup, restore and check.
#[derive(Debug)]
pub enum MaintenanceError {
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The target directory exists and is not empty.
    NotEmpty {
        path: PathBuf,
    },
    Open(OpenError),
    Read(ReadError),
    Database(String),
}

impl fmt::Display for MaintenanceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MaintenanceError::Io { path, error } => write!(f, "{}: {error}", path.display()),
            MaintenanceError::NotEmpty { path } => {
                write!(f, "{}: not empty; restore writes into an empty directory only", path.display())
            }
            MaintenanceError::Open(e) => write!(f, "{e}"),
            MaintenanceError::Read(e) => write!(f, "{e}"),
            MaintenanceError::Database(e) => write!(f, "database: {e}"),
        }
    }
}

impl std::error::Error for MaintenanceError {}

impl From<OpenError> for MaintenanceError {
    fn from(e: OpenError) -> MaintenanceError {
        MaintenanceError::Open(e)
    }
}

impl From<ReadError> for MaintenanceError {
    fn from(e: ReadError) -> MaintenanceError {
        MaintenanceError::Read(e)
    }
}

/// The sled index.
#[derive(Debug)]
pub enum IndexError {
    Sled(String),
    Read(ReadError),
}

impl fmt::Display for IndexError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IndexError::Sled(e) => write!(f, "index: {e}"),
            IndexError::Read(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for IndexError {}

impl From<ReadError> for IndexError {
    fn from(e: ReadError) -> IndexError {
        IndexError::Read(e)
    }
}

impl From<sled::Error> for IndexError {
    fn from(e: sled::Error) -> IndexError {
        IndexError::Sled(e.to_string())
    }
}
