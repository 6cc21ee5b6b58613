//! The append log and the unflushed tails it holds (docs/STORE.md, "The
//! append log").
//!
//! A ledger that gets only a few records per group commit would dirty its own
//! `records` leaf, ledger row and node leaf in every commit: with 64 such
//! ledgers one commit wrote ~90 pages where the same bytes appended in key
//! order take ~12. So those records go to the `log` table, keyed by one
//! store-wide position (sequential, a few pages per commit), and their
//! ledger's new head and Merkle nodes stay in memory: the ledger's *tail*.
//! Every `TAIL_FLUSH_COMMITS` commits (or when the tails grow past their
//! limits, and at close) one commit moves every tail into `records`,
//! `merkle_nodes_by_end` and `ledgers` and empties the log. Each record is then in
//! exactly one of the two places, in the same transaction.
//!
//! Readers take the published tails *before* their read transaction. A flush
//! committed in between can then only make a record visible twice (in the
//! tail and in `records`), never hide it, and readers take seqs at or past a
//! tail's `first` from the tail. At open the log is replayed onto the
//! flushed heads, re-checking every hash and link as a read does.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;

use annal_chain::Hash32;
use redb::{AccessGuard, ReadableDatabase, ReadableTable, ReadableTableMetadata, StorageError};

use crate::codec::{self, StoredHead};
use crate::error::{Corruption, OpenError, ReadError};
use crate::schema::{CHECKPOINTS, LEDGER_NAMES, LEDGERS, LOG};
use crate::store::decode_record;
use crate::tree::{append_leaf, stored_level};

/// Bytes before the stored record in a log value: ledger id, seq (both LE).
pub(crate) const LOG_PREFIX_BYTES: usize = 16;

/// Records per chunk of a tail's record list.
const TAIL_CHUNK_RECORDS: usize = 64;

/// A tail's stored record values, in chunks of `TAIL_CHUNK_RECORDS`. The
/// committer changes a tail the readers hold (the published one) by cloning
/// it, once per batch that touches it: a clone shares every chunk and
/// copies only the one it appends to, where a flat list cost an atomic
/// increment, and later a decrement, per record of the tail per batch
/// (about 7% of the committer's time on one hot ledger).
#[derive(Clone, Debug, Default)]
pub(crate) struct TailRecords {
    chunks: Vec<Arc<Vec<Arc<[u8]>>>>,
    len: usize,
}

impl TailRecords {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn get(&self, i: usize) -> Option<&Arc<[u8]>> {
        if i >= self.len {
            return None;
        }
        self.chunks.get(i / TAIL_CHUNK_RECORDS)?.get(i % TAIL_CHUNK_RECORDS)
    }

    fn push(&mut self, value: Arc<[u8]>) {
        if self.len.is_multiple_of(TAIL_CHUNK_RECORDS) {
            self.chunks.push(Arc::new(Vec::with_capacity(TAIL_CHUNK_RECORDS)));
        }
        let last = self.chunks.last_mut().expect("a chunk with room");
        if Arc::get_mut(last).is_none() {
            // Shared with a published clone: copy it, with room for the rest.
            let mut copy = Vec::with_capacity(TAIL_CHUNK_RECORDS);
            copy.extend(last.iter().cloned());
            *last = Arc::new(copy);
        }
        Arc::get_mut(last).expect("unshared now").push(value);
        self.len += 1;
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Arc<[u8]>> {
        self.chunks.iter().flat_map(|c| c.iter()).take(self.len)
    }
}

/// One ledger's records that are in the log, not yet in `records`.
#[derive(Clone, Debug)]
pub(crate) struct LedgerTail {
    /// The head including the tail (written to `ledgers` at flush).
    pub(crate) head: StoredHead,
    /// Seq of `records[0]`; every seq below it is in `records`.
    pub(crate) first: u64,
    /// Stored record values (hash set), seqs `first..`.
    pub(crate) records: TailRecords,
    /// Merkle nodes at stored levels completed by the tail.
    pub(crate) nodes: HashMap<(u8, u64), [u8; 32]>,
}

impl LedgerTail {
    pub(crate) fn new(head: StoredHead) -> LedgerTail {
        LedgerTail { first: head.next_seq, head, records: TailRecords::default(), nodes: HashMap::new() }
    }

    /// The stored value of `seq`, if it is in this tail.
    pub(crate) fn get(&self, seq: u64) -> Option<&[u8]> {
        let i = usize::try_from(seq.checked_sub(self.first)?).ok()?;
        self.records.get(i).map(|r| &r[..])
    }

