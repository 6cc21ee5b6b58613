//! The store: open (migrations, rollback guard), the queued write API, and
//! reads that re-check what writes asserted.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use annal_chain::{
    Hash32, LedgerName, Origin, Parent, Record, RecordFields, Seq, SignedNote, TenantId, consistency_proof,
    empty_root, inclusion_proof, write_checkpoint, write_end, write_header, write_record,
};
use redb::{ReadTransaction, ReadableDatabase, ReadableTable, StorageBackend};

use crate::codec::{self, StoredHead, StoredIdentity, StoredRecord};
use crate::committer::{AppendResult, CheckpointResult, Command, Committer, IdentityResult};
use crate::error::{Corruption, ExportError, OpenError, ReadError, WriteError};
use crate::hwm::{self, Hwm, Mark};
use crate::limits::{EXPORT_CHUNK_BYTES, QUEUE_DEPTH_MAX, RANGE_PAYLOAD_BYTES_MAX, RANGE_RECORDS_COUNT_MAX};
use crate::schema::{
    self, CHECKPOINTS, IDENTITY, LEDGERS, META, META_NEXT_LEDGER_ID, META_RECORDS_TOTAL, MigrationStatus,
    NODES, RECORDS,
};
use crate::tail::{LedgerTail, Tails, head_key, stored_values};
use crate::ticket::{Ticket, pair};
use crate::tree::TreeView;

/// The database file inside a data directory.
pub const DB_FILE_NAME: &str = "annal.redb";

/// Where a new record goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Position {
    /// At the head, whatever it is.
    Next,
    /// Exactly here, or refused: a replica applying a verified export, or a
    /// client doing optimistic concurrency.
    Exact { seq: Seq, prev: Hash32 },
}

/// One append. The store assigns seq and prev (or checks them, `Exact`).
#[derive(Clone, Debug)]
pub struct AppendRequest {
    pub tenant: TenantId,
    pub ledger: LedgerName,
    pub position: Position,
    /// Given by the caller: the store reads no clock.
    pub timestamp_ms: u64,
    pub content_type: String,
    pub payload: Vec<u8>,
    pub parents: Vec<Parent>,
    /// Per tenant and ledger; a retry with the same key and content returns
    /// the original record.
    pub idempotency_key: Option<String>,
}

/// A committed (or replayed) append.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    pub seq: Seq,
    pub hash: Hash32,
    /// The idempotency key had already made this record; nothing was written.
    pub replayed: bool,
}

/// A checkpoint the caller signed, to be stored if it matches the tree.
#[derive(Clone, Debug)]
pub struct CheckpointRequest {
    pub tenant: TenantId,
    pub ledger: LedgerName,
    pub note: SignedNote,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckpointStored {
    pub size: u64,
}

/// One entry of the signing-identity log (append-only; `seq` must be next).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityEntry {
    pub seq: u64,
    pub key_name: String,
    pub public: [u8; 32],
    pub timestamp_ms: u64,
    /// E.g. the rotation statement signed by old and new key; opaque here.
    pub statement: String,
}

/// A ledger's state, read in O(1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LedgerState {
    pub size: u64,
    pub head_hash: Hash32,
    pub root: Hash32,
    pub checkpoint_size: u64,
}

/// A record read back and re-verified, with its hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordEntry {
    pub record: Record,
    pub hash: Hash32,
}

/// What an export wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExportStats {
    pub records: u64,
    pub checkpoints: u64,
}

/// How to open.
#[derive(Debug)]
pub struct OpenOptions {
    /// Refuse to open unless the schema head is exactly this: the head the
    /// database has, or, with `apply_pending_migrations`, the head it would
    /// have after the pending steps. Compared before any step is applied,
    /// so a refused open leaves the database as it was.
    pub expected_head: Option<u32>,
    /// Apply pending migration steps at open; otherwise pending steps refuse.
    pub apply_pending_migrations: bool,
    /// Use this redb backend instead of `<data dir>/annal.redb` (crash and
    /// fault tests). The high-water mark still lives in the data directory.
    pub backend: Option<Box<dyn StorageBackend>>,
    /// How long a batch may wait for the callers of the previous batch to
    /// come back (capped at `limits::BATCH_LINGER_US_MAX`). Zero, the
    /// default, commits whatever is queued at once: with async callers (the
    /// daemon) the next batch then gathers while this one commits, which
    /// measured faster over HTTP (docs/PERFORMANCE.md). Many blocking
    /// threads, each waiting for its own ack, fill batches better with a
    /// linger.
    pub batch_linger: Duration,
    /// Most ledgers one tenant may have: an append that would create one
    /// more is refused (`AppendRefusal::LedgerLimit`). No limit by default.
    pub ledgers_per_tenant_max: u64,
}

impl Default for OpenOptions {
    fn default() -> OpenOptions {
        OpenOptions {
            expected_head: None,
            apply_pending_migrations: true,
            backend: None,
            batch_linger: Duration::ZERO,
            ledgers_per_tenant_max: u64::MAX,
        }
    }
}

#[derive(Debug)]
struct DynBackend(Box<dyn StorageBackend>);

