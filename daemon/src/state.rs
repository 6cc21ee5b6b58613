//! Readiness: every check evaluated on every call (a failure is never hidden
//! by a cached success), and the flags shutdown flips.

use std::sync::atomic::{AtomicBool, Ordering};

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

#[derive(Debug)]
pub struct State {
    version: &'static str,
    draining: AtomicBool,
    anchoring: AtomicBool,
}

impl State {
    pub fn new(version: &'static str) -> State {
        State { version, draining: AtomicBool::new(false), anchoring: AtomicBool::new(false) }
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
    let workers = match (app.worker_enabled, app.state.is_anchoring()) {
        (true, false) => Err("workers enabled but the anchoring worker is not running".to_owned()),
        (false, true) => Err("workers disabled but the anchoring worker is running".to_owned()),
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
    let now = crate::app::now_ms();
    let ledgers = app.store.ledgers().map_err(|e| format!("cannot list ledgers: {e:?}"))?;
    for (tenant, ledger, _) in ledgers {
        let state =
            app.store.ledger_state(&tenant, &ledger).map_err(|e| format!("{tenant}/{ledger}: {e:?}"))?;
        let Some(state) = state else { continue };
        if state.checkpoint_size >= state.size {
            continue;
        }
        let first = annal_chain::Seq::new(state.checkpoint_size);
        let record =
            app.store.record(&tenant, &ledger, first).map_err(|e| format!("{tenant}/{ledger}: {e:?}"))?;
        if let Some(r) = record {
            let age = now.saturating_sub(r.record.timestamp_ms());
            if age > bound {
                return Err(format!(
                    "{tenant}/{ledger} seq {first} unanchored for {age} ms (bound {bound} ms)"
                ));
            }
        }
    }
    Ok(())
}
