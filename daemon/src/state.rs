//! Readiness: every check evaluated on every call (a failure is never hidden
//! by a cached success), and the flags shutdown flips. The anchoring check
//! reads which record has waited longest for a checkpoint from a scan of
//! every ledger; that scan is redone only after a commit, and at most every
//! quarter of the freshness bound (≤ 1 s), so an unauthenticated `/ready`
//! cannot make the daemon walk its ledgers on every call. A record appended
//! since the scan has waited less than that quarter, so the reuse can only
//! report a record stale a little late by less than its bound, never hide
//! one that is stale.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::app::App;

/// One readiness check's result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub reason: Option<String>,
}

/// Every check, and whether all passed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Readiness {
    pub ready: bool,
    pub checks: Vec<Check>,
}

impl Readiness {
    pub fn to_json(&self) -> serde_json::Value {
        let checks: Vec<serde_json::Value> = self
            .checks
            .iter()
            .map(|c| {
                serde_json::json!({
                    "name": c.name,
                    "status": if c.ok { "ok" } else { "failed" },
                    "reason": c.reason,
                })
            })
            .collect();
        serde_json::json!({"status": if self.ready { "ready" } else { "not_ready" }, "checks": checks})
    }
}

/// The record that has waited longest for a checkpoint, as of a scan.
#[derive(Debug)]
struct Waiting {
    scanned_at: Instant,
    commits: u64,
    /// (tenant/ledger, seq, appended at ms); `None`: every record anchored.
    oldest: Option<(String, u64, u64)>,
}

#[derive(Debug)]
pub struct State {
    version: &'static str,
    draining: AtomicBool,
    anchoring: AtomicBool,
    delivering: AtomicBool,
    /// The first fault the webhook worker met in the store (an unreadable
    /// outbox, a corrupt row); kept until restart.
    webhook_fault: Mutex<Option<String>>,
    waiting: Mutex<Option<Waiting>>,
}

impl State {
    pub fn new(version: &'static str) -> State {
        State {
            version,
            draining: AtomicBool::new(false),
            anchoring: AtomicBool::new(false),
            delivering: AtomicBool::new(false),
            webhook_fault: Mutex::new(None),
            waiting: Mutex::new(None),
        }
    }