impl StorageBackend for DynBackend {
    fn len(&self) -> Result<u64, std::io::Error> {
        self.0.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
        self.0.read(offset, out)
    }
    fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
        self.0.set_len(len)
    }
    fn sync_data(&self) -> Result<(), std::io::Error> {
        self.0.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
        self.0.write(offset, data)
    }
    fn close(&self) -> Result<(), std::io::Error> {
        self.0.close()
    }
}

/// Stores opened by this process: the base of each one's `commits`.
static STORES_OPENED: AtomicU64 = AtomicU64::new(0);

/// State shared by the committer and readers.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) db: redb::Database,
    failed_flag: AtomicBool,
    failed: Mutex<Option<String>>,
    /// The committed tails (tail.rs), replaced after every commit.
    tails: RwLock<Arc<Tails>>,
    /// Transactions committed since open.
    commits: AtomicU64,
    /// Records in the store, as of the last commit.
    records_total: AtomicU64,
}

impl Shared {
    pub(crate) fn new(db: redb::Database, tails: Tails, records_total: u64) -> Shared {
        Shared {
            db,
            failed_flag: AtomicBool::new(false),
            failed: Mutex::new(None),
            tails: RwLock::new(Arc::new(tails)),
            // Each store counts from its own base, 2^40 apart.
            commits: AtomicU64::new(STORES_OPENED.fetch_add(1, Ordering::Relaxed) << 40),
            records_total: AtomicU64::new(records_total),
        }
    }

    /// Enters the failed state; the first reason is kept.
    pub(crate) fn fail(&self, reason: String) {
        let mut f = self.failed.lock().unwrap_or_else(PoisonError::into_inner);
        if f.is_none() {
            *f = Some(reason);
        }
        self.failed_flag.store(true, Ordering::Release);
    }

    /// Makes `tails` and `records_total` what readers see; called after a
    /// commit, before its acks.
    pub(crate) fn publish(&self, tails: Tails, records_total: u64) {
        self.records_total.store(records_total, Ordering::Release);
        *self.tails.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(tails);
        self.commits.fetch_add(1, Ordering::Release);
    }

