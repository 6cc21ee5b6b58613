//! The system event ledger: every denial, failure and admin action becomes a
//! record in an ordinary annal ledger (`annal-system/events`), so the same
//! export and `annal-verify` prove it was not edited. Recording never blocks a
//! request: events go through a bounded queue; when it is full they are
//! dropped and counted in /metrics. Nor can a flood grow the ledger without
//! bound: past a budget (`[events]`; admin actions are always recorded)
//! events are counted by code and recorded as one `events.suppressed`
//! summary per second instead of one record each.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use annal_chain::{LedgerName, TenantId};
use annal_store::{AppendRequest, Position, Store};
use tokio::sync::mpsc;

use crate::config::EventsConfig;
use crate::limits::{EVENT_BATCH_MAX, EVENT_QUEUE_DEPTH_MAX, EVENTS_SUMMARY_INTERVAL_MS};

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
    /// How many events over the budget were counted instead of recorded.
    Summary,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Denial => "denial",
            Kind::AppendOnlyViolation => "append_only_violation",
            Kind::Failure => "failure",
            Kind::Admin => "admin",
            Kind::Summary => "summary",
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

/// The code of the summary that stands for events over the budget.
pub const SUPPRESSED_CODE: &str = "events.suppressed";

/// The token bucket events are recorded one by one from, and what was
/// counted instead since the last summary.
#[derive(Debug)]
struct Budget {
    burst: f64,
    per_s: f64,
    tokens: f64,
    last: Instant,
    suppressed: BTreeMap<&'static str, u64>,
    /// When the first event of the pending summary was refused.
    since_ms: u64,
}

impl Budget {
    fn admit(&mut self, code: &'static str, time_ms: u64) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.last).as_secs_f64() * self.per_s;
        self.tokens = (self.tokens + refill).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return true;
        }
        if self.suppressed.is_empty() {
            self.since_ms = time_ms;
        }
        *self.suppressed.entry(code).or_default() += 1;
        false
    }
}

/// The event worker's handle on the budget: takes the pending summary.
#[derive(Clone, Debug)]
pub struct Summarizer(Arc<Mutex<Budget>>);

impl Summarizer {
    /// The summary of the events counted instead of recorded since the last
    /// one, if any: `detail` is `N since T: code=n, ...`.
    pub fn take(&self) -> Option<Event> {
        let mut b = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if b.suppressed.is_empty() {
            return None;
        }
        let counts = std::mem::take(&mut b.suppressed);
        let total: u64 = counts.values().sum();
        let by_code: Vec<String> = counts.iter().map(|(code, n)| format!("{code}={n}")).collect();
        let detail = format!("{total} since {}: {}", b.since_ms, by_code.join(", "));
        log::warn!("{total} system events over the budget were counted, not recorded one by one: {detail}");
        Some(Event {
            kind: Kind::Summary,
            code: SUPPRESSED_CODE,
            status: 0,
            request_id: uuid::Uuid::now_v7().to_string(),
            tenant: None,
            key_id: None,
            method: "-".to_owned(),
            route: "-".to_owned(),
            time_ms: crate::app::now_ms(),
            detail: Some(detail),
        })
    }
}

/// The sending side, shared by all handlers.
#[derive(Debug)]
pub struct Events {
    tx: mpsc::Sender<Event>,
    dropped: AtomicU64,
    suppressed: AtomicU64,
    recorded: Arc<AtomicU64>,
    budget: Arc<Mutex<Budget>>,
}

impl Events {
    /// Creates the queue; `run` must be spawned with the receiver and
    /// `summarizer()`.
    pub fn new(config: &EventsConfig) -> (Events, mpsc::Receiver<Event>) {
        let (tx, rx) = mpsc::channel(EVENT_QUEUE_DEPTH_MAX);
        let budget = Budget {
            burst: f64::from(config.burst),
            per_s: f64::from(config.per_s),
            tokens: f64::from(config.burst),
            last: Instant::now(),
            suppressed: BTreeMap::new(),
            since_ms: 0,
        };
        let events = Events {
            tx,
            dropped: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
            recorded: Arc::new(AtomicU64::new(0)),
            budget: Arc::new(Mutex::new(budget)),
        };
        (events, rx)
    }

    /// Queues an event; never waits. Past the budget (admin actions aside)
    /// it is only counted, for the next summary.
    pub fn record(&self, event: Event) {
        if event.kind != Kind::Admin
            && !self.budget.lock().unwrap_or_else(PoisonError::into_inner).admit(event.code, event.time_ms)
        {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.queue(event);
    }

    /// Queues an event outside the budget: for events whose rate is bounded
    /// at the source (a webhook delivery is given up at most once, after
    /// hours of retries), which a flood of denials must not turn into a count.
    pub fn record_unbudgeted(&self, event: Event) {
        self.queue(event);
    }

    fn queue(&self, event: Event) {
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

    pub fn suppressed(&self) -> u64 {
        self.suppressed.load(Ordering::Relaxed)
    }

    pub fn recorded(&self) -> u64 {
        self.recorded.load(Ordering::Relaxed)
    }

    pub fn recorded_counter(&self) -> Arc<AtomicU64> {
        self.recorded.clone()
    }

    pub fn summarizer(&self) -> Summarizer {
        Summarizer(self.budget.clone())
    }
}

/// Appends queued events in batches until `stop` flips; then appends what is
/// still queued and returns.
pub async fn run(
    store: Arc<Store>,
    mut rx: mpsc::Receiver<Event>,
    recorded: Arc<AtomicU64>,
    summarizer: Summarizer,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let tenant = system_tenant();
    let ledger = events_ledger();
    let mut batch = Vec::with_capacity(EVENT_BATCH_MAX + 1);
    let mut summary_tick = tokio::time::interval(Duration::from_millis(EVENTS_SUMMARY_INTERVAL_MS));
    summary_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let stopping = tokio::select! {
            n = rx.recv_many(&mut batch, EVENT_BATCH_MAX) => n == 0,
            _ = summary_tick.tick() => {
                batch.extend(summarizer.take());
                false
            }
            _ = stop.changed() => true,
        };
        if stopping {
            rx.close();
            while let Ok(event) = rx.try_recv() {
                batch.push(event);
            }
            batch.extend(summarizer.take());
            if batch.is_empty() {
                break;
            }
        }
        if batch.is_empty() {
            continue;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn denial() -> Event {
        Event {
            kind: Kind::Denial,
            code: "auth.invalid_key",
            status: 401,
            request_id: "r-1".to_owned(),
            tenant: None,
            key_id: None,
            method: "GET".to_owned(),
            route: "GET /v1/ledgers/{ledger}/records".to_owned(),
            time_ms: 0,
            detail: None,
        }
    }

    /// With nobody draining the queue (and a budget that admits everything),
    /// exactly the events past its depth are dropped, and each is counted.
    #[test]
    fn a_full_queue_drops_and_counts_what_does_not_fit() {
        let check = |sent: usize, queued: usize, dropped: u64| {
            let (events, rx) = Events::new(&EventsConfig { burst: 1_000_000, per_s: 1 });
            for _ in 0..sent {
                events.record(denial());
            }
            assert_eq!(
                (rx.len(), events.dropped(), events.suppressed()),
                (queued, dropped, 0),
                "sent {sent}"
            );
        };
        let depth = EVENT_QUEUE_DEPTH_MAX;
        check(1, 1, 0);
        check(depth, depth, 0);
        check(depth + 3, depth, 3);
    }
}
