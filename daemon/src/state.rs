//! Shared daemon state: what readiness reports and what shutdown flips.

use std::sync::atomic::{AtomicBool, Ordering};

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
}

impl State {
    pub fn new(version: &'static str) -> State {
        State { version, draining: AtomicBool::new(false) }
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

    /// Evaluated on every call: a failure is never hidden by a cached success.
    pub fn readiness(&self) -> Readiness {
        let draining = self.is_draining();
        let checks = vec![Check {
            name: "not_draining",
            ok: !draining,
            reason: draining.then(|| "shutdown in progress".to_owned()),
        }];
        Readiness { ready: checks.iter().all(|c| c.ok), checks }
    }
}
