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

/// Largest config file read, in bytes.
pub const CONFIG_FILE_BYTES_MAX: u64 = 1024 * 1024;
/// Longest client-supplied `X-Request-Id` kept; longer ones are replaced.
pub const REQUEST_ID_BYTES_MAX: usize = 128;

const _: () = assert!(HEADER_READ_TIMEOUT_MS_DEFAULT < REQUEST_TIMEOUT_MS_DEFAULT);
const _: () = assert!(*HEADER_READ_TIMEOUT_MS_RANGE.start() <= HEADER_READ_TIMEOUT_MS_DEFAULT);
