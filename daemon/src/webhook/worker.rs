//! The delivery worker. Each pass moves records appended to followed ledgers
//! into the outbox (redb: durable, so a crash loses no delivery), then sends
//! what is due, at most `webhooks.concurrency` at once. A delivery leaves the
//! outbox when a receiver answers 2xx; otherwise it is retried with a
//! doubling wait until `webhooks.attempts_max`, then given up and recorded
//! as a `webhook.delivery_failed` system event. Delivery is at least once:
//! the `webhook-id` of a record's delivery is the same on every attempt, so
//! receivers can drop repeats.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use annal_chain::Seq;
use annal_store::{Delivery, Settlement, Store, WebhookEndpoint};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::{Webhooks, client, sign, target};
use crate::app::{App, now_ms};
use crate::events::{Event, Kind};
use crate::limits::{
    WEBHOOK_DRAIN_MS, WEBHOOK_ENQUEUE_PER_PASS_MAX, WEBHOOK_FILL_GAP_MS, WEBHOOK_INTERVAL_MS,
    WEBHOOK_RESPONSE_BYTES_MAX, WEBHOOK_SETTLE_GAP_MS,
};

/// How soon a suspended tenant's delivery is looked at again (at most; the
/// first retry's wait when that is shorter).
const HELD_RECHECK_MS: u64 = 60_000;

/// The system event code of a delivery given up.
pub const DELIVERY_FAILED_CODE: &str = "webhook.delivery_failed";

/// Delivery attempts by how they ended, for metrics.
#[derive(Debug)]
pub struct Counts {
    pub delivered: AtomicU64,
    pub retried: AtomicU64,
    pub abandoned: AtomicU64,
    /// Not tried because the tenant is suspended.
    pub held: AtomicU64,
}

pub static COUNTS: Counts = Counts {
    delivered: AtomicU64::new(0),
    retried: AtomicU64::new(0),
    abandoned: AtomicU64::new(0),
    held: AtomicU64::new(0),
};

/// The `webhook-id` of one record's delivery to one endpoint: stable across
/// attempts.
pub fn message_id(endpoint: &str, seq: u64) -> String {
    format!("msg_{endpoint}_{seq}")
}

/// The wait before retry number `attempts` (1 after the first failure):
/// `base · 2^(attempts-1)`, at most `max`.
pub fn backoff_ms(base_ms: u64, max_ms: u64, attempts: u32) -> u64 {
    let doublings = attempts.saturating_sub(1).min(40);
    base_ms.saturating_mul(1u64 << doublings).min(max_ms)
}

