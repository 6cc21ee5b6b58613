//! A small in-memory cache of successful tenant authentications, so a busy
//! key costs no database read per request.
//!
//! **Invariant:** a revoke or suspend takes effect for every request that
//! starts after the admin call returned. Every admin write to tenants or keys
//! calls [`invalidate`] after the store write and before its response;
//! an entry is used only while the generation it was read under is still
//! current, and a request reads the generation *before* it reads the store, so
//! an entry filled from a pre-revoke read can never be used after the bump.
//! Only good outcomes (known key, right secret, not revoked, active tenant)
//! are cached; every refusal goes to the store, as before.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, PoisonError, RwLock};
use std::time::{Duration, Instant};

use annal_chain::TenantId;

use crate::limits::{AUTH_CACHE_ENTRIES_MAX, AUTH_CACHE_TTL_MS};

/// One cached authentication. The secret's digest is kept so every request
/// is still checked in constant time against what the store holds.
#[derive(Clone, Debug)]
pub struct Entry {
    pub digest: [u8; 32],
    pub tenant: TenantId,
    generation: u64,
    read_at: Instant,
}

/// Keyed by (the store's address, key id): one process serves one store, but
/// a second store in the same process (tests) must not see the first's keys.
type Key = (usize, String);

struct Cache {
    generation: AtomicU64,
    entries: RwLock<HashMap<Key, Entry>>,
}

static CACHE: LazyLock<Cache> =
    LazyLock::new(|| Cache { generation: AtomicU64::new(0), entries: RwLock::new(HashMap::new()) });

/// The generation to pass to [`put`]; read it before reading the store.
pub fn generation() -> u64 {
    CACHE.generation.load(Ordering::SeqCst)
}

/// Forgets every entry: call after any write to tenants or keys, before
/// answering the admin request.
pub fn invalidate() {
    CACHE.generation.fetch_add(1, Ordering::SeqCst);
    CACHE.entries.write().unwrap_or_else(PoisonError::into_inner).clear();
}

/// A still-valid entry for `key_id`, if any.
pub fn get(store: usize, key_id: &str) -> Option<Entry> {
    let current = generation();
    let entries = CACHE.entries.read().unwrap_or_else(PoisonError::into_inner);
    let entry = entries.get(&(store, key_id.to_owned()))?;
    let fresh =
        entry.generation == current && entry.read_at.elapsed() < Duration::from_millis(AUTH_CACHE_TTL_MS);
    fresh.then(|| entry.clone())
}

/// Remembers a good authentication read under `generation`.
pub fn put(store: usize, key_id: &str, digest: [u8; 32], tenant: TenantId, generation: u64) {
    if generation != self::generation() {
        return;
    }
    let mut entries = CACHE.entries.write().unwrap_or_else(PoisonError::into_inner);
    if entries.len() >= AUTH_CACHE_ENTRIES_MAX {
        // Bounded: a flood of distinct keys costs re-reads, never memory.
        entries.clear();
    }
    entries.insert((store, key_id.to_owned()), Entry { digest, tenant, generation, read_at: Instant::now() });
}
