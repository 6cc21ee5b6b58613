//! The single committer: owns the write transaction, applies queued writes in
//! one durable redb transaction per batch (group commit), and answers each
//! caller only after the commit returned.
//!
//! Expected refusals (conflicts, bad input) are decided against the batch's
//! own view before anything of that request is written, so one bad request
//! does not fail its neighbours. A table-level guard that trips (a record key
//! already present) is a broken invariant: the whole transaction is dropped,
//! nobody is acknowledged, and the store fails.

use std::collections::{HashMap, HashSet};
use std::ops::Bound;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, TryRecvError, channel};
use std::time::{Duration, Instant};

use annal_chain::{
    CompactRange, Hash32, Parent, RecordView, Seq, SignedCheckpoint, TenantId, valid_key_name,
};
use redb::{Durability, Key, ReadableTable, Table, Value, WriteTransaction};

use crate::codec::{self, StoredHead, StoredIdempotency, StoredIdentity};
use crate::error::{AppendRefusal, CheckpointRefusal, Corruption, IdentityRefusal, WriteError};
use crate::hwm::Hwm;
use crate::limits::{
    BATCH_LINGER_POLL_US, BATCH_PAYLOAD_BYTES_MAX, BATCH_WRITES_MAX, DIRECT_APPENDS_MIN,
    HEAD_CACHE_COUNT_MAX, IDEMPOTENCY_KEY_BYTES_MAX, TAIL_BYTES_MAX, TAIL_FLUSH_COMMITS, TAIL_RECORDS_MAX,
};
use crate::schema::{
    CHECKPOINTS, IDEMPOTENCY, IDENTITY, LEDGER_NAMES, LEDGERS, LOG, META, META_NEXT_LEDGER_ID,
    META_RECORDS_TOTAL, NODES, RECORDS,
};
use crate::store::{
    AppendRequest, Appended, CheckpointRequest, CheckpointStored, IdentityEntry, Position, Shared, ledger_key,
};
use crate::tail::{LedgerTail, Tails, advance_head, log_value};
use crate::ticket::Reply;
use crate::tree::TreeView;

pub(crate) type AppendResult = Result<Appended, AppendRefusal>;
pub(crate) type CheckpointResult = Result<CheckpointStored, CheckpointRefusal>;
pub(crate) type IdentityResult = Result<u64, IdentityRefusal>;

pub(crate) enum Command {
    Append(Prepared, Reply<AppendResult>),
    Checkpoint(CheckpointRequest, Reply<CheckpointResult>),
    Identity(IdentityEntry, Reply<IdentityResult>),
}

impl Command {
    fn payload_bytes(&self) -> usize {
        match self {
            Command::Append(p, _) => p.req.payload.len(),
            _ => 0,
        }
    }

    pub(crate) fn refuse(self, err: WriteError) {
        match self {
            Command::Append(_, r) => r.send(Err(err)),
            Command::Checkpoint(_, r) => r.send(Err(err)),
            Command::Identity(_, r) => r.send(Err(err)),
        }
    }
}

enum Op {
    Append(Prepared),
    Checkpoint(CheckpointRequest),
    Identity(IdentityEntry),
}

pub(crate) enum AnyReply {
    Append(Reply<AppendResult>),
    Checkpoint(Reply<CheckpointResult>),
    Identity(Reply<IdentityResult>),
}

pub(crate) enum Outcome {
    Append(AppendResult),
    Checkpoint(CheckpointResult),
    Identity(IdentityResult),
}

impl AnyReply {
    fn send(self, outcome: Result<Outcome, WriteError>) {
        match (self, outcome) {
            (AnyReply::Append(r), Ok(Outcome::Append(o))) => r.send(Ok(o)),
            (AnyReply::Checkpoint(r), Ok(Outcome::Checkpoint(o))) => r.send(Ok(o)),
            (AnyReply::Identity(r), Ok(Outcome::Identity(o))) => r.send(Ok(o)),
            (AnyReply::Append(r), Err(e)) => r.send(Err(e)),
            (AnyReply::Checkpoint(r), Err(e)) => r.send(Err(e)),
            (AnyReply::Identity(r), Err(e)) => r.send(Err(e)),
            _ => unreachable!("outcomes are produced in request order"),
        }
    }
}

/// Why a batch was dropped without committing.
#[derive(Debug)]
enum Abort {
    /// redb failed: the store fails and stays failed until reopened.
    Storage(String),
    /// A stored value this batch depends on is corrupt.
    Corrupt(Corruption),
    /// A table-level guard tripped.
    Invariant(&'static str),
}

/// A cursor run refusing a key already present is a broken invariant, not
/// a storage failure.
fn run_error(what: &'static str) -> impl Fn(redb::CursorError) -> Abort {
    move |e| match e {
        redb::CursorError::UnorderedKey => Abort::Invariant(what),
        other => Abort::from(other),
    }
}

impl<E: Into<redb::Error>> From<E> for Abort {
    fn from(e: E) -> Abort {
        Abort::Storage(e.into().to_string())
    }
}

struct Tables<'t> {
    meta: Table<'t, &'static str, u64>,
    ledgers: Table<'t, &'static str, &'static [u8]>,
    names: Table<'t, u64, &'static str>,
    records: Table<'t, (u64, u64), &'static [u8]>,
    nodes: Table<'t, (u64, u64, u8), [u8; 32]>,
    checkpoints: Table<'t, (u64, u64), &'static str>,
    idempotency: Table<'t, &'static [u8], &'static [u8]>,
    identity: Table<'t, u64, &'static [u8]>,
    log: Table<'t, u64, &'static [u8]>,
}

