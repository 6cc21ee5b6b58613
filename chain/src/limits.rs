//! Every size limit the formats enforce, in one place, units last.
//!
//! These are part of the format: a verifier built with other limits could accept
//! what ours refuses, so changing one is a format change (see docs/FORMAT.md).

/// Longest tenant id, in bytes.
pub const TENANT_ID_BYTES_MAX: usize = 64;
/// Longest ledger name, in bytes.
pub const LEDGER_NAME_BYTES_MAX: usize = 128;
/// Longest log name (the first part of a checkpoint origin), in bytes.
pub const LOG_NAME_BYTES_MAX: usize = 128;
/// Longest signing-key name on a signed note, in bytes.
pub const KEY_NAME_BYTES_MAX: usize = 128;
/// Longest content type, in bytes.
pub const CONTENT_TYPE_BYTES_MAX: usize = 128;
/// Largest record payload, in bytes.
pub const PAYLOAD_BYTES_MAX: usize = 1024 * 1024;
/// Most lineage parents one record may name.
pub const PARENTS_COUNT_MAX: usize = 16;
/// Longest Merkle proof: one hash per tree level of a `u64`-sized tree.
pub const PROOF_HASHES_MAX: usize = 64;
/// Most extension lines in a checkpoint body.
pub const NOTE_EXTENSIONS_COUNT_MAX: usize = 16;
/// Most signature lines on one note (rotation overlap needs two; leave room).
pub const NOTE_SIGNATURES_COUNT_MAX: usize = 16;
/// Largest signed note, in bytes.
pub const NOTE_BYTES_MAX: usize = 16 * 1024;
/// Longest export line, in bytes: a maximal payload in base64 plus every other field.
pub const EXPORT_LINE_BYTES_MAX: usize = 2 * 1024 * 1024;
/// Most signer keys an export header may declare.
pub const EXPORT_KEYS_COUNT_MAX: usize = 64;
/// Largest proof bundle, in bytes.
pub const BUNDLE_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Deepest JSON nesting the parser accepts; our shapes need four.
pub const JSON_DEPTH_MAX: usize = 8;

const _: () = assert!(PAYLOAD_BYTES_MAX.div_ceil(3) * 4 + 64 * 1024 < EXPORT_LINE_BYTES_MAX);
const _: () = assert!(NOTE_BYTES_MAX < BUNDLE_BYTES_MAX / (PARENTS_COUNT_MAX + 2));
const _: () = assert!(PAYLOAD_BYTES_MAX <= u32::MAX as usize);
