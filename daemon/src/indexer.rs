//! The indexing worker: keeps the sled index (`<data dir>/index`) caught up
//! with the store, in bounded passes, and tells the store how to read a
//! system event's indexed fields. The index is derived (DESIGN invariant 6):
//! appends never wait for it and never fail because of it. When it cannot be
//! opened or a pass fails, lineage answers 503 `index.unavailable` and the
//! event query falls back to scanning; readiness is not affected, because
//! every write and every verifiable read still works from redb alone, and a
//! load balancer taking the daemon out for a derived index would turn a
//! degraded query into an outage. `annald index rebuild` recreates it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use annal_store::{CatchUp, EventFields, EventLedger, Index, IndexError, Store};
use tokio::sync::watch;

use crate::events::{events_ledger, system_tenant};
use crate::limits::{
    INDEX_LOW_PRIORITY_BEHIND_MS_MAX, INDEX_LOW_PRIORITY_LAG_RECORDS_MAX, INDEX_PASS_RECORDS_MAX,
    INDEX_THREAD_NICE,
};

/// The index directory inside the data directory.
pub fn index_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("index")
}

/// Bump when `event_fields` reads a payload differently: every index built
/// with the old reading is then cleared and rebuilt at open.
const EVENT_FIELDS_VERSION: &str = "events-json-1";

/// Reads `request_id`, `tenant` and `code` from an event payload as
/// `events::Event::to_json` writes it; anything else is not indexed.
fn event_fields(payload: &[u8]) -> EventFields {
    #[derive(serde::Deserialize)]
    struct Fields {
        request_id: Option<String>,
        tenant: Option<String>,
        code: Option<String>,
    }
    match serde_json::from_slice::<Fields>(payload) {
        Ok(f) => EventFields { request_id: f.request_id, tenant: f.tenant, code: f.code },
        Err(_) => EventFields::default(),
    }
}

/// The system event ledger, as the index is told about it.
pub fn event_ledger() -> EventLedger {
    EventLedger {
        tenant: system_tenant(),
        ledger: events_ledger(),
        extract: event_fields,
        version: EVENT_FIELDS_VERSION,
    }
}

/// Opens the index; on failure logs why and returns `None`: the daemon
/// serves without it.
pub fn open(data_dir: &Path) -> Option<Arc<Index>> {
    let dir = index_dir(data_dir);
    match Index::open_with_events(&dir, event_ledger()) {
        Ok(index) => Some(Arc::new(index)),
        Err(e) => {
            log::error!(
                "index at {} unusable, serving without it (lineage answers 503; run `annald index rebuild`): {e}",
                dir.display()
            );
            None
        }
    }
}

/// Where one catch-up pass sends its result.
type PassReply = tokio::sync::oneshot::Sender<Result<CatchUp, IndexError>>;

/// A thread that runs a pass of `index` over `store` for each request, one
/// at a time. A thread of its own, not tokio's blocking pool: a priority
/// belongs to a thread, and pool threads also serve exports and lineage
/// queries. Ends when its sender is dropped.
struct PassThread {
    passes: std::sync::mpsc::SyncSender<PassReply>,
    handle: std::thread::JoinHandle<()>,
}

impl PassThread {
    /// `nice`: the nice value the thread gives itself (Linux keeps it per
    /// thread), or `None` to keep the daemon's.
    fn spawn(
        name: &str,
        nice: Option<i32>,
        store: Arc<Store>,
        index: Arc<Index>,
    ) -> std::io::Result<PassThread> {
        let (passes, rx) = std::sync::mpsc::sync_channel::<PassReply>(1);
        let handle = std::thread::Builder::new().name(name.into()).spawn(move || {
            if let Some(nice) = nice
                && let Err(e) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), nice)
            {
                log::warn!(
                    "cannot lower the indexing thread's priority (indexing competes with appends): {e}"
                );
            }
            while let Ok(reply) = rx.recv() {
                let _ = reply.send(index.catch_up_step(&store, INDEX_PASS_RECORDS_MAX));
            }
        })?;
        Ok(PassThread { passes, handle })
    }

    /// Runs one pass; `None` if the thread is gone.
    async fn pass(&self) -> Option<Result<CatchUp, IndexError>> {
        let (reply, done) = tokio::sync::oneshot::channel();
        self.passes.send(reply).ok()?;
        done.await.ok()
    }

    async fn join(self) {
        drop(self.passes);
        // No pass is in progress: the thread is waiting for the next
        // request, and ends now that the sender is gone (dropping its
        // store, which then closes when the daemon stops).
        let _ = tokio::task::spawn_blocking(move || self.handle.join()).await;
    }
}

/// Passes run by each indexing thread since start: `[low priority, normal]`.
pub static PASSES: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];

/// Which thread runs the next pass: the low-priority one while the index
/// keeps up, the normal one once it has not been within
/// `INDEX_LOW_PRIORITY_LAG_RECORDS_MAX` records of the store (`lag`, `None`
/// before the first pass has counted) since `close_at`, for longer than
/// `INDEX_LOW_PRIORITY_BEHIND_MS_MAX`. Updates `close_at`; true for normal.
fn normal_priority(lag: Option<u64>, close_at: &mut Instant, now: Instant) -> bool {
    if lag.is_none_or(|n| n <= INDEX_LOW_PRIORITY_LAG_RECORDS_MAX) {
        *close_at = now;
    }
    now.duration_since(*close_at) > Duration::from_millis(INDEX_LOW_PRIORITY_BEHIND_MS_MAX)
}