impl<'t> Tables<'t> {
    fn open(txn: &'t WriteTransaction) -> Result<Tables<'t>, Abort> {
        Ok(Tables {
            meta: txn.open_table(META)?,
            ledgers: txn.open_table(LEDGERS)?,
            names: txn.open_table(LEDGER_NAMES)?,
            records: txn.open_table(RECORDS)?,
            nodes: txn.open_table(NODES)?,
            checkpoints: txn.open_table(CHECKPOINTS)?,
            idempotency: txn.open_table(IDEMPOTENCY)?,
            identity: txn.open_table(IDENTITY)?,
            log: txn.open_table(LOG)?,
        })
    }
}

/// What one batch changed, applied to the committer's state only after commit.
struct Batch {
    /// Heads read or changed in this batch: (head, changed).
    heads: HashMap<String, (StoredHead, bool)>,
    records_total: u64,
    next_ledger_id: u64,
    checkpoint: Option<(u64, u64, [u8; 32])>,
    /// Appends per ledger key in the batch as it was taken off the queue.
    counts: HashMap<String, usize>,
    /// Ledgers writing straight to `records` in this batch.
    direct: HashSet<String>,
    /// This batch's log entries (position, value), ascending; written as one
    /// cursor run at the end of the batch (`Committer::write_log`).
    log: Vec<(u64, Vec<u8>)>,
}

/// Replies for one committed (or dropped) batch, handed to the acker thread.
pub(crate) type Acks = Vec<(AnyReply, Result<Outcome, WriteError>)>;

/// Wakes the callers of committed batches, so that waking 64 threads does
/// not sit on the committer's serial path. It only ever sees batches whose
/// commit has already returned.
pub(crate) fn spawn_acker() -> std::io::Result<(Sender<Acks>, std::thread::JoinHandle<()>)> {
    let (tx, rx) = channel::<Acks>();
    let handle = std::thread::Builder::new().name("annal-acker".into()).spawn(move || {
        while let Ok(acks) = rx.recv() {
            for (reply, outcome) in acks {
                reply.send(outcome);
            }
        }
    })?;
    Ok((tx, handle))
}

pub(crate) struct Committer {
    pub(crate) shared: Arc<Shared>,
    pub(crate) rx: Receiver<Command>,
    pub(crate) acks: Sender<Acks>,
    /// Committed heads, so most appends read no ledger row.
    pub(crate) heads: HashMap<String, StoredHead>,
    pub(crate) records_total: u64,
    pub(crate) next_ledger_id: u64,
    pub(crate) hwm: Hwm,
    /// Writes in the last committed batch: how many callers may come back.
    pub(crate) last_batch_writes: usize,
    /// `OpenOptions::batch_linger`, capped.
    pub(crate) linger: Duration,
    /// Ledgers whose newest records are in the log (tail.rs), as committed
    /// plus the batch being applied.
    pub(crate) tails: Tails,
    /// Records and record bytes in `tails`.
    pub(crate) tail_records: usize,
    pub(crate) tail_bytes: usize,
    /// The next log position.
    pub(crate) log_next: u64,
    /// Commits since the tails were last flushed.
    pub(crate) commits_since_flush: u64,
    /// `OpenOptions::ledgers_per_tenant_max`.
    pub(crate) ledgers_per_tenant_max: u64,
    /// Ledgers per tenant, counted on the tenant's first new ledger since
    /// open (or since a dropped batch) and kept up to date after.
    pub(crate) ledger_counts: HashMap<String, u64>,
}

/// Inserts `entries`, new keys in ascending order, as one run through a
/// redb cursor: redb packs the run into full leaves once, where one `insert`
/// per key rebuilt a leaf (and its branch) per key and split it in half
/// whenever it filled. A key already present is refused (`what`) and aborts
/// the batch.
fn insert_run<'e, K: Key + 'static, V: Value + 'static>(
    table: &mut Table<'_, K, V>,
    entries: impl IntoIterator<Item = (K::SelfType<'e>, V::SelfType<'e>)>,
    what: &'static str,
) -> Result<(), Abort> {
    let mut entries = entries.into_iter().peekable();
    let Some((first, _)) = entries.peek() else { return Ok(()) };
    let mut run = table.lower_bound_mut(Bound::Included(first))?;
    for (key, value) in entries {
        run.insert_before(key, value).map_err(run_error(what))?;
    }
    run.close()?;
    Ok(())
}

/// Writes a batch's log entries (ascending positions) as one run; one
/// `insert` per entry was about a third of an append's time on the
/// committer.
fn write_log(t: &mut Tables<'_>, log: &[(u64, Vec<u8>)]) -> Result<(), Abort> {
    insert_run(
        &mut t.log,
        log.iter().map(|(position, value)| (*position, value.as_slice())),
        "log position already used",
    )
}

