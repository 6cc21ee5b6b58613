//! Every limit the daemon enforces, in one place, units last.

/// Default time a client has to send a complete request head.
pub const HEADER_READ_TIMEOUT_MS_DEFAULT: u64 = 5_000;
/// Default time a request may take from head to response.
pub const REQUEST_TIMEOUT_MS_DEFAULT: u64 = 30_000;
/// Default cap on open client connections; further clients wait in the backlog.
pub const CONNECTIONS_MAX_DEFAULT: usize = 1_024;
/// Default grace for in-flight requests after SIGTERM.
pub const SHUTDOWN_GRACE_MS_DEFAULT: u64 = 10_000;

/// Accepted ranges for the configurable values above.
pub const HEADER_READ_TIMEOUT_MS_RANGE: core::ops::RangeInclusive<u64> = 100..=120_000;
pub const REQUEST_TIMEOUT_MS_RANGE: core::ops::RangeInclusive<u64> = 100..=600_000;
pub const CONNECTIONS_MAX_RANGE: core::ops::RangeInclusive<usize> = 1..=65_536;
pub const SHUTDOWN_GRACE_MS_RANGE: core::ops::RangeInclusive<u64> = 0..=600_000;

/// Default token bucket per API key: requests per second, as a burst.
pub const RATE_KEY_BURST_DEFAULT: u32 = 1_000;
/// Default token bucket per tenant (all its keys together).
pub const RATE_TENANT_BURST_DEFAULT: u32 = 5_000;
pub const RATE_BURST_RANGE: core::ops::RangeInclusive<u32> = 1..=1_000_000;
pub const RATE_WINDOW_S_RANGE: core::ops::RangeInclusive<u64> = 1..=86_400;
/// Default cadence of the anchoring worker.
pub const ANCHOR_INTERVAL_MS_DEFAULT: u64 = 1_000;
pub const ANCHOR_INTERVAL_MS_RANGE: core::ops::RangeInclusive<u64> = 10..=3_600_000;
/// Default bound on how long a record may wait for a checkpoint before
/// readiness fails.
pub const ANCHOR_FRESHNESS_MS_DEFAULT: u64 = 60_000;
pub const ANCHOR_FRESHNESS_MS_RANGE: core::ops::RangeInclusive<u64> = 0..=86_400_000;

/// Most ledgers one tenant may have, by default and at most: a tenant makes
/// ledgers just by appending to new names, and some reads and the admin
/// view are proportional to a tenant's ledgers.
pub const LEDGERS_PER_TENANT_MAX_DEFAULT: u64 = 10_000;
pub const LEDGERS_PER_TENANT_MAX_RANGE: core::ops::RangeInclusive<u64> = 1..=10_000_000;
/// Largest append request body: a maximal payload in base64 plus envelope.
pub const APPEND_BODY_BYTES_MAX: u64 =
    (annal_chain::limits::PAYLOAD_BYTES_MAX as u64).div_ceil(3) * 4 + 64 * 1024;
/// Largest body of any other JSON request (admin calls).
pub const SMALL_BODY_BYTES_MAX: u64 = 16 * 1024;
/// Largest bundle posted to /v1/verify.
pub const VERIFY_BODY_BYTES_MAX: u64 = annal_chain::limits::BUNDLE_BYTES_MAX as u64;
/// Default and largest page of records or events.
pub const PAGE_LIMIT_DEFAULT: u64 = 100;
pub const PAGE_LIMIT_MAX: u64 = 1_000;
/// System events waiting to be appended; past this they are dropped and counted.
pub const EVENT_QUEUE_DEPTH_MAX: usize = 8_192;
/// System events (all but admin actions) recorded one by one in a burst,
/// and per second after it; past that they are counted by code and recorded
/// as one `events.suppressed` summary per second, so that a flood of bad
/// keys cannot grow the event ledger without bound.
pub const EVENTS_BURST_DEFAULT: u32 = 1_000;
pub const EVENTS_PER_S_DEFAULT: u32 = 100;
pub const EVENTS_BURST_RANGE: core::ops::RangeInclusive<u32> = 1..=1_000_000;
pub const EVENTS_PER_S_RANGE: core::ops::RangeInclusive<u32> = 1..=100_000;
/// Cadence of the suppressed-events summary.
pub const EVENTS_SUMMARY_INTERVAL_MS: u64 = 1_000;
/// Most system events appended in one batch.
pub const EVENT_BATCH_MAX: usize = 256;
/// Export chunks buffered between the reader thread and the socket.
pub const EXPORT_CHANNEL_CHUNKS_MAX: usize = 16;
/// Exports streaming at once. Each holds a blocking thread and a redb read
/// snapshot (which keeps redb from reusing the pages it sees) until its
/// client has read it all; past this an export answers 503 `overloaded`.
pub const EXPORTS_CONCURRENT_MAX: usize = 8;
/// Most records an events query scans (newest first) before answering.
pub const EVENT_SCAN_RECORDS_MAX: u64 = 100_000;
/// Cadence of the indexing worker once the sled index is caught up.
pub const INDEX_INTERVAL_MS: u64 = 200;
/// The nice value of the thread that runs index passes while the index
/// keeps up (19, the lowest priority; nice is per thread on Linux). The
/// index is derived and appends never wait for it, so it runs on CPU time
/// the request path leaves over: under append load the machine idles while
/// commits wait for `fdatasync`, and at normal priority the index competed
/// with the committer for the same two cores (docs/PERFORMANCE.md).
pub const INDEX_THREAD_NICE: i32 = 19;
/// How far behind the store the index may run on its low-priority thread
/// (records committed, not yet indexed), and for how long past that before
/// its passes move to a normal-priority thread until it is back within:
/// on a machine kept busy the lowest priority alone could leave it behind
/// without bound. Under append load at full speed (30–43k appends/s) the
/// low-priority thread stayed within 0.5k–26k records (docs/PERFORMANCE.md).
pub const INDEX_LOW_PRIORITY_LAG_RECORDS_MAX: u64 = 65_536;
pub const INDEX_LOW_PRIORITY_BEHIND_MS_MAX: u64 = 5_000;
/// Records one indexing pass indexes, about (a ledger goes in chunks of up
/// to the store's range limit), so a pass never holds the worker for long.
pub const INDEX_PASS_RECORDS_MAX: u64 = 4_096;
/// How many generations a lineage answer walks up (ancestors) and down
/// (descendants).
pub const LINEAGE_DEPTH_MAX: u32 = 8;
/// Most ancestors, and most descendants, one lineage answer lists.
pub const LINEAGE_NODES_MAX: usize = 256;

