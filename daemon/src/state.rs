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
            Some(current) if current.public == app.signer.public() => Ok(()),
            Some(_) => Err("signing key is not the current identity".to_owned()),
            None => Err("identity log is empty".to_owned()),
        },
        Err(e) => Err(format!("identity log unreadable: {e:?}")),
    };
    let workers =
        if app.state.is_anchoring() { Ok(()) } else { Err("anchoring worker not running".to_owned()) };
    let draining = if app.state.is_draining() { Err("shutdown in progress".to_owned()) } else { Ok(()) };
    let checks = vec![
        check("database", database),
        check("signing", signing),
        check("workers", workers),
        check("not_draining", draining),
    ];
    Readiness { ready: checks.iter().all(|c| c.ok), checks }
}
