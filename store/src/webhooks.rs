//! Webhooks: endpoints (the ledger each follows, its secret versions, its
//! delivery cursor) and the outbox of pending deliveries.
//!
//! Control-plane rows, as in registry.rs: every write is one durable redb
//! transaction, any storage error fails the store, and a refusal writes
//! nothing. The store never sees a secret: an endpoint holds secret versions
//! and their times, the daemon holds or derives the keys. A disabled
//! endpoint is kept for good and never changes again. Every endpoint row
//! counts its own outbox rows (`pending`), so each outbox write also writes
//! the endpoint row, in the same transaction. Every outbox row has exactly
//! one entry `(next_attempt_ms, id)` in the due index, written in the same
//! transaction as the row; reads check each entry against its row.

use annal_chain::{LedgerName, TenantId};
use redb::{Durability, ReadableTable, ReadableTableMetadata, Table};

use crate::codec::{self, StoredDelivery, StoredWebhook, StoredWebhookSecret};
use crate::error::{Corruption, ReadError, WriteError};
use crate::limits::{
    DELIVERY_ERROR_BYTES_MAX, DUE_DELIVERIES_MAX, OUTBOX_ROWS_MAX, PENDING_PER_ENDPOINT_MAX,
    WEBHOOK_ENDPOINTS_PER_TENANT_MAX, WEBHOOK_ID_BYTES_MAX, WEBHOOK_ROWS_MAX, WEBHOOK_ROWS_PER_TENANT_MAX,
    WEBHOOK_SECRET_VERSIONS_MAX, WEBHOOK_SECRETS_ACTIVE_MAX, WEBHOOK_URL_BYTES_MAX,
};
use crate::schema::{META, OUTBOX, TENANTS, WEBHOOK_DUE, WEBHOOKS};
use crate::store::Store;

/// `meta` key: the next outbox id. Ids are never reused, so a receiver that
/// deduplicates by delivery id never drops a new delivery. Absent in a
/// store that never enqueued (the outbox was empty until this API).
const META_NEXT_OUTBOX_ID: &str = "next_outbox_id";

/// An endpoint that receives the records of one ledger, in seq order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookEndpoint {
    /// Chosen by the daemon: 1 to `WEBHOOK_ID_BYTES_MAX` of `[A-Za-z0-9_-]`.
    pub id: String,
    pub tenant: TenantId,
    pub ledger: LedgerName,
    /// Stored as given (the daemon validates it), at most `WEBHOOK_URL_BYTES_MAX`.
    pub url: String,
    pub created_ms: u64,
    pub disabled_ms: Option<u64>,
    /// Ascending versions, the first being 1; at least one is not revoked.
    pub secrets: Vec<WebhookSecret>,
    /// Cursor: the next record seq of `ledger` to enqueue. A create keeps the
    /// caller's value: 0 delivers the ledger from its start, its current size
    /// only what comes next.
    pub next_seq: u64,
}

/// One secret version; the key material lives with the daemon.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookSecret {
    pub version: u32,
    pub created_ms: u64,
    /// Set once, for good.
    pub revoked_ms: Option<u64>,
}

/// One pending delivery in the outbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// Outbox key; never reused.
    pub id: u64,
    pub endpoint: String,
    pub tenant: TenantId,
    pub ledger: LedgerName,
    pub seq: u64,
    /// Failed attempts so far.
    pub attempts: u32,
    pub next_attempt_ms: u64,
    pub created_ms: u64,
    /// The last failure, at most `DELIVERY_ERROR_BYTES_MAX` bytes.
    pub last_error: Option<String>,
}

/// Why a webhook write was refused (nothing was written).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WebhookRefusal {
    NoTenant,
    EndpointExists,
    /// A per-tenant or store-wide endpoint cap (limits.rs).
    TooManyEndpoints,
    NoEndpoint,
    /// The endpoint is disabled (or a create asked for a disabled one).
    Disabled,
    NoSecret,
    AlreadyRevoked,
    LastActiveSecret,
    /// `WEBHOOK_SECRETS_ACTIVE_MAX` unrevoked, or `WEBHOOK_SECRET_VERSIONS_MAX` in all.
    TooManySecrets,
    NoDelivery,
    /// The endpoint id is empty, too long or has a character outside `[A-Za-z0-9_-]`.
    BadId,
    UrlTooLong,
}

