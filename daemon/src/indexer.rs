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

use annal_store::{EventFields, EventLedger, Index, Store};
use tokio::sync::watch;

use crate::events::{events_ledger, system_tenant};
use crate::limits::INDEX_PASS_RECORDS_MAX;

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

/// Runs a catch-up pass every `interval` until `stop` flips, unless nothing
/// was committed since a pass that caught up. A pass does at most about
/// `INDEX_PASS_RECORDS_MAX` records; while the index is behind, passes
/// follow each other without waiting. A pass in progress finishes
/// before the worker stops.
pub async fn run(store: Arc<Store>, index: Arc<Index>, interval: Duration, mut stop: watch::Receiver<bool>) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut behind = true;
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
            continue;
        }
        let (store, index) = (store.clone(), index.clone());
        let pass =
            tokio::task::spawn_blocking(move || index.catch_up_step(&store, INDEX_PASS_RECORDS_MAX)).await;
        match pass {
            Ok(Ok(step)) => {
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
            Ok(Err(e)) => {
                if !failing {
                    log::error!("index catch-up failed (writes are unaffected; retrying): {e}");
                    failing = true;
                }
                behind = false;
            }
            Err(e) => {
                log::error!("index catch-up task failed: {e}");
                behind = false;
            }
        }
    }
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