/// Splits commands into the ops to apply and their replies (pushed to
/// `replies`, in the same order as the outcomes will be).
fn hold_replies(commands: Vec<Command>, replies: &mut Vec<AnyReply>) -> Vec<Op> {
    commands
        .into_iter()
        .map(|cmd| {
            let (op, reply) = match cmd {
                Command::Append(r, reply) => (Op::Append(r), AnyReply::Append(reply)),
                Command::Checkpoint(r, reply) => (Op::Checkpoint(r), AnyReply::Checkpoint(reply)),
                Command::Identity(r, reply) => (Op::Identity(r), AnyReply::Identity(reply)),
            };
            replies.push(reply);
            op
        })
        .collect()
}

fn corrupt(tenant: &str, ledger: &str, seq: Option<u64>, what: &'static str) -> Abort {
    Abort::Corrupt(Corruption { tenant: tenant.to_owned(), ledger: ledger.to_owned(), seq, what })
}

/// An append with the work that does not depend on the head done on the
/// caller's thread before it queues: the ledger key, the idempotency digest
/// and the stored value (its hash is written in at commit). The committer's
/// serial path is left with the head checks, the record hash and the inserts.
pub(crate) struct Prepared {
    req: AppendRequest,
    key: String,
    content: Option<[u8; 32]>,
    value: Vec<u8>,
}

pub(crate) fn prepare(req: AppendRequest) -> Prepared {
    let key = ledger_key(&req.tenant, &req.ledger);
    let content = req.idempotency_key.as_ref().map(|_| content_digest(&req));
    let value =
        codec::encode_record_unhashed(req.timestamp_ms, &req.content_type, &req.payload, &req.parents);
    Prepared { req, key, content, value }
}

/// Digest of what an idempotent retry must repeat: everything but the
/// timestamp (the server stamps each attempt) and the position.
fn content_digest(req: &AppendRequest) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(b"annal.idempotency\0");
    let mut put = |b: &[u8]| {
        h.update(&(b.len() as u64).to_le_bytes());
        h.update(b);
    };
    put(req.content_type.as_bytes());
    put(&req.payload);
    put(&(req.parents.len() as u64).to_le_bytes());
    for p in &req.parents {
        put(p.ledger.as_str().as_bytes());
        put(&p.seq.get().to_le_bytes());
        put(p.hash.as_bytes());
    }
    *h.finalize().as_bytes()
}

pub(crate) fn idempotency_key(ledger_id: u64, key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + key.len());
    k.extend_from_slice(&ledger_id.to_be_bytes());
    k.extend_from_slice(key.as_bytes());
    k
}

impl Committer {
    pub(crate) fn run(mut self) {
        while let Ok(first) = self.rx.recv() {
            let mut payload = first.payload_bytes();
            let mut batch = vec![first];
            // Takes what is queued. With a linger (`OpenOptions::batch_linger`;
            // zero ends the wait at the first empty poll), it also waits
            // for the callers of the previous batch, which come back one by
            // one as the acker wakes them: one commit for all of them
            // instead of one per few. The wait polls instead of blocking on
            // each arrival, so that 64 arrivals do not cost 64 wake-ups.
            let linger_until = Instant::now() + self.linger;
            let target = self.last_batch_writes;
            let mut arrived = true;
            while batch.len() < BATCH_WRITES_MAX && payload < BATCH_PAYLOAD_BYTES_MAX {
                match self.rx.try_recv() {
                    Ok(cmd) => {
                        arrived = true;
                        payload += cmd.payload_bytes();
                        batch.push(cmd);
                    }
                    Err(TryRecvError::Disconnected) => break,
                    Err(TryRecvError::Empty) => {
                        if batch.len() >= target || !arrived || Instant::now() >= linger_until {
                            break;
                        }
                        arrived = false;
                        std::thread::sleep(Duration::from_micros(BATCH_LINGER_POLL_US));
                    }
                }
            }
            if let Some(reason) = self.shared.failure() {
                for cmd in batch {
                    cmd.refuse(WriteError::Failed(reason.clone()));
                }
                continue;
            }
            let flush = self.flush_due();
            self.commit_batch(batch, flush);
        }
        // Every sender is gone: the store is closing. Leave the tails in the
        // ledger tables (so the next open replays nothing) and the mark on disk.
        if self.shared.failure().is_none() && !self.tails.is_empty() {
            self.commit_batch(Vec::new(), true);
        }
        if self.shared.failure().is_none()
            && let Err(e) = self.hwm.sync()
        {
            self.shared.fail(format!("{}: {e}", self.hwm.path().display()));
        }
    }

    fn flush_due(&self) -> bool {
        !self.tails.is_empty()
            && (self.commits_since_flush >= TAIL_FLUSH_COMMITS
                || self.tail_records >= TAIL_RECORDS_MAX
                || self.tail_bytes >= TAIL_BYTES_MAX)
    }

