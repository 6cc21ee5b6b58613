//! The redb tables and the ordered, code-defined migration steps.
//!
//! Keys are fixed-width integers or names; values are codec.rs structs.
//! A step's checksum is blake3 over its id, name and definition text, so
//! editing an applied step is detected at open.

use redb::{ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};

use crate::codec::{self, StoredDelivery, StoredMigration};

/// Store-wide counters: `records_total`, `next_ledger_id`.
pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
pub(crate) const MIGRATIONS: TableDefinition<u32, &[u8]> = TableDefinition::new("schema_migrations");
/// `"tenant/ledger"` → `StoredHead`.
pub(crate) const LEDGERS: TableDefinition<&str, &[u8]> = TableDefinition::new("ledgers");
/// Ledger id → `"tenant/ledger"`.
pub(crate) const LEDGER_NAMES: TableDefinition<u64, &str> = TableDefinition::new("ledger_names");
/// `(ledger id, seq)` → `StoredRecord`.
pub(crate) const RECORDS: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("records");
/// `(ledger id, seq of the last leaf, level)` → perfect subtree hash, levels
/// ≥ MERKLE_STORED_LEVEL_MIN (`tree::node_key`). Keyed in the order appends
/// complete the nodes, so each ledger's new nodes are one ascending run.
pub(crate) const NODES: TableDefinition<(u64, u64, u8), [u8; 32]> =
    TableDefinition::new("merkle_nodes_by_end");
/// The same nodes keyed `(ledger id, level, index)`: migrations 1 to 3 only;
/// migration 4 moves them into `NODES`.
const NODES_BY_LEVEL: TableDefinition<(u64, u8, u64), [u8; 32]> = TableDefinition::new("merkle_nodes");
/// `(ledger id, size)` → signed note text.
pub(crate) const CHECKPOINTS: TableDefinition<(u64, u64), &str> = TableDefinition::new("checkpoints");
/// `ledger id (BE) || key` → `StoredIdempotency`.
pub(crate) const IDEMPOTENCY: TableDefinition<&[u8], &[u8]> = TableDefinition::new("idempotency_keys");
/// Seq → `StoredIdentity`.
pub(crate) const IDENTITY: TableDefinition<u64, &[u8]> = TableDefinition::new("identity_log");
/// Tenant id → tenant row (daemon-defined bytes).
pub(crate) const TENANTS: TableDefinition<&str, &[u8]> = TableDefinition::new("tenants");
/// SHA-256 of an API key → key row (hashes only, never the secret).
pub(crate) const API_KEYS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("api_keys");
pub(crate) const WEBHOOKS: TableDefinition<&str, &[u8]> = TableDefinition::new("webhook_endpoints");
pub(crate) const OUTBOX: TableDefinition<u64, &[u8]> = TableDefinition::new("webhook_outbox");
/// `(next_attempt_ms, outbox id)` → nothing: exactly one entry per outbox
/// row, so the due deliveries and the earliest due time are a range read
/// instead of an outbox scan (migration 5).
pub(crate) const WEBHOOK_DUE: TableDefinition<(u64, u64), ()> = TableDefinition::new("webhook_outbox_due");
/// Log position → ledger id (LE) ‖ seq (LE) ‖ `StoredRecord`: records not yet
/// moved into `records` (tail.rs). Emptied by every flush.
pub(crate) const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("append_log");

pub(crate) const META_RECORDS_TOTAL: &str = "records_total";
pub(crate) const META_NEXT_LEDGER_ID: &str = "next_ledger_id";

/// One schema step.
#[derive(Debug)]
pub struct Migration {
    pub id: u32,
    pub name: &'static str,
    /// What the step does, in words and table shapes; part of the checksum.
    pub definition: &'static str,
    apply: fn(&WriteTransaction) -> Result<(), redb::Error>,
}

impl Migration {
    pub fn checksum(&self) -> [u8; 32] {
        let mut h = blake3::Hasher::new();
        h.update(b"annal.migration\0");
        h.update(&self.id.to_le_bytes());
        h.update(self.name.as_bytes());
        h.update(&[0]);
        h.update(self.definition.as_bytes());
        *h.finalize().as_bytes()
    }
}

