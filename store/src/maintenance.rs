//! Backup (a consistent snapshot while appends continue), restore (into an
//! empty directory only) and the full integrity check an operator runs before
//! promoting a restore.

use std::path::{Path, PathBuf};

use annal_chain::{
    CompactRange, Hash32, IdentityLogEntry, SignedCheckpoint, TrustedKey, verify_identity_entries,
};
use redb::{ReadableTable, TableDefinition, TableHandle};

use crate::error::{MaintenanceError, OpenError, ReadError};
use crate::hwm::{self, LedgerMark, Mark};
use crate::schema::{
    API_KEYS, CHECKPOINTS, IDEMPOTENCY, IDENTITY, LEDGER_NAMES, LEDGERS, LOG, META, META_RECORDS_TOTAL,
    MIGRATIONS, NODES, OUTBOX, RECORDS, TENANTS, WEBHOOK_DUE, WEBHOOKS,
};
use crate::store::{DB_FILE_NAME, OpenOptions, Store, decode_record, key_of};
use crate::tail::stored_values;
use crate::tree::{append_leaf, stored_level, stored_node};

/// What a backup copied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackupStats {
    pub records_total: u64,
}

/// How far a backup is: called after each of its bounded copying
/// transactions committed, on the thread running the backup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupProgress {
    /// The table being copied.
    pub table: String,
    /// Its rows copied so far.
    pub rows: u64,
}

/// The first thing `check` found wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckFailure {
    pub tenant: String,
    pub ledger: String,
    pub seq: Option<u64>,
    pub what: String,
}

/// The outcome of a full check: counts, and the first failure if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckReport {
    pub ledgers: u64,
    pub records: u64,
    pub checkpoints: u64,
    pub failure: Option<CheckFailure>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> MaintenanceError + '_ {
    move |error| MaintenanceError::Io { path: path.to_owned(), error }
}

fn db_err(e: impl Into<redb::Error>) -> MaintenanceError {
    MaintenanceError::Database(e.into().to_string())
}

/// Creates `dir` or accepts it if empty; anything else is refused.
fn empty_dir(dir: &Path) -> Result<(), MaintenanceError> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(MaintenanceError::NotEmpty { path: dir.to_owned() });
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::create_dir_all(dir).map_err(io(dir)),
        Err(e) => Err(io(dir)(e)),
    }
}

/// Rows one backup transaction copies: the copy commits (without a sync)
/// every this many rows, so its memory stays bounded whatever the size of
/// the database; the last commit is durable and makes all of them so.
const BACKUP_ROWS_PER_TXN: usize = 16_384;

fn copy_table<K, V>(
    src: &redb::ReadTransaction,
    dst: &redb::Database,
    def: TableDefinition<K, V>,
    progress: &mut dyn FnMut(BackupProgress),
) -> Result<(), MaintenanceError>
where
    K: redb::Key + 'static,
    V: redb::Value + 'static,
    for<'a> K::SelfType<'a>: Sized,
{
    let from = match src.open_table(def) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
        Err(e) => return Err(db_err(e)),
    };
    let table = def.name().to_owned();
    let mut rows = from.iter().map_err(db_err)?.peekable();
    let mut copied = 0u64;
    loop {
        let mut txn = dst.begin_write().map_err(db_err)?;
        txn.set_durability(redb::Durability::None).map_err(|e| MaintenanceError::Database(e.to_string()))?;
        {
            let mut to = txn.open_table(def).map_err(db_err)?;
            for entry in rows.by_ref().take(BACKUP_ROWS_PER_TXN) {
                let (k, v) = entry.map_err(db_err)?;
                to.insert(k.value(), v.value()).map_err(db_err)?;
                copied += 1;
            }
        }
        txn.commit().map_err(db_err)?;
        progress(BackupProgress { table: table.clone(), rows: copied });
        if rows.peek().is_none() {
            return Ok(());
        }
    }
}

impl Store {
    /// Writes a consistent snapshot (database and high-water mark) into
    /// `dir`, which must be empty or absent. Appends continue meanwhile.
    pub fn backup(&self, dir: &Path) -> Result<BackupStats, MaintenanceError> {
        self.backup_with_progress(dir, &mut |_| {})
    }