/// Why a webhook write transaction stopped without committing.
enum Abort {
    /// redb failed: the store fails and stays failed until reopened.
    Storage(String),
    /// A stored row is not what this module writes; the store stays up.
    Corrupt(Corruption),
    /// This module was about to write a row it would refuse to read.
    Invariant(&'static str),
}

impl<E: Into<redb::Error>> From<E> for Abort {
    fn from(e: E) -> Abort {
        Abort::Storage(e.into().to_string())
    }
}

type Outcome<T> = Result<Result<T, WebhookRefusal>, Abort>;

fn valid_id(id: &str) -> bool {
    (1..=WEBHOOK_ID_BYTES_MAX).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn endpoint_corruption(id: &str, what: &'static str) -> Corruption {
    Corruption { tenant: "webhook_endpoints".into(), ledger: id.to_owned(), seq: None, what }
}

fn delivery_corruption(id: u64, what: &'static str) -> Corruption {
    Corruption { tenant: "webhook_outbox".into(), ledger: id.to_string(), seq: None, what }
}

/// The public form of a stored endpoint, checking every rule a write keeps.
fn endpoint_of(id: &str, s: &StoredWebhook) -> Result<WebhookEndpoint, &'static str> {
    if !valid_id(id) {
        return Err("webhook id invalid");
    }
    let tenant = TenantId::new(&s.tenant).map_err(|_| "webhook tenant invalid")?;
    let ledger = LedgerName::new(&s.ledger).map_err(|_| "webhook ledger name invalid")?;
    if s.url.len() > WEBHOOK_URL_BYTES_MAX {
        return Err("webhook url too long");
    }
    let versions = u32::try_from(s.secrets.len()).map_err(|_| "webhook has too many secrets")?;
    if versions == 0 || versions > WEBHOOK_SECRET_VERSIONS_MAX {
        return Err("webhook secret count out of bounds");
    }
    if !s.secrets.iter().zip(1u32..).all(|(secret, v)| secret.version == v) {
        return Err("webhook secret versions are not 1, 2, ...");
    }
    let active = s.secrets.iter().filter(|x| x.revoked_ms.is_none()).count();
    if active == 0 || active > WEBHOOK_SECRETS_ACTIVE_MAX {
        return Err("webhook active secret count out of bounds");
    }
    if s.pending > PENDING_PER_ENDPOINT_MAX || (s.disabled_ms.is_some() && s.pending != 0) {
        return Err("webhook pending count out of bounds");
    }
    Ok(WebhookEndpoint {
        id: id.to_owned(),
        tenant,
        ledger,
        url: s.url.clone(),
        created_ms: s.created_ms,
        disabled_ms: s.disabled_ms,
        secrets: s
            .secrets
            .iter()
            .map(|x| WebhookSecret { version: x.version, created_ms: x.created_ms, revoked_ms: x.revoked_ms })
            .collect(),
        next_seq: s.next_seq,
    })
}

fn read_endpoint(id: &str, bytes: &[u8]) -> Result<(StoredWebhook, WebhookEndpoint), Corruption> {
    let s: StoredWebhook =
        codec::decode(bytes).map_err(|_| endpoint_corruption(id, "webhook row does not decode"))?;
    let endpoint = endpoint_of(id, &s).map_err(|what| endpoint_corruption(id, what))?;
    Ok((s, endpoint))
}

fn delivery_of(id: u64, s: &StoredDelivery) -> Result<Delivery, &'static str> {
    if !valid_id(&s.endpoint) {
        return Err("delivery endpoint id invalid");
    }
    if s.last_error.as_ref().is_some_and(|e| e.len() > DELIVERY_ERROR_BYTES_MAX) {
        return Err("delivery error too long");
    }
    Ok(Delivery {
        id,
        endpoint: s.endpoint.clone(),
        tenant: TenantId::new(&s.tenant).map_err(|_| "delivery tenant invalid")?,
        ledger: LedgerName::new(&s.ledger).map_err(|_| "delivery ledger name invalid")?,
        seq: s.seq,
        attempts: s.attempts,
        next_attempt_ms: s.next_attempt_ms,
        created_ms: s.created_ms,
        last_error: s.last_error.clone(),
    })
}

fn read_delivery(id: u64, bytes: &[u8]) -> Result<(StoredDelivery, Delivery), Corruption> {
    let s: StoredDelivery =
        codec::decode(bytes).map_err(|_| delivery_corruption(id, "delivery row does not decode"))?;
    let delivery = delivery_of(id, &s).map_err(|what| delivery_corruption(id, what))?;
    Ok((s, delivery))
}

type Endpoints<'t> = Table<'t, &'static str, &'static [u8]>;
type Outbox<'t> = Table<'t, u64, &'static [u8]>;
type Due<'t> = Table<'t, (u64, u64), ()>;

fn get_endpoint(table: &Endpoints<'_>, id: &str) -> Result<Option<(StoredWebhook, WebhookEndpoint)>, Abort> {
    let Some(value) = table.get(id)? else { return Ok(None) };
    read_endpoint(id, value.value()).map(Some).map_err(Abort::Corrupt)
}

