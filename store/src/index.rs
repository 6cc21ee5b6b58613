//! Derived indexes in sled: lineage children of a record, records by payload
//! digest, and (when an event ledger is configured) system events by request
//! id, tenant and code. Everything here is rebuilt from redb: each ledger has
//! a watermark (next seq indexed, and the hash of the record before it);
//! `catch_up` indexes from it to the head, `rebuild` starts from nothing.
//! Nothing exact under concurrency lives here.
//!
//! Keys in the one sled tree (names never contain NUL or `/`):
//! `L tenant/parent-ledger NUL parent-seq(BE) child-ledger NUL child-seq(BE)`,
//! `D tenant NUL payload-blake3 ledger NUL seq(BE)`,
//! `E field value NUL seq(BE)` with field `r` (request id), `t` (tenant) or
//! `c` (code), seq being the event's seq in the event ledger,
//! `W tenant/ledger` → next seq (BE) ‖ blake3 record hash of seq next−1,
//! followed, while a pass writes entries past it, by the same two fields for
//! where that pass ends (the pending mark),
//! `V` → the format stamp (layout version and event-ledger configuration).
//!
//! A pass writes its entries one by one, not in a sled batch: sled's atomic
//! batches cost about 40% more CPU per key (more with random payload
//! digests), and the index is written once per appended record. Atomicity
//! comes from the pending mark instead, with no assumption about the order
//! in which sled makes unflushed writes durable: every watermark a pass will
//! move first gets its pending mark, flushed; then every entry, flushed;
//! then the final watermarks, flushed. A pending mark is never lowered: a
//! pass that ends below one already stored (a crash cut off a longer pass)
//! announces and keeps the stored one. After a crash the entries past a
//! watermark are therefore all below its pending mark, and belong to the
//! history the mark names: if the store's record before the mark still has
//! that hash (records are hash-chained, so the whole prefix matches),
//! re-indexing from the watermark rewrites the same keys; if not, the index
//! is cleared.
//!
//! The store knows nothing of the event payload format: the caller passes an
//! [`EventLedger`] with a pure extraction function. A stamp that differs from
//! the one stored (another layout, another event ledger or extractor version)
//! clears the index at open, and a watermark that does not match the store's
//! history (a restored or replaced database) clears it at the next catch-up,
//! so the index never answers for a history it was not built from.

use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use annal_chain::{LedgerName, Seq, TenantId};

use crate::error::IndexError;
use crate::limits::{
    INDEX_CHUNK_RECORDS, INDEX_LOCK_WAIT_MS, INDEX_STEP_KEY_BYTES_MAX, INDEX_STEP_RECORDS_MAX,
    RANGE_RECORDS_COUNT_MAX,
};
use crate::store::Store;

/// Layout version, part of the format stamp.
const FORMAT: &str = "annal-index/3";
/// Longest event field value indexed, in bytes; longer values are not indexed.
const EVENT_FIELD_BYTES_MAX: usize = 256;
const STAMP_KEY: &[u8] = b"V";
const HASH_BYTES: usize = 32;

/// The fields of one system event the index keys on; `None` (or a value that
/// is empty, longer than [`EVENT_FIELD_BYTES_MAX`] or contains NUL) is not
/// indexed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventFields {
    pub request_id: Option<String>,
    pub tenant: Option<String>,
    pub code: Option<String>,
}

/// Which ledger holds system events and how to read an event's fields from
/// a record payload. `extract` must be a pure function of the payload (the
/// rebuilt index must equal the incremental one); bump `version` whenever
/// what it returns for a payload changes, so existing indexes are rebuilt.
#[derive(Clone, Debug)]
pub struct EventLedger {
    pub tenant: TenantId,
    pub ledger: LedgerName,
    pub extract: fn(&[u8]) -> EventFields,
    pub version: &'static str,
}

/// What one bounded catch-up step did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CatchUp {
    /// Records indexed in this step.
    pub indexed: u64,
    /// Every ledger was indexed up to the size read at the step's start.
    pub complete: bool,
    /// The index did not match the store's history and was cleared.
    pub reset: bool,
}

