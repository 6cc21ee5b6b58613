//! Prometheus metrics: counters kept as atomics, rendered as text format.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use annal_chain::Reason;

use crate::app::App;

static VERIFY_FAILURES: [AtomicU64; Reason::ALL.len()] = [const { AtomicU64::new(0) }; Reason::ALL.len()];

/// Counts one failed online verification by reason.
pub fn verify_failed(reason: Reason) {
    if let Some(i) = Reason::ALL.iter().position(|r| *r == reason) {
        VERIFY_FAILURES[i].fetch_add(1, Ordering::Relaxed);
    }
}

pub fn render(app: &App) -> String {
    let mut out = String::new();
    out.push_str("# HELP annal_verify_failures_total Failed /v1/verify calls by reason.\n");
    out.push_str("# TYPE annal_verify_failures_total counter\n");
    for (i, reason) in Reason::ALL.iter().enumerate() {
        let n = VERIFY_FAILURES[i].load(Ordering::Relaxed);
        let _ = writeln!(out, "annal_verify_failures_total{{reason=\"{}\"}} {n}", reason.as_str());
    }
    out.push_str("# HELP annal_events_recorded_total System events appended to the event ledger.\n");
    out.push_str("# TYPE annal_events_recorded_total counter\n");
    let _ = writeln!(out, "annal_events_recorded_total {}", app.events.recorded());
    out.push_str("# HELP annal_events_dropped_total System events dropped because the queue was full.\n");
    out.push_str("# TYPE annal_events_dropped_total counter\n");
    let _ = writeln!(out, "annal_events_dropped_total {}", app.events.dropped());
    out.push_str("# HELP annal_events_suppressed_total System events over the budget, counted in a summary instead of recorded one by one.\n");
    out.push_str("# TYPE annal_events_suppressed_total counter\n");
    let _ = writeln!(out, "annal_events_suppressed_total {}", app.events.suppressed());
    out.push_str("# HELP annal_ratelimit_tracked_keys Keys and tenants holding rate-limiter state.\n");
    out.push_str("# TYPE annal_ratelimit_tracked_keys gauge\n");
    let _ = writeln!(out, "annal_ratelimit_tracked_keys {}", app.limiter.tracked_keys());
    out.push_str("# HELP annal_webhook_deliveries_total Webhook delivery attempts by outcome.\n");
    out.push_str("# TYPE annal_webhook_deliveries_total counter\n");
    let worker = &crate::webhook::worker::COUNTS;
    for (outcome, n) in [
        ("delivered", &worker.delivered),
        ("retried", &worker.retried),
        ("abandoned", &worker.abandoned),
        ("held", &worker.held),
    ] {
        let _ = writeln!(
            out,
            "annal_webhook_deliveries_total{{outcome=\"{outcome}\"}} {}",
            n.load(Ordering::Relaxed)
        );
    }
    // Both absent when the index is off (`worker.enabled = false`) or could
    // not be opened; the lag also until the first pass since start has
    // counted what the watermarks cover. After a failed pass the lag is
    // overstated, never understated, until the next pass counts again.
    if let Some(index) = app.index.as_ref() {
        if let Some(lag) = index.lag_records(&app.store) {
            out.push_str("# HELP annal_index_lag_records Records committed but not yet in the derived index (lineage, payload digests, event queries).\n");
            out.push_str("# TYPE annal_index_lag_records gauge\n");
            let _ = writeln!(out, "annal_index_lag_records {lag}");
        }
        out.push_str("# HELP annal_index_passes_total Index catch-up passes, by the priority of the thread that ran them.\n");
        out.push_str("# TYPE annal_index_passes_total counter\n");
        for (priority, n) in [("low", &crate::indexer::PASSES[0]), ("normal", &crate::indexer::PASSES[1])] {
            let _ = writeln!(
                out,
                "annal_index_passes_total{{priority=\"{priority}\"}} {}",
                n.load(Ordering::Relaxed)
            );
        }
    }
    out.push_str("# HELP annal_ready Whether every readiness check passes (1) or not (0).\n");
    out.push_str("# TYPE annal_ready gauge\n");
    let _ = writeln!(out, "annal_ready {}", u8::from(crate::state::readiness(app).ready));
    out
}