    fn commit_batch(&mut self, batch: Vec<Command>, flush: bool) {
        let mut replies = Vec::with_capacity(BATCH_WRITES_MAX);
        let mut counts: HashMap<String, usize> = HashMap::new();
        for cmd in &batch {
            if let Command::Append(p, _) = cmd {
                // A key is cloned once per ledger, not once per append.
                match counts.get_mut(&p.key) {
                    Some(n) => *n += 1,
                    None => {
                        counts.insert(p.key.clone(), 1);
                    }
                }
            }
        }
        let mut state = Batch {
            heads: HashMap::new(),
            records_total: self.records_total,
            next_ledger_id: self.next_ledger_id,
            checkpoint: None,
            counts,
            direct: HashSet::new(),
            log: Vec::new(),
        };
        let saved = (self.tails.clone(), self.tail_records, self.tail_bytes, self.log_next);
        match self.apply(batch, &mut replies, &mut state, flush) {
            Ok(outcomes) => {
                self.commits_since_flush = if flush { 0 } else { self.commits_since_flush + 1 };
                self.records_total = state.records_total;
                self.shared.publish(self.tails.clone(), self.records_total);
                self.next_ledger_id = state.next_ledger_id;
                if self.heads.len() + state.heads.len() > HEAD_CACHE_COUNT_MAX {
                    self.heads.clear();
                }
                for (key, (head, changed)) in state.heads {
                    if changed && head.next_seq > 0 {
                        self.hwm.note(head.id, &key, head.next_seq, head.head_hash);
                    }
                    self.heads.insert(key, head);
                }
                // The records are durable: they are acknowledged even if the
                // mark cannot be written, but the store then fails closed.
                if let Err(e) =
                    self.hwm.advance(self.records_total, state.checkpoint, state.checkpoint.is_some())
                {
                    self.shared.fail(format!("{}: {e}", self.hwm.path().display()));
                }
                self.last_batch_writes = replies.len();
                self.ack(replies.into_iter().zip(outcomes.into_iter().map(Ok)).collect());
            }
            Err(abort) => {
                let err = match abort {
                    Abort::Storage(msg) => {
                        self.shared.fail(msg.clone());
                        WriteError::Failed(msg)
                    }
                    Abort::Invariant(what) => {
                        let msg = format!("invariant broken: {what}");
                        self.shared.fail(msg.clone());
                        WriteError::Failed(msg)
                    }
                    Abort::Corrupt(c) => WriteError::Corrupt(c),
                };
                // The cache may hold nothing from the dropped batch, but be
                // sure: the next batch rereads from the database.
                self.heads.clear();
                self.ledger_counts.clear();
                (self.tails, self.tail_records, self.tail_bytes, self.log_next) = saved;
                self.ack(replies.into_iter().map(|r| (r, Err(err.clone()))).collect());
            }
        }
    }

    fn ack(&self, acks: Acks) {
        // If the acker is gone, its replies were dropped and answered `Closed`.
        let _ = self.acks.send(acks);
    }

    /// Applies `batch`, then whatever queued up meanwhile (up to the batch
    /// limits), in one transaction, and commits it. Absorbing late arrivals
    /// before the commit, instead of waiting for them, keeps batches full
    /// under load without adding latency when the queue is idle.
    fn apply(
        &mut self,
        batch: Vec<Command>,
        replies: &mut Vec<AnyReply>,
        st: &mut Batch,
        flush: bool,
    ) -> Result<Vec<Outcome>, Abort> {
        let mut payload: usize = batch.iter().map(Command::payload_bytes).sum();
        // Every reply is held before anything can fail (beginning the
        // transaction included), so an abort answers each of them with the
        // same error; a reply dropped unanswered would say `Closed`.
        let mut ops = hold_replies(batch, replies);
        let mut txn = self.shared.db.begin_write()?;
        // Explicit, never the default: an ack means the commit is on disk.
        txn.set_durability(Durability::Immediate)?;
        if flush {
            // Every log entry is moved below, in this transaction.
            txn.delete_table(LOG)?;
        }
        let mut outcomes = Vec::with_capacity(BATCH_WRITES_MAX);
        {
            let mut t = Tables::open(&txn)?;
            if flush {
                self.flush_tails(&mut t)?;
            }
            while !ops.is_empty() {
                for op in ops {
                    outcomes.push(match op {
                        Op::Append(r) => Outcome::Append(self.append(r, &mut t, st)?),
                        Op::Checkpoint(r) => Outcome::Checkpoint(self.checkpoint(r, &mut t, st)?),
                        Op::Identity(r) => Outcome::Identity(identity(r, &mut t)?),
                    });
                }
                let mut next = Vec::new();
                while replies.len() + next.len() < BATCH_WRITES_MAX && payload < BATCH_PAYLOAD_BYTES_MAX {
                    match self.rx.try_recv() {
                        Ok(cmd) => {
                            payload += cmd.payload_bytes();
                            next.push(cmd);
                        }
                        Err(_) => break,
                    }
                }
                ops = hold_replies(next, replies);
            }
            write_log(&mut t, &st.log)?;
            for (key, (head, changed)) in &st.heads {
                if !*changed {
                    continue;
                }
                match self.tails.get_mut(key) {
                    // Written to `ledgers` when the tail is flushed.
                    Some(tail) => Arc::make_mut(tail).head = head.clone(),
                    None => {
                        t.ledgers.insert(key.as_str(), codec::encode(head).as_slice())?;
                    }
                }
            }
            t.meta.insert(META_RECORDS_TOTAL, st.records_total)?;
            t.meta.insert(META_NEXT_LEDGER_ID, st.next_ledger_id)?;
        }
        txn.commit()?;
        Ok(outcomes)
    }