/// Runs until `stop` flips or shutdown starts; attempts in flight then get
/// `WEBHOOK_DRAIN_MS` to finish before it returns.
pub async fn run(app: Arc<App>, hooks: Arc<Webhooks>, mut stop: watch::Receiver<bool>) {
    let concurrency = hooks.settings.concurrency;
    let mut in_flight: JoinSet<(Delivery, Attempt)> = JoinSet::new();
    // Which delivery each attempt task carries, so one that dies is let go.
    let mut tasks: HashMap<tokio::task::Id, u64> = HashMap::new();
    // Ids in flight, finished but not yet settled, or quarantined (a corrupt
    // row): their rows are still due in the outbox and must not be taken.
    let mut sending: HashSet<u64> = HashSet::new();
    // Finished attempts waiting for the settle in progress, which runs
    // beside new attempts (its sync overlaps their HTTP).
    let mut finished: Vec<(Delivery, Attempt)> = Vec::new();
    let mut settling: Option<(tokio::task::JoinHandle<Vec<u64>>, Vec<u64>)> = None;
    let interval = Duration::from_millis(WEBHOOK_INTERVAL_MS);
    let mut filled_at = None;
    let mut last_fill: Option<Instant> = None;
    let settle_gap = Duration::from_millis(WEBHOOK_SETTLE_GAP_MS);
    let mut last_settle = Instant::now();
    loop {
        // Draining starts at SIGTERM: no new attempt from then on.
        if *stop.borrow() || app.state.is_draining() {
            break;
        }
        // Move new records into the outbox when anything was committed since
        // the last pass that left nothing behind, at most once a fill gap (a
        // pass reads every endpoint; not every finished delivery may repeat
        // it, but an endpoint that drained its pending rows must not wait long).
        let commits = app.store.commits();
        let fill_gap = Duration::from_millis(WEBHOOK_FILL_GAP_MS);
        if filled_at != Some(commits) && last_fill.is_none_or(|t| t.elapsed() >= fill_gap) {
            last_fill = Some(Instant::now());
            let store = app.store.clone();
            let done = tokio::task::spawn_blocking(move || fill(&store)).await.unwrap_or(false);
            filled_at = done.then_some(commits);
        }
        let mut read_failed = false;
        let room = concurrency.saturating_sub(in_flight.len());
        if room > 0 {
            let store = app.store.clone();
            let want = room + sending.len();
            let due = tokio::task::spawn_blocking(move || store.due_deliveries(now_ms(), want))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| format!("{e:?}")));
            match due {
                Ok(due) => {
                    let fresh: Vec<Delivery> =
                        due.into_iter().filter(|d| !sending.contains(&d.id)).take(room).collect();
                    for d in fresh {
                        sending.insert(d.id);
                        let id = d.id;
                        let (app, hooks) = (app.clone(), hooks.clone());
                        let task = in_flight.spawn(async move {
                            let attempt = attempt(&app, &hooks, &d).await;
                            (d, attempt)
                        });
                        tasks.insert(task.id(), id);
                    }
                }
                Err(e) => {
                    read_failed = true;
                    log::error!("webhooks: cannot read the outbox: {e}");
                    app.state.set_webhook_fault(format!("outbox unreadable: {e}"));
                }
            }
        }
        // With deliveries in flight or settling, their rows are still due in
        // the outbox: one finishing wakes the loop, and anything else due is
        // taken within an interval. After a failed read, wait an interval too.
        // Otherwise sleep until the next is due.
        let idle = in_flight.is_empty() && settling.is_none() && !read_failed;
        let mut wait = if idle { next_wait(&app.store, &sending, interval) } else { interval };
        // Finished attempts wait for the settle gap, and wake the loop at its end.
        if settling.is_none() && !finished.is_empty() {
            wait = wait.min(settle_gap.saturating_sub(last_settle.elapsed()));
        }
        tokio::select! {
            Some(done) = in_flight.join_next_with_id(), if !in_flight.is_empty() => {
                take_finished(done, &mut tasks, &mut sending, &mut finished);
                while let Some(more) = in_flight.try_join_next_with_id() {
                    take_finished(more, &mut tasks, &mut sending, &mut finished);
                }
            }
            settled = async { (&mut settling.as_mut().expect("guarded").0).await }, if settling.is_some() => {
                let (_, ids) = settling.take().expect("guarded");
                release(&mut sending, ids, settled);
            }
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => {}
        }
        // Everything finished since the last settle goes in one transaction,
        // at most one per settle gap: each takes redb's one writer from the
        // committer for a sync, so fewer, larger ones leave appends their
        // group commits.
        if settling.is_none() && !finished.is_empty() && last_settle.elapsed() >= settle_gap {
            last_settle = Instant::now();
            let (app, hooks, batch) = (app.clone(), hooks.clone(), std::mem::take(&mut finished));
            let ids = batch.iter().map(|(d, _)| d.id).collect();
            settling = Some((tokio::spawn(async move { settle_all(&app, &hooks, batch).await }), ids));
        }
    }
    if let Some((handle, ids)) = settling.take() {
        release(&mut sending, ids, handle.await);
    }
    // Attempts in flight get a bounded time to finish; the rest are cut.
    // Their rows stay in the outbox and are sent again after the restart
    // (delivery is at least once).
    let drained = tokio::time::timeout(Duration::from_millis(WEBHOOK_DRAIN_MS), async {
        while let Some(done) = in_flight.join_next_with_id().await {
            take_finished(done, &mut tasks, &mut sending, &mut finished);
        }
    })
    .await;
    if drained.is_err() {
        log::warn!("webhooks: {} attempt(s) cut at shutdown; they will be sent again", in_flight.len());
        in_flight.abort_all();
    }
    settle_all(&app, &hooks, finished).await;
    log::info!("webhook worker stopped");
}