    /// [`Store::backup`], calling `progress` after each bounded copying
    /// transaction. The backup reads one snapshot and never holds the
    /// committer, so appends are acknowledged while it runs.
    ///
    /// The backup's high-water mark holds every ledger's head in the
    /// snapshot and is flagged as a backup's: `restore` clears the flag,
    /// and a data directory holding a flagged mark (a backup's files copied
    /// over it) refuses to open.
    pub fn backup_with_progress(
        &self,
        dir: &Path,
        progress: &mut dyn FnMut(BackupProgress),
    ) -> Result<BackupStats, MaintenanceError> {
        empty_dir(dir)?;
        let snap = self.snapshot()?;
        let records_total = {
            let meta = snap.txn.open_table(META).map_err(db_err)?;
            meta.get(META_RECORDS_TOTAL).map_err(db_err)?.map_or(0, |v| v.value())
        };
        let path = dir.join(DB_FILE_NAME);
        let dst = redb::Database::create(&path).map_err(db_err)?;
        copy_table(&snap.txn, &dst, META, progress)?;
        copy_table(&snap.txn, &dst, MIGRATIONS, progress)?;
        copy_table(&snap.txn, &dst, LEDGERS, progress)?;
        copy_table(&snap.txn, &dst, LEDGER_NAMES, progress)?;
        copy_table(&snap.txn, &dst, RECORDS, progress)?;
        copy_table(&snap.txn, &dst, NODES, progress)?;
        copy_table(&snap.txn, &dst, CHECKPOINTS, progress)?;
        copy_table(&snap.txn, &dst, IDEMPOTENCY, progress)?;
        copy_table(&snap.txn, &dst, IDENTITY, progress)?;
        copy_table(&snap.txn, &dst, TENANTS, progress)?;
        copy_table(&snap.txn, &dst, API_KEYS, progress)?;
        copy_table(&snap.txn, &dst, WEBHOOKS, progress)?;
        copy_table(&snap.txn, &dst, OUTBOX, progress)?;
        copy_table(&snap.txn, &dst, WEBHOOK_DUE, progress)?;
        copy_table(&snap.txn, &dst, LOG, progress)?;
        // Durable, and with it every copying commit before it.
        let mut txn = dst.begin_write().map_err(db_err)?;
        txn.set_durability(redb::Durability::Immediate)
            .map_err(|e| MaintenanceError::Database(e.to_string()))?;
        txn.commit().map_err(db_err)?;
        drop(dst);
        // The snapshot's heads (tails included): the copy's own history.
        let marks: Vec<LedgerMark> = snap
            .heads()?
            .into_iter()
            .filter(|h| h.next_seq > 0)
            .map(|h| LedgerMark { key: key_of(&h.tenant, &h.ledger), size: h.next_seq, hash: h.head_hash })
            .collect();
        let log_path = dir.join(hwm::LOG_FILE_NAME);
        hwm::write_log(&log_path, marks.iter()).map_err(io(&log_path))?;
        let hwm_path = dir.join(hwm::FILE_NAME);
        let mark = Mark { generation: 0, records_total, checkpoint: None, from_backup: true };
        hwm::write_mark(&hwm_path, mark).map_err(io(&hwm_path))?;
        hwm::sync_dir(dir).map_err(io(dir))?;
        Ok(BackupStats { records_total })
    }

    /// The keys the identity log proves from its own genesis entry, oldest
    /// first (empty for an empty log): what the daemon signs and verifies
    /// with. A rotation not signed by both the old and the new key, or any
    /// other break, is `Ok(Err)` naming the entry, and proves nothing.
    pub fn proven_identity_keys(&self) -> Result<Result<Vec<TrustedKey>, CheckFailure>, ReadError> {
        self.trusted_keys(&[])
    }

    /// The keys `check` trusts for checkpoint signatures: `trusted`, and
    /// the keys the identity log proves. The log must verify as a chain
    /// (`annal_chain::verify_identity_entries`: a genesis entry, then rotations
    /// signed by the old and the new key) from its genesis key, which must
    /// be one of `trusted` when any are given; with none given, the stored
    /// genesis is the root (as good as the database: an auditor passes the
    /// key). `Ok(Err)` is a check failure.
    fn trusted_keys(
        &self,
        trusted: &[TrustedKey],
    ) -> Result<Result<Vec<TrustedKey>, CheckFailure>, ReadError> {
        let fail = |seq: Option<u64>, what: String| CheckFailure {
            tenant: String::new(),
            ledger: "identity".into(),
            seq,
            what,
        };
        let log = match self.identity_log() {
            Ok(log) => log,
            Err(ReadError::Corrupt(c)) => return Ok(Err(fail(c.seq, c.what.into()))),
            Err(e) => return Err(e),
        };
        let Some(first) = log.first() else { return Ok(Ok(trusted.to_vec())) };
        let mut entries = Vec::with_capacity(log.len());
        for e in &log {
            let Some(key) = TrustedKey::named(&e.key_name, e.public).and_then(|k| k.vkey()) else {
                return Ok(Err(fail(
                    Some(e.seq),
                    "identity log entry has an invalid key name or key".into(),
                )));
            };
            entries.push(IdentityLogEntry {
                seq: e.seq,
                key,
                timestamp_ms: e.timestamp_ms,
                statement: e.statement.clone(),
            });
        }
        let genesis = TrustedKey::named(&first.key_name, first.public).expect("checked above");
        let root = if trusted.is_empty() {
            genesis
        } else {
            match trusted.iter().find(|k| k.public() == genesis.public()) {
                Some(k) => k.clone(),
                None => {
                    return Ok(Err(fail(
                        Some(first.seq),
                        "the identity log's genesis key is not one of the trusted keys".into(),
                    )));
                }
            }
        };
        match verify_identity_entries(&entries, &root) {
            Ok(proved) => Ok(Ok(trusted.iter().cloned().chain(proved).collect())),
            Err(f) => Ok(Err(fail(
                Some(f.index),
                format!(
                    "identity log does not verify ({}): only keys it proves are trusted",
                    f.reason.as_str()
                ),
            ))),
        }
    }