fn initial(txn: &WriteTransaction) -> Result<(), redb::Error> {
    txn.open_table(META)?;
    txn.open_table(LEDGERS)?;
    txn.open_table(LEDGER_NAMES)?;
    txn.open_table(RECORDS)?;
    txn.open_table(NODES_BY_LEVEL)?;
    txn.open_table(CHECKPOINTS)?;
    txn.open_table(IDEMPOTENCY)?;
    txn.open_table(IDENTITY)?;
    let mut meta = txn.open_table(META)?;
    meta.insert(META_RECORDS_TOTAL, 0)?;
    meta.insert(META_NEXT_LEDGER_ID, 1)?;
    Ok(())
}

fn control_plane(txn: &WriteTransaction) -> Result<(), redb::Error> {
    txn.open_table(TENANTS)?;
    txn.open_table(API_KEYS)?;
    txn.open_table(WEBHOOKS)?;
    txn.open_table(OUTBOX)?;
    Ok(())
}

fn append_log(txn: &WriteTransaction) -> Result<(), redb::Error> {
    txn.open_table(LOG)?;
    Ok(())
}

/// Re-keys every stored node by the seq its subtree ends at, one row at a
/// time (memory stays flat however large the store), then drops the old
/// table. A row at a level that is never stored, or whose subtree would end
/// past the largest seq, refuses the migration.
fn nodes_by_end(txn: &WriteTransaction) -> Result<(), redb::Error> {
    {
        let old = txn.open_table(NODES_BY_LEVEL)?;
        let mut new = txn.open_table(NODES)?;
        for row in old.iter()? {
            let (key, hash) = row?;
            let (id, level, index) = key.value();
            let key = crate::tree::checked_node_key(id, level, index)
                .filter(|_| crate::tree::stored_level(u32::from(level)));
            let Some(key) = key else {
                return Err(redb::Error::Corrupted(format!(
                    "merkle node (ledger {id}, level {level}, index {index}) names no subtree"
                )));
            };
            if new.insert(key, hash.value())?.is_some() {
                return Err(redb::Error::Corrupted(format!(
                    "merkle node (ledger {id}, level {level}, index {index}) stored twice"
                )));
            }
        }
    }
    txn.delete_table(NODES_BY_LEVEL)?;
    Ok(())
}

/// Indexes every outbox row by its due time, one row at a time. A row that
/// does not decode, or an index that is not empty before, refuses the
/// migration.
fn outbox_due(txn: &WriteTransaction) -> Result<(), redb::Error> {
    let outbox = txn.open_table(OUTBOX)?;
    let mut due = txn.open_table(WEBHOOK_DUE)?;
    if due.first()?.is_some() {
        return Err(redb::Error::Corrupted("webhook_outbox_due is not empty before migration 5".into()));
    }
    for row in outbox.iter()? {
        let (id, value) = row?;
        let id = id.value();
        let Ok(delivery) = codec::decode::<StoredDelivery>(value.value()) else {
            return Err(redb::Error::Corrupted(format!("webhook outbox row {id} does not decode")));
        };
        // Ids are distinct, so each key is new.
        if due.insert((delivery.next_attempt_ms, id), ())?.is_some() {
            return Err(redb::Error::Corrupted(format!("webhook outbox row {id} indexed twice")));
        }
    }
    Ok(())
}