/// Takes one finished attempt task's result. A task that died (a panic)
/// lets its delivery go: its row is still due and is taken again.
fn take_finished(
    done: Result<(tokio::task::Id, (Delivery, Attempt)), tokio::task::JoinError>,
    tasks: &mut HashMap<tokio::task::Id, u64>,
    sending: &mut HashSet<u64>,
    finished: &mut Vec<(Delivery, Attempt)>,
) {
    match done {
        Ok((task, item)) => {
            tasks.remove(&task);
            finished.push(item);
        }
        Err(e) => {
            log::error!("webhooks: an attempt task died: {e}");
            if let Some(id) = tasks.remove(&e.id()) {
                sending.remove(&id);
            }
        }
    }
}

/// After a settle: its ids may be taken again, except the quarantined ones
/// (rows that are corrupt stay out of circulation until an operator looks).
/// A settle task that died settled nothing; its rows are taken again.
fn release(sending: &mut HashSet<u64>, ids: Vec<u64>, settled: Result<Vec<u64>, tokio::task::JoinError>) {
    let quarantined = settled.unwrap_or_else(|e| {
        log::error!("webhooks: a settle task died: {e}");
        Vec::new()
    });
    for id in ids.into_iter().filter(|id| !quarantined.contains(id)) {
        sending.remove(&id);
    }
}

/// How long to sleep: until the next delivery is due, at most `interval`
/// (and the full interval when the earliest due row is one held back).
fn next_wait(store: &Store, held: &HashSet<u64>, interval: Duration) -> Duration {
    match store.due_deliveries(u64::MAX, 1).map(|d| d.into_iter().next()) {
        Ok(Some(d)) if !held.contains(&d.id) => {
            Duration::from_millis(d.next_attempt_ms.saturating_sub(now_ms())).min(interval)
        }
        _ => interval,
    }
}

/// Enqueues, for every active endpoint whose ledger grew past its cursor,
/// up to `WEBHOOK_ENQUEUE_PER_PASS_MAX` records. Writes nothing when no
/// ledger grew. `true` when every endpoint was brought up to date.
fn fill(store: &Store) -> bool {
    let endpoints = match store.webhooks(None) {
        Ok(e) => e,
        Err(e) => {
            log::error!("webhooks: cannot list endpoints: {e:?}");
            return false;
        }
    };
    let mut complete = true;
    for e in endpoints.iter().filter(|e| e.disabled_ms.is_none()) {
        // A suspended tenant's records wait (its cursor stays) until it is resumed.
        match suspended(store, &e.tenant) {
            Ok(false) => {}
            Ok(true) => continue,
            Err(err) => {
                log::error!("webhooks: tenant of {}: {err:?}", e.id);
                complete = false;
                continue;
            }
        }
        let size = match store.ledger_state(&e.tenant, &e.ledger) {
            Ok(state) => state.map_or(0, |s| s.size),
            Err(err) => {
                log::error!("webhooks: ledger of {}: {err:?}", e.id);
                complete = false;
                continue;
            }
        };
        if size <= e.next_seq {
            continue;
        }
        match store.enqueue_deliveries(&e.id, WEBHOOK_ENQUEUE_PER_PASS_MAX, now_ms()) {
            Ok(Ok(n)) => complete &= e.next_seq + n >= size,
            Ok(Err(refusal)) => log::warn!("webhooks: endpoint {} refused enqueue: {refusal:?}", e.id),
            Err(err) => {
                log::error!("webhooks: cannot enqueue for {}: {err:?}", e.id);
                complete = false;
            }
        }
    }
    complete
}