    /// Re-verifies the identity log, every record hash, chain link, stored
    /// Merkle node, ledger head, and every checkpoint's root and signature.
    /// Signatures are checked against `trusted` and the keys the identity
    /// log proves from its genesis (which must be one of `trusted` when any
    /// are given). Then checks the webhook tables (`webhooks::outbox_failure`:
    /// rows decode, each delivery belongs to an endpoint that counts it and is
    /// below its cursor, the due index holds exactly one entry per delivery;
    /// a failure of tenant "" and ledger `webhook_outbox`, with the delivery
    /// id as `seq` when one row is wrong). Stops at the first failure.
    pub fn check(&self, trusted: &[TrustedKey]) -> Result<CheckReport, ReadError> {
        let mut report = CheckReport { ledgers: 0, records: 0, checkpoints: 0, failure: None };
        let keys = match self.trusted_keys(trusted)? {
            Ok(keys) => keys,
            Err(failure) => {
                report.failure = Some(failure);
                return Ok(report);
            }
        };
        let snap = self.snapshot()?;
        let records = snap.txn.open_table(RECORDS).map_err(|e| self.storage(e))?;
        let nodes = snap.txn.open_table(NODES).map_err(|e| self.storage(e))?;
        let cps = snap.txn.open_table(CHECKPOINTS).map_err(|e| self.storage(e))?;
        for head in snap.heads()? {
            report.ledgers += 1;
            let fail = |seq: Option<u64>, what: &str| {
                Some(CheckFailure {
                    tenant: head.tenant.clone(),
                    ledger: head.ledger.clone(),
                    seq,
                    what: what.to_owned(),
                })
            };
            let checkpoints: Vec<(u64, String)> = {
                let mut v = Vec::new();
                for e in cps.range((head.id, 0)..=(head.id, u64::MAX)).map_err(|e| self.storage(e))? {
                    let (k, t) = e.map_err(|e| self.storage(e))?;
                    v.push((k.value().1, t.value().to_owned()));
                }
                v
            };
            let mut next_cp = checkpoints.iter().peekable();
            let mut peaks: Vec<Hash32> = Vec::new();
            let mut prev = Hash32::ZERO;
            let mut seq = 0u64;
            let tail = snap.tail(&head);
            // Checks the record stored under `key` as the next one; `Ok(Some)`
            // is the first failure.
            let mut visit = |key: u64, value: &[u8]| -> Result<Option<CheckFailure>, ReadError> {
                if key != seq {
                    return Ok(fail(Some(seq), "record missing (seq gap)"));
                }
                let (_record, stored) = match decode_record(&head, seq, prev, value) {
                    Ok(r) => r,
                    Err(ReadError::Corrupt(c)) => return Ok(fail(c.seq, c.what)),
                    Err(e) => return Err(e),
                };
                let hash = Hash32::from_bytes(stored.hash);
                let mut bad_node = None;
                append_leaf(seq, &mut peaks, hash, &mut |level, index, h| {
                    if bad_node.is_none() && stored_level(level) {
                        let level8 = u8::try_from(level).expect("levels fit u8");
                        match stored_node(&nodes, tail, head.id, level8, index) {
                            Ok(Some(n)) if n == *h.as_bytes() => {}
                            Ok(_) => bad_node = Some(Ok(())),
                            Err(e) => bad_node = Some(Err(e)),
                        }
                    }
                });
                match bad_node {
                    None => {}
                    Some(Ok(())) => {
                        return Ok(fail(Some(seq), "stored merkle node differs from the records"));
                    }
                    Some(Err(e)) => return Err(self.storage(e)),
                }
                prev = hash;
                seq += 1;
                report.records += 1;
                while let Some((size, text)) = next_cp.next_if(|(size, _)| *size <= seq) {
                    report.checkpoints += 1;
                    let root = CompactRange::from_parts(seq, peaks.clone()).expect("peaks match size").root();
                    let Ok(cp) = SignedCheckpoint::parse(text) else {
                        return Ok(fail(Some(*size), "checkpoint does not parse"));
                    };
                    if *size != seq || cp.checkpoint.size != seq || cp.checkpoint.root != root {
                        return Ok(fail(Some(*size), "checkpoint root differs from the records"));
                    }
                    if cp.checkpoint.origin.tenant().as_str() != head.tenant
                        || cp.checkpoint.origin.ledger().as_str() != head.ledger
                    {
                        return Ok(fail(Some(*size), "checkpoint origin is another ledger"));
                    }
                    if cp.note.verify(&keys).is_err() {
                        return Ok(fail(Some(*size), "checkpoint signature does not verify"));
                    }
                }
                Ok(None)
            };
            let mut failure = None;
            let values =
                stored_values(&records, head.id, tail, 0, head.next_seq).map_err(|e| self.storage(e))?;
            for entry in values {
                let (key, value) = entry.map_err(|e| self.storage(e))?;
                failure = visit(key, value.bytes())?;
                if failure.is_some() {
                    break;
                }
            }
            if failure.is_some() {
                report.failure = failure;
                return Ok(report);
            }
            if let Some((size, _)) = next_cp.next() {
                report.failure = fail(Some(*size), "checkpoint beyond the records");
                return Ok(report);
            }
            if seq != head.next_seq {
                report.failure = fail(Some(seq), "ledger head size differs from the records");
                return Ok(report);
            }
            let head_peaks: Vec<Hash32> = head.peaks.iter().map(|p| Hash32::from_bytes(*p)).collect();
            if prev.as_bytes() != &head.head_hash || head_peaks != peaks {
                report.failure = fail(None, "ledger head differs from the records");
                return Ok(report);
            }
        }
        let outbox = crate::webhooks::outbox_failure(&snap.txn).map_err(|e| self.storage(e))?;
        report.failure = outbox.map(|(id, what)| CheckFailure {
            tenant: String::new(),
            ledger: "webhook_outbox".into(),
            seq: id,
            what: what.to_owned(),
        });
        Ok(report)
    }
}