    pub(crate) fn node(&self, level: u8, index: u64) -> Option<[u8; 32]> {
        self.nodes.get(&(level, index)).copied()
    }
}

/// The stored hash of record `seq` of ledger `id`: from its tail when the
/// tail holds it, else from `records`. `None` if neither has it.
pub(crate) fn stored_hash(
    tail: Option<&LedgerTail>,
    records: &impl ReadableTable<(u64, u64), &'static [u8]>,
    id: u64,
    seq: u64,
) -> Result<Option<[u8; 32]>, StorageError> {
    if let Some(v) = tail.and_then(|t| t.get(seq)) {
        return Ok(codec::peek_hash(v));
    }
    Ok(records.get((id, seq))?.and_then(|v| codec::peek_hash(v.value())))
}

impl LedgerTail {
    /// Adds the record at `seq` (value with its hash set), which must be the
    /// next one, and the Merkle nodes it completed.
    pub(crate) fn add(&mut self, seq: u64, value: Arc<[u8]>, nodes: Vec<(u8, u64, [u8; 32])>) {
        assert_eq!(seq, self.first + self.records.len() as u64, "a tail is contiguous");
        self.records.push(value);
        self.nodes.extend(nodes.into_iter().map(|(level, index, h)| ((level, index), h)));
    }

    /// Adds a replayed record at the tail's own head and advances it.
    fn replay(&mut self, value: Arc<[u8]>, hash: Hash32) {
        let seq = self.head.next_seq;
        let nodes = advance_head(&mut self.head, hash);
        self.add(seq, value, nodes);
    }

    pub(crate) fn bytes(&self) -> usize {
        self.records.iter().map(|r| r.len()).sum()
    }
}

/// Moves `head` past a record with `hash` at `head.next_seq`; returns the
/// Merkle nodes at stored levels that the record completed.
pub(crate) fn advance_head(head: &mut StoredHead, hash: Hash32) -> Vec<(u8, u64, [u8; 32])> {
    let mut peaks: Vec<Hash32> = head.peaks.iter().map(|p| Hash32::from_bytes(*p)).collect();
    let mut completed = Vec::new();
    append_leaf(head.next_seq, &mut peaks, hash, &mut |level, index, h| {
        if stored_level(level) {
            completed.push((u8::try_from(level).expect("tree levels fit u8"), index, *h.as_bytes()));
        }
    });
    head.peaks = peaks.iter().map(|p| *p.as_bytes()).collect();
    head.next_seq += 1;
    head.head_hash = *hash.as_bytes();
    completed
}

/// Every ledger's tail, by ledger key (`tenant/ledger`).
pub(crate) type Tails = HashMap<String, Arc<LedgerTail>>;

/// The key a head is stored under.
pub(crate) fn head_key(head: &StoredHead) -> String {
    crate::store::key_of(&head.tenant, &head.ledger)
}

/// A stored record value, read from `records` or from a tail.
pub(crate) enum StoredValue<'a> {
    Table(AccessGuard<'a, &'static [u8]>),
    Tail(&'a [u8]),
}

impl StoredValue<'_> {
    pub(crate) fn bytes(&self) -> &[u8] {
        match self {
            StoredValue::Table(guard) => guard.value(),
            StoredValue::Tail(value) => value,
        }
    }
}