    pub(crate) fn failure(&self) -> Option<String> {
        if !self.failed_flag.load(Ordering::Acquire) {
            return None;
        }
        self.failed.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

pub(crate) fn ledger_key(tenant: &TenantId, ledger: &LedgerName) -> String {
    key_of(tenant.as_str(), ledger.as_str())
}

/// `"tenant/ledger"`: the key of a ledger's row in `ledgers` and of its tail.
pub(crate) fn key_of(tenant: &str, ledger: &str) -> String {
    format!("{tenant}/{ledger}")
}

/// An open store. Writes go through one committer thread; reads run on the
/// caller's thread against a consistent snapshot.
#[derive(Debug)]
pub struct Store {
    pub(crate) shared: Arc<Shared>,
    tx: Option<SyncSender<Command>>,
    committer: Option<JoinHandle<()>>,
    data_dir: PathBuf,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> OpenError + '_ {
    move |error| OpenError::Io { path: path.to_owned(), error }
}

/// Where the schema stands, without opening the store for use.
pub fn migration_status(data_dir: &Path) -> Result<MigrationStatus, OpenError> {
    let path = data_dir.join(DB_FILE_NAME);
    let db = redb::Database::open(&path).map_err(|e| OpenError::Database(e.to_string()))?;
    schema::status(&db)
}

/// Applies pending migration steps in one transaction.
pub fn migrate_up(data_dir: &Path) -> Result<MigrationStatus, OpenError> {
    std::fs::create_dir_all(data_dir).map_err(io_err(data_dir))?;
    let path = data_dir.join(DB_FILE_NAME);
    let db = redb::Database::create(&path).map_err(|e| OpenError::Database(e.to_string()))?;
    schema::up(&db)
}

impl Store {
    /// Opens (creating if needed) the store in `data_dir`.
    pub fn open(data_dir: &Path, options: OpenOptions) -> Result<Store, OpenError> {
        std::fs::create_dir_all(data_dir).map_err(io_err(data_dir))?;
        let db_err = |e: redb::DatabaseError| OpenError::Database(e.to_string());
        let db = match options.backend {
            Some(b) => redb::Builder::new().create_with_backend(DynBackend(b)).map_err(db_err)?,
            None => redb::Database::create(data_dir.join(DB_FILE_NAME)).map_err(db_err)?,
        };
        // The head is compared before anything is applied: a mismatch
        // leaves the database exactly as it was.
        let status = schema::status(&db)?;
        if !status.pending.is_empty() && !options.apply_pending_migrations {
            return Err(OpenError::MigrationsPending { head: status.head, pending: status.pending });
        }
        let head_after = status.pending.last().copied().unwrap_or(status.head);
        if let Some(expected) = options.expected_head
            && expected != head_after
        {
            return Err(OpenError::HeadMismatch { expected, actual: head_after });
        }
        if !status.pending.is_empty() {
            schema::up(&db)?;
        }
        let (records_total, next_ledger_id) = read_meta(&db)?;
        let recovered = crate::tail::recover(&db)?;
        let hwm_path = data_dir.join(hwm::FILE_NAME);
        let mark = match hwm::read(&hwm_path).map_err(io_err(&hwm_path))? {
            None => Mark { generation: 0, records_total, checkpoint: None, from_backup: false },
            Some(None) => {
                return Err(OpenError::HwmUnreadable {
                    path: hwm_path,
                    detail: "neither slot is valid".into(),
                });
            }
            Some(Some(mark)) if mark.from_backup => {
                return Err(OpenError::RolledBack {
                    ledger: None,
                    detail: "its high-water mark is a backup's: the files were copied from a backup; \
                        restore a backup with `restore` into an empty directory"
                        .into(),
                });
            }
            Some(Some(mark)) => {
                guard(&db, &mark, records_total)?;
                Mark { records_total, ..mark }
            }
        };
        let log_path = data_dir.join(hwm::LOG_FILE_NAME);
        let log = hwm::read_log(&log_path).map_err(|e| match e {
            hwm::LogError::Io(error) => OpenError::Io { path: log_path.clone(), error },
            hwm::LogError::Corrupt(detail) => OpenError::HwmUnreadable { path: log_path.clone(), detail },
        })?;
        let verified = match &log {
            Some(read) => guard_ledgers(&db, &recovered.tails, &read.marks)?,
            None => HashMap::new(),
        };
        let ledgers = hwm::LedgerMarks::open(&log_path, verified, log.as_ref()).map_err(io_err(&log_path))?;
        let hwm = Hwm::open(&hwm_path, mark, ledgers).map_err(io_err(&hwm_path))?;
        let shared = Arc::new(Shared::new(db, recovered.tails.clone(), records_total));
        let (tx, rx) = sync_channel(QUEUE_DEPTH_MAX);
        let (acks, acker) = crate::committer::spawn_acker().map_err(io_err(data_dir))?;
        let committer = Committer {
            shared: shared.clone(),
            rx,
            acks,
            heads: HashMap::new(),
            records_total,
            next_ledger_id,
            hwm,
            last_batch_writes: 1,
            linger: options.batch_linger.min(Duration::from_micros(crate::limits::BATCH_LINGER_US_MAX)),
            tail_records: recovered.tails.values().map(|t| t.records.len()).sum(),
            tail_bytes: recovered.tails.values().map(|t| t.bytes()).sum(),
            tails: recovered.tails,
            log_next: recovered.log_next,
            commits_since_flush: 0,
            ledgers_per_tenant_max: options.ledgers_per_tenant_max,
            ledger_counts: HashMap::new(),
        };
        let handle = std::thread::Builder::new()
            .name("annal-committer".into())
            .spawn(move || {
                committer.run();
                // The committer owned the acker's sender: the acker drains and stops.
                let _ = acker.join();
            })
            .map_err(io_err(data_dir))?;
        Ok(Store { shared, tx: Some(tx), committer: Some(handle), data_dir: data_dir.to_owned() })
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// `Some(reason)` once the store failed; every operation then fails.
    pub fn failure(&self) -> Option<String> {
        self.shared.failure()
    }

    fn submit<T>(&self, make: impl FnOnce(crate::ticket::Reply<T>) -> Command) -> Ticket<T> {
        if let Some(reason) = self.shared.failure() {
            return Ticket::ready(Err(WriteError::Failed(reason)));
        }
        let Some(tx) = &self.tx else { return Ticket::ready(Err(WriteError::Closed)) };
        let (reply, ticket) = pair();
        match tx.try_send(make(reply)) {
            Ok(()) => ticket,
            Err(TrySendError::Full(cmd)) => {
                cmd.refuse(WriteError::Overloaded);
                ticket
            }
            Err(TrySendError::Disconnected(cmd)) => {
                cmd.refuse(WriteError::Closed);
                ticket
            }
        }
    }

    /// Queues an append; the ticket answers after the commit that holds it.
    pub fn append(&self, request: AppendRequest) -> Ticket<AppendResult> {
        if let Some(reason) = self.shared.failure() {
            return Ticket::ready(Err(WriteError::Failed(reason)));
        }
        let prepared = crate::committer::prepare(request);
        self.submit(|reply| Command::Append(prepared, reply))
    }

    /// Queues a checkpoint; refused unless it matches the tree and is newer.
    pub fn store_checkpoint(&self, request: CheckpointRequest) -> Ticket<CheckpointResult> {
        self.submit(|reply| Command::Checkpoint(request, reply))
    }

    /// Queues an identity-log entry.
    pub fn append_identity(&self, entry: IdentityEntry) -> Ticket<IdentityResult> {
        self.submit(|reply| Command::Identity(entry, reply))
    }

    /// Stops the committer after the queued writes and syncs the mark.
    pub fn close(mut self) -> Result<(), WriteError> {
        self.shutdown();
        match self.shared.failure() {
            Some(reason) => Err(WriteError::Failed(reason)),
            None => Ok(()),
        }
    }

    fn shutdown(&mut self) {
        self.tx = None;
        if let Some(h) = self.committer.take()
            && h.join().is_err()
        {
            self.shared.fail("committer panicked".into());
        }
    }

    fn read_txn(&self) -> Result<ReadTransaction, ReadError> {
        if let Some(reason) = self.shared.failure() {
            return Err(ReadError::Failed(reason));
        }
        self.shared.db.begin_read().map_err(|e| self.storage(e))
    }

    pub(crate) fn storage(&self, e: impl Into<redb::Error>) -> ReadError {
        let msg = e.into().to_string();
        self.shared.fail(msg.clone());
        ReadError::Failed(msg)
    }

    pub(crate) fn snapshot(&self) -> Result<Snapshot<'_>, ReadError> {
        // The tails first: see tail.rs for why this order is safe.
        let tails = self.shared.tails.read().unwrap_or_else(PoisonError::into_inner).clone();
        Ok(Snapshot { store: self, tails, txn: self.read_txn()? })
    }

    pub fn ledger_state(
        &self,
        tenant: &TenantId,
        ledger: &LedgerName,
    ) -> Result<Option<LedgerState>, ReadError> {
        let snap = self.snapshot()?;
        let Some(head) = snap.head(tenant, ledger)? else { return Ok(None) };
        let root = snap.root(&head, head.next_seq)?;
        Ok(Some(LedgerState {
            size: head.next_seq,
            head_hash: Hash32::from_bytes(head.head_hash),
            root,
            checkpoint_size: head.checkpoint_size,
        }))
    }

    /// One record, re-verified (hash and chain link); `None` if absent.
    pub fn record(
        &self,
        tenant: &TenantId,
        ledger: &LedgerName,
        seq: Seq,
    ) -> Result<Option<RecordEntry>, ReadError> {
        let snap = self.snapshot()?;
        let Some(head) = snap.head(tenant, ledger)? else { return Ok(None) };
        let mut out = snap.records(&head, seq.get(), 1)?;
        Ok(out.pop())
    }

    /// Records after `after` (exclusive; `None` from the start), at most
    /// `limit` (capped at `RANGE_RECORDS_COUNT_MAX`), re-verified. Fewer
    /// when their payloads reach `RANGE_PAYLOAD_BYTES_MAX`: a short read is
    /// not the end of the ledger; ask again after the last one returned.
    pub fn records(
        &self,
        tenant: &TenantId,
        ledger: &LedgerName,
        after: Option<Seq>,
        limit: u64,
    ) -> Result<Vec<RecordEntry>, ReadError> {
        let snap = self.snapshot()?;
        let Some(head) = snap.head(tenant, ledger)? else { return Ok(Vec::new()) };
        let from = after.map_or(0, |s| s.get().saturating_add(1));
        snap.records(&head, from, limit.min(RANGE_RECORDS_COUNT_MAX))
    }

    /// Root of the first `size` records.
    pub fn root_at(&self, tenant: &TenantId, ledger: &LedgerName, size: u64) -> Result<Hash32, ReadError> {
        let snap = self.snapshot()?;
        let head = snap.head(tenant, ledger)?.ok_or(ReadError::NoLedger)?;
        if size > head.next_seq {
            return Err(ReadError::OutOfRange { size: head.next_seq });
        }
        snap.root(&head, size)
    }

    /// RFC 9162 inclusion proof of `seq` in the tree of `size` records.
    pub fn inclusion_proof(
        &self,
        tenant: &TenantId,
        ledger: &LedgerName,
        seq: Seq,
        size: u64,
    ) -> Result<Vec<Hash32>, ReadError> {
        let snap = self.snapshot()?;
        let head = snap.head(tenant, ledger)?.ok_or(ReadError::NoLedger)?;
        if size > head.next_seq || seq.get() >= size {
            return Err(ReadError::OutOfRange { size: head.next_seq });
        }
        snap.with_tree(&head, |tree| inclusion_proof(seq.get(), size, tree).expect("seq < size"))
    }

    /// RFC 9162 consistency proof from `old` to `new` records.
    pub fn consistency_proof(
        &self,
        tenant: &TenantId,
        ledger: &LedgerName,
        old: u64,
        new: u64,
    ) -> Result<Vec<Hash32>, ReadError> {
        let snap = self.snapshot()?;
        let head = snap.head(tenant, ledger)?.ok_or(ReadError::NoLedger)?;
        if new > head.next_seq || old == 0 || old > new {
            return Err(ReadError::OutOfRange { size: head.next_seq });
        }
        snap.with_tree(&head, |tree| consistency_proof(old, new, tree).expect("0 < old <= new"))
    }

    /// The newest stored checkpoint of a ledger.
    pub fn latest_checkpoint(
        &self,
        tenant: &TenantId,
        ledger: &LedgerName,
    ) -> Result<Option<SignedNote>, ReadError> {
        let snap = self.snapshot()?;
        let Some(head) = snap.head(tenant, ledger)? else { return Ok(None) };
        if head.checkpoint_size == 0 {
            return Ok(None);
        }
        snap.checkpoint(&head, head.checkpoint_size)
    }

    /// The checkpoint issued at exactly `size`, if any.
    pub fn checkpoint_at(
        &self,
        tenant: &TenantId,
        ledger: &LedgerName,
        size: u64,
    ) -> Result<Option<SignedNote>, ReadError> {
        let snap = self.snapshot()?;
        let Some(head) = snap.head(tenant, ledger)? else { return Ok(None) };
        snap.checkpoint(&head, size)
    }

    /// The signing-identity log, in order.
    pub fn identity_log(&self) -> Result<Vec<IdentityEntry>, ReadError> {
        let snap = self.snapshot()?;
        let table = snap.txn.open_table(IDENTITY).map_err(|e| self.storage(e))?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(|e| self.storage(e))? {
            let (k, v) = entry.map_err(|e| self.storage(e))?;
            let s: StoredIdentity = codec::decode(v.value()).map_err(|_| {
                ReadError::Corrupt(Corruption {
                    tenant: String::new(),
                    ledger: "identity".into(),
                    seq: Some(k.value()),
                    what: "identity entry does not decode",
                })
            })?;
            out.push(IdentityEntry {
                seq: k.value(),
                key_name: s.key_name,
                public: s.public,
                timestamp_ms: s.timestamp_ms,
                statement: s.statement,
            });
        }
        Ok(out)
    }

    /// Streams the ledger in the annal-chain export format, from one
    /// snapshot, in bounded memory: header, records with same-ledger parent
    /// proofs, checkpoints where they were issued, end line.
    pub fn export(
        &self,
        origin: &Origin,
        vkeys: &[String],
        out: &mut dyn Write,
    ) -> Result<ExportStats, ExportError> {
        let snap = self.snapshot()?;
        let head = snap.head(origin.tenant(), origin.ledger())?.ok_or(ReadError::NoLedger)?;
        snap.export(&head, origin, vkeys, out)
    }

    /// Every ledger as (tenant, ledger, size), in key order.
    pub fn ledgers(&self) -> Result<Vec<(TenantId, LedgerName, u64)>, ReadError> {
        let snap = self.snapshot()?;
        Ok(snap
            .heads()?
            .into_iter()
            .filter_map(|h| {
                Some((TenantId::new(&h.tenant).ok()?, LedgerName::new(&h.ledger).ok()?, h.next_seq))
            })
            .collect())
    }

    /// Records in the store (every ledger, the system event ledger
    /// included), as of the last commit: every acknowledged append is
    /// counted before its caller hears of it.
    pub fn records_total(&self) -> u64 {
        self.shared.records_total.load(Ordering::Acquire)
    }

    /// Changes with every committed transaction, and differs between the
    /// stores this process opened: unchanged means nothing was written, so
    /// a worker that caught up with everything can skip a pass.
    pub fn commits(&self) -> u64 {
        self.shared.commits.load(Ordering::Acquire)
    }

    /// Every ledger with records no checkpoint covers yet, with its state,
    /// from one snapshot (what the anchoring worker signs, and what
    /// readiness checks the age of).
    pub fn unanchored(&self) -> Result<Vec<(TenantId, LedgerName, LedgerState)>, ReadError> {
        let snap = self.snapshot()?;
        let mut out = Vec::new();
        for head in snap.heads()? {
            if head.checkpoint_size >= head.next_seq {
                continue;
            }
            let (Ok(tenant), Ok(ledger)) = (TenantId::new(&head.tenant), LedgerName::new(&head.ledger))
            else {
                continue;
            };
            let state = LedgerState {
                size: head.next_seq,
                head_hash: Hash32::from_bytes(head.head_hash),
                root: snap.root(&head, head.next_seq)?,
                checkpoint_size: head.checkpoint_size,
            };
            out.push((tenant, ledger, state));
        }
        Ok(out)
    }

    /// One tenant's ledgers and their sizes, in name order; reads only
    /// that tenant's rows.
    pub fn tenant_ledgers(&self, tenant: &TenantId) -> Result<Vec<(LedgerName, u64)>, ReadError> {
        self.tenant_ledgers_page(tenant, None, usize::MAX)
    }

    /// At most `limit` of one tenant's ledgers and their sizes, in name
    /// order, after `after` (exclusive); reads only those rows.
    pub fn tenant_ledgers_page(
        &self,
        tenant: &TenantId,
        after: Option<&LedgerName>,
        limit: usize,
    ) -> Result<Vec<(LedgerName, u64)>, ReadError> {
        let snap = self.snapshot()?;
        Ok(snap
            .heads_under(Some((tenant, after)), limit)?
            .into_iter()
            .filter_map(|h| Some((LedgerName::new(&h.ledger).ok()?, h.next_seq)))
            .collect())
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn read_meta(db: &redb::Database) -> Result<(u64, u64), OpenError> {
    let e = |e: redb::Error| OpenError::Database(e.to_string());
    let txn = db.begin_read().map_err(|x| e(x.into()))?;
    let meta = txn.open_table(META).map_err(|x| e(x.into()))?;
    let get = |k: &str| -> Result<u64, OpenError> {
        meta.get(k)
            .map_err(|x| e(x.into()))?
            .map(|v| v.value())
            .ok_or_else(|| OpenError::Database(format!("meta {k} missing")))
    };
    Ok((get(META_RECORDS_TOTAL)?, get(META_NEXT_LEDGER_ID)?))
}

/// Refuses a database behind its store-wide high-water mark.
fn guard(db: &redb::Database, mark: &Mark, records_total: u64) -> Result<(), OpenError> {
    if records_total < mark.records_total {
        return Err(OpenError::RolledBack {
            ledger: None,
            detail: format!(
                "database holds {records_total} records, {} were acknowledged",
                mark.records_total
            ),
        });
    }
    if let Some((id, size, root)) = mark.checkpoint {
        let e = |e: redb::Error| OpenError::Database(e.to_string());
        let txn = db.begin_read().map_err(|x| e(x.into()))?;
        let table = txn.open_table(CHECKPOINTS).map_err(|x| e(x.into()))?;
        let found = table.get((id, size)).map_err(|x| e(x.into()))?.map(|v| v.value().to_owned());
        let matches = found
            .and_then(|text| annal_chain::SignedCheckpoint::parse(&text).ok())
            .is_some_and(|c| c.checkpoint.size == size && c.checkpoint.root.as_bytes() == &root);
        if !matches {
            return Err(OpenError::RolledBack {
                ledger: None,
                detail: format!("the last checkpoint (ledger id {id}, size {size}) is missing or differs"),
            });
        }
    }
    Ok(())
}

fn short_hex(hash: &[u8; 32]) -> String {
    schema::hex(&hash[..8])
}

/// Refuses a database in which a marked ledger has fewer records than its
/// mark, or another record at the marked seq (so another history: the
/// record hash pins every record before it). One ledger row and one record
/// lookup per ledger marked. Returns the marks by the database's ledger ids.
fn guard_ledgers(
    db: &redb::Database,
    tails: &Tails,
    marks: &[hwm::LedgerMark],
) -> Result<HashMap<u64, hwm::LedgerMark>, OpenError> {
    let e = |e: redb::Error| OpenError::Database(e.to_string());
    let txn = db.begin_read().map_err(|x| e(x.into()))?;
    let ledgers = txn.open_table(LEDGERS).map_err(|x| e(x.into()))?;
    let records = txn.open_table(RECORDS).map_err(|x| e(x.into()))?;
    let mut out = HashMap::with_capacity(marks.len());
    for mark in marks {
        let seq = mark.size - 1;
        let refuse = |has: String| OpenError::RolledBack {
            ledger: Some(mark.key.clone()),
            detail: format!(
                "ledger {}: the mark holds seq {seq} with record hash {}, {has}",
                mark.key,
                short_hex(&mark.hash)
            ),
        };
        let tail = tails.get(&mark.key);
        let head = match tail {
            Some(t) => t.head.clone(),
            None => match ledgers.get(mark.key.as_str()).map_err(|x| e(x.into()))? {
                Some(row) => codec::decode::<StoredHead>(row.value()).map_err(|_| {
                    let (tenant, ledger) = mark.key.split_once('/').unwrap_or((&mark.key, ""));
                    OpenError::Corrupt(Corruption {
                        tenant: tenant.into(),
                        ledger: ledger.into(),
                        seq: None,
                        what: "ledger row does not decode",
                    })
                })?,
                None => return Err(refuse("the database has no such ledger".into())),
            },
        };
        if head.next_seq < mark.size {
            return Err(refuse(format!("the database has {} records", head.next_seq)));
        }
        match crate::tail::stored_hash(tail.map(|t| &**t), &records, head.id, seq).map_err(|x| e(x.into()))? {
            Some(h) if h == mark.hash => {}
            Some(h) => {
                return Err(refuse(format!(
                    "the database's record {seq} has hash {} (another history)",
                    short_hex(&h)
                )));
            }
            None => return Err(refuse(format!("the database has no record {seq} below its head"))),
        }
        out.insert(head.id, mark.clone());
    }
    Ok(out)
}

/// One consistent read view.
pub(crate) struct Snapshot<'s> {
    store: &'s Store,
    tails: Arc<Tails>,
    pub(crate) txn: ReadTransaction,
}

pub(crate) fn corruption(head: &StoredHead, seq: Option<u64>, what: &'static str) -> ReadError {
    ReadError::Corrupt(Corruption { tenant: head.tenant.clone(), ledger: head.ledger.clone(), seq, what })
}

/// Decodes and re-verifies one stored record: its fields pass the chain's
/// checks and its recomputed hash equals the stored one.
pub(crate) fn decode_record(
    head: &StoredHead,
    seq: u64,
    prev: Hash32,
    value: &[u8],
) -> Result<(Record, StoredRecord), ReadError> {
    let c = |what| corruption(head, Some(seq), what);
    let s: StoredRecord = codec::decode(value).map_err(|_| c("record does not decode"))?;
    let mut parents = Vec::with_capacity(s.parents.len());
    for p in &s.parents {
        parents.push(Parent {
            ledger: LedgerName::new(&p.ledger).map_err(|_| c("parent ledger name invalid"))?,
            seq: Seq::new(p.seq),
            hash: Hash32::from_bytes(p.hash),
        });
    }
    let record = Record::new(RecordFields {
        tenant: TenantId::new(&head.tenant).map_err(|_| c("tenant invalid"))?,
        ledger: LedgerName::new(&head.ledger).map_err(|_| c("ledger name invalid"))?,
        seq: Seq::new(seq),
        timestamp_ms: s.timestamp_ms,
        prev,
        content_type: s.content_type.clone(),
        payload: s.payload.clone(),
        parents,
    })
    .map_err(|_| c("record fails its own checks"))?;
    if record.hash().as_bytes() != &s.hash {
        return Err(c(
            "recomputed hash (with the previous record's stored hash as prev) differs from the stored hash",
        ));
    }
    Ok((record, s))
}

impl Snapshot<'_> {
    fn err(&self, e: impl Into<redb::Error>) -> ReadError {
        self.store.storage(e)
    }

    /// The ledger's tail, if it has records in the log.
    pub(crate) fn tail(&self, head: &StoredHead) -> Option<&LedgerTail> {
        if self.tails.is_empty() {
            return None;
        }
        self.tails.get(&head_key(head)).map(|t| &**t)
    }

    pub(crate) fn head(
        &self,
        tenant: &TenantId,
        ledger: &LedgerName,
    ) -> Result<Option<StoredHead>, ReadError> {
        let key = ledger_key(tenant, ledger);
        if let Some(tail) = self.tails.get(&key) {
            return Ok(Some(tail.head.clone()));
        }
        let table = self.txn.open_table(LEDGERS).map_err(|e| self.err(e))?;
        let Some(v) = table.get(key.as_str()).map_err(|e| self.err(e))? else { return Ok(None) };
        let head: StoredHead = codec::decode(v.value()).map_err(|_| {
            ReadError::Corrupt(Corruption {
                tenant: tenant.to_string(),
                ledger: ledger.to_string(),
                seq: None,
                what: "ledger row does not decode",
            })
        })?;
        Ok(Some(head))
    }

    /// Every ledger's head, in key order.
    pub(crate) fn heads(&self) -> Result<Vec<StoredHead>, ReadError> {
        self.heads_under(None, usize::MAX)
    }

    /// The heads of every ledger, or of one tenant's ledgers only after a
    /// ledger name (a range of the `ledgers` table: its keys are
    /// `tenant/ledger`), at most `limit` of them.
    fn heads_under(
        &self,
        within: Option<(&TenantId, Option<&LedgerName>)>,
        limit: usize,
    ) -> Result<Vec<StoredHead>, ReadError> {
        use std::ops::{Bound, RangeBounds as _};
        let table = self.txn.open_table(LEDGERS).map_err(|e| self.err(e))?;
        // `0` is the byte after `/`, so `tenant/` up to `tenant0` holds
        // exactly the keys that start with `tenant/`.
        let (start, end) = match within {
            None => (Bound::Unbounded, Bound::Unbounded),
            Some((t, None)) => (Bound::Included(format!("{t}/")), Bound::Excluded(format!("{t}0"))),
            Some((t, Some(after))) => {
                (Bound::Excluded(format!("{t}/{after}")), Bound::Excluded(format!("{t}0")))
            }
        };
        let in_range =
            |key: &str| (start.as_ref().map(String::as_str), end.as_ref().map(String::as_str)).contains(&key);
        let mut out = std::collections::BTreeMap::new();
        for (key, tail) in self.tails.iter() {
            if in_range(key) {
                out.insert(key.clone(), tail.head.clone());
            }
        }
        // The first `limit` keys of table rows and tails together are among
        // the first `limit` rows and the tails.
        let rows = table
            .range::<&str>((start.as_ref().map(String::as_str), end.as_ref().map(String::as_str)))
            .map_err(|e| self.err(e))?;
        for entry in rows.take(limit) {
            let (k, v) = entry.map_err(|e| self.err(e))?;
            if self.tails.contains_key(k.value()) {
                continue;
            }
            let (tenant, ledger) = k.value().split_once('/').unwrap_or((k.value(), ""));
            out.insert(
                k.value().to_owned(),
                codec::decode(v.value()).map_err(|_| {
                    ReadError::Corrupt(Corruption {
                        tenant: tenant.into(),
                        ledger: ledger.into(),
                        seq: None,
                        what: "ledger row does not decode",
                    })
                })?,
            );
        }
        Ok(out.into_values().take(limit).collect())
    }

    pub(crate) fn with_tree<T>(
        &self,
        head: &StoredHead,
        f: impl FnOnce(
            &mut TreeView<
                '_,
                redb::ReadOnlyTable<(u64, u64), &'static [u8]>,
                redb::ReadOnlyTable<(u64, u64, u8), [u8; 32]>,
            >,
        ) -> T,
    ) -> Result<T, ReadError> {
        let records = self.txn.open_table(RECORDS).map_err(|e| self.err(e))?;
        let nodes = self.txn.open_table(NODES).map_err(|e| self.err(e))?;
        let mut view = TreeView::new(head.id, &head.tenant, &head.ledger, &records, &nodes, self.tail(head));
        let out = f(&mut view);
        match view.error {
            None => Ok(out),
            Some(ReadError::Failed(msg)) => {
                self.store.shared.fail(msg.clone());
                Err(ReadError::Failed(msg))
            }
            Some(e) => Err(e),
        }
    }

    pub(crate) fn root(&self, head: &StoredHead, size: u64) -> Result<Hash32, ReadError> {
        if size == 0 {
            return Ok(empty_root());
        }
        self.with_tree(head, |t| t.root(size))
    }

    pub(crate) fn checkpoint(&self, head: &StoredHead, size: u64) -> Result<Option<SignedNote>, ReadError> {
        let table = self.txn.open_table(CHECKPOINTS).map_err(|e| self.err(e))?;
        let Some(v) = table.get((head.id, size)).map_err(|e| self.err(e))? else { return Ok(None) };
        SignedNote::parse(v.value())
            .map(Some)
            .map_err(|_| corruption(head, Some(size), "stored checkpoint does not parse"))
    }

    /// Records `[from, from + limit)` that exist, each re-verified and linked.
    pub(crate) fn records(
        &self,
        head: &StoredHead,
        from: u64,
        limit: u64,
    ) -> Result<Vec<RecordEntry>, ReadError> {
        let end = from.saturating_add(limit).min(head.next_seq);
        if from >= end {
            return Ok(Vec::new());
        }
        let table = self.txn.open_table(RECORDS).map_err(|e| self.err(e))?;
        let tail = self.tail(head);
        let mut prev = if from == 0 {
            Hash32::ZERO
        } else {
            let h = crate::tail::stored_hash(tail, &table, head.id, from - 1).map_err(|e| self.err(e))?;
            Hash32::from_bytes(
                h.ok_or_else(|| corruption(head, Some(from - 1), "record below head missing"))?,
            )
        };
        let mut out = Vec::new();
        let mut expect = from;
        let mut payload_bytes = 0;
        let mut take = |seq: u64, value: &[u8], prev: &mut Hash32| -> Result<bool, ReadError> {
            if seq != expect {
                return Err(corruption(head, Some(expect), "record below head missing"));
            }
            let (record, stored) = decode_record(head, seq, *prev, value)?;
            let hash = Hash32::from_bytes(stored.hash);
            if seq + 1 == head.next_seq && hash.as_bytes() != &head.head_hash {
                return Err(corruption(head, Some(seq), "last record is not the ledger head"));
            }
            *prev = hash;
            expect += 1;
            payload_bytes += record.payload().len();
            out.push(RecordEntry { record, hash });
            Ok(payload_bytes < RANGE_PAYLOAD_BYTES_MAX)
        };
        for entry in stored_values(&table, head.id, tail, from, end).map_err(|e| self.err(e))? {
            let (seq, v) = entry.map_err(|e| self.err(e))?;
            if !take(seq, v.bytes(), &mut prev)? {
                return Ok(out);
            }
        }
        if expect != end {
            return Err(corruption(head, Some(expect), "record below head missing"));
        }
        Ok(out)
    }

    pub(crate) fn export(
        &self,
        head: &StoredHead,
        origin: &Origin,
        vkeys: &[String],
        out: &mut dyn Write,
    ) -> Result<ExportStats, ExportError> {
        let mut buf = Vec::with_capacity(EXPORT_CHUNK_BYTES * 2);
        write_header(&mut buf, origin, vkeys);
        let cps = self.txn.open_table(CHECKPOINTS).map_err(|e| self.err(e))?;
        let mut cp_iter = cps.range((head.id, 0)..=(head.id, u64::MAX)).map_err(|e| self.err(e))?.peekable();
        let records = self.txn.open_table(RECORDS).map_err(|e| self.err(e))?;
        let nodes = self.txn.open_table(NODES).map_err(|e| self.err(e))?;
        let tail = self.tail(head);
        let mut tree = TreeView::new(head.id, &head.tenant, &head.ledger, &records, &nodes, tail);
        let mut prev = Hash32::ZERO;
        let mut checkpoints = 0u64;
        let mut iter = stored_values(&records, head.id, tail, 0, head.next_seq).map_err(|e| self.err(e))?;
        for seq in 0..=head.next_seq {
            loop {
                let size = match cp_iter.peek() {
                    Some(Ok((k, _))) => k.value().1,
                    Some(Err(_)) => {
                        let Some(Err(e)) = cp_iter.next() else { unreachable!() };
                        return Err(self.err(e).into());
                    }
                    None => break,
                };
                if size != seq {
                    if size < seq {
                        return Err(corruption(head, Some(size), "checkpoint out of order").into());
                    }
                    break;
                }
                let Some(Ok((_, v))) = cp_iter.next() else { unreachable!() };
                let note = SignedNote::parse(v.value())
                    .map_err(|_| corruption(head, Some(size), "stored checkpoint does not parse"))?;
                write_checkpoint(&mut buf, &note);
                checkpoints += 1;
            }
            if seq == head.next_seq {
                break;
            }
            let value = match iter.next() {
                Some(Ok((key, value))) if key == seq => value,
                Some(Err(e)) => return Err(self.err(e).into()),
                _ => return Err(corruption(head, Some(seq), "record below head missing").into()),
            };
            let (record, stored) = decode_record(head, seq, prev, value.bytes())?;
            let proofs: Vec<Vec<Hash32>> = record
                .parents()
                .iter()
                .map(|p| {
                    if p.ledger == *origin.ledger() {
                        inclusion_proof(p.seq.get(), seq, &mut tree).expect("parent is earlier")
                    } else {
                        Vec::new()
                    }
                })
                .collect();
            if let Some(e) = tree.error.take() {
                return Err(e.into());
            }
            let hash = Hash32::from_bytes(stored.hash);
            write_record(&mut buf, &record, &hash, &proofs);
            prev = hash;
            if buf.len() >= EXPORT_CHUNK_BYTES {
                out.write_all(&buf).map_err(ExportError::Write)?;
                buf.clear();
            }
        }
        if prev.as_bytes() != &head.head_hash {
            return Err(corruption(head, None, "last record is not the ledger head").into());
        }
        write_end(&mut buf, head.next_seq, checkpoints);
        out.write_all(&buf).map_err(ExportError::Write)?;
        out.flush().map_err(ExportError::Write)?;
        Ok(ExportStats { records: head.next_seq, checkpoints })
    }
}
