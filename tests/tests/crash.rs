//! Goal: acknowledged means durable, and shutdown is graceful. Under a
//! 32-client append load, SIGTERM exits 0 within the grace period plus a
//! second, and SIGKILL at an arbitrary moment loses no acknowledged record;
//! after every restart every acknowledged record is present with the hash it
//! was acknowledged with, retries with the same idempotency key never make a
//! second record, and the ledger's export verifies. Method: the real daemon on
//! one data directory, restarted after each signal; cycle counts come from
//! ANNAL_SIGTERM_CYCLES (default 20) and ANNAL_SIGKILL_CYCLES (default 50),
//! so a long run is one environment variable away.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::harness::{Daemon, annal_verify, request};

const CLIENTS: usize = 32;
const GRACE_MS: u64 = 2_000;

fn cycles(var: &str, default: usize) -> usize {
    std::env::var(var).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// What the clients saw: idempotency key -> (seq, hash) for acknowledged
/// appends, and the keys sent without an answer.
#[derive(Default)]
struct Ledger {
    acked: HashMap<String, (u64, String)>,
    unanswered: Vec<String>,
}

/// Runs CLIENTS appenders until `stop` is set or the daemon goes away.
fn load(
    d_addr: std::net::SocketAddr,
    key: &str,
    cycle: usize,
    stop: &AtomicBool,
    seen: &Mutex<Ledger>,
    acks: &AtomicUsize,
) {
    let auth = format!("Bearer {key}");
    std::thread::scope(|s| {
        for client in 0..CLIENTS {
            let auth = auth.clone();
            s.spawn(move || {
                for n in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let idem = format!("c{cycle}-{client}-{n}");
                    let body = format!("{{\"payload\":{{\"idem\":\"{idem}\"}}}}");
                    let headers = [("Authorization", auth.as_str()), ("Idempotency-Key", idem.as_str())];
                    match try_request(d_addr, &headers, body.as_bytes()) {
                        Some((201, json)) => {
                            let seq = json["seq"].as_u64().expect("seq");
                            let hash = json["hash"].as_str().expect("hash").to_owned();
                            seen.lock().expect("lock").acked.insert(idem, (seq, hash));
                            acks.fetch_add(1, Ordering::Relaxed);
                        }
                        Some((503, _)) | None => {
                            seen.lock().expect("lock").unanswered.push(idem);
                            return;
                        }
                        Some((status, json)) => panic!("unexpected {status}: {json}"),
                    }
                }
            });
        }
    });
}