    /// Moves every tail into the ledger tables (the log was deleted). Each
    /// tail's records, and its nodes, are each one ascending run of
    /// new keys (`insert_run`): one `insert` per key was about a third of the
    /// committer's time on 64 ledgers and left half-empty leaves on disk.
    fn flush_tails(&mut self, t: &mut Tables<'_>) -> Result<(), Abort> {
        for (key, tail) in &self.tails {
            let id = tail.head.id;
            let records = (tail.first..).zip(tail.records.iter()).map(|(seq, value)| ((id, seq), &value[..]));
            insert_run(&mut t.records, records, "record key already present")?;
            let mut nodes: Vec<((u64, u64, u8), [u8; 32])> =
                tail.nodes.iter().map(|(&(l, index), h)| (crate::tree::node_key(id, l, index), *h)).collect();
            nodes.sort_unstable_by_key(|(k, _)| *k);
            insert_run(&mut t.nodes, nodes, "merkle node already present")?;
            t.ledgers.insert(key.as_str(), codec::encode(&tail.head).as_slice())?;
        }
        self.tails.clear();
        (self.tail_records, self.tail_bytes, self.log_next) = (0, 0, 0);
        Ok(())
    }

    /// Brings a ledger's head into the batch; false if the ledger does not exist.
    fn load_head(&self, key: &str, t: &Tables<'_>, st: &mut Batch) -> Result<bool, Abort> {
        if st.heads.contains_key(key) {
            return Ok(true);
        }
        let cached = self.tails.get(key).map(|tail| &tail.head).or_else(|| self.heads.get(key));
        let head = match cached {
            Some(h) => h.clone(),
            None => match t.ledgers.get(key)? {
                Some(v) => codec::decode::<StoredHead>(v.value()).map_err(|_| {
                    let (tenant, ledger) = key.split_once('/').unwrap_or((key, ""));
                    corrupt(tenant, ledger, None, "ledger row does not decode")
                })?,
                None => return Ok(false),
            },
        };
        st.heads.insert(key.to_owned(), (head, false));
        Ok(true)
    }

    fn stored_hash(&self, t: &Tables<'_>, key: &str, id: u64, seq: u64) -> Result<Option<[u8; 32]>, Abort> {
        Ok(crate::tail::stored_hash(self.tails.get(key).map(|t| &**t), &t.records, id, seq)?)
    }