/// Opens the store in `data_dir` without migrating and checks it fully.
pub fn check(data_dir: &Path, trusted: &[TrustedKey]) -> Result<CheckReport, MaintenanceError> {
    let store =
        Store::open(data_dir, OpenOptions { apply_pending_migrations: false, ..OpenOptions::default() })?;
    let report = store.check(trusted)?;
    drop(store);
    Ok(report)
}

/// Copies a backup into `data_dir`, which must be empty or absent; never
/// writes over live data. Run [`check`] on the result before serving it.
pub fn restore(from: &Path, data_dir: &Path) -> Result<(), MaintenanceError> {
    let src_db = from.join(DB_FILE_NAME);
    if !src_db.is_file() {
        return Err(MaintenanceError::Io {
            path: src_db,
            error: std::io::Error::new(std::io::ErrorKind::NotFound, "no database in backup"),
        });
    }
    // A backup's mark, readable, before anything is written.
    let src_mark = from.join(hwm::FILE_NAME);
    let mark = match hwm::read(&src_mark).map_err(io(&src_mark))? {
        Some(None) => {
            return Err(MaintenanceError::Open(OpenError::HwmUnreadable {
                path: src_mark,
                detail: "neither slot is valid".into(),
            }));
        }
        other => other.flatten(),
    };
    empty_dir(data_dir)?;
    for name in [DB_FILE_NAME, hwm::LOG_FILE_NAME] {
        let (src, dst): (PathBuf, PathBuf) = (from.join(name), data_dir.join(name));
        if !src.exists() {
            continue;
        }
        std::fs::copy(&src, &dst).map_err(io(&dst))?;
        std::fs::File::open(&dst).and_then(|f| f.sync_all()).map_err(io(&dst))?;
    }
    // The copy's mark, no longer a backup's: this directory may be opened.
    if let Some(mark) = mark {
        let dst = data_dir.join(hwm::FILE_NAME);
        hwm::write_mark(&dst, Mark { generation: 0, from_backup: false, ..mark }).map_err(io(&dst))?;
    }
    hwm::sync_dir(data_dir).map_err(io(data_dir))?;
    Ok(())
}
