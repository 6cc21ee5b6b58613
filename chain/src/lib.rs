//! annal-chain: the pure verification core of annal.
//!
//! Canonical record encoding and hashing, RFC 9162 Merkle math over blake3,
//! C2SP signed-note checkpoints, proof bundles, and the streaming export
//! verifier. No I/O, no clock, no async: every function is a pure function of
//! its arguments, so the same bytes verify the same way on any machine.
//! The formats are specified byte for byte in docs/FORMAT.md.

#![forbid(unsafe_code)]

mod b64;
mod bundle;
mod export;
mod failure;
mod hex;
mod identity;
mod json;
pub mod limits;
mod merkle;
mod note;
mod record;
mod recordjson;
mod report;
#[cfg(feature = "testkit")]
pub mod testkit;
mod types;

pub use bundle::{
    BUNDLE_FORMAT, BundleSummary, CheckpointSummary, ParentProof, verify_bundle, verify_checkpoint,
    write_bundle,
};
pub use export::{
    EXPORT_FORMAT, ExportSummary, ExportVerifier, write_checkpoint, write_end, write_header, write_record,
};
pub use failure::{Failure, Reason};
pub use identity::{
    GENESIS_STATEMENT, IDENTITY_FORMAT, IdentityLogEntry, ROTATION_TAG, rotation_text,
    verify_identity_entries, verify_identity_log, write_identity_log,
};
pub use merkle::{
    CompactRange, MemoryTree, NODE_PREFIX, Subtrees, consistency_proof, empty_root, inclusion_proof,
    node_hash, range_hash_from_perfect, root_from_inclusion, verify_consistency,
};
pub use note::{
    Checkpoint, ED25519_ALG, NoteError, NoteSignature, NoteSigner, SignatureFailure, SignedCheckpoint,
    SignedNote, TrustedKey, fingerprint, key_id, valid_key_name,
};
pub use record::{
    LEAF_PREFIX, Parent, RECORD_TAG, RECORD_VERSION, Record, RecordError, RecordFields, RecordView,
    valid_content_type,
};
pub use report::{Artifact, Outcome};
pub use types::{Hash32, KeyId, LedgerName, LogName, NameError, Origin, RecordHash, Seq, TenantId};