    fn append(
        &mut self,
        prepared: Prepared,
        t: &mut Tables<'_>,
        st: &mut Batch,
    ) -> Result<AppendResult, Abort> {
        let Prepared { req, key, content, mut value } = prepared;
        if let Some(k) = &req.idempotency_key
            && (k.is_empty() || k.len() > IDEMPOTENCY_KEY_BYTES_MAX)
        {
            return Ok(Err(AppendRefusal::IdempotencyKeyInvalid));
        }
        let exists = self.load_head(&key, t, st)?;
        let (next, head_hash) = match st.heads.get(&key) {
            Some((h, _)) => (h.next_seq, Hash32::from_bytes(h.head_hash)),
            None => (0, Hash32::ZERO),
        };
        if exists && let (Some(k), Some(content)) = (&req.idempotency_key, content) {
            let id = st.heads[&key].0.id;
            if let Some(v) = t.idempotency.get(idempotency_key(id, k).as_slice())? {
                let stored: StoredIdempotency = codec::decode(v.value()).map_err(|_| {
                    corrupt(req.tenant.as_str(), req.ledger.as_str(), None, "idempotency row does not decode")
                })?;
                let seq = Seq::new(stored.seq);
                return Ok(if stored.content == content {
                    Ok(Appended { seq, hash: Hash32::from_bytes(stored.hash), replayed: true })
                } else {
                    Err(AppendRefusal::IdempotencyConflict { seq })
                });
            }
        }
        if let Position::Exact { seq, prev } = req.position {
            if seq.get() < next {
                return Ok(Err(AppendRefusal::SeqExists { next: Seq::new(next) }));
            }
            if seq.get() > next {
                return Ok(Err(AppendRefusal::SeqGap { next: Seq::new(next) }));
            }
            if prev != head_hash {
                return Ok(Err(AppendRefusal::PrevMismatch));
            }
        }
        // The same checks as `Record::new`, on the fields as they will be
        // stored (the value was encoded from these very fields).
        let view = RecordView {
            tenant: req.tenant.as_str(),
            ledger: req.ledger.as_str(),
            seq: Seq::new(next),
            timestamp_ms: req.timestamp_ms,
            prev: head_hash,
            content_type: &req.content_type,
            payload: &req.payload,
            parents: &req.parents,
        };
        if let Err(e) = view.check() {
            return Ok(Err(AppendRefusal::Invalid(e)));
        }
        if let Some(refusal) = self.check_parents(&req.tenant, &req.parents, t, st)? {
            return Ok(Err(refusal));
        }
        let hash = view.hash();
        codec::set_hash(&mut value, hash.as_bytes());
        if !exists {
            if self.ledgers_per_tenant_max != u64::MAX {
                let count = self.ledger_count(req.tenant.as_str(), t)?;
                if count >= self.ledgers_per_tenant_max {
                    return Ok(Err(AppendRefusal::LedgerLimit { max: self.ledgers_per_tenant_max }));
                }
                self.ledger_counts.insert(req.tenant.as_str().to_owned(), count + 1);
            }
            let id = st.next_ledger_id;
            st.next_ledger_id += 1;
            if t.names.insert(id, key.as_str())?.is_some() {
                return Err(Abort::Invariant("ledger id already in use"));
            }
            let head = StoredHead::empty(id, req.tenant.as_str(), req.ledger.as_str());
            st.heads.insert(key.clone(), (head, true));
        }
        // The table-level guard behind the head check: never skip. A ledger
        // without a tail has every record below `next` in `records` (a tail
        // is contiguous by construction).
        let has_tail = self.tails.contains_key(&key);
        if !has_tail && next > 0 && t.records.get((st.heads[&key].0.id, next - 1))?.is_none() {
            return Err(Abort::Invariant("append would leave a gap"));
        }
        // Where this ledger's records go in this batch (fixed for the batch).
        let logged = if has_tail {
            true
        } else if st.direct.contains(&key) {
            false
        } else if st.counts.get(&key).copied().unwrap_or(0) >= DIRECT_APPENDS_MIN {
            st.direct.insert(key.clone());
            false
        } else {
            // A tail starts here.
            self.tails.insert(key.clone(), Arc::new(LedgerTail::new(st.heads[&key].0.clone())));
            true
        };
        let (head, changed) = st.heads.get_mut(&key).expect("loaded or created above");
        let id = head.id;
        assert_eq!(head.next_seq, next, "the head did not move under this request");
        let nodes = advance_head(head, hash);
        *changed = true;
        if logged {
            st.log.push((self.log_next, log_value(id, next, &value)));
            self.log_next += 1;
            self.tail_records += 1;
            self.tail_bytes += value.len();
            Arc::make_mut(self.tails.get_mut(&key).expect("created above")).add(
                next,
                Arc::from(value),
                nodes,
            );
        } else {
            // Never overwrite.
            if t.records.insert((id, next), value.as_slice())?.is_some() {
                return Err(Abort::Invariant("record key already present"));
            }
            for (level, index, h) in nodes {
                if t.nodes.insert(crate::tree::node_key(id, level, index), &h)?.is_some() {
                    return Err(Abort::Invariant("merkle node already present"));
                }
            }
        }
        if let (Some(k), Some(content)) = (&req.idempotency_key, content) {
            let row = codec::encode(&StoredIdempotency { seq: next, hash: *hash.as_bytes(), content });
            t.idempotency.insert(idempotency_key(id, k).as_slice(), row.as_slice())?;
        }
        st.records_total += 1;
        Ok(Ok(Appended { seq: Seq::new(next), hash, replayed: false }))
    }

    /// How many ledgers `tenant` has: counted once (its rows of `ledgers`,
    /// and its ledgers that still live only in a tail), then kept in
    /// `ledger_counts` as ledgers are created.
    fn ledger_count(&mut self, tenant: &str, t: &Tables) -> Result<u64, Abort> {
        if let Some(n) = self.ledger_counts.get(tenant) {
            return Ok(*n);
        }
        // `0` is the byte after `/`: the range holds exactly `tenant/...`.
        let (from, to) = (format!("{tenant}/"), format!("{tenant}0"));
        let mut n = 0;
        for row in t.ledgers.range(from.as_str()..to.as_str())? {
            row?;
            n += 1;
        }
        for key in self.tails.keys() {
            if key.starts_with(&from) && t.ledgers.get(key.as_str())?.is_none() {
                n += 1;
            }
        }
        self.ledger_counts.insert(tenant.to_owned(), n);
        Ok(n)
    }

    fn check_parents(
        &self,
        tenant: &TenantId,
        parents: &[Parent],
        t: &Tables<'_>,
        st: &mut Batch,
    ) -> Result<Option<AppendRefusal>, Abort> {
        for (index, p) in parents.iter().enumerate() {
            let key = ledger_key(tenant, &p.ledger);
            if !self.load_head(&key, t, st)? {
                return Ok(Some(AppendRefusal::ParentNotFound { index }));
            }
            let head = &st.heads[&key].0;
            if p.seq.get() >= head.next_seq {
                return Ok(Some(AppendRefusal::ParentNotFound { index }));
            }
            match self.stored_hash(t, &key, head.id, p.seq.get())? {
                None => {
                    return Err(corrupt(
                        &head.tenant,
                        &head.ledger,
                        Some(p.seq.get()),
                        "record below head missing",
                    ));
                }
                Some(h) if h != *p.hash.as_bytes() => {
                    return Ok(Some(AppendRefusal::ParentHashMismatch { index }));
                }
                Some(_) => {}
            }
        }
        Ok(None)
    }