    pub fn version(&self) -> &'static str {
        self.version
    }

    /// Flips readiness red at once; there is no way back.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    pub fn set_anchoring(&self, running: bool) {
        self.anchoring.store(running, Ordering::SeqCst);
    }

    pub fn is_anchoring(&self) -> bool {
        self.anchoring.load(Ordering::SeqCst)
    }

    /// Whether the webhook delivery worker is running.
    pub fn set_delivering(&self, running: bool) {
        self.delivering.store(running, Ordering::SeqCst);
    }

    pub fn is_delivering(&self) -> bool {
        self.delivering.load(Ordering::SeqCst)
    }

    /// Records a store fault of the webhook worker (the first one is kept):
    /// readiness stays red until an operator has looked and restarted.
    pub fn set_webhook_fault(&self, reason: String) {
        self.webhook_fault.lock().unwrap_or_else(PoisonError::into_inner).get_or_insert(reason);
    }

    pub fn webhook_fault(&self) -> Option<String> {
        self.webhook_fault.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

fn check(name: &'static str, result: Result<(), String>) -> Check {
    match result {
        Ok(()) => Check { name, ok: true, reason: None },
        Err(reason) => Check { name, ok: false, reason: Some(reason) },
    }
}

/// Evaluates every check now.
pub fn readiness(app: &App) -> Readiness {
    let database = match app.store.failure() {
        Some(reason) => Err(format!("store failed: {reason}")),
        // A real read, not a flag: the identity log is small and always present.
        None => app.store.identity_log().map(|_| ()).map_err(|e| format!("read failed: {e:?}")),
    };
    let signing = match app.store.identity_log() {
        Ok(log) => match log.last() {
            Some(current) if app.signing_ok && current.public == app.signer.public() => Ok(()),
            Some(current) => Err(format!(
                "signing key {} is not the current identity {}",
                app.signer.fingerprint(),
                annal_chain::fingerprint(&current.public)
            )),
            None => Err("identity log is empty".to_owned()),
        },
        Err(e) => Err(format!("identity log unreadable: {e:?}")),
    };
    let migrations = match app.expected_head {
        Some(expected) if expected != app.migration.head => {
            Err(format!("expected head {expected}, actual {}", app.migration.head))
        }
        _ if !app.migration.pending.is_empty() => Err(format!("pending steps {:?}", app.migration.pending)),
        _ => Ok(()),
    };
    // Webhook delivery runs with the workers when a webhook key is configured.
    let delivering = app.worker_enabled && app.webhooks.is_some();
    let workers = match (app.worker_enabled, app.state.is_anchoring()) {
        (true, false) => Err("workers enabled but the anchoring worker is not running".to_owned()),
        (false, true) => Err("workers disabled but the anchoring worker is running".to_owned()),
        _ if let Some(fault) = app.state.webhook_fault() => Err(format!("webhook worker: {fault}")),
        _ if delivering != app.state.is_delivering() => Err(format!(
            "the webhook worker should {}be running but is {}",
            if delivering { "" } else { "not " },
            if app.state.is_delivering() { "running" } else { "not running" }
        )),
        _ => Ok(()),
    };
    let anchoring = if app.worker_enabled { anchoring_fresh(app) } else { Ok(()) };
    let draining = if app.state.is_draining() { Err("shutdown in progress".to_owned()) } else { Ok(()) };
    let checks = vec![
        check("database", database),
        check("migrations", migrations),
        check("signing", signing),
        check("workers", workers),
        check("anchoring", anchoring),
        check("not_draining", draining),
    ];
    Readiness { ready: checks.iter().all(|c| c.ok), checks }
}

/// The oldest record still waiting for a checkpoint must be younger than the
/// configured bound; otherwise anchoring is stuck and readiness says so.
fn anchoring_fresh(app: &App) -> Result<(), String> {
    let bound = app.anchor_freshness_max_ms;
    if bound == 0 {
        return Ok(());
    }
    let reuse_for = Duration::from_millis(bound / 4).min(Duration::from_secs(1));
    let commits = app.store.commits();
    // Held while scanning: concurrent calls wait for one scan, not each do one.
    let mut waiting = app.state.waiting.lock().unwrap_or_else(PoisonError::into_inner);
    let current =
        waiting.as_ref().is_some_and(|w| w.commits == commits || w.scanned_at.elapsed() < reuse_for);
    if !current {
        *waiting = Some(Waiting { scanned_at: Instant::now(), commits, oldest: oldest_waiting(app)? });
    }
    let Some((ledger, seq, at_ms)) = waiting.as_ref().and_then(|w| w.oldest.as_ref()) else {
        return Ok(());
    };
    let age = crate::app::now_ms().saturating_sub(*at_ms);
    if age > bound {
        return Err(format!("{ledger} seq {seq} unanchored for {age} ms (bound {bound} ms)"));
    }
    Ok(())
}

/// The first unanchored record of every ledger that has one: the oldest.
fn oldest_waiting(app: &App) -> Result<Option<(String, u64, u64)>, String> {
    let ledgers = app.store.unanchored().map_err(|e| format!("cannot list ledgers: {e:?}"))?;
    let mut oldest: Option<(String, u64, u64)> = None;
    for (tenant, ledger, state) in ledgers {
        let first = annal_chain::Seq::new(state.checkpoint_size);
        let record =
            app.store.record(&tenant, &ledger, first).map_err(|e| format!("{tenant}/{ledger}: {e:?}"))?;
        if let Some(r) = record
            && oldest.as_ref().is_none_or(|(_, _, at)| r.record.timestamp_ms() < *at)
        {
            oldest = Some((format!("{tenant}/{ledger}"), first.get(), r.record.timestamp_ms()));
        }
    }
    Ok(oldest)
}