/// The sled index beside the database.
#[derive(Debug)]
pub struct Index {
    db: sled::Db,
    events: Option<EventLedger>,
    /// Whether every stored watermark was checked against the store since open.
    verified: AtomicBool,
    /// `Store::commits` when a step that started then caught up with every
    /// ledger (`u64::MAX`: never).
    caught_up_at: AtomicU64,
    /// Records indexed: the sum of every ledger's watermark, counted when
    /// the watermarks are checked against the store and kept up by each
    /// step; `u64::MAX` until then. It never counts more than the
    /// watermarks cover, so the lag it gives is never understated: a
    /// failed step adds nothing (and sets `recount`), a reset zeroes it
    /// first.
    indexed_total: AtomicU64,
    /// A step failed part way: the next one counts the watermarks again.
    recount: AtomicBool,
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

/// Appends `ledger NUL seq(BE)`, the position that ends lineage and digest
/// keys (`tail` splits it off again).
fn push_position(k: &mut Vec<u8>, ledger: &str, seq: u64) {
    k.extend_from_slice(ledger.as_bytes());
    k.push(0);
    k.extend_from_slice(&seq.to_be_bytes());
}

fn watermark_key(tenant: &str, ledger: &str) -> Vec<u8> {
    format!("W{tenant}/{ledger}").into_bytes()
}

/// `E field value NUL`, or `None` when the value is not indexable.
fn event_prefix(field: u8, value: &str) -> Option<Vec<u8>> {
    let v = value.as_bytes();
    if v.is_empty() || v.len() > EVENT_FIELD_BYTES_MAX || v.contains(&0) {
        return None;
    }
    let mut k = Vec::with_capacity(v.len() + 11);
    k.push(b'E');
    k.push(field);
    k.extend_from_slice(v);
    k.push(0);
    Some(k)
}

const FIELD_REQUEST_ID: u8 = b'r';
const FIELD_TENANT: u8 = b't';
const FIELD_CODE: u8 = b'c';

/// A position in a ledger's history: the next seq and the hash of the
/// record before it (zeros at seq 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Mark {
    next: u64,
    last_hash: [u8; HASH_BYTES],
}

const MARK_BYTES: usize = 8 + HASH_BYTES;

impl Mark {
    const START: Mark = Mark { next: 0, last_hash: [0; HASH_BYTES] };

    fn encode_into(&self, v: &mut Vec<u8>) {
        v.extend_from_slice(&self.next.to_be_bytes());
        v.extend_from_slice(&self.last_hash);
    }

    fn decode(v: &[u8]) -> Mark {
        let next = u64::from_be_bytes(v[..8].try_into().expect("8 bytes"));
        let last_hash = v[8..MARK_BYTES].try_into().expect("32 bytes");
        Mark { next, last_hash }
    }
}

/// A ledger's watermark: indexed up to `done`; while a pass is writing, also
/// the mark it will end at (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Watermark {
    done: Mark,
    pending: Option<Mark>,
}

impl Watermark {
    fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(2 * MARK_BYTES);
        self.done.encode_into(&mut v);
        if let Some(p) = &self.pending {
            p.encode_into(&mut v);
        }
        v
    }

    fn decode(v: &[u8]) -> Result<Watermark, IndexError> {
        match v.len() {
            MARK_BYTES => Ok(Watermark { done: Mark::decode(v), pending: None }),
            n if n == 2 * MARK_BYTES => {
                Ok(Watermark { done: Mark::decode(v), pending: Some(Mark::decode(&v[MARK_BYTES..])) })
            }
            _ => Err(IndexError::Sled("malformed watermark".into())),
        }
    }
}

/// What one step will index of one ledger: the keys of records
/// `from.next..to.next`.
struct Planned {
    watermark_key: Vec<u8>,
    from: Mark,
    to: Mark,
    /// The pending mark already stored (a step cut off by a crash).
    pending: Option<Mark>,
    keys: Vec<Vec<u8>>,
}

impl Planned {
    /// A stored pending mark beyond this step's end (a longer step cut off
    /// by a crash): entries up to it may be in the index, so it stays.
    fn kept_pending(&self) -> Option<Mark> {
        self.pending.filter(|p| p.next > self.to.next)
    }

    /// The pending mark this step stores: never below one already stored.
    fn announced(&self) -> Mark {
        self.kept_pending().unwrap_or(self.to)
    }

