//! A small in-memory cache of successful tenant authentications, so a busy
//! key costs no database read per request.
//!
//! **Invariant:** a revoke or suspend takes effect for every request that
//! starts after the admin call returned. Every admin write to tenants or keys
//! calls [`AuthCache::invalidate`] after the store write and before its response;
//! an entry is used only while the generation it was read under is still
//! current, and a request reads the generation *before* it reads the store, so
//! an entry filled from a pre-revoke read can never be used after the bump.
//! Only good outcomes (known key, right secret, not revoked, active tenant)
//! are cached; every refusal goes to the store, as before.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock};
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

/// The cache; one per `App`.
#[derive(Debug, Default)]
pub struct AuthCache {
    generation: AtomicU64,
    entries: RwLock<HashMap<String, Entry>>,
}

impl AuthCache {
    /// The generation to pass to [`AuthCache::put`]; read it before reading the store.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Forgets every entry: call after any write to tenants or keys, before
    /// answering the admin request.
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.entries.write().unwrap_or_else(PoisonError::into_inner).clear();
    }

    /// A still-valid entry for `key_id`, if any.
    pub fn get(&self, key_id: &str) -> Option<Entry> {
        let current = self.generation();
        let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
        let entry = entries.get(key_id)?;
        let fresh =
            entry.generation == current && entry.read_at.elapsed() < Duration::from_millis(AUTH_CACHE_TTL_MS);
        fresh.then(|| entry.clone())
    }

    /// Remembers a good authentication read under `generation`.
    pub fn put(&self, key_id: &str, digest: [u8; 32], tenant: TenantId, generation: u64) {
        if generation != self.generation() {
            return;
        }
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= AUTH_CACHE_ENTRIES_MAX {
            // Bounded: a flood of distinct keys costs re-reads, never memory.
            entries.clear();
        }
        entries.insert(key_id.to_owned(), Entry { digest, tenant, generation, read_at: Instant::now() });
    }
}