/// One append; `None` when the connection failed (the daemon is gone).
fn try_request(
    addr: std::net::SocketAddr,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Option<(u16, serde_json::Value)> {
    let result =
        std::panic::catch_unwind(|| request(addr, "POST", "/v1/ledgers/orders/records", headers, body));
    let reply = result.ok()?;
    let json = serde_json::from_slice(&reply.body).unwrap_or(serde_json::Value::Null);
    Some((reply.status, json))
}

/// After a restart: every acknowledged record is there with its hash; every
/// unanswered key, retried, lands at most once; the export verifies.
fn audit(d: &Daemon, key: &str, seen: &Mutex<Ledger>) {
    let mut seen = seen.lock().expect("lock");
    let auth = format!("Bearer {key}");
    for idem in std::mem::take(&mut seen.unanswered) {
        let body = format!("{{\"payload\":{{\"idem\":\"{idem}\"}}}}");
        let r = request(
            d.addr,
            "POST",
            "/v1/ledgers/orders/records",
            &[("Authorization", &auth), ("Idempotency-Key", &idem)],
            body.as_bytes(),
        );
        assert_eq!(r.status, 201, "retry of {idem}: {}", String::from_utf8_lossy(&r.body));
        let json = r.json();
        seen.acked.insert(
            idem,
            (json["seq"].as_u64().expect("seq"), json["hash"].as_str().expect("hash").to_owned()),
        );
    }
    let export = d.call("GET", "/v1/ledgers/orders/export", key, None);
    if export.status == 404 && seen.acked.is_empty() {
        return; // nothing was ever appended
    }
    assert_eq!(export.status, 200);
    let text = String::from_utf8(export.body.clone()).expect("utf-8 export");
    let mut by_idem: HashMap<String, Vec<(u64, String)>> = HashMap::new();
    for line in text.lines().filter(|l| l.starts_with("{\"type\":\"record\"")) {
        let v: serde_json::Value = serde_json::from_str(line).expect("record line");
        let payload = STANDARD.decode(v["payload"].as_str().expect("payload")).expect("base64 payload");
        let p: serde_json::Value = serde_json::from_slice(&payload).expect("json payload");
        let idem = p["idem"].as_str().expect("idem").to_owned();
        by_idem
            .entry(idem)
            .or_default()
            .push((v["seq"].as_u64().expect("seq"), v["hash"].as_str().expect("hash").to_owned()));
    }
    for (idem, records) in &by_idem {
        assert_eq!(records.len(), 1, "idempotency key {idem} made {} records", records.len());
    }
    for (idem, acked) in &seen.acked {
        let found = by_idem.get(idem).unwrap_or_else(|| panic!("acknowledged {idem} {acked:?} is missing"));
        assert_eq!(&found[0], acked, "acknowledged {idem} changed");
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("export.jsonl");
    std::fs::write(&path, &export.body).expect("write export");
    let out = std::process::Command::new(annal_verify())
        .args(["export", path.to_str().expect("utf-8"), "--trust-key", &d.trust_key()])
        .output()
        .expect("annal-verify");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
}

fn run_cycles(signal: &str, count: usize) {
    let root = tempfile::tempdir().expect("temp dir");
    let config = format!(
        "[shutdown]\ngrace_ms = {GRACE_MS}\n[rate_limit]\nkey_burst = 1000000\ntenant_burst = 1000000\n"
    );
    let first = Daemon::launch(root.path(), Some(&config), &[]).expect("starts");
    let key = first.tenant_with_key("acme");
    drop(first);
    let seen = Arc::new(Mutex::new(Ledger::default()));
    for cycle in 0..count {
        let mut d = Daemon::launch(root.path(), Some(&config), &[]).expect("restarts");
        audit(&d, &key, &seen);
        let stop = AtomicBool::new(false);
        let acks = AtomicUsize::new(0);
        let addr = d.addr;
        std::thread::scope(|s| {
            s.spawn(|| load(addr, &key, cycle, &stop, &seen, &acks));
            // Let some appends land, at a point that varies by cycle.
            let target = 20 + (cycle * 37) % 200;
            let deadline = Instant::now() + Duration::from_secs(30);
            while acks.load(Ordering::Relaxed) < target && Instant::now() < deadline {
                std::thread::yield_now();
            }
            let sent = Instant::now();
            d.signal(signal);
            let status = d.wait();
            let took = sent.elapsed();
            stop.store(true, Ordering::Relaxed);
            if signal == "TERM" {
                assert_eq!(status.code(), Some(0), "cycle {cycle}: {:?}", d.log());
                assert!(
                    took <= Duration::from_millis(GRACE_MS + 1_000),
                    "cycle {cycle}: SIGTERM took {took:?}"
                );
            }
        });
    }
    let d = Daemon::launch(root.path(), Some(&config), &[]).expect("final restart");
    audit(&d, &key, &seen);
    assert!(seen.lock().expect("lock").acked.len() >= count * 20, "the load acknowledged appends");
}

#[test]
fn sigterm_under_load_drains_and_loses_nothing() {
    run_cycles("TERM", cycles("ANNAL_SIGTERM_CYCLES", 20));
}

#[test]
fn sigkill_under_load_loses_no_acknowledged_record() {
    run_cycles("KILL", cycles("ANNAL_SIGKILL_CYCLES", 50));
}