/// The stored values of ledger `id` at seqs `from..end`, in order, with the
/// seq each is keyed under: below the tail's first from `records`, from
/// there from the tail (ending where the tail ends). Gaps are the caller's
/// to find: a missing seq is simply not yielded.
pub(crate) fn stored_values<'a, R>(
    records: &'a R,
    id: u64,
    tail: Option<&'a LedgerTail>,
    from: u64,
    end: u64,
) -> Result<impl Iterator<Item = Result<(u64, StoredValue<'a>), StorageError>> + 'a, StorageError>
where
    R: ReadableTable<(u64, u64), &'static [u8]>,
{
    let split = tail.map_or(end, |t| t.first).clamp(from, end);
    let flushed = records
        .range((id, from)..(id, split))?
        .map(|entry| entry.map(|(k, v)| (k.value().1, StoredValue::Table(v))));
    let logged = tail.into_iter().flat_map(move |t| {
        (split..end).map_while(move |seq| t.get(seq).map(|v| Ok((seq, StoredValue::Tail(v)))))
    });
    Ok(flushed.chain(logged))
}

/// A log value: ledger id, seq, stored record.
pub(crate) fn log_value(id: u64, seq: u64, record: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(LOG_PREFIX_BYTES + record.len());
    v.extend_from_slice(&id.to_le_bytes());
    v.extend_from_slice(&seq.to_le_bytes());
    v.extend_from_slice(record);
    v
}

fn split_log_value(v: &[u8]) -> Option<(u64, u64, &[u8])> {
    let id = u64::from_le_bytes(v.get(..8)?.try_into().ok()?);
    let seq = u64::from_le_bytes(v.get(8..16)?.try_into().ok()?);
    Some((id, seq, &v[LOG_PREFIX_BYTES..]))
}

/// What replaying the log at open rebuilt.
pub(crate) struct Recovered {
    pub(crate) tails: Tails,
    /// The next log position.
    pub(crate) log_next: u64,
}

/// Rebuilds the tails from the log: each entry must be its ledger's next
/// record (seq and prev link) and hash to what is stored, as a read checks.
pub(crate) fn recover(db: &redb::Database) -> Result<Recovered, OpenError> {
    let e = |x: redb::Error| OpenError::Database(x.to_string());
    let txn = db.begin_read().map_err(|x| e(x.into()))?;
    let log = txn.open_table(LOG).map_err(|x| e(x.into()))?;
    let mut tails: HashMap<String, LedgerTail> = HashMap::new();
    let mut log_next = 0;
    if log.is_empty().map_err(|x| e(x.into()))? {
        return Ok(Recovered { tails: HashMap::new(), log_next });
    }
    let names = txn.open_table(LEDGER_NAMES).map_err(|x| e(x.into()))?;
    let ledgers = txn.open_table(LEDGERS).map_err(|x| e(x.into()))?;
    let mut keys: HashMap<u64, String> = HashMap::new();
    let corrupt = |tenant: &str, ledger: &str, seq: Option<u64>, what: &'static str| {
        OpenError::Corrupt(Corruption { tenant: tenant.to_owned(), ledger: ledger.to_owned(), seq, what })
    };
    for entry in log.iter().map_err(|x| e(x.into()))? {
        let (pos, v) = entry.map_err(|x| e(x.into()))?;
        log_next = pos.value() + 1;
        let Some((id, seq, value)) = split_log_value(v.value()) else {
            return Err(corrupt("", "log", Some(pos.value()), "log entry too short"));
        };
        let key = match keys.entry(id) {
            Entry::Occupied(o) => o.into_mut(),
            Entry::Vacant(v) => {
                let Some(name) = names.get(id).map_err(|x| e(x.into()))? else {
                    return Err(corrupt("", "log", Some(pos.value()), "log entry names an unknown ledger"));
                };
                v.insert(name.value().to_owned())
            }
        };
        if !tails.contains_key(key) {
            let (tenant, ledger) = key.split_once('/').unwrap_or((key.as_str(), ""));
            let head = match ledgers.get(key.as_str()).map_err(|x| e(x.into()))? {
                Some(row) => codec::decode::<StoredHead>(row.value())
                    .map_err(|_| corrupt(tenant, ledger, None, "ledger row does not decode"))?,
                None => StoredHead::empty(id, tenant, ledger),
            };
            if head.id != id {
                return Err(corrupt(tenant, ledger, None, "ledger row and name disagree on the id"));
            }
            tails.insert(key.clone(), LedgerTail::new(head));
        }
        let tail = tails.get_mut(key).expect("inserted above");
        if seq != tail.head.next_seq {
            return Err(corrupt(
                &tail.head.tenant,
                &tail.head.ledger,
                Some(seq),
                "log entry is not the next record",
            ));
        }
        let prev = Hash32::from_bytes(tail.head.head_hash);
        let (_, stored) = decode_record(&tail.head, seq, prev, value).map_err(|err| match err {
            ReadError::Corrupt(c) => OpenError::Corrupt(c),
            other => OpenError::Database(other.to_string()),
        })?;
        tail.replay(Arc::from(value), Hash32::from_bytes(stored.hash));
    }
    // Checkpoints are written straight to their table; a tail's head may not
    // have been flushed since the last one.
    let cps = txn.open_table(CHECKPOINTS).map_err(|x| e(x.into()))?;
    for tail in tails.values_mut() {
        let id = tail.head.id;
        if let Some(last) = cps.range((id, 0)..=(id, u64::MAX)).map_err(|x| e(x.into()))?.next_back() {
            let (k, _) = last.map_err(|x| e(x.into()))?;
            tail.head.checkpoint_size = tail.head.checkpoint_size.max(k.value().1);
        }
    }
    Ok(Recovered { tails: tails.into_iter().map(|(k, t)| (k, Arc::new(t))).collect(), log_next })
}

#[cfg(test)]
mod tests {
    use super::*;
    use annal_chain::{Hash32, RecordView, Seq};

    const KEY: &str = "acme/orders";