fn suspended(store: &Store, tenant: &annal_chain::TenantId) -> Result<bool, annal_store::ReadError> {
    Ok(store.tenant(tenant)?.is_none_or(|t| t.status == annal_store::TenantStatus::Suspended))
}

/// What one attempt came to.
enum Attempt {
    Delivered,
    /// Worth retrying: a transport failure or a non-2xx answer.
    Failed(String),
    /// Not tried, and not counted: the tenant is suspended.
    Held(String),
    /// Nothing to deliver any more (the endpoint was disabled meanwhile).
    Moot,
}

async fn attempt(app: &App, hooks: &Webhooks, d: &Delivery) -> Attempt {
    let store = app.store.clone();
    let (endpoint, ledger, tenant, seq) = (d.endpoint.clone(), d.ledger.clone(), d.tenant.clone(), d.seq);
    let read = tokio::task::spawn_blocking(move || {
        let endpoint = store.webhook(&endpoint).map_err(|e| format!("endpoint unreadable: {e:?}"))?;
        // Nothing leaves for a suspended tenant: the delivery waits, no
        // attempt counted, so a resumed tenant still gets it.
        if suspended(&store, &tenant).map_err(|e| format!("tenant unreadable: {e:?}"))? {
            return Ok(None);
        }
        let record =
            store.record(&tenant, &ledger, Seq::new(seq)).map_err(|e| format!("record unreadable: {e:?}"))?;
        Ok::<_, String>(Some((endpoint, record)))
    })
    .await;
    let read = match read {
        Ok(Ok(None)) => return Attempt::Held("tenant suspended".into()),
        Ok(Ok(Some(found))) => Ok(Ok(found)),
        Ok(Err(reason)) => Ok(Err(reason)),
        Err(e) => Err(e),
    };
    // A delivery goes only to its own endpoint's tenant and ledger; a row
    // that says otherwise is corrupt and never sent.
    if let Ok(Ok((Some(e), _))) = &read
        && (e.tenant != d.tenant || e.ledger != d.ledger)
    {
        log::error!("webhooks: delivery {} names another tenant or ledger than endpoint {}", d.id, e.id);
        return Attempt::Failed("delivery does not match its endpoint".into());
    }
    let (endpoint, record) = match read {
        Ok(Ok((Some(e), Some(r)))) if e.disabled_ms.is_none() => (e, r),
        // Disabled meanwhile (disabling drops pending rows; this one was in flight).
        Ok(Ok((Some(_) | None, Some(_)))) => return Attempt::Moot,
        // Enqueued records exist: a missing one is a store fault, never skipped silently.
        Ok(Ok((_, None))) => {
            log::error!("webhooks: record {} of a delivery to {} is missing", d.seq, d.endpoint);
            return Attempt::Failed("record missing from the store".into());
        }
        Ok(Err(reason)) => return Attempt::Failed(reason),
        Err(e) => return Attempt::Failed(format!("read task failed: {e}")),
    };
    let body = serde_json::json!({
        "type": "record.appended",
        "timestamp": humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
        "data": crate::api::record_json(&record),
    });
    let body = bytes::Bytes::from(serde_json::to_vec(&body).expect("json"));
    send(hooks, &endpoint, d.seq, body).await
}