    fn checkpoint(
        &mut self,
        req: CheckpointRequest,
        t: &mut Tables<'_>,
        st: &mut Batch,
    ) -> Result<CheckpointResult, Abort> {
        let text = req.note.to_string();
        let cp = match SignedCheckpoint::parse(&text) {
            Ok(c) => c.checkpoint,
            Err(e) => return Ok(Err(CheckpointRefusal::Malformed(e))),
        };
        if cp.origin.tenant() != &req.tenant || cp.origin.ledger() != &req.ledger {
            return Ok(Err(CheckpointRefusal::WrongLedger));
        }
        let key = ledger_key(&req.tenant, &req.ledger);
        if !self.load_head(&key, t, st)? {
            return Ok(Err(CheckpointRefusal::NoLedger));
        }
        let head = &st.heads[&key].0;
        if cp.size <= head.checkpoint_size {
            return Ok(Err(CheckpointRefusal::NotNewer { last: head.checkpoint_size }));
        }
        if cp.size > head.next_seq {
            return Ok(Err(CheckpointRefusal::BeyondHead { size: head.next_seq }));
        }
        let root = if cp.size == head.next_seq {
            let peaks = head.peaks.iter().map(|p| Hash32::from_bytes(*p)).collect();
            CompactRange::from_parts(head.next_seq, peaks)
                .ok_or_else(|| corrupt(&head.tenant, &head.ledger, None, "head peaks do not match its size"))?
                .root()
        } else {
            let tail = self.tails.get(&key).map(|tail| &**tail);
            let mut view = TreeView::new(head.id, &head.tenant, &head.ledger, &t.records, &t.nodes, tail);
            let root = view.root(cp.size);
            match view.error {
                None => root,
                Some(crate::ReadError::Corrupt(c)) => return Err(Abort::Corrupt(c)),
                Some(e) => return Err(Abort::Storage(e.to_string())),
            }
        };
        if root != cp.root {
            return Ok(Err(CheckpointRefusal::RootMismatch { size: cp.size }));
        }
        let id = head.id;
        if t.checkpoints.insert((id, cp.size), text.as_str())?.is_some() {
            return Err(Abort::Invariant("checkpoint already present"));
        }
        let (head, changed) = st.heads.get_mut(&key).expect("loaded above");
        head.checkpoint_size = cp.size;
        *changed = true;
        st.checkpoint = Some((id, cp.size, *root.as_bytes()));
        Ok(Ok(CheckpointStored { size: cp.size }))
    }
}