/// Webhook deliveries: attempts before one is given up, the first retry's
/// wait (doubling per attempt up to the max), one attempt's time budget,
/// deliveries in flight. The defaults retry for about a day: waits of
/// 5 s · 2^k for 12 attempts (~5.7 h in all), then three of 6 h.
pub const WEBHOOK_ATTEMPTS_MAX_DEFAULT: u32 = 16;
pub const WEBHOOK_ATTEMPTS_MAX_RANGE: core::ops::RangeInclusive<u32> = 1..=100;
pub const WEBHOOK_RETRY_BASE_MS_DEFAULT: u64 = 5_000;
pub const WEBHOOK_RETRY_MAX_MS_DEFAULT: u64 = 6 * 3_600_000;
pub const WEBHOOK_RETRY_MS_RANGE: core::ops::RangeInclusive<u64> = 10..=86_400_000;
pub const WEBHOOK_TIMEOUT_MS_DEFAULT: u64 = 10_000;
pub const WEBHOOK_TIMEOUT_MS_RANGE: core::ops::RangeInclusive<u64> = 100..=120_000;
pub const WEBHOOK_CONCURRENCY_DEFAULT: usize = 8;
pub const WEBHOOK_CONCURRENCY_RANGE: core::ops::RangeInclusive<usize> = 1..=256;
/// How long attempts in flight at shutdown may still take before they are
/// cut (their rows stay in the outbox and are sent after the restart).
pub const WEBHOOK_DRAIN_MS: u64 = 2_000;
/// Cadence of the webhook worker when it has nothing due sooner.
pub const WEBHOOK_INTERVAL_MS: u64 = 200;
/// Shortest time between two passes that move records into the outbox: a
/// pass reads every endpoint row, and an endpoint with 256 pending rows
/// drains them in well under the worker's interval.
pub const WEBHOOK_FILL_GAP_MS: u64 = 20;
/// Shortest time between two settle transactions of the webhook worker
/// (each holds redb's one writer, and so the appends, for a sync).
pub const WEBHOOK_SETTLE_GAP_MS: u64 = 50;
/// Records one endpoint moves into the outbox per pass: as many as it may
/// have pending, so a pass refills an endpoint that caught up.
pub const WEBHOOK_ENQUEUE_PER_PASS_MAX: usize = annal_store::limits::PENDING_PER_ENDPOINT_MAX as usize;
/// Response bytes read (and dropped) from a receiver.
pub const WEBHOOK_RESPONSE_BYTES_MAX: usize = 64 * 1024;

/// Largest config file read, in bytes.
pub const CONFIG_FILE_BYTES_MAX: u64 = 1024 * 1024;
/// Longest client-supplied `X-Request-Id` kept; longer ones are replaced.
pub const REQUEST_ID_BYTES_MAX: usize = 128;
/// Tenant authentications kept in memory (api::auth_cache); past this the
/// cache is emptied, so distinct keys cost re-reads, never memory.
pub const AUTH_CACHE_ENTRIES_MAX: usize = 4_096;
/// Longest a cached authentication is used. Revokes and suspends invalidate
/// the cache at once; this only bounds an entry's age as a second guard.
pub const AUTH_CACHE_TTL_MS: u64 = 5_000;

const _: () = assert!(HEADER_READ_TIMEOUT_MS_DEFAULT < REQUEST_TIMEOUT_MS_DEFAULT);
// A pass can close the gap it is allowed.
const _: () = assert!(INDEX_PASS_RECORDS_MAX <= INDEX_LOW_PRIORITY_LAG_RECORDS_MAX);
const _: () = assert!(*HEADER_READ_TIMEOUT_MS_RANGE.start() <= HEADER_READ_TIMEOUT_MS_DEFAULT);
