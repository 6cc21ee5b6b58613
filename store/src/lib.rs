//! annal-store: append-only ledgers in redb (the single source of truth),
//! derived indexes in sled, group commit, migrations, backup/restore/check.
//!
//! Every hashed byte comes from `annal-chain`; storage values go through one
//! codec module. There is no call that updates or deletes a record,
//! checkpoint or identity entry. See docs/STORE.md for the table layout.

#![forbid(unsafe_code)]

mod codec;
mod committer;
mod error;
mod hwm;
mod index;
pub mod limits;
mod maintenance;
mod registry;
mod schema;
mod store;
mod tail;
mod ticket;
mod tree;
mod webhooks;

pub use error::{
    AppendRefusal, CheckpointRefusal, Corruption, ExportError, IdentityRefusal, IndexError, MaintenanceError,
    OpenError, ReadError, WriteError,
};
pub use index::{CatchUp, EventFields, EventLedger, Index};
pub use maintenance::{BackupProgress, BackupStats, CheckFailure, CheckReport, check, restore};
pub use registry::{ApiKey, RegistryRefusal, Tenant, TenantStatus};
pub use schema::{MIGRATION_STEPS, Migration, MigrationStatus, code_head};
pub use store::{
    AppendRequest, Appended, CheckpointRequest, CheckpointStored, DB_FILE_NAME, ExportStats, IdentityEntry,
    LedgerState, OpenOptions, Position, RecordEntry, Store, migrate_up, migration_status,
};
pub use ticket::Ticket;
pub use webhooks::{Delivery, Settlement, WebhookEndpoint, WebhookRefusal, WebhookSecret};