fn identity(entry: IdentityEntry, t: &mut Tables<'_>) -> Result<IdentityResult, Abort> {
    let next = match t.identity.last()? {
        Some((k, _)) => k.value() + 1,
        None => 0,
    };
    if entry.seq != next {
        return Ok(Err(IdentityRefusal::NotNext { next }));
    }
    if !valid_key_name(&entry.key_name) {
        return Ok(Err(IdentityRefusal::BadKeyName));
    }
    let row = codec::encode(&StoredIdentity {
        key_name: entry.key_name,
        public: entry.public,
        timestamp_ms: entry.timestamp_ms,
        statement: entry.statement,
    });
    if t.identity.insert(next, row.as_slice())?.is_some() {
        return Err(Abort::Invariant("identity entry already present"));
    }
    Ok(Ok(next))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Shared;
    use annal_chain::{LedgerName, TenantId};
    use redb::ReadableDatabase;

    /// A committer over a fresh database in `dir`, as `Store::open` builds
    /// one, driven by hand (no thread); the sender keeps its queue open.
    fn committer(dir: &std::path::Path) -> (Committer, std::sync::mpsc::SyncSender<Command>) {
        let db = redb::Database::create(dir.join("t.redb")).expect("db");
        crate::schema::up(&db).expect("schema");
        let marks =
            crate::hwm::LedgerMarks::open(&dir.join("annal.marks"), HashMap::new(), None).expect("marks");
        let hwm = Hwm::open(&dir.join("annal.hwm"), crate::hwm::Mark::default(), marks).expect("hwm");
        let (tx, rx) = std::sync::mpsc::sync_channel(crate::limits::QUEUE_DEPTH_MAX);
        let (acks, _acker) = spawn_acker().expect("acker");
        let c = Committer {
            shared: Arc::new(Shared::new(db, Tails::new(), 0)),
            rx,
            acks,
            heads: HashMap::new(),
            records_total: 0,
            next_ledger_id: 1,
            hwm,
            last_batch_writes: 1,
            linger: Duration::ZERO,
            tails: Tails::new(),
            tail_records: 0,
            tail_bytes: 0,
            log_next: 0,
            commits_since_flush: 0,
            ledgers_per_tenant_max: u64::MAX,
            ledger_counts: HashMap::new(),
        };
        (c, tx)
    }

    fn append_cmd(ledger: &str, ts: u64, key: Option<&str>) -> (Command, crate::Ticket<AppendResult>) {
        let (reply, ticket) = crate::ticket::pair();
        let req = AppendRequest {
            tenant: TenantId::new("acme").unwrap(),
            ledger: LedgerName::new(ledger).unwrap(),
            position: Position::Next,
            timestamp_ms: ts,
            content_type: "text/plain".into(),
            payload: format!("{ledger} {ts}").into_bytes(),
            parents: Vec::new(),
            idempotency_key: key.map(str::to_owned),
        };
        (Command::Append(prepare(req), reply), ticket)
    }

    /// Every row of the tables an append writes, as text.
    fn dump(db: &redb::Database) -> Vec<String> {
        let txn = db.begin_read().unwrap();
        let mut out = Vec::new();
        macro_rules! rows {
            ($def:expr) => {
                for row in txn.open_table($def).unwrap().iter().unwrap() {
                    let (k, v) = row.unwrap();
                    out.push(format!("{}: {:?} = {:?}", stringify!($def), k.value(), v.value()));
                }
            };
        }
        rows!(META);
        rows!(LEDGERS);
        rows!(LEDGER_NAMES);
        rows!(RECORDS);
        rows!(NODES);
        rows!(IDEMPOTENCY);
        rows!(LOG);
        out
    }

    /// A table-level guard that trips inside a multi-append batch (a
    /// committer whose cached state lies: a stale head, one past the
    /// records, a log position already used) drops the whole transaction:
    /// nothing of the batch is in redb, every caller in it gets the same
    /// failure, and the store refuses every later write.
    #[test]
    fn a_tripped_table_guard_drops_the_whole_batch_and_fails_the_store() {
        type Craft = fn(&mut Committer, &redb::Database);
        let cases: [(&str, Craft); 3] = [
            ("record key already present", |c, db| {
                // The head of acme/orders as it was after 3 records.
                let head = c.heads.get_mut("acme/orders").expect("cached");
                let txn = db.begin_read().unwrap();
                let records = txn.open_table(RECORDS).unwrap();
                let mut stale = StoredHead::empty(head.id, "acme", "orders");
                for seq in 0..3 {
                    let v = records.get((head.id, seq)).unwrap().unwrap();
                    advance_head(&mut stale, Hash32::from_bytes(codec::peek_hash(v.value()).unwrap()));
                }
                *head = stale;
            }),
            ("append would leave a gap", |c, _| {
                c.heads.get_mut("acme/orders").expect("cached").next_seq += 10;
            }),
            ("log position already used", |c, _| c.log_next = 0),
        ];
        for (what, craft) in cases {
            let dir = tempfile::tempdir().unwrap();
            let (mut c, _tx) = committer(dir.path());
            // A committed first batch: acme/orders straight to `records`,
            // acme/logged through the append log.
            let (mut batch, mut tickets) = (Vec::new(), Vec::new());
            for i in 0..DIRECT_APPENDS_MIN as u64 + 6 {
                let (cmd, t) = append_cmd("orders", i, None);
                batch.push(cmd);
                tickets.push(t);
            }
            let (cmd, t) = append_cmd("logged", 0, None);
            batch.push(cmd);
            tickets.push(t);
            c.commit_batch(batch, false);
            for t in tickets {
                t.wait().expect("committed").expect("accepted");
            }
            let before = dump(&c.shared.db);
            let shared = c.shared.clone();
            craft(&mut c, &shared.db);
            // The second batch: a new ledger (with an idempotency key) and
            // the logged one first, then enough for orders to go direct.
            let (mut batch, mut tickets) = (Vec::new(), Vec::new());
            for (ledger, key) in [("fresh", Some("k")), ("fresh", None), ("logged", None)] {
                let (cmd, t) = append_cmd(ledger, 100, key);
                batch.push(cmd);
                tickets.push(t);
            }
            for i in 0..DIRECT_APPENDS_MIN as u64 {
                let (cmd, t) = append_cmd("orders", 200 + i, None);
                batch.push(cmd);
                tickets.push(t);
            }
            c.commit_batch(batch, false);
            let expected = WriteError::Failed(format!("invariant broken: {what}"));
            for t in tickets {
                assert_eq!(t.wait(), Err(expected.clone()), "{what}: every caller gets the failure");
            }
            assert_eq!(dump(&c.shared.db), before, "{what}: nothing of the batch is in redb");
            assert_eq!(c.shared.failure(), Some(format!("invariant broken: {what}")));
            // Later writes are refused without being applied.
            let (cmd, later) = append_cmd("orders", 999, None);
            let (tx, rx) = std::sync::mpsc::sync_channel(1);
            tx.send(cmd).unwrap();
            drop(tx);
            c.rx = rx;
            c.run();
            assert_eq!(later.wait(), Err(expected), "{what}: a later append is refused");
        }
    }

    #[test]
    fn the_log_run_appends_and_refuses_a_position_already_used() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = redb::Database::create(dir.path().join("t.redb")).expect("db");
        crate::schema::up(&db).expect("schema");
        let entries = |range: std::ops::Range<u64>| -> Vec<(u64, Vec<u8>)> {
            range.map(|p| (p, vec![p as u8; 40])).collect()
        };
        let txn = db.begin_write().expect("txn");
        let mut t = Tables::open(&txn).expect("tables");
        write_log(&mut t, &entries(0..3)).expect("a first run");
        write_log(&mut t, &entries(3..5)).expect("a run after it");
        write_log(&mut t, &[]).expect("an empty run");
        let stored: Vec<(u64, Vec<u8>)> = t
            .log
            .iter()
            .expect("iter")
            .map(|e| e.map(|(k, v)| (k.value(), v.value().to_vec())).expect("entry"))
            .collect();
        assert_eq!(stored, entries(0..5));
        let again = write_log(&mut t, &entries(4..6));
        assert!(matches!(again, Err(Abort::Invariant("log position already used"))));
    }
}