    /// The chunked list answers like a flat one across chunk boundaries,
    /// and a clone taken before more pushes keeps seeing what it had.
    #[test]
    fn tail_records_read_like_a_list_and_clones_keep_their_length() {
        let n = 3 * TAIL_CHUNK_RECORDS + 5;
        let values: Vec<Arc<[u8]>> = (0..n).map(|i| Arc::from(i.to_le_bytes().as_slice())).collect();
        let mut records = TailRecords::default();
        let mut published = Vec::new();
        for (i, v) in values.iter().enumerate() {
            records.push(v.clone());
            if i % 37 == 0 {
                published.push(records.clone());
            }
        }
        assert_eq!(records.len(), n);
        assert_eq!(records.iter().cloned().collect::<Vec<_>>(), values);
        for (i, v) in values.iter().enumerate() {
            assert_eq!(records.get(i), Some(v));
        }
        assert_eq!(records.get(n), None);
        for (k, p) in published.iter().enumerate() {
            let len = 37 * k + 1;
            assert_eq!(p.len(), len);
            assert_eq!(p.iter().cloned().collect::<Vec<_>>(), values[..len]);
            assert_eq!(p.get(len), None, "a clone does not see later pushes");
        }
    }

    /// A stored value for `seq` after `prev`; `hash` overrides the real one.
    fn value(seq: u64, prev: Hash32, hash: Option<Hash32>) -> (Vec<u8>, Hash32) {
        let payload = format!("payload {seq}").into_bytes();
        let view = RecordView {
            tenant: "acme",
            ledger: "orders",
            seq: Seq::new(seq),
            timestamp_ms: seq,
            prev,
            content_type: "text/plain",
            payload: &payload,
            parents: &[],
        };
        let real = view.hash();
        let mut v = codec::encode_record_unhashed(seq, "text/plain", &payload, &[]);
        codec::set_hash(&mut v, hash.unwrap_or(real).as_bytes());
        (v, real)
    }

    /// A database holding ledger 1 with these log entries.
    fn db_with_log(entries: &[(u64, Vec<u8>)]) -> (tempfile::TempDir, redb::Database) {
        let dir = tempfile::tempdir().unwrap();
        let db = redb::Database::create(dir.path().join("t.redb")).unwrap();
        crate::schema::up(&db).unwrap();
        let txn = db.begin_write().unwrap();
        {
            txn.open_table(LEDGER_NAMES).unwrap().insert(1, KEY).unwrap();
            let mut log = txn.open_table(LOG).unwrap();
            for (pos, (seq, v)) in entries.iter().enumerate() {
                log.insert(pos as u64, log_value(1, *seq, v).as_slice()).unwrap();
            }
        }
        txn.commit().unwrap();
        (dir, db)
    }

    fn corruption(r: Result<Recovered, OpenError>) -> (String, Option<u64>, &'static str) {
        match r {
            Err(OpenError::Corrupt(c)) => (c.ledger, c.seq, c.what),
            Err(other) => panic!("{other}"),
            Ok(_) => panic!("replayed"),
        }
    }

    #[test]
    fn replay_rebuilds_the_tail_from_a_good_log() {
        let (v0, h0) = value(0, Hash32::ZERO, None);
        let (v1, h1) = value(1, h0, None);
        let (_dir, db) = db_with_log(&[(0, v0), (1, v1)]);
        let r = recover(&db).unwrap();
        let tail = &r.tails[KEY];
        assert_eq!((tail.first, tail.head.next_seq, r.log_next), (0, 2, 2));
        assert_eq!(tail.head.head_hash, *h1.as_bytes());
        assert_eq!(tail.get(1).map(codec::peek_hash), Some(Some(*h1.as_bytes())));
    }

    #[test]
    fn replay_refuses_a_logged_record_whose_hash_does_not_match() {
        let (v0, h0) = value(0, Hash32::ZERO, None);
        let (v1, _) = value(1, h0, Some(Hash32::from_bytes([9; 32])));
        let (_dir, db) = db_with_log(&[(0, v0), (1, v1)]);
        let (ledger, seq, _) = corruption(recover(&db));
        assert_eq!((ledger.as_str(), seq), ("orders", Some(1)));
    }

    #[test]
    fn replay_refuses_a_link_to_another_prev() {
        let (v0, _) = value(0, Hash32::ZERO, None);
        // Hashed over a prev that is not record 0's hash.
        let (v1, _) = value(1, Hash32::from_bytes([7; 32]), None);
        let (_dir, db) = db_with_log(&[(0, v0), (1, v1)]);
        let (ledger, seq, _) = corruption(recover(&db));
        assert_eq!((ledger.as_str(), seq), ("orders", Some(1)));
    }

    #[test]
    fn replay_refuses_a_gap_or_a_repeat() {
        let (v0, h0) = value(0, Hash32::ZERO, None);
        let (v2, _) = value(2, h0, None);
        let (_dir, db) = db_with_log(&[(0, v0.clone()), (2, v2)]);
        assert_eq!(corruption(recover(&db)).2, "log entry is not the next record");
        let (_dir, db) = db_with_log(&[(0, v0.clone()), (0, v0)]);
        assert_eq!(corruption(recover(&db)).2, "log entry is not the next record");
    }
}