/// The endpoint `id` if it exists and is not disabled (the only kind any
/// write may change); otherwise the refusal.
fn live_endpoint(
    table: &Endpoints<'_>,
    id: &str,
) -> Result<Result<(StoredWebhook, WebhookEndpoint), WebhookRefusal>, Abort> {
    Ok(match get_endpoint(table, id)? {
        None => Err(WebhookRefusal::NoEndpoint),
        Some((row, _)) if row.disabled_ms.is_some() => Err(WebhookRefusal::Disabled),
        Some(found) => Ok(found),
    })
}

/// Writes an endpoint row after checking it reads back.
fn put_endpoint(table: &mut Endpoints<'_>, id: &str, s: &StoredWebhook) -> Result<WebhookEndpoint, Abort> {
    let endpoint = endpoint_of(id, s).map_err(Abort::Invariant)?;
    table.insert(id, codec::encode(s).as_slice())?;
    Ok(endpoint)
}

fn get_delivery(table: &Outbox<'_>, id: u64) -> Result<Option<(StoredDelivery, Delivery)>, Abort> {
    let Some(value) = table.get(id)? else { return Ok(None) };
    read_delivery(id, value.value()).map(Some).map_err(Abort::Corrupt)
}

fn put_delivery(table: &mut Outbox<'_>, id: u64, s: &StoredDelivery) -> Result<Delivery, Abort> {
    let delivery = delivery_of(id, s).map_err(Abort::Invariant)?;
    table.insert(id, codec::encode(s).as_slice())?;
    Ok(delivery)
}

/// Adds a delivery's due index entry; one already there is an entry of no
/// row (ids are never reused), so the index is corrupt.
fn index_due(due: &mut Due<'_>, next_attempt_ms: u64, id: u64) -> Result<(), Abort> {
    if due.insert((next_attempt_ms, id), ())?.is_some() {
        return Err(Abort::Corrupt(delivery_corruption(id, "due index entry exists before its delivery")));
    }
    Ok(())
}

/// Removes a delivery's due index entry, which must be there.
fn unindex_due(due: &mut Due<'_>, next_attempt_ms: u64, id: u64) -> Result<(), Abort> {
    if due.remove((next_attempt_ms, id))?.is_none() {
        return Err(Abort::Corrupt(delivery_corruption(id, "delivery has no due index entry")));
    }
    Ok(())
}

/// The delivery a due index entry names, which must exist and be due at
/// the entry's time: an index that disagrees with the outbox is never served.
fn indexed_delivery(
    outbox: &impl ReadableTable<u64, &'static [u8]>,
    next_attempt_ms: u64,
    id: u64,
) -> Result<Result<Delivery, Corruption>, redb::StorageError> {
    let Some(value) = outbox.get(id)? else {
        return Ok(Err(delivery_corruption(id, "due index entry has no delivery")));
    };
    Ok(read_delivery(id, value.value()).and_then(|(_, delivery)| {
        if delivery.next_attempt_ms == next_attempt_ms {
            Ok(delivery)
        } else {
            Err(delivery_corruption(id, "delivery due time differs from its index entry"))
        }
    }))
}

/// The first thing wrong in the webhook tables, if anything, as (delivery
/// id, what): every endpoint row decodes; every outbox row decodes, names
/// an endpoint that has it counted (`pending`) and a seq below that
/// endpoint's cursor, and has exactly its due index entry; and there is no
/// other entry. Streams the outbox (one row in memory, plus a count per
/// endpoint, at most `WEBHOOK_ROWS_MAX`) and compares the counts, so an
/// extra entry is found without a second scan.
pub(crate) fn outbox_failure(
    txn: &redb::ReadTransaction,
) -> Result<Option<(Option<u64>, &'static str)>, redb::Error> {
    let endpoints = txn.open_table(WEBHOOKS)?;
    let outbox = txn.open_table(OUTBOX)?;
    let due = txn.open_table(WEBHOOK_DUE)?;
    let mut counted = std::collections::HashMap::new();
    for entry in endpoints.iter()? {
        let (k, v) = entry?;
        match read_endpoint(k.value(), v.value()) {
            Ok((row, _)) => counted
                .insert(k.value().to_owned(), (row.tenant, row.ledger, row.pending, row.next_seq, 0u64)),
            Err(c) => return Ok(Some((None, c.what))),
        };
    }
    for entry in outbox.iter()? {
        let (k, v) = entry?;
        let id = k.value();
        let s = match read_delivery(id, v.value()) {
            Ok((s, _)) => s,
            Err(c) => return Ok(Some((Some(id), c.what))),
        };
        let Some((tenant, ledger, _, next_seq, seen)) = counted.get_mut(&s.endpoint) else {
            return Ok(Some((Some(id), "delivery of no endpoint")));
        };
        // A delivery carries its endpoint's tenant and ledger: one that did
        // not would send one tenant's record to another's receiver.
        if s.tenant != *tenant || s.ledger != *ledger {
            return Ok(Some((Some(id), "delivery names another tenant or ledger than its endpoint")));
        }
        if s.seq >= *next_seq {
            return Ok(Some((Some(id), "delivery past its endpoint's cursor")));
        }
        *seen += 1;
        if due.get((s.next_attempt_ms, id))?.is_none() {
            return Ok(Some((Some(id), "delivery has no due index entry")));
        }
    }
    if counted.values().any(|(_, _, pending, _, seen)| pending != seen) {
        return Ok(Some((None, "endpoint pending count differs from its deliveries")));
    }
    if due.len()? != outbox.len()? {
        return Ok(Some((None, "due index has entries of no delivery")));
    }
    Ok(None)
}