/// Signs `body` with every active secret of `endpoint`, newest first, and
/// POSTs it to the endpoint's (re-checked) address.
async fn send(hooks: &Webhooks, endpoint: &WebhookEndpoint, seq: u64, body: bytes::Bytes) -> Attempt {
    let secrets: Vec<sign::EndpointSecret> = endpoint
        .secrets
        .iter()
        .rev()
        .filter(|s| s.revoked_ms.is_none())
        .map(|s| hooks.key.endpoint_secret(&endpoint.id, s.version))
        .collect();
    if secrets.is_empty() {
        return Attempt::Failed("no active secret".into());
    }
    let msg_id = message_id(&endpoint.id, seq);
    let timestamp_s = now_ms() / 1000;
    let signature = sign::signature_header(&secrets, &msg_id, timestamp_s, &body);
    let timeout = Duration::from_millis(hooks.settings.timeout_ms);
    let target = match target::parse(&endpoint.url) {
        Ok(t) => t,
        Err(e) => return Attempt::Failed(format!("url: {e}")),
    };
    // Resolved and checked on every attempt, and connected to as checked:
    // a host that now resolves somewhere forbidden gets nothing.
    // One deadline for the whole attempt: resolving, connecting, sending, reading.
    let deadline = tokio::time::Instant::now() + timeout;
    let addrs = match target::resolve(&target, &hooks.policy, timeout).await {
        Ok(a) => a,
        Err(e) => return Attempt::Failed(e.to_string()),
    };
    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
    let headers = [
        ("webhook-id", msg_id),
        ("webhook-timestamp", timestamp_s.to_string()),
        ("webhook-signature", signature),
    ];
    let limits = client::Limits {
        connect_timeout: left,
        total_timeout: left,
        response_bytes_max: WEBHOOK_RESPONSE_BYTES_MAX,
    };
    let request = client::Request { target: &target, addrs: &addrs, headers: &headers, body };
    match client::post(request, &limits, &hooks.tls).await {
        client::Outcome::Delivered { .. } => Attempt::Delivered,
        client::Outcome::Rejected { status } => Attempt::Failed(format!("receiver answered {status}")),
        client::Outcome::Failed { reason } => Attempt::Failed(reason),
    }
}

/// Records finished attempts in the outbox, in one transaction (one sync,
/// however many finished together), and the given-up ones as events.
/// Returns the ids of deliveries whose rows are corrupt (quarantined).
async fn settle_all(app: &Arc<App>, hooks: &Webhooks, finished: Vec<(Delivery, Attempt)>) -> Vec<u64> {
    if finished.is_empty() {
        return Vec::new();
    }
    let state_app = app.clone();
    let settings = hooks.settings.clone();
    let settled =
        tokio::task::spawn_blocking(move || settle(&state_app.store, &state_app.state, &settings, &finished))
            .await;
    match settled {
        Ok((events, quarantined)) => {
            events.into_iter().for_each(|e| app.events.record_unbudgeted(e));
            quarantined
        }
        Err(e) => {
            log::error!("webhooks: settling deliveries failed: {e}");
            Vec::new()
        }
    }
}

/// Records the outcomes of `finished` in one transaction. When a corrupt
/// row aborts it, each is recorded on its own, and the ones whose rows are
/// corrupt are returned: they stay out of circulation, and readiness says
/// so (re-sending them would repeat forever, with no attempt counted).
fn settle(
    store: &Store,
    app_state: &crate::state::State,
    settings: &crate::config::WebhooksConfig,
    finished: &[(Delivery, Attempt)],
) -> (Vec<Event>, Vec<u64>) {
    match settle_batch(store, settings, finished) {
        Err(annal_store::WriteError::Corrupt(c)) => {
            log::error!("webhooks: a corrupt outbox row aborted a settle: {c:?}; settling one by one");
            app_state.set_webhook_fault(format!("corrupt webhook row: {c:?}"));
            let mut events = Vec::new();
            let mut quarantined = Vec::new();
            for item in finished {
                match settle_batch(store, settings, std::slice::from_ref(item)) {
                    Ok(mut e) => events.append(&mut e),
                    Err(annal_store::WriteError::Corrupt(_)) => quarantined.push(item.0.id),
                    Err(e) => log::error!("webhooks: cannot record delivery {}: {e:?}", item.0.id),
                }
            }
            (events, quarantined)
        }
        Err(e) => {
            log::error!("webhooks: cannot record {} delivery outcome(s): {e:?}", finished.len());
            (Vec::new(), Vec::new())
        }
        Ok(events) => (events, Vec::new()),
    }
}

