//! The system event ledger: every denial, failure and admin action becomes a
//! record in an ordinary annal ledger (`annal-system/events`), so the same
//! export and `annal-verify` prove it was not edited. Recording never blocks a
//! request: events go through a bounded queue; when it is full they are
//! dropped and counted, and the count is visible in /metrics and /ready.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use annal_chain::{LedgerName, TenantId};
use annal_store::{AppendRequest, Position, Store};
use tokio::sync::mpsc;

use crate::limits::{EVENT_BATCH_MAX, EVENT_QUEUE_DEPTH_MAX};

/// The reserved tenant that owns the system event ledger.
pub const SYSTEM_TENANT: &str = "annal-system";
/// The system event ledger's name.
pub const EVENTS_LEDGER: &str = "events";

pub fn system_tenant() -> TenantId {
    TenantId::new(SYSTEM_TENANT).expect("valid reserved tenant id")
}

pub fn events_ledger() -> LedgerName {
    LedgerName::new(EVENTS_LEDGER).expect("valid ledger name")
}

/// What kind of event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A request refused for who made it: auth, suspension, rate limit.
    Denial,
    /// A write to history was attempted (PUT/PATCH/DELETE).
    AppendOnlyViolation,
    /// The server failed a request (5xx).
    Failure,
    /// An administrator changed something.
    Admin,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Denial => "denial",
            Kind::AppendOnlyViolation => "append_only_violation",
            Kind::Failure => "failure",
            Kind::Admin => "admin",
        }
    }
}

/// One system event.
#[derive(Clone, Debug)]
pub struct Event {
    pub kind: Kind,
    pub code: &'static str,
    pub status: u16,
    pub request_id: String,
    pub tenant: Option<String>,
    pub key_id: Option<String>,
    pub method: String,
    pub route: String,
    pub time_ms: u64,
    /// Free text for admin actions (e.g. which key was revoked); never a secret.
    pub detail: Option<String>,
}

impl Event {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "kind": self.kind.as_str(),
            "code": self.code,
            "status": self.status,
            "request_id": self.request_id,
            "tenant": self.tenant,
            "key_id": self.key_id,
            "method": self.method,
            "route": self.route,
            "time_ms": self.time_ms,
            "detail": self.detail,
        })
    }
}

/// The sending side, shared by all handlers.
#[derive(Debug)]
pub struct Events {
    tx: mpsc::Sender<Event>,
    dropped: AtomicU64,
    recorded: Arc<AtomicU64>,
}

impl Events {
    /// Creates the queue; `run` must be spawned with the receiver.
    pub fn new() -> (Events, mpsc::Receiver<Event>) {
        let (tx, rx) = mpsc::channel(EVENT_QUEUE_DEPTH_MAX);
        (Events { tx, dropped: AtomicU64::new(0), recorded: Arc::new(AtomicU64::new(0)) }, rx)
    }

    /// Queues an event; never waits.
    pub fn record(&self, event: Event) {
        log::info!(
            "event {} code={} status={} request_id={} tenant={} key_id={} {} {}",
            event.kind.as_str(),
            event.code,
            event.status,
            event.request_id,
            event.tenant.as_deref().unwrap_or("-"),
            event.key_id.as_deref().unwrap_or("-"),
            event.method,
            event.route
        );
        if self.tx.try_send(event).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    pub fn recorded(&self) -> u64 {
        self.recorded.load(Ordering::Relaxed)
    }

    pub fn recorded_counter(&self) -> Arc<AtomicU64> {
        self.recorded.clone()
    }
}

/// Appends queued events in batches until `stop` flips; then appends what is
/// still queued and returns.
pub async fn run(
    store: Arc<Store>,
    mut rx: mpsc::Receiver<Event>,
    recorded: Arc<AtomicU64>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let tenant = system_tenant();
    let ledger = events_ledger();
    let mut batch = Vec::with_capacity(EVENT_BATCH_MAX);
    loop {
        let stopping = tokio::select! {
            n = rx.recv_many(&mut batch, EVENT_BATCH_MAX) => n == 0,
            _ = stop.changed() => true,
        };
        if stopping {
            rx.close();
            while let Ok(event) = rx.try_recv() {
                batch.push(event);
            }
            if batch.is_empty() {
                break;
            }
        }
        let tickets: Vec<_> = batch
            .drain(..)
            .map(|event| {
                store.append(AppendRequest {
                    tenant: tenant.clone(),
                    ledger: ledger.clone(),
                    position: Position::Next,
                    timestamp_ms: event.time_ms,
                    content_type: "application/json".to_owned(),
                    payload: serde_json::to_vec(&event.to_json()).expect("json"),
                    parents: Vec::new(),
                    idempotency_key: None,
                })
            })
            .collect();
        for ticket in tickets {
            match ticket.await {
                Ok(Ok(_)) => {
                    recorded.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Err(refusal)) => log::error!("system event refused by the store: {refusal:?}"),
                Err(e) => log::error!("system event not recorded: {e:?}"),
            }
        }
        if stopping {
            break;
        }
    }
    log::info!("event worker stopped");
}