/// How many seqs an endpoint may enqueue now: what the ledger has past its
/// cursor, within its own pending cap, the outbox's and the caller's `max`.
fn enqueue_count(s: &StoredWebhook, ledger_size: u64, outbox_rows: u64, max: usize) -> u64 {
    let waiting = ledger_size.saturating_sub(s.next_seq);
    let room =
        PENDING_PER_ENDPOINT_MAX.saturating_sub(s.pending).min(OUTBOX_ROWS_MAX.saturating_sub(outbox_rows));
    waiting.min(room).min(u64::try_from(max).unwrap_or(u64::MAX))
}

/// `text` cut to at most `bytes_max` bytes at a char boundary.
fn truncated(text: &str, bytes_max: usize) -> String {
    let mut end = text.len().min(bytes_max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

fn write_error(e: ReadError) -> WriteError {
    match e {
        ReadError::Corrupt(c) => WriteError::Corrupt(c),
        other => WriteError::Failed(other.to_string()),
    }
}

impl Store {
    /// Runs one durable webhook write transaction: a refusal or a corrupt
    /// row aborts it; a storage error (or a row this module would not read
    /// back) fails the store, as for appends.
    fn webhook_write<T>(
        &self,
        body: impl FnOnce(&redb::WriteTransaction) -> Outcome<T>,
    ) -> Result<Result<T, WebhookRefusal>, WriteError> {
        if let Some(reason) = self.failure() {
            return Err(WriteError::Failed(reason));
        }
        let fail = |msg: String| {
            self.shared.fail(msg.clone());
            WriteError::Failed(msg)
        };
        let mut txn = self.shared.db.begin_write().map_err(|e| fail(redb::Error::from(e).to_string()))?;
        txn.set_durability(Durability::Immediate).map_err(|e| fail(redb::Error::from(e).to_string()))?;
        let outcome = body(&txn);
        let abort =
            |txn: redb::WriteTransaction| txn.abort().map_err(|e| fail(redb::Error::from(e).to_string()));
        match outcome {
            Ok(Ok(value)) => {
                txn.commit().map_err(|e| fail(redb::Error::from(e).to_string()))?;
                Ok(Ok(value))
            }
            Ok(Err(refusal)) => {
                abort(txn)?;
                Ok(Err(refusal))
            }
            Err(Abort::Corrupt(c)) => {
                abort(txn)?;
                Err(WriteError::Corrupt(c))
            }
            Err(Abort::Storage(msg)) => Err(fail(msg)),
            Err(Abort::Invariant(what)) => Err(fail(format!("invariant broken: {what}"))),
        }
    }

    /// Creates an endpoint with secret version 1 (made at `created_ms`),
    /// ignoring the given `secrets`; `next_seq` is kept as given. The tenant
    /// must exist; `disabled_ms` must be `None` (else `Disabled`). Caps:
    /// `WEBHOOK_ENDPOINTS_PER_TENANT_MAX` active endpoints and
    /// `WEBHOOK_ROWS_PER_TENANT_MAX` rows per tenant, `WEBHOOK_ROWS_MAX` in all.
    pub fn create_webhook(
        &self,
        endpoint: &WebhookEndpoint,
    ) -> Result<Result<WebhookEndpoint, WebhookRefusal>, WriteError> {
        let id = endpoint.id.as_str();
        if !valid_id(id) {
            return Ok(Err(WebhookRefusal::BadId));
        }
        if endpoint.url.len() > WEBHOOK_URL_BYTES_MAX {
            return Ok(Err(WebhookRefusal::UrlTooLong));
        }
        if endpoint.disabled_ms.is_some() {
            return Ok(Err(WebhookRefusal::Disabled));
        }
        let tenant = endpoint.tenant.as_str();
        self.webhook_write(|txn| {
            if txn.open_table(TENANTS)?.get(tenant)?.is_none() {
                return Ok(Err(WebhookRefusal::NoTenant));
            }
            let mut table = txn.open_table(WEBHOOKS)?;
            if table.get(id)?.is_some() {
                return Ok(Err(WebhookRefusal::EndpointExists));
            }
            if table.len()? >= WEBHOOK_ROWS_MAX {
                return Ok(Err(WebhookRefusal::TooManyEndpoints));
            }
            let (mut rows, mut active) = (0, 0);
            for entry in table.iter()? {
                let (k, v) = entry?;
                let (s, _) = read_endpoint(k.value(), v.value()).map_err(Abort::Corrupt)?;
                if s.tenant == tenant {
                    rows += 1;
                    active += usize::from(s.disabled_ms.is_none());
                }
            }
            if rows >= WEBHOOK_ROWS_PER_TENANT_MAX || active >= WEBHOOK_ENDPOINTS_PER_TENANT_MAX {
                return Ok(Err(WebhookRefusal::TooManyEndpoints));
            }
            let row = StoredWebhook {
                tenant: tenant.to_owned(),
                ledger: endpoint.ledger.as_str().to_owned(),
                url: endpoint.url.clone(),
                created_ms: endpoint.created_ms,
                disabled_ms: None,
                secrets: vec![StoredWebhookSecret {
                    version: 1,
                    created_ms: endpoint.created_ms,
                    revoked_ms: None,
                }],
                next_seq: endpoint.next_seq,
                pending: 0,
            };
            put_endpoint(&mut table, id, &row).map(Ok)
        })
    }

    /// One endpoint, `None` if there is none with this id.
    pub fn webhook(&self, id: &str) -> Result<Option<WebhookEndpoint>, ReadError> {
        let snap = self.snapshot()?;
        let table = snap.txn.open_table(WEBHOOKS).map_err(|e| self.storage(e))?;
        let row = table.get(id).map_err(|e| self.storage(e))?;
        row.map(|v| read_endpoint(id, v.value()).map(|(_, e)| e).map_err(ReadError::Corrupt)).transpose()
    }

    /// One tenant's endpoints, or every endpoint (`None`), in id order,
    /// disabled ones included; at most `WEBHOOK_ROWS_MAX`.
    pub fn webhooks(&self, tenant: Option<&TenantId>) -> Result<Vec<WebhookEndpoint>, ReadError> {
        let snap = self.snapshot()?;
        let table = snap.txn.open_table(WEBHOOKS).map_err(|e| self.storage(e))?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(|e| self.storage(e))? {
            let (k, v) = entry.map_err(|e| self.storage(e))?;
            let (_, endpoint) = read_endpoint(k.value(), v.value()).map_err(ReadError::Corrupt)?;
            if tenant.is_none_or(|t| *t == endpoint.tenant) {
                out.push(endpoint);
            }
        }
        Ok(out)
    }

    /// Adds the next secret version, made at `now_ms`; the older ones stay
    /// valid until revoked, so a receiver can switch over. Refused on a
    /// disabled endpoint, and past `WEBHOOK_SECRETS_ACTIVE_MAX` unrevoked or
    /// `WEBHOOK_SECRET_VERSIONS_MAX` versions (`TooManySecrets`).
    pub fn add_webhook_secret(
        &self,
        id: &str,
        now_ms: u64,
    ) -> Result<Result<WebhookEndpoint, WebhookRefusal>, WriteError> {
        self.webhook_write(|txn| {
            let mut table = txn.open_table(WEBHOOKS)?;
            let (mut row, _) = match live_endpoint(&table, id)? {
                Ok(found) => found,
                Err(refusal) => return Ok(Err(refusal)),
            };
            let active = row.secrets.iter().filter(|s| s.revoked_ms.is_none()).count();
            let versions = u32::try_from(row.secrets.len()).unwrap_or(u32::MAX);
            if active >= WEBHOOK_SECRETS_ACTIVE_MAX || versions >= WEBHOOK_SECRET_VERSIONS_MAX {
                return Ok(Err(WebhookRefusal::TooManySecrets));
            }
            row.secrets.push(StoredWebhookSecret {
                version: versions + 1,
                created_ms: now_ms,
                revoked_ms: None,
            });
            put_endpoint(&mut table, id, &row).map(Ok)
        })
    }

    /// Revokes one secret version, for good. Refused for an unknown version
    /// (`NoSecret`), a revoked one (`AlreadyRevoked`), the last unrevoked one
    /// (`LastActiveSecret`: an endpoint always has a key to sign with), and
    /// on a disabled endpoint (it never changes again).
    pub fn revoke_webhook_secret(
        &self,
        id: &str,
        version: u32,
        now_ms: u64,
    ) -> Result<Result<WebhookEndpoint, WebhookRefusal>, WriteError> {
        self.webhook_write(|txn| {
            let mut table = txn.open_table(WEBHOOKS)?;
            let (mut row, _) = match live_endpoint(&table, id)? {
                Ok(found) => found,
                Err(refusal) => return Ok(Err(refusal)),
            };
            let active = row.secrets.iter().filter(|s| s.revoked_ms.is_none()).count();
            let Some(secret) = row.secrets.iter_mut().find(|s| s.version == version) else {
                return Ok(Err(WebhookRefusal::NoSecret));
            };
            if secret.revoked_ms.is_some() {
                return Ok(Err(WebhookRefusal::AlreadyRevoked));
            }
            if active <= 1 {
                return Ok(Err(WebhookRefusal::LastActiveSecret));
            }
            secret.revoked_ms = Some(now_ms);
            put_endpoint(&mut table, id, &row).map(Ok)
        })
    }

    /// Disables an endpoint for good and drops its pending deliveries and
    /// their due index entries, in one transaction (a scan of the outbox, at
    /// most `OUTBOX_ROWS_MAX`: disabling is rare).
    /// An endpoint already disabled is `Disabled`.
    pub fn disable_webhook(
        &self,
        id: &str,
        now_ms: u64,
    ) -> Result<Result<WebhookEndpoint, WebhookRefusal>, WriteError> {
        self.webhook_write(|txn| {
            let mut table = txn.open_table(WEBHOOKS)?;
            let (mut row, _) = match live_endpoint(&table, id)? {
                Ok(found) => found,
                Err(refusal) => return Ok(Err(refusal)),
            };
            let mut outbox = txn.open_table(OUTBOX)?;
            let mut dropped = Vec::new();
            for entry in outbox.iter()? {
                let (k, v) = entry?;
                let (s, _) = read_delivery(k.value(), v.value()).map_err(Abort::Corrupt)?;
                if s.endpoint == id {
                    dropped.push((k.value(), s.next_attempt_ms));
                }
            }
            if dropped.len() as u64 != row.pending {
                return Err(Abort::Corrupt(endpoint_corruption(
                    id,
                    "webhook pending count differs from the outbox",
                )));
            }
            let mut due = txn.open_table(WEBHOOK_DUE)?;
            for (key, next_attempt_ms) in dropped {
                outbox.remove(key)?;
                unindex_due(&mut due, next_attempt_ms, key)?;
            }
            row.disabled_ms = Some(now_ms);
            row.pending = 0;
            put_endpoint(&mut table, id, &row).map(Ok)
        })
    }

    /// Enqueues deliveries for the endpoint's next seqs, `next_seq` up to
    /// the ledger's size, at most `max` and within the pending caps
    /// (`PENDING_PER_ENDPOINT_MAX`, `OUTBOX_ROWS_MAX`), and advances the
    /// cursor past them, in one transaction. Returns how many it enqueued:
    /// 0 when the ledger does not exist yet or nothing fits. New outbox ids
    /// count up from the highest ever given; each delivery is due at `now_ms`.
    ///
    /// The size is read as `ledger_state` reads it (records still in the
    /// append log count), from a snapshot taken first. Sizes only grow, so
    /// a size that is stale by the write only enqueues less; when nothing
    /// can be enqueued the call writes nothing.
    pub fn enqueue_deliveries(
        &self,
        id: &str,
        max: usize,
        now_ms: u64,
    ) -> Result<Result<u64, WebhookRefusal>, WriteError> {
        let size = {
            let snap = self.snapshot().map_err(write_error)?;
            let storage = |e: redb::Error| write_error(self.storage(e));
            let table = snap.txn.open_table(WEBHOOKS).map_err(|e| storage(e.into()))?;
            let found = table.get(id).map_err(|e| storage(e.into()))?;
            let Some(value) = found else { return Ok(Err(WebhookRefusal::NoEndpoint)) };
            let (row, endpoint) = read_endpoint(id, value.value()).map_err(WriteError::Corrupt)?;
            if row.disabled_ms.is_some() {
                return Ok(Err(WebhookRefusal::Disabled));
            }
            let outbox_rows = snap.txn.open_table(OUTBOX).and_then(|t| Ok(t.len()?));
            let outbox_rows = outbox_rows.map_err(|e| storage(e.into()))?;
            let head = snap.head(&endpoint.tenant, &endpoint.ledger).map_err(write_error)?;
            let size = head.map_or(0, |h| h.next_seq);
            if enqueue_count(&row, size, outbox_rows, max) == 0 {
                return Ok(Ok(0));
            }
            size
        };
        self.webhook_write(|txn| {
            let mut table = txn.open_table(WEBHOOKS)?;
            let (mut row, endpoint) = match live_endpoint(&table, id)? {
                Ok(found) => found,
                Err(refusal) => return Ok(Err(refusal)),
            };
            let mut outbox = txn.open_table(OUTBOX)?;
            let count = enqueue_count(&row, size, outbox.len()?, max);
            if count == 0 {
                return Ok(Ok(0));
            }
            let mut meta = txn.open_table(META)?;
            let counter = meta.get(META_NEXT_OUTBOX_ID)?.map_or(1, |v| v.value());
            let after_last = match outbox.last()? {
                Some((k, _)) => k.value().checked_add(1).ok_or(Abort::Invariant("outbox ids exhausted"))?,
                None => 1,
            };
            let first = counter.max(after_last);
            let end = first.checked_add(count).ok_or(Abort::Invariant("outbox ids exhausted"))?;
            let mut due = txn.open_table(WEBHOOK_DUE)?;
            for (key, seq) in (first..end).zip(row.next_seq..) {
                let delivery = StoredDelivery {
                    endpoint: id.to_owned(),
                    tenant: endpoint.tenant.as_str().to_owned(),
                    ledger: endpoint.ledger.as_str().to_owned(),
                    seq,
                    attempts: 0,
                    next_attempt_ms: now_ms,
                    created_ms: now_ms,
                    last_error: None,
                };
                put_delivery(&mut outbox, key, &delivery)?;
                index_due(&mut due, now_ms, key)?;
            }
            meta.insert(META_NEXT_OUTBOX_ID, end)?;
            row.next_seq += count;
            row.pending += count;
            put_endpoint(&mut table, id, &row)?;
            Ok(Ok(count))
        })
    }

    /// Deliveries due at `now_ms` (`next_attempt_ms <= now_ms`), earliest
    /// due first (then lowest id), at most `max` and `DUE_DELIVERIES_MAX`.
    /// A range read of the due index: O(log n + returned rows). An index
    /// entry that names no row, or a row due at another time, is `Corrupt`.
    pub fn due_deliveries(&self, now_ms: u64, max: usize) -> Result<Vec<Delivery>, ReadError> {
        let max = max.min(DUE_DELIVERIES_MAX);
        let snap = self.snapshot()?;
        let due = snap.txn.open_table(WEBHOOK_DUE).map_err(|e| self.storage(e))?;
        let outbox = snap.txn.open_table(OUTBOX).map_err(|e| self.storage(e))?;
        let mut out = Vec::new();
        for entry in due.range((0, 0)..=(now_ms, u64::MAX)).map_err(|e| self.storage(e))? {
            if out.len() >= max {
                break;
            }
            let (k, _) = entry.map_err(|e| self.storage(e))?;
            let (next_attempt_ms, id) = k.value();
            out.push(self.indexed(&outbox, next_attempt_ms, id)?);
        }
        Ok(out)
    }

    /// The earliest `next_attempt_ms` in the outbox (how long the worker may
    /// sleep), `None` when it is empty: the first due index entry, checked
    /// against its row.
    pub fn next_delivery_due(&self) -> Result<Option<u64>, ReadError> {
        let snap = self.snapshot()?;
        let due = snap.txn.open_table(WEBHOOK_DUE).map_err(|e| self.storage(e))?;
        let Some((k, _)) = due.first().map_err(|e| self.storage(e))? else { return Ok(None) };
        let (next_attempt_ms, id) = k.value();
        let outbox = snap.txn.open_table(OUTBOX).map_err(|e| self.storage(e))?;
        self.indexed(&outbox, next_attempt_ms, id)?;
        Ok(Some(next_attempt_ms))
    }

    /// [`indexed_delivery`] for a read: a storage error fails the store.
    fn indexed(
        &self,
        outbox: &impl ReadableTable<u64, &'static [u8]>,
        next_attempt_ms: u64,
        id: u64,
    ) -> Result<Delivery, ReadError> {
        indexed_delivery(outbox, next_attempt_ms, id)
            .map_err(|e| self.storage(e))?
            .map_err(ReadError::Corrupt)
    }

    /// How many deliveries of an endpoint are pending (0 for no endpoint).
    pub fn pending_deliveries(&self, endpoint: &str) -> Result<u64, ReadError> {
        let snap = self.snapshot()?;
        let table = snap.txn.open_table(WEBHOOKS).map_err(|e| self.storage(e))?;
        let row = table.get(endpoint).map_err(|e| self.storage(e))?;
        let row = row.map(|v| read_endpoint(endpoint, v.value())).transpose().map_err(ReadError::Corrupt)?;
        Ok(row.map_or(0, |(s, _)| s.pending))
    }

    /// A delivery succeeded: it leaves the outbox.
    pub fn complete_delivery(&self, id: u64) -> Result<Result<(), WebhookRefusal>, WriteError> {
        self.webhook_write(|txn| Ok(settle(txn, id)?.map(|_| ())))
    }

    /// A delivery failed and will be retried at `next_attempt_ms`: one more
    /// attempt counted, `error` kept (cut to `DELIVERY_ERROR_BYTES_MAX`),
    /// its due index entry moved.
    pub fn reschedule_delivery(
        &self,
        id: u64,
        next_attempt_ms: u64,
        error: &str,
    ) -> Result<Result<Delivery, WebhookRefusal>, WriteError> {
        self.webhook_write(|txn| reschedule(txn, id, next_attempt_ms, error, true))
    }

    /// A delivery failed for good (the worker gave up): it leaves the
    /// outbox. Returns it as it was.
    pub fn abandon_delivery(&self, id: u64) -> Result<Result<Delivery, WebhookRefusal>, WriteError> {
        self.webhook_write(|txn| settle(txn, id))
    }

    /// Records many attempts' outcomes in one durable transaction (one sync
    /// for all of them, where one call each costs a sync each): each item as
    /// `complete_delivery`, `reschedule_delivery` or `abandon_delivery`
    /// would. The results come in the batch's order: the delivery as it was
    /// (delivered, given up) or as rescheduled, or `NoDelivery` for a row
    /// already gone (its endpoint was disabled meanwhile), which changes
    /// nothing. A corrupt row aborts the whole batch.
    pub fn settle_deliveries(
        &self,
        batch: &[(u64, Settlement<'_>)],
    ) -> Result<Vec<Result<Delivery, WebhookRefusal>>, WriteError> {
        let settled = self.webhook_write(|txn| {
            let mut out = Vec::with_capacity(batch.len());
            for (id, how) in batch {
                out.push(match how {
                    Settlement::Delivered | Settlement::GiveUp => settle(txn, *id)?,
                    Settlement::Retry { next_attempt_ms, error } => {
                        reschedule(txn, *id, *next_attempt_ms, error, true)?
                    }
                    Settlement::Postpone { next_attempt_ms, reason } => {
                        reschedule(txn, *id, *next_attempt_ms, reason, false)?
                    }
                });
            }
            Ok(Ok(out))
        })?;
        Ok(settled.unwrap_or_else(|refusal| vec![Err(refusal); batch.len()]))
    }
}

/// How one delivery attempt ended, for [`Store::settle_deliveries`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settlement<'a> {
    /// The receiver took it: it leaves the outbox.
    Delivered,
    /// Try again at `next_attempt_ms`; `error` says why this one failed.
    Retry { next_attempt_ms: u64, error: &'a str },
    /// Not tried (e.g. its tenant is suspended): look again at
    /// `next_attempt_ms`, no attempt counted.
    Postpone { next_attempt_ms: u64, reason: &'a str },
    /// Given up: it leaves the outbox.
    GiveUp,
}

/// `id` due again at `next_attempt_ms`, with one more failed attempt
/// counted when `counted`.
fn reschedule(
    txn: &redb::WriteTransaction,
    id: u64,
    next_attempt_ms: u64,
    error: &str,
    counted: bool,
) -> Outcome<Delivery> {
    let mut outbox = txn.open_table(OUTBOX)?;
    let Some((mut row, _)) = get_delivery(&outbox, id)? else {
        return Ok(Err(WebhookRefusal::NoDelivery));
    };
    let mut due = txn.open_table(WEBHOOK_DUE)?;
    unindex_due(&mut due, row.next_attempt_ms, id)?;
    index_due(&mut due, next_attempt_ms, id)?;
    if counted {
        row.attempts = row.attempts.saturating_add(1);
    }
    row.next_attempt_ms = next_attempt_ms;
    row.last_error = Some(truncated(error, DELIVERY_ERROR_BYTES_MAX));
    put_delivery(&mut outbox, id, &row).map(Ok)
}

/// Takes a delivery out of the outbox, the due index and its endpoint's count.
fn settle(txn: &redb::WriteTransaction, id: u64) -> Outcome<Delivery> {
    let mut outbox = txn.open_table(OUTBOX)?;
    let Some((row, delivery)) = get_delivery(&outbox, id)? else {
        return Ok(Err(WebhookRefusal::NoDelivery));
    };
    outbox.remove(id)?;
    unindex_due(&mut txn.open_table(WEBHOOK_DUE)?, row.next_attempt_ms, id)?;
    let mut table = txn.open_table(WEBHOOKS)?;
    let owner = get_endpoint(&table, &row.endpoint)?;
    let Some((mut endpoint, _)) = owner.filter(|(e, _)| e.disabled_ms.is_none() && e.pending > 0) else {
        return Err(Abort::Corrupt(delivery_corruption(id, "delivery of no active endpoint that counts it")));
    };
    endpoint.pending -= 1;
    put_endpoint(&mut table, &row.endpoint, &endpoint)?;
    Ok(Ok(delivery))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_truncation() {
        for (id, ok) in [("wh_0190-a", true), ("", false), ("a b", false), ("é", false), ("a/b", false)] {
            assert_eq!(valid_id(id), ok, "{id:?}");
        }
        assert!(valid_id(&"a".repeat(WEBHOOK_ID_BYTES_MAX)));
        assert!(!valid_id(&"a".repeat(WEBHOOK_ID_BYTES_MAX + 1)));
        assert_eq!(truncated("abc", 2), "ab");
        assert_eq!(truncated("aé", 2), "a");
        assert_eq!(truncated("aé", 3), "aé");
    }
}
