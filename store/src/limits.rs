//! Every limit the store enforces, in one place, units last.

/// Appends (and other writes) that may wait for the committer; a full queue
/// answers `Overloaded` at once instead of buffering without bound.
pub const QUEUE_DEPTH_MAX: usize = 4096;
/// Most writes applied in one redb transaction (one group commit).
pub const BATCH_WRITES_MAX: usize = 512;
/// Most payload bytes applied in one group commit; a batch closes when it
/// passes this, so one commit never holds more than about this much.
pub const BATCH_PAYLOAD_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Longest `OpenOptions::batch_linger` a caller may ask for: how long the
/// committer may wait, after the first write of a batch arrives, for as many
/// writes as its previous batch held (the callers it just acknowledged,
/// coming back). It never waits when the previous batch was a single write,
/// so an idle store adds no latency.
pub const BATCH_LINGER_US_MAX: u64 = 1000;
/// The linger checks the queue at this interval, and ends at the first
/// check that found nothing new.
pub const BATCH_LINGER_POLL_US: u64 = 100;
/// Longest idempotency key, in bytes.
pub const IDEMPOTENCY_KEY_BYTES_MAX: usize = 256;
/// Most records one range read returns.
pub const RANGE_RECORDS_COUNT_MAX: u64 = 1000;
/// Payload bytes after which a range read stops early (it always returns
/// at least one record): with payloads of up to 1 MiB, 1000 records could
/// otherwise be a gigabyte in memory.
pub const RANGE_PAYLOAD_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Records the indexer reads and applies per sled batch. Small enough that
/// the chunk's buffers come from the allocator's pools instead of fresh
/// pages from the kernel (page faults were ~3% of annald under load with
/// 1000), large enough that the per-chunk read transaction is amortised.
pub const INDEX_CHUNK_RECORDS: u64 = 128;
/// Most records one index catch-up step indexes, and most bytes of index
/// keys it gathers (it may pass this by one chunk). A step holds its keys in
/// memory between writing its pending marks and its watermarks (about 60
/// bytes per record, more with lineage parents or event fields).
pub const INDEX_STEP_RECORDS_MAX: u64 = 16_384;
pub const INDEX_STEP_KEY_BYTES_MAX: usize = 4 * 1024 * 1024;
/// How long opening the index waits for a sled directory lock that a
/// just-dropped handle of this process has not released yet (its flusher
/// thread can take seconds to exit on a loaded machine: 2 s was seen to be
/// too short in CI).
pub const INDEX_LOCK_WAIT_MS: u64 = 10_000;
/// Perfect Merkle subtrees are stored from this level up; lower levels are
/// recomputed from at most `2^level` record hashes, which keeps the node
/// table at about 1/8 of a hash per record.
pub const MERKLE_STORED_LEVEL_MIN: u32 = 4;
/// The high-water-mark file is fsynced at least every this many commits
/// (and always on checkpoint and close); it is written after every commit.
pub const HWM_FSYNC_COMMITS_MAX: u64 = 256;
/// The ledger marks (`annal.marks`) are written as one group whenever the
/// store-wide mark is fsynced, and also once this many ledgers changed since
/// the last group: that bounds a group's size and the memory of the set.
pub const MARK_DIRTY_LEDGERS_MAX: usize = 4096;
/// The mark log is rewritten with one entry per ledger once it holds more
/// than this many entries and more than twice the ledgers it marks, so it
/// stays proportional to the ledgers (288 bytes each) and open reads it in
/// O(ledgers).
pub const MARK_LOG_ENTRIES_MIN: u64 = 4096;
/// A ledger with at least this many appends in one group commit writes them
/// straight to `records`; one with fewer (and any ledger with a tail) goes
/// through the append log. Since tails are flushed as packed cursor runs, a
/// ledger's own records written one `insert` at a time (a leaf rebuilt per
/// key, split in half when full) cost more than the log's sequential share
/// plus the later flush until a batch fills several leaves: with ~27
/// appends per commit logging saved 2-3 us per append over HTTP, and at 64
/// the two measured the same.
pub const DIRECT_APPENDS_MIN: usize = 64;
/// Tails are flushed into the ledger tables at least every this many
/// commits, which bounds the log replayed at open.
pub const TAIL_FLUSH_COMMITS: u64 = 64;
/// ... or once they hold this many records ...
pub const TAIL_RECORDS_MAX: usize = 16_384;
/// ... or this many bytes (tails are held in memory until flushed).
pub const TAIL_BYTES_MAX: usize = 32 * 1024 * 1024;
/// Ledger heads the committer keeps in memory between batches.
pub const HEAD_CACHE_COUNT_MAX: usize = 65_536;
/// Export output is handed to the writer in chunks of about this size.
pub const EXPORT_CHUNK_BYTES: usize = 64 * 1024;
/// Records read per read transaction step when streaming (export, check, index).
pub const SCAN_CHUNK_RECORDS: u64 = 1024;
/// Largest value the codec will decode, so a corrupt length prefix cannot
/// make it allocate without bound.
pub const CODEC_VALUE_BYTES_MAX: usize = 4 * 1024 * 1024;