/// Runs a catch-up pass every `interval` until `stop` flips, unless nothing
/// was committed since a pass that caught up. A pass does at most about
/// `INDEX_PASS_RECORDS_MAX` records; while the index is behind, passes
/// follow each other without waiting. A pass in progress finishes before
/// the worker stops.
///
/// Passes run at the lowest CPU priority (`INDEX_THREAD_NICE`), mostly on
/// CPU time appends leave over, while the index keeps up; from the first
/// pass after it has been more than `INDEX_LOW_PRIORITY_LAG_RECORDS_MAX`
/// records behind for `INDEX_LOW_PRIORITY_BEHIND_MS_MAX`, they run at
/// normal priority until it is that close again (`normal_priority`). So
/// the index does not hold appends back while it keeps up, and a busy
/// machine cannot leave it behind for long. (An unprivileged thread cannot
/// raise its priority again, hence two threads.)
pub async fn run(store: Arc<Store>, index: Arc<Index>, interval: Duration, mut stop: watch::Receiver<bool>) {
    let threads = PassThread::spawn("annal-index-low", Some(INDEX_THREAD_NICE), store.clone(), index.clone())
        .and_then(|low| Ok((low, PassThread::spawn("annal-index", None, store.clone(), index.clone())?)));
    let (low, normal) = match threads {
        Ok(spawned) => spawned,
        Err(e) => {
            log::error!("cannot start the indexing threads (the index will not catch up): {e}");
            return;
        }
    };
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut behind = true;
    let mut close_at = Instant::now();
    let mut failing = false;
    loop {
        if !behind {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = stop.changed() => {}
            }
        }
        if *stop.borrow() {
            break;
        }
        // Caught up and nothing committed since: a pass would only read
        // every ledger's watermark to find that out.
        if index.caught_up_with(&store) {
            close_at = Instant::now();
            continue;
        }
        let normal_now = normal_priority(index.lag_records(&store), &mut close_at, Instant::now());
        let thread = if normal_now { &normal } else { &low };
        PASSES[usize::from(normal_now)].fetch_add(1, Ordering::Relaxed);
        match thread.pass().await {
            Some(Ok(step)) => {
                if step.reset {
                    log::warn!("index did not match the store's history; cleared, rebuilding");
                }
                if failing {
                    log::info!("index catch-up works again");
                    failing = false;
                }
                behind = !step.complete;
                if behind {
                    // Let other tasks run between back-to-back passes.
                    tokio::task::yield_now().await;
                }
            }
            Some(Err(e)) => {
                if !failing {
                    log::error!("index catch-up failed (writes are unaffected; retrying): {e}");
                    failing = true;
                }
                behind = false;
            }
            None => {
                log::error!("an indexing thread is gone; the index no longer catches up");
                break;
            }
        }
    }
    low.join().await;
    normal.join().await;
    log::info!("indexing worker stopped");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Event, Kind};

    /// Low priority while within the lag bound or before the first count;
    /// normal once beyond it for longer than the time bound, and low again
    /// as soon as it is back within.
    #[test]
    fn passes_move_to_normal_priority_only_when_behind_too_long() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let far = Some(INDEX_LOW_PRIORITY_LAG_RECORDS_MAX + 1);
        let close = Some(INDEX_LOW_PRIORITY_LAG_RECORDS_MAX);
        let wait = INDEX_LOW_PRIORITY_BEHIND_MS_MAX;
        let mut close_at = t0;
        assert!(!normal_priority(None, &mut close_at, ms(10 * wait)), "not counted yet");
        assert_eq!(close_at, ms(10 * wait));
        let mut close_at = t0;
        assert!(!normal_priority(far, &mut close_at, ms(wait)), "behind, not for long");
        assert!(!normal_priority(close, &mut close_at, ms(wait + 100)), "close again");
        assert!(!normal_priority(far, &mut close_at, ms(2 * wait + 100)), "behind since wait + 100 only");
        assert!(normal_priority(far, &mut close_at, ms(2 * wait + 101)), "behind too long");
        assert!(normal_priority(far, &mut close_at, ms(3 * wait)));
        assert!(!normal_priority(Some(0), &mut close_at, ms(3 * wait + 1)), "caught up");
    }

    #[test]
    fn reads_the_fields_the_event_writer_writes() {
        let mut event = Event {
            kind: Kind::Denial,
            code: "rate.limited",
            status: 429,
            request_id: "req-1".into(),
            tenant: Some("acme".into()),
            key_id: None,
            method: "GET".into(),
            route: "GET /x".into(),
            time_ms: 5,
            detail: None,
        };
        let bytes = serde_json::to_vec(&event.to_json()).expect("json");
        let expected = EventFields {
            request_id: Some("req-1".into()),
            tenant: Some("acme".into()),
            code: Some("rate.limited".into()),
        };
        assert_eq!(event_fields(&bytes), expected);
        event.tenant = None;
        let bytes = serde_json::to_vec(&event.to_json()).expect("json");
        assert_eq!(event_fields(&bytes).tenant, None);
        assert_eq!(event_fields(b"not json"), EventFields::default());
    }
}