/// The migration steps, in order. Never edit an applied step: add one.
pub static MIGRATION_STEPS: &[Migration] = &[
    Migration {
        id: 1,
        name: "ledgers",
        definition: "meta:&str->u64{records_total,next_ledger_id}; ledgers:&str->StoredHead; \
            ledger_names:u64->&str; records:(u64,u64)->StoredRecord; \
            merkle_nodes:(u64,u8,u64)->[u8;32] levels>=4; checkpoints:(u64,u64)->&str; \
            idempotency_keys:&[u8]->StoredIdempotency; identity_log:u64->StoredIdentity",
        apply: initial,
    },
    Migration {
        id: 2,
        name: "control plane",
        definition: "tenants:&str->&[u8]; api_keys:&[u8;32 sha256]->&[u8]; \
            webhook_endpoints:&str->&[u8]; webhook_outbox:u64->&[u8]",
        apply: control_plane,
    },
    Migration {
        id: 3,
        name: "append log",
        definition: "append_log:u64->(ledger id u64 LE, seq u64 LE, StoredRecord); holds the records \
            of ledger tails not yet in records, emptied by every flush",
        apply: append_log,
    },
    Migration {
        id: 4,
        name: "merkle nodes by end",
        definition: "merkle_nodes_by_end:(ledger id u64, seq of the subtree's last leaf u64, level u8)->[u8;32] \
            levels>=4, filled from merkle_nodes:(u64,u8,u64), which is dropped",
        apply: nodes_by_end,
    },
    Migration {
        id: 5,
        name: "webhook outbox due index",
        definition: "webhook_outbox_due:(next_attempt_ms u64, outbox id u64)->() one entry per \
            webhook_outbox row, filled from webhook_outbox",
        apply: outbox_due,
    },
];

/// The schema head the code defines.
pub fn code_head() -> u32 {
    MIGRATION_STEPS.last().map_or(0, |m| m.id)
}

/// Where the database's schema stands relative to the code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MigrationStatus {
    /// Highest applied step (0: none).
    pub head: u32,
    pub code_head: u32,
    pub pending: Vec<u32>,
}

/// Applied steps, checked against the code.
pub(crate) fn status(db: &redb::Database) -> Result<MigrationStatus, crate::OpenError> {
    let db_err = |e: redb::Error| crate::OpenError::Database(e.to_string());
    let txn = db.begin_read().map_err(|e| db_err(e.into()))?;
    let mut applied = Vec::new();
    match txn.open_table(MIGRATIONS) {
        Ok(table) => {
            for entry in table.iter().map_err(|e| db_err(e.into()))? {
                let (id, value) = entry.map_err(|e| db_err(e.into()))?;
                let stored: StoredMigration = codec::decode(value.value()).map_err(|_| {
                    crate::OpenError::Database(format!("migration {} row does not decode", id.value()))
                })?;
                applied.push((id.value(), stored));
            }
        }
        Err(redb::TableError::TableDoesNotExist(_)) => {}
        Err(e) => return Err(db_err(e.into())),
    }
    for (i, (id, stored)) in applied.iter().enumerate() {
        let Some(step) = MIGRATION_STEPS.get(i).filter(|s| s.id == *id) else {
            return Err(crate::OpenError::UnknownMigration { id: *id });
        };
        if step.checksum() != stored.checksum {
            return Err(crate::OpenError::MigrationChecksum {
                id: *id,
                expected: hex(&step.checksum()),
                actual: hex(&stored.checksum),
            });
        }
    }
    let head = applied.last().map_or(0, |(id, _)| *id);
    let pending = MIGRATION_STEPS[applied.len()..].iter().map(|s| s.id).collect();
    Ok(MigrationStatus { head, code_head: code_head(), pending })
}

/// Applies every pending step in one durable transaction.
pub(crate) fn up(db: &redb::Database) -> Result<MigrationStatus, crate::OpenError> {
    let before = status(db)?;
    if before.pending.is_empty() {
        return Ok(before);
    }
    let db_err = |e: redb::Error| crate::OpenError::Database(e.to_string());
    let mut txn = db.begin_write().map_err(|e| db_err(e.into()))?;
    txn.set_durability(redb::Durability::Immediate).map_err(|e| crate::OpenError::Database(e.to_string()))?;
    for step in MIGRATION_STEPS.iter().filter(|s| before.pending.contains(&s.id)) {
        (step.apply)(&txn).map_err(db_err)?;
        let mut table = txn.open_table(MIGRATIONS).map_err(|e| db_err(e.into()))?;
        let row = codec::encode(&StoredMigration { name: step.name.to_owned(), checksum: step.checksum() });
        table.insert(step.id, row.as_slice()).map_err(|e| db_err(e.into()))?;
    }
    txn.commit().map_err(|e| db_err(e.into()))?;
    status(db)
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl crate::store::Store {
    /// Where the open database's schema stands (for startup logs and readiness).
    pub fn migration_status(&self) -> Result<MigrationStatus, crate::OpenError> {
        status(&self.shared.db)
    }
}
