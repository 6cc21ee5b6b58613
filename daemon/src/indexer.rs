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
use std::time::Duration;

use annal_store::{CatchUp, EventFields, EventLedger, Index, IndexError, Store};
use tokio::sync::watch;

use crate::events::{events_ledger, system_tenant};
use crate::limits::{INDEX_LOW_PRIORITY_BEHIND_MS_MAX, INDEX_PASS_RECORDS_MAX, INDEX_THREAD_NICE};

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

/// One catch-up pass to run on an indexing thread, and where its result goes.
type PassRequest = (Arc<Store>, Arc<Index>, tokio::sync::oneshot::Sender<Result<CatchUp, IndexError>>);

/// A thread that runs the passes it is sent, one at a time. A thread of its
/// own, not tokio's blocking pool: a priority belongs to a thread, and pool
/// threads also serve exports and lineage queries. Ends when its sender is
/// dropped.
struct PassThread {
    passes: std::sync::mpsc::SyncSender<PassRequest>,
    handle: std::thread::JoinHandle<()>,
}

impl PassThread {
    /// `nice`: the nice value the thread gives itself (Linux keeps it per
    /// thread), or `None` to keep the daemon's.
    fn spawn(name: &str, nice: Option<i32>) -> std::io::Result<PassThread> {
        let (passes, rx) = std::sync::mpsc::sync_channel::<PassRequest>(1);
        let handle = std::thread::Builder::new().name(name.into()).spawn(move || {
            if let Some(nice) = nice
                && let Err(e) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), nice)
            {
                log::warn!(
                    "cannot lower the indexing thread's priority (indexing competes with appends): {e}"
                );
            }
            while let Ok((store, index, reply)) = rx.recv() {
                let _ = reply.send(index.catch_up_step(&store, INDEX_PASS_RECORDS_MAX));
            }
        })?;
        Ok(PassThread { passes, handle })
    }

    /// Runs one pass; `None` if the thread is gone.
    async fn pass(&self, store: &Arc<Store>, index: &Arc<Index>) -> Option<Result<CatchUp, IndexError>> {
        let (reply, done) = tokio::sync::oneshot::channel();
        self.passes.send((store.clone(), index.clone(), reply)).ok()?;
        done.await.ok()
    }

    async fn join(self) {
        drop(self.passes);
        // No pass is in progress: the thread is waiting for the next
        // request, and ends now that the sender is gone.
        let _ = tokio::task::spawn_blocking(move || self.handle.join()).await;
    }
}

/// Runs a catch-up pass every `interval` until `stop` flips, unless nothing
/// was committed since a pass that caught up. A pass does at most about
/// `INDEX_PASS_RECORDS_MAX` records; while the index is behind, passes
/// follow each other without waiting. A pass in progress finishes before
/// the worker stops.
///
/// Passes run at the lowest CPU priority (`INDEX_THREAD_NICE`), on CPU
/// time appends leave over, while the index keeps up: it was last within
/// one pass of the store (`Store::records_total` minus
/// `Index::indexed_total`) less than `INDEX_LOW_PRIORITY_BEHIND_MS_MAX`
/// ago. Past that they run at normal priority until it is within one pass
/// again. So the index does not hold appends back while it keeps up, and a
/// busy machine cannot leave it behind for long. (An unprivileged thread
/// cannot raise its priority again, hence two threads.)
pub async fn run(store: Arc<Store>, index: Arc<Index>, interval: Duration, mut stop: watch::Receiver<bool>) {
    let threads = PassThread::spawn("annal-index-low", Some(INDEX_THREAD_NICE))
        .and_then(|low| Ok((low, PassThread::spawn("annal-index", None)?)));
    let (low, normal) = match threads {
        Ok(spawned) => spawned,
        Err(e) => {
            log::error!("cannot start the indexing threads (the index will not catch up): {e}");
            return;
        }
    };
    let behind_max = Duration::from_millis(INDEX_LOW_PRIORITY_BEHIND_MS_MAX);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut behind = true;
    let mut close_at = tokio::time::Instant::now();
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
            close_at = tokio::time::Instant::now();
            continue;
        }
        if index
            .indexed_total()
            .is_none_or(|n| store.records_total().saturating_sub(n) <= INDEX_PASS_RECORDS_MAX)
        {
            close_at = tokio::time::Instant::now();
        }
        let thread = if close_at.elapsed() > behind_max { &normal } else { &low };
        match thread.pass(&store, &index).await {
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