    /// The watermark after this step.
    fn finished(&self) -> Watermark {
        Watermark { done: self.to, pending: self.kept_pending() }
    }
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

/// Opens `config`, retrying while its directory lock is still held by a
/// handle of this process that was just dropped: sled 0.34 releases the
/// lock when its background flusher exits, after `Db::drop` returned
/// (spacejam/sled#1234), so an immediate reopen can see `WouldBlock`. A lock
/// held for real (another live process on the directory) outlasts
/// `INDEX_LOCK_WAIT_MS` and is reported.
fn open_waiting_for_lock(config: &sled::Config) -> Result<sled::Db, sled::Error> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(INDEX_LOCK_WAIT_MS);
    loop {
        match config.open() {
            Err(sled::Error::Io(e))
                if e.kind() == std::io::ErrorKind::WouldBlock && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

impl Index {
    /// Opens (or creates) the index without event indexes.
    pub fn open(dir: &Path) -> Result<Index, IndexError> {
        Index::open_inner(dir, None)
    }

    /// Opens (or creates) the index, also indexing the records of `events`
    /// by the fields its `extract` returns.
    pub fn open_with_events(dir: &Path, events: EventLedger) -> Result<Index, IndexError> {
        Index::open_inner(dir, Some(events))
    }

    fn open_inner(dir: &Path, events: Option<EventLedger>) -> Result<Index, IndexError> {
        // HighThroughput: the index is rewritten as fast as records arrive and
        // is cheap to rebuild, so trading disk space for less CPU per insert
        // is the right side of sled's knob.
        let config = sled::Config::new().path(dir).mode(sled::Mode::HighThroughput);
        let db = open_waiting_for_lock(&config)?;
        let index = Index {
            db,
            events,
            verified: AtomicBool::new(false),
            caught_up_at: AtomicU64::new(u64::MAX),
            indexed_total: AtomicU64::new(u64::MAX),
            recount: AtomicBool::new(false),
        };
        if index.db.get(STAMP_KEY)?.as_deref() != Some(index.stamp().as_bytes()) {
            // Built by another layout or configuration: its entries cannot be
            // trusted to be complete for this one.
            index.reset()?;
        }
        Ok(index)
    }

    fn stamp(&self) -> String {
        match &self.events {
            Some(e) => format!("{FORMAT};events={}/{};extract={}", e.tenant, e.ledger, e.version),
            None => format!("{FORMAT};events=none"),
        }
    }

    /// Empties the index and writes the stamp.
    fn reset(&self) -> Result<(), IndexError> {
        // The stamp goes first, durably: a crash part way through `clear`
        // then leaves an index without a stamp, which is reset at open,
        // never surviving watermarks over entries that are gone.
        self.db.remove(STAMP_KEY)?;
        self.db.flush()?;
        self.db.clear()?;
        self.db.insert(STAMP_KEY, self.stamp().as_bytes())?;
        self.db.flush()?;
        Ok(())
    }

    /// The next seq of `tenant/ledger` not yet indexed (0 if none is).
    pub fn watermark(&self, tenant: &TenantId, ledger: &LedgerName) -> Result<u64, IndexError> {
        self.read_watermark(tenant.as_str(), ledger.as_str()).map(|w| w.done.next)
    }

    fn read_watermark(&self, tenant: &str, ledger: &str) -> Result<Watermark, IndexError> {
        match self.db.get(watermark_key(tenant, ledger))? {
            Some(v) => Watermark::decode(&v),
            None => Ok(Watermark { done: Mark::START, pending: None }),
        }
    }

    /// Whether every stored watermark, and every pending mark a crash left,
    /// names a ledger of the store whose record before the mark has the hash
    /// the index saw.
    fn matches_store(&self, store: &Store) -> Result<bool, IndexError> {
        for kv in self.db.scan_prefix(b"W") {
            let (k, v) = kv?;
            let wm = Watermark::decode(&v)?;
            let name =
                std::str::from_utf8(&k[1..]).map_err(|_| IndexError::Sled("bad watermark key".into()))?;
            let Some((t, l)) = name.split_once('/') else { return Ok(false) };
            let (Ok(tenant), Ok(ledger)) = (TenantId::new(t), LedgerName::new(l)) else { return Ok(false) };
            for mark in std::iter::once(wm.done).chain(wm.pending) {
                if !self.same_history(store, &tenant, &ledger, mark)? {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// Records indexed so far (every ledger's watermark, summed; after a
    /// failed step, possibly fewer until the next step), once the first
    /// step since open has checked the watermarks; `None` before.
    pub fn indexed_total(&self) -> Option<u64> {
        Some(self.indexed_total.load(Ordering::Acquire)).filter(|&n| n != u64::MAX)
    }

    /// How many of `store`'s records the index has not taken in yet (never
    /// fewer than it really lacks); `None` until the first step since open.
    pub fn lag_records(&self, store: &Store) -> Option<u64> {
        // Read the count first: the store's total only grows meanwhile.
        let indexed = self.indexed_total()?;
        Some(store.records_total().saturating_sub(indexed))
    }

    /// The sum of every ledger's watermark.
    fn count_watermarks(&self) -> Result<u64, IndexError> {
        let mut indexed: u64 = 0;
        for kv in self.db.scan_prefix(b"W") {
            indexed += Watermark::decode(&kv?.1)?.done.next;
        }
        Ok(indexed)
    }

    /// Empties the index; the count goes to zero first, so a failed reset
    /// leaves it below what the index holds, never above.
    fn reset_counted(&self) -> Result<(), IndexError> {
        self.indexed_total.store(0, Ordering::Release);
        self.reset()
    }

    fn same_history(
        &self,
        store: &Store,
        tenant: &TenantId,
        ledger: &LedgerName,
        mark: Mark,
    ) -> Result<bool, IndexError> {
        let Some(last) = mark.next.checked_sub(1) else { return Ok(true) };
        Ok(store
            .record(tenant, ledger, Seq::new(last))?
            .is_some_and(|e| *e.hash.as_bytes() == mark.last_hash))
    }

    /// Indexes every record past each ledger's watermark; returns how many
    /// (after a reset, counted from nothing).
    pub fn catch_up(&self, store: &Store) -> Result<u64, IndexError> {
        let mut indexed = 0;
        loop {
            let step = self.catch_up_step(store, u64::MAX)?;
            indexed = if step.reset { step.indexed } else { indexed + step.indexed };
            if step.complete {
                return Ok(indexed);
            }
        }
    }

    /// Whether a step that started after `store`'s last commit caught up
    /// with every ledger: then every ledger is indexed up to its size,
    /// without reading a watermark.
    pub fn caught_up_with(&self, store: &Store) -> bool {
        self.caught_up_at.load(Ordering::Acquire) == store.commits()
    }

    /// Indexes past the watermarks, stopping once about `records_max`
    /// records (at most `INDEX_STEP_RECORDS_MAX`, and about
    /// `INDEX_STEP_KEY_BYTES_MAX` of keys) were indexed, in chunks of
    /// at most `INDEX_CHUNK_RECORDS` per read, so a caller can bound one
    /// pass's work and memory. The first step after open checks every
    /// watermark against the store and clears the index if the store's
    /// history is not the one indexed.
    pub fn catch_up_step(&self, store: &Store, records_max: u64) -> Result<CatchUp, IndexError> {
        let step = self.step(store, records_max);
        if step.is_err() {
            // The count left out whatever the failed step wrote: count the
            // watermarks again on the next step.
            self.recount.store(true, Ordering::Release);
        }
        step
    }

    fn step(&self, store: &Store, records_max: u64) -> Result<CatchUp, IndexError> {
        let commits = store.commits();
        let mut reset = false;
        if !self.verified.load(Ordering::Acquire) {
            if self.matches_store(store)? {
                self.indexed_total.store(self.count_watermarks()?, Ordering::Release);
            } else {
                self.reset_counted()?;
                reset = true;
            }
            self.recount.store(false, Ordering::Release);
            self.verified.store(true, Ordering::Release);
        } else if self.recount.load(Ordering::Acquire) {
            self.indexed_total.store(self.count_watermarks()?, Ordering::Release);
            self.recount.store(false, Ordering::Release);
        }
        match self.plan(store, records_max)? {
            Some((plan, step)) => {
                self.write(&plan)?;
                self.indexed_total.fetch_add(step.indexed, Ordering::AcqRel);
                if step.complete {
                    self.caught_up_at.store(commits, Ordering::Release);
                }
                Ok(CatchUp { reset, ..step })
            }
            None => {
                // A ledger shorter than its watermark, or a record that is not
                // the one indexed: this index describes another history.
                self.reset_counted()?;
                Ok(CatchUp { indexed: 0, complete: false, reset: true })
            }
        }
    }

    /// Reads what the next step indexes, writing nothing; `None` if a
    /// watermark does not match the store's history.
    fn plan(&self, store: &Store, records_max: u64) -> Result<Option<(Vec<Planned>, CatchUp)>, IndexError> {
        let records_max = records_max.min(INDEX_STEP_RECORDS_MAX);
        let mut out = CatchUp { complete: true, ..CatchUp::default() };
        let mut plan = Vec::new();
        let mut key_bytes = 0;
        for (tenant, ledger, size) in store.ledgers()? {
            if out.indexed >= records_max || key_bytes >= INDEX_STEP_KEY_BYTES_MAX {
                out.complete = false;
                break;
            }
            let wm = self.read_watermark(tenant.as_str(), ledger.as_str())?;
            if wm.done.next > size
                || wm.pending.is_some_and(|p| p.next > size)
                || (wm.done.next < size && !self.same_history(store, &tenant, &ledger, wm.done)?)
            {
                return Ok(None);
            }
            let mut planned = Planned {
                watermark_key: watermark_key(tenant.as_str(), ledger.as_str()),
                from: wm.done,
                to: wm.done,
                pending: wm.pending,
                keys: Vec::new(),
            };
            while planned.to.next < size && out.indexed < records_max && key_bytes < INDEX_STEP_KEY_BYTES_MAX
            {
                let before = planned.to.next;
                planned.to =
                    self.chunk_keys(store, &tenant, &ledger, planned.to, &mut planned.keys, &mut key_bytes)?;
                if planned.to.next == before {
                    // The store listed more records than it returned: it is
                    // failing; try again on the next step.
                    out.complete = false;
                    break;
                }
                out.indexed += planned.to.next - before;
            }
            if planned.to.next < size {
                out.complete = false;
            }
            if planned.to != planned.from {
                plan.push(planned);
            }
        }
        Ok(Some((plan, out)))
    }

    /// Writes a step's plan: pending marks, flushed; every entry, flushed;
    /// then the watermarks, flushed. Nothing is assumed about the order in
    /// which sled makes unflushed writes durable.
    fn write(&self, plan: &[Planned]) -> Result<(), IndexError> {
        self.write_until(plan, usize::MAX)
    }

    /// `write`, stopping (as a crash would) after `entries_max` entries,
    /// before the watermarks if that is all of them; `usize::MAX` finishes.
    fn write_until(&self, plan: &[Planned], entries_max: usize) -> Result<(), IndexError> {
        if plan.is_empty() {
            return Ok(());
        }
        for p in plan {
            let wm = Watermark { done: p.from, pending: Some(p.announced()) };
            self.db.insert(p.watermark_key.as_slice(), wm.encode())?;
        }
        self.db.flush()?;
        let mut written = 0;
        for k in plan.iter().flat_map(|p| &p.keys) {
            if written == entries_max {
                return Ok(());
            }
            self.db.insert(k.as_slice(), &[] as &[u8])?;
            written += 1;
        }
        if written == entries_max {
            return Ok(());
        }
        self.db.flush()?;
        for p in plan {
            self.db.insert(p.watermark_key.as_slice(), p.finished().encode())?;
        }
        self.db.flush()?;
        Ok(())
    }

    /// Reads one chunk of `tenant/ledger` from `from`, appends the index keys
    /// of its records to `keys`; returns the mark after the chunk.
    fn chunk_keys(
        &self,
        store: &Store,
        tenant: &TenantId,
        ledger: &LedgerName,
        from: Mark,
        keys: &mut Vec<Vec<u8>>,
        key_bytes: &mut usize,
    ) -> Result<Mark, IndexError> {
        let after = from.next.checked_sub(1).map(Seq::new);
        let entries = store.records(tenant, ledger, after, INDEX_CHUNK_RECORDS)?;
        let Some(last) = entries.last() else { return Ok(from) };
        let events = self.events.as_ref().filter(|e| e.tenant == *tenant && e.ledger == *ledger);
        let first = keys.len();
        for e in &entries {
            let r = &e.record;
            let seq = r.seq().get();
            for p in r.parents() {
                let mut k = lineage_prefix(tenant.as_str(), p.ledger.as_str(), p.seq.get());
                push_position(&mut k, ledger.as_str(), seq);
                keys.push(k);
            }
            let mut k = digest_prefix(tenant.as_str(), blake3::hash(r.payload()).as_bytes());
            push_position(&mut k, ledger.as_str(), seq);
            keys.push(k);
            if let Some(events) = events {
                let fields = (events.extract)(r.payload());
                let pairs = [
                    (FIELD_REQUEST_ID, &fields.request_id),
                    (FIELD_TENANT, &fields.tenant),
                    (FIELD_CODE, &fields.code),
                ];
                for (field, value) in pairs {
                    if let Some(mut k) = value.as_deref().and_then(|v| event_prefix(field, v)) {
                        k.extend_from_slice(&seq.to_be_bytes());
                        keys.push(k);
                    }
                }
            }
        }
        *key_bytes += keys[first..].iter().map(Vec::len).sum::<usize>();
        let to = Mark { next: last.record.seq().get() + 1, last_hash: *last.hash.as_bytes() };
        assert!(to.next > from.next, "a chunk read after the mark advances it");
        Ok(to)
    }

    /// Drops everything and indexes from scratch.
    pub fn rebuild(&self, store: &Store) -> Result<u64, IndexError> {
        self.recount.store(false, Ordering::Release);
        self.reset_counted()?;
        self.verified.store(true, Ordering::Release);
        self.catch_up(store)
    }

    /// Records that name `(ledger, seq)` of `tenant` as a lineage parent, in
    /// (ledger, seq) order, after `after` (exclusive), at most `limit`
    /// (capped at `RANGE_RECORDS_COUNT_MAX`). A record can have any number
    /// of children, so a caller pages through them. Complete for each child
    /// ledger below its watermark, as `by_payload_digest` is.
    pub fn children(
        &self,
        tenant: &TenantId,
        ledger: &LedgerName,
        seq: Seq,
        after: Option<&(LedgerName, Seq)>,
        limit: u64,
    ) -> Result<Vec<(LedgerName, Seq)>, IndexError> {
        self.positions(lineage_prefix(tenant.as_str(), ledger.as_str(), seq.get()), after, limit)
    }

    /// Records of `tenant` whose payload has this blake3 digest, in
    /// (ledger, seq) order, after `after` (exclusive), at most `limit`
    /// (capped at `RANGE_RECORDS_COUNT_MAX`). Complete for each ledger
    /// below its watermark; past it, a step in progress may have written
    /// some.
    pub fn by_payload_digest(
        &self,
        tenant: &TenantId,
        digest: &[u8; 32],
        after: Option<&(LedgerName, Seq)>,
        limit: u64,
    ) -> Result<Vec<(LedgerName, Seq)>, IndexError> {
        self.positions(digest_prefix(tenant.as_str(), digest), after, limit)
    }

    /// The positions under `prefix` (lineage or digest keys), after `after`.
    fn positions(
        &self,
        prefix: Vec<u8>,
        after: Option<&(LedgerName, Seq)>,
        limit: u64,
    ) -> Result<Vec<(LedgerName, Seq)>, IndexError> {
        let start = match after {
            None => Bound::Included(prefix.clone()),
            Some((ledger, seq)) => {
                let mut k = prefix.clone();
                push_position(&mut k, ledger.as_str(), seq.get());
                Bound::Excluded(k)
            }
        };
        self.scan_from(&prefix, start, limit, tail, "malformed index key")
    }

    /// At most `limit` (capped at `RANGE_RECORDS_COUNT_MAX`) keys under
    /// `prefix` from `start` on, each read by `parse` from what follows the
    /// prefix.
    fn scan_from<T>(
        &self,
        prefix: &[u8],
        start: Bound<Vec<u8>>,
        limit: u64,
        parse: impl Fn(&[u8]) -> Option<T>,
        malformed: &str,
    ) -> Result<Vec<T>, IndexError> {
        let limit = limit.min(RANGE_RECORDS_COUNT_MAX);
        let mut out = Vec::new();
        for kv in self.db.range::<Vec<u8>, _>((start, Bound::Unbounded)) {
            if out.len() as u64 >= limit {
                break;
            }
            let (k, _) = kv?;
            if !k.starts_with(prefix) {
                break;
            }
            out.push(parse(&k[prefix.len()..]).ok_or_else(|| IndexError::Sled(malformed.into()))?);
        }
        Ok(out)
    }

    /// Seqs in the event ledger of events with this request id, ascending,
    /// after `after` (exclusive), at most `limit` (capped at
    /// `RANGE_RECORDS_COUNT_MAX`). Complete below the event ledger's
    /// watermark; past it, a step in progress may have written some.
    pub fn events_by_request_id(
        &self,
        request_id: &str,
        after: Option<Seq>,
        limit: u64,
    ) -> Result<Vec<Seq>, IndexError> {
        self.event_seqs(FIELD_REQUEST_ID, request_id, after, limit)
    }

    /// Like [`Index::events_by_request_id`], for events naming this tenant.
    pub fn events_by_tenant(
        &self,
        tenant: &str,
        after: Option<Seq>,
        limit: u64,
    ) -> Result<Vec<Seq>, IndexError> {
        self.event_seqs(FIELD_TENANT, tenant, after, limit)
    }

    /// Like [`Index::events_by_request_id`], for events with this code.
    pub fn events_by_code(&self, code: &str, after: Option<Seq>, limit: u64) -> Result<Vec<Seq>, IndexError> {
        self.event_seqs(FIELD_CODE, code, after, limit)
    }

    fn event_seqs(
        &self,
        field: u8,
        value: &str,
        after: Option<Seq>,
        limit: u64,
    ) -> Result<Vec<Seq>, IndexError> {
        // A value that is never indexed has no events.
        let Some(prefix) = event_prefix(field, value) else { return Ok(Vec::new()) };
        let from = match after {
            None => 0,
            Some(s) => match s.get().checked_add(1) {
                Some(f) => f,
                None => return Ok(Vec::new()),
            },
        };
        let mut start = prefix.clone();
        start.extend_from_slice(&from.to_be_bytes());
        let seq = |rest: &[u8]| Some(Seq::new(u64::from_be_bytes(rest.try_into().ok()?)));
        self.scan_from(&prefix, Bound::Included(start), limit, seq, "malformed event index key")
    }

    /// Every key in the index, in order: for tests comparing two builds.
    pub fn dump(&self) -> Result<Vec<Vec<u8>>, IndexError> {
        self.db.iter().keys().map(|k| Ok(k?.to_vec())).collect()
    }
}

#[cfg(test)]
mod tests {
    //! A step cut off between its pending marks and its watermarks (a crash
    //! while writing entries one by one) leaves entries past a watermark.
    //! Against the same store they are rewritten and the index equals a
    //! rebuild, wherever the cut fell; against a store whose history differs
    //! past the watermark but not before it, only the pending mark can tell,
    //! and the index is cleared instead of keeping the other history's
    //! entries. A later, shorter step must not lower the mark.

    use super::*;
    use crate::store::{AppendRequest, OpenOptions, Position};
    use annal_chain::Parent;

    fn append(s: &Store, i: u64, payload: &[u8], parents: Vec<Parent>) -> Parent {
        let r = s
            .append(AppendRequest {
                tenant: TenantId::new("acme").unwrap(),
                ledger: LedgerName::new("orders").unwrap(),
                position: Position::Next,
                timestamp_ms: i,
                content_type: "application/octet-stream".into(),
                payload: payload.to_vec(),
                parents,
                idempotency_key: None,
            })
            .wait()
            .unwrap()
            .unwrap();
        Parent { ledger: LedgerName::new("orders").unwrap(), seq: r.seq, hash: r.hash }
    }

    /// 300 records with distinct payloads (those from `diverge_at` on differ
    /// with `flavour`), every tenth naming record 0 as a parent.
    fn fill(s: &Store, flavour: &str, diverge_at: u64) {
        let mut first = None;
        for i in 0..300u64 {
            let payload = if i < diverge_at { format!("p{i}") } else { format!("{flavour}{i}") };
            let parents = if i % 10 == 9 { first.iter().cloned().collect() } else { Vec::new() };
            let p = append(s, i, payload.as_bytes(), parents);
            first.get_or_insert(p);
        }
    }

    fn rebuilt(s: &Store) -> Vec<Vec<u8>> {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(dir.path()).unwrap();
        index.rebuild(s).unwrap();
        index.dump().unwrap()
    }

    fn acme_orders() -> (TenantId, LedgerName) {
        (TenantId::new("acme").unwrap(), LedgerName::new("orders").unwrap())
    }

    /// Cut after every entry, before the watermarks.
    const ALL_ENTRIES: usize = usize::MAX - 1;

    /// A store of 300 records in `dir`; its index at `dir/index` indexed
    /// 128 of them, then a step for the rest was cut off (as by a crash)
    /// after `entries` of its entries (`ALL_ENTRIES`; `usize::MAX`: not
    /// cut). Returns the store and the index's key count.
    fn store_with_cut_off_index(dir: &Path, entries: usize) -> (Store, usize) {
        let s = Store::open(dir, OpenOptions::default()).unwrap();
        fill(&s, "p", 300);
        let index = Index::open(&dir.join("index")).unwrap();
        index.catch_up_step(&s, 1).unwrap();
        let (tenant, orders) = acme_orders();
        assert_eq!(index.watermark(&tenant, &orders).unwrap(), INDEX_CHUNK_RECORDS);
        let (plan, _) = index.plan(&s, u64::MAX).unwrap().expect("same history");
        let total = plan.iter().map(|p| p.keys.len()).sum();
        let entries = if entries == ALL_ENTRIES { total } else { entries };
        index.write_until(&plan, entries).unwrap();
        let moved = if entries == usize::MAX { 300 } else { INDEX_CHUNK_RECORDS };
        assert_eq!(index.watermark(&tenant, &orders).unwrap(), moved);
        let keys = index.dump().unwrap().len();
        (s, keys)
    }

    /// Copies the index of `dir` beside a store that has the same first
    /// `same` records of `orders` and others after them; opens it there.
    fn index_beside_another_history(dir: &Path, other_dir: &Path, same: u64) -> (Store, Index) {
        let other = Store::open(other_dir, OpenOptions::default()).unwrap();
        fill(&other, "other", same);
        let to = other_dir.join("index");
        std::fs::remove_dir_all(&to).ok();
        copy(&dir.join("index"), &to);
        let index = Index::open(&to).unwrap();
        (other, index)
    }

    /// The count of records indexed follows every step, is counted again
    /// from the watermarks after a reopen, and starts over with a reset:
    /// the store's total minus it is how far the index is behind.
    #[test]
    fn indexed_total_counts_what_the_watermarks_cover() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), OpenOptions::default()).unwrap();
        fill(&s, "p", 300);
        assert_eq!(s.records_total(), 300);
        let index = Index::open(&dir.path().join("index")).unwrap();
        assert_eq!(index.indexed_total(), None, "not counted before the first step");
        index.catch_up_step(&s, 1).unwrap();
        assert_eq!(index.indexed_total(), Some(INDEX_CHUNK_RECORDS));
        index.catch_up_step(&s, u64::MAX).unwrap();
        assert_eq!(index.indexed_total(), Some(300));
        append(&s, 300, b"one more", Vec::new());
        assert_eq!((s.records_total(), index.indexed_total()), (301, Some(300)));
        assert_eq!(index.lag_records(&s), Some(1));
        drop(index);
        let index = Index::open(&dir.path().join("index")).unwrap();
        let step = index.catch_up_step(&s, u64::MAX).unwrap();
        assert_eq!((step.indexed, index.indexed_total()), (1, Some(301)), "300 counted from the watermarks");
        assert_eq!(index.rebuild(&s).unwrap(), 301);
        assert_eq!((index.indexed_total(), index.lag_records(&s)), (Some(301), Some(0)));
    }

    /// A step that failed after writing leaves the count below what the
    /// watermarks cover (the lag overstated, never understated), and the
    /// next step counts them again.
    #[test]
    fn a_failed_step_undercounts_until_the_next_step_counts_again() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), OpenOptions::default()).unwrap();
        fill(&s, "p", 300);
        let index = Index::open(&dir.path().join("index")).unwrap();
        index.catch_up_step(&s, 1).unwrap();
        // What a step that wrote everything and then failed leaves behind.
        let (plan, _) = index.plan(&s, u64::MAX).unwrap().expect("same history");
        index.write(&plan).unwrap();
        index.recount.store(true, Ordering::Release);
        assert_eq!(index.indexed_total(), Some(INDEX_CHUNK_RECORDS));
        assert_eq!(index.lag_records(&s), Some(300 - INDEX_CHUNK_RECORDS));
        let step = index.catch_up_step(&s, u64::MAX).unwrap();
        assert_eq!((step.indexed, index.indexed_total(), index.lag_records(&s)), (0, Some(300), Some(0)));
    }

    #[test]
    fn a_cut_off_step_is_completed_against_the_same_store() {
        for cut in [0, 1, 150, ALL_ENTRIES, usize::MAX] {
            let dir = tempfile::tempdir().unwrap();
            let (s, partial) = store_with_cut_off_index(dir.path(), cut);
            let index = Index::open(&dir.path().join("index")).unwrap();
            let step = index.catch_up_step(&s, u64::MAX).unwrap();
            assert!(!step.reset, "cut {cut}: the pending mark names this store's history");
            assert!(step.complete);
            let dump = index.dump().unwrap();
            if cut == usize::MAX {
                assert_eq!(step.indexed, 0, "the step had finished");
            } else {
                assert_eq!(step.indexed, 300 - INDEX_CHUNK_RECORDS, "cut {cut}: from the watermark");
                assert!(dump.len() > partial || cut == ALL_ENTRIES, "cut {cut}: entries were missing");
            }
            assert_eq!(dump, rebuilt(&s), "cut {cut}");
        }
    }

    #[test]
    fn a_cut_off_step_clears_the_index_against_another_history() {
        let dir = tempfile::tempdir().unwrap();
        store_with_cut_off_index(dir.path(), 150);
        // The same first 128 records (the watermark matches), then others.
        let other_dir = tempfile::tempdir().unwrap();
        let (other, index) = index_beside_another_history(dir.path(), other_dir.path(), INDEX_CHUNK_RECORDS);
        let (tenant, orders) = acme_orders();
        let wm = index.read_watermark("acme", "orders").unwrap();
        assert!(index.same_history(&other, &tenant, &orders, wm.done).unwrap());
        let step = index.catch_up_step(&other, u64::MAX).unwrap();
        assert!(step.reset, "the pending mark names another history");
        assert_eq!(index.indexed_total(), Some(step.indexed), "nothing of the other history counts");
        index.catch_up(&other).unwrap();
        assert_eq!(index.indexed_total(), Some(300));
        assert_eq!(index.dump().unwrap(), rebuilt(&other), "nothing of the other history is left");
    }

    #[test]
    fn a_shorter_step_after_a_cut_keeps_the_higher_pending_mark() {
        let dir = tempfile::tempdir().unwrap();
        let (s, _) = store_with_cut_off_index(dir.path(), ALL_ENTRIES);
        // Every entry up to 300 is in; the watermark still says 128. A step
        // of one chunk ends at 256, below the entries already written.
        let index = Index::open(&dir.path().join("index")).unwrap();
        // Cut off again right after announcing: the mark is not lowered.
        assert!(index.matches_store(&s).unwrap());
        let (plan, _) = index.plan(&s, 1).unwrap().expect("same history");
        index.write_until(&plan, 0).unwrap();
        let wm = index.read_watermark("acme", "orders").unwrap();
        assert_eq!(wm.pending.map(|p| p.next), Some(300), "announcing keeps the higher mark");
        let step = index.catch_up_step(&s, 1).unwrap();
        assert!(!step.reset && !step.complete);
        let wm = index.read_watermark("acme", "orders").unwrap();
        assert_eq!(wm.done.next, 2 * INDEX_CHUNK_RECORDS);
        assert_eq!(wm.pending.map(|p| p.next), Some(300), "the entries up to 300 stay covered");
        drop(index);
        // A store equal up to 256 and different after: only the kept mark
        // shows that entries 256..300 belong to another history.
        let other_dir = tempfile::tempdir().unwrap();
        let (other, index) =
            index_beside_another_history(dir.path(), other_dir.path(), 2 * INDEX_CHUNK_RECORDS);
        assert!(index.catch_up_step(&other, u64::MAX).unwrap().reset);
        index.catch_up(&other).unwrap();
        assert_eq!(index.dump().unwrap(), rebuilt(&other));
        // Against its own store, a later step past the mark drops it.
        let index = Index::open(&dir.path().join("index")).unwrap();
        index.catch_up(&s).unwrap();
        assert_eq!(index.read_watermark("acme", "orders").unwrap().pending, None);
        assert_eq!(index.dump().unwrap(), rebuilt(&s));
    }

    fn copy(from: &Path, to: &Path) {
        if from.is_dir() {
            std::fs::create_dir_all(to).unwrap();
            for entry in std::fs::read_dir(from).unwrap() {
                let entry = entry.unwrap();
                copy(&entry.path(), &to.join(entry.file_name()));
            }
        } else {
            std::fs::copy(from, to).unwrap();
        }
    }

    #[test]
    fn watermarks_round_trip_with_and_without_a_pending_mark() {
        let done = Mark { next: 7, last_hash: [1; HASH_BYTES] };
        for pending in [None, Some(Mark { next: 9, last_hash: [2; HASH_BYTES] })] {
            let wm = Watermark { done, pending };
            assert_eq!(Watermark::decode(&wm.encode()).unwrap(), wm);
        }
        assert!(Watermark::decode(&[0; MARK_BYTES + 1]).is_err());
    }
}