/// Longest webhook endpoint id; ids are ASCII `[A-Za-z0-9_-]`.
pub const WEBHOOK_ID_BYTES_MAX: usize = 64;
/// Longest endpoint URL the store keeps (the daemon validates its form).
pub const WEBHOOK_URL_BYTES_MAX: usize = 2048;
/// Active (not disabled) webhook endpoints per tenant.
pub const WEBHOOK_ENDPOINTS_PER_TENANT_MAX: usize = 16;
/// Endpoint rows per tenant, disabled ones included: a disabled endpoint is
/// kept for good, so this bounds what one tenant can leave behind (and keeps
/// one tenant from filling `WEBHOOK_ROWS_MAX` by creating and disabling).
pub const WEBHOOK_ROWS_PER_TENANT_MAX: usize = 64;
/// Endpoint rows store-wide: bounds `Store::webhooks(None)` and the scan
/// each create does to count a tenant's endpoints.
pub const WEBHOOK_ROWS_MAX: u64 = 16_384;
/// Unrevoked secret versions per endpoint: enough to overlap a rotation.
pub const WEBHOOK_SECRETS_ACTIVE_MAX: usize = 4;
/// Secret versions per endpoint, revoked ones included (they are kept for
/// good, so this bounds the row); past it the daemon makes a new endpoint.
pub const WEBHOOK_SECRET_VERSIONS_MAX: u32 = 64;
/// Pending deliveries per endpoint: an endpoint that is down stops its
/// cursor here instead of growing the outbox.
pub const PENDING_PER_ENDPOINT_MAX: u64 = 256;
/// Pending deliveries store-wide: bounds the outbox (and its due index)
/// and the outbox scan of `disable_webhook`; `due_deliveries` and
/// `next_delivery_due` read the due index instead.
pub const OUTBOX_ROWS_MAX: u64 = 65_536;
/// Most deliveries one `due_deliveries` call returns.
pub const DUE_DELIVERIES_MAX: usize = 1024;
/// Longest `last_error` kept on a delivery, in bytes (cut at a char boundary).
pub const DELIVERY_ERROR_BYTES_MAX: usize = 512;

const _: () = assert!(BATCH_WRITES_MAX <= QUEUE_DEPTH_MAX);
// A batch can reach the direct path.
const _: () = assert!(DIRECT_APPENDS_MIN <= BATCH_WRITES_MAX);
const _: () = assert!(BATCH_LINGER_POLL_US <= BATCH_LINGER_US_MAX && BATCH_LINGER_US_MAX <= 10_000);
const _: () = assert!(annal_chain::limits::PAYLOAD_BYTES_MAX + 64 * 1024 < CODEC_VALUE_BYTES_MAX);
const _: () = assert!(annal_chain::limits::PAYLOAD_BYTES_MAX <= BATCH_PAYLOAD_BYTES_MAX);
const _: () = assert!(TAIL_FLUSH_COMMITS >= 1 && TAIL_BYTES_MAX >= 2 * BATCH_PAYLOAD_BYTES_MAX);
const _: () = assert!(MERKLE_STORED_LEVEL_MIN >= 1 && MERKLE_STORED_LEVEL_MIN <= 8);
const _: () = assert!(WEBHOOK_ENDPOINTS_PER_TENANT_MAX <= WEBHOOK_ROWS_PER_TENANT_MAX);
const _: () = assert!(WEBHOOK_ROWS_PER_TENANT_MAX as u64 <= WEBHOOK_ROWS_MAX);
// A rotation can overlap two secrets, and the active ones fit the versions.
const _: () = assert!(
    2 <= WEBHOOK_SECRETS_ACTIVE_MAX && WEBHOOK_SECRETS_ACTIVE_MAX as u32 <= WEBHOOK_SECRET_VERSIONS_MAX
);
const _: () = assert!(1 <= PENDING_PER_ENDPOINT_MAX && PENDING_PER_ENDPOINT_MAX <= OUTBOX_ROWS_MAX);
// An endpoint or delivery row stays far below the codec's limit.
const _: () = assert!(
    WEBHOOK_URL_BYTES_MAX + 32 * WEBHOOK_SECRET_VERSIONS_MAX as usize + DELIVERY_ERROR_BYTES_MAX
        < CODEC_VALUE_BYTES_MAX / 16
);