/// What each attempt means for its row, applied in one store call; returns
/// the events of the deliveries given up.
fn settle_batch(
    store: &Store,
    settings: &crate::config::WebhooksConfig,
    finished: &[(Delivery, Attempt)],
) -> Result<Vec<Event>, annal_store::WriteError> {
    let now = now_ms();
    let batch: Vec<(u64, Settlement<'_>)> = finished
        .iter()
        .map(|(d, attempt)| {
            let how = match attempt {
                Attempt::Delivered => Settlement::Delivered,
                Attempt::Moot => Settlement::GiveUp,
                Attempt::Held(reason) => Settlement::Postpone {
                    next_attempt_ms: now + settings.retry_base_ms.min(HELD_RECHECK_MS),
                    reason,
                },
                Attempt::Failed(reason) if d.attempts + 1 < settings.attempts_max => Settlement::Retry {
                    next_attempt_ms: now
                        + backoff_ms(settings.retry_base_ms, settings.retry_max_ms, d.attempts + 1),
                    error: reason,
                },
                Attempt::Failed(_) => Settlement::GiveUp,
            };
            (d.id, how)
        })
        .collect();
    let results = store.settle_deliveries(&batch)?;
    let mut events = Vec::new();
    for (((d, attempt), (_, how)), result) in finished.iter().zip(&batch).zip(results) {
        if result.is_err() {
            // Gone meanwhile (its endpoint was disabled): nothing to record.
            continue;
        }
        let attempts = d.attempts + 1;
        match (attempt, how) {
            (Attempt::Delivered, _) => {
                COUNTS.delivered.fetch_add(1, Ordering::Relaxed);
            }
            (Attempt::Moot, _) => {}
            (Attempt::Held(_), _) => {
                COUNTS.held.fetch_add(1, Ordering::Relaxed);
            }
            (Attempt::Failed(reason), Settlement::Retry { .. }) => {
                COUNTS.retried.fetch_add(1, Ordering::Relaxed);
                log::info!("webhook {} seq {}: attempt {attempts} failed: {reason}", d.endpoint, d.seq);
            }
            (Attempt::Failed(reason), _) => {
                COUNTS.abandoned.fetch_add(1, Ordering::Relaxed);
                log::warn!(
                    "webhook {} seq {}: given up after {attempts} attempts: {reason}",
                    d.endpoint,
                    d.seq
                );
                events.push(Event {
                    kind: Kind::Failure,
                    code: DELIVERY_FAILED_CODE,
                    status: 0,
                    request_id: message_id(&d.endpoint, d.seq),
                    tenant: Some(d.tenant.as_str().to_owned()),
                    key_id: None,
                    method: "POST".to_owned(),
                    route: "webhook".to_owned(),
                    time_ms: now,
                    detail: Some(format!(
                        "webhook {} ledger {} seq {} given up after {attempts} attempts: {reason}",
                        d.endpoint, d.ledger, d.seq
                    )),
                });
            }
        }
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_max() {
        assert_eq!(backoff_ms(100, 1_000, 1), 100);
        assert_eq!(backoff_ms(100, 1_000, 2), 200);
        assert_eq!(backoff_ms(100, 1_000, 4), 800);
        assert_eq!(backoff_ms(100, 1_000, 5), 1_000);
        assert_eq!(backoff_ms(100, 1_000, 99), 1_000);
        assert_eq!(backoff_ms(u64::MAX / 2, u64::MAX, 40), u64::MAX);
    }
}
