//! Derived indexes in sled: lineage children of a record and records by
//! payload digest. Everything here is rebuilt from redb: each ledger has a
//! watermark (next seq indexed); `catch_up` indexes from it to the head,
//! `rebuild` starts from nothing. Nothing exact under concurrency lives here.
//!
//! Keys in the one sled tree (names never contain NUL):
//! `L tenant/parent-ledger NUL parent-seq(BE) child-ledger NUL child-seq(BE)`,
//! `D tenant NUL payload-blake3 ledger NUL seq(BE)`, `W tenant/ledger` → next seq (BE).

use std::path::Path;

use annal_chain::{LedgerName, Seq, TenantId};

use crate::error::IndexError;
use crate::limits::RANGE_RECORDS_COUNT_MAX;
use crate::store::Store;

/// The sled index beside the database.
#[derive(Debug)]
pub struct Index {
    db: sled::Db,
}

fn lineage_prefix(tenant: &str, ledger: &str, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(96);
    k.push(b'L');
    k.extend_from_slice(tenant.as_bytes());
    k.push(b'/');
    k.extend_from_slice(ledger.as_bytes());
    k.push(0);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn digest_prefix(tenant: &str, digest: &[u8; 32]) -> Vec<u8> {
    let mut k = Vec::with_capacity(96);
    k.push(b'D');
    k.extend_from_slice(tenant.as_bytes());
    k.push(0);
    k.extend_from_slice(digest);
    k
}

fn watermark_key(tenant: &str, ledger: &str) -> Vec<u8> {
    format!("W{tenant}/{ledger}").into_bytes()
}

/// Splits `ledger NUL seq(BE)` off the end of an index key.
fn tail(rest: &[u8]) -> Option<(LedgerName, Seq)> {
    let split = rest.len().checked_sub(9)?;
    if rest[split] != 0 {
        return None;
    }
    let ledger = LedgerName::new(std::str::from_utf8(&rest[..split]).ok()?).ok()?;
    let seq = u64::from_be_bytes(rest[split + 1..].try_into().ok()?);
    Some((ledger, Seq::new(seq)))
}

impl Index {
    pub fn open(dir: &Path) -> Result<Index, IndexError> {
        Ok(Index { db: sled::open(dir)? })
    }

    /// Indexes every record past each ledger's watermark; returns how many.
    pub fn catch_up(&self, store: &Store) -> Result<u64, IndexError> {
        let mut indexed = 0;
        for (tenant, ledger, size) in store.ledgers()? {
            let wm_key = watermark_key(tenant.as_str(), ledger.as_str());
            let mut next = match self.db.get(&wm_key)? {
                Some(v) => u64::from_be_bytes(
                    v.as_ref().try_into().map_err(|_| IndexError::Sled("bad watermark".into()))?,
                ),
                None => 0,
            };
            while next < size {
                let after = next.checked_sub(1).map(Seq::new);
                let entries = store.records(&tenant, &ledger, after, RANGE_RECORDS_COUNT_MAX)?;
                let Some(last) = entries.last() else { break };
                let new_next = last.record.seq().get() + 1;
                let mut batch = sled::Batch::default();
                for e in &entries {
                    let r = &e.record;
                    for p in r.parents() {
                        let mut k = lineage_prefix(tenant.as_str(), p.ledger.as_str(), p.seq.get());
                        k.extend_from_slice(ledger.as_str().as_bytes());
                        k.push(0);
                        k.extend_from_slice(&r.seq().get().to_be_bytes());
                        batch.insert(k, &[] as &[u8]);
                    }
                    let mut k = digest_prefix(tenant.as_str(), blake3::hash(r.payload()).as_bytes());
                    k.extend_from_slice(ledger.as_str().as_bytes());
                    k.push(0);
                    k.extend_from_slice(&r.seq().get().to_be_bytes());
                    batch.insert(k, &[] as &[u8]);
                }
                // Entries and watermark in one batch: a crash leaves both or neither.
                batch.insert(wm_key.clone(), &new_next.to_be_bytes());
                self.db.apply_batch(batch)?;
                indexed += new_next - next;
                next = new_next;
            }
        }
        self.db.flush()?;
        Ok(indexed)
    }

    /// Drops everything and indexes from scratch.
    pub fn rebuild(&self, store: &Store) -> Result<u64, IndexError> {
        self.db.clear()?;
        self.db.flush()?;
        self.catch_up(store)
    }

    /// Records that name `(ledger, seq)` of `tenant` as a lineage parent.
    pub fn children(
        &self,
        tenant: &TenantId,
        ledger: &LedgerName,
        seq: Seq,
    ) -> Result<Vec<(LedgerName, Seq)>, IndexError> {
        let prefix = lineage_prefix(tenant.as_str(), ledger.as_str(), seq.get());
        self.scan(&prefix)
    }

    /// Records of `tenant` whose payload has this blake3 digest.
    pub fn by_payload_digest(
        &self,
        tenant: &TenantId,
        digest: &[u8; 32],
    ) -> Result<Vec<(LedgerName, Seq)>, IndexError> {
        self.scan(&digest_prefix(tenant.as_str(), digest))
    }

    fn scan(&self, prefix: &[u8]) -> Result<Vec<(LedgerName, Seq)>, IndexError> {
        let mut out = Vec::new();
        for kv in self.db.scan_prefix(prefix) {
            let (k, _) = kv?;
            out.push(tail(&k[prefix.len()..]).ok_or_else(|| IndexError::Sled("malformed index key".into()))?);
        }
        Ok(out)
    }

    /// Every key in the index, in order: for tests comparing two builds.
    pub fn dump(&self) -> Result<Vec<Vec<u8>>, IndexError> {
        self.db.iter().keys().map(|k| Ok(k?.to_vec())).collect()
    }
}
