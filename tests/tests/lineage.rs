//! Goal: the lineage route lists a record's ancestors (same- and
//! cross-ledger parents, from redb) and descendants (from the derived sled
//! index) with the index watermark; another tenant's ledger answers exactly
//! like a missing one; the admin event query finds events by request id,
//! tenant and code through the index; and a daemon restarted with its index
//! directory wiped catches up to the same answers.
//! Method: the real `annald` on 127.0.0.1:0 with a kept data dir, raw HTTP;
//! waiting for the indexer is bounded polling of the answers themselves.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{Daemon, Reply, request};

const POLL_MAX: Duration = Duration::from_secs(30);

fn code(r: &Reply) -> String {
    r.json()["code"].as_str().unwrap_or("").to_owned()
}

/// Appends and returns the record's hash.
fn append(d: &Daemon, key: &str, ledger: &str, payload: Value, parents: Value) -> String {
    let body = json!({"payload": payload, "parents": parents});
    let r = d.call("POST", &format!("/v1/ledgers/{ledger}/records"), key, Some(&body));
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    r.json()["hash"].as_str().expect("hash").to_owned()
}

/// Polls until `done` accepts an answer; bounded.
fn poll(what: &str, mut ask: impl FnMut() -> Value, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + POLL_MAX;
    loop {
        let v = ask();
        if done(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not reached; last answer {v}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The lineage of `ledger/seq`, once the index covers every ledger of the tenant.
fn lineage(d: &Daemon, key: &str, ledger: &str, seq: u64) -> Value {
    let path = format!("/v1/ledgers/{ledger}/records/{seq}/lineage");
    poll(
        &path,
        || {
            let r = d.call("GET", &path, key, None);
            assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
            r.json()
        },
        |v| v["index_complete"] == true && v["index_watermark"] == v["ledger_size"],
    )
}

fn nodes(v: &Value) -> BTreeSet<(String, u64, String, u64)> {
    v.as_array()
        .expect("node list")
        .iter()
        .map(|n| {
            (
                n["ledger"].as_str().expect("ledger").to_owned(),
                n["seq"].as_u64().expect("seq"),
                n["hash"].as_str().expect("hash").to_owned(),
                n["depth"].as_u64().expect("depth"),
            )
        })
        .collect()
}

/// orders/0 ← orders/1 ← invoices/0 (also ← orders/0) ← orders/2.
struct Family {
    o0: String,
    o1: String,
    i0: String,
    o2: String,
}

fn family(d: &Daemon, key: &str) -> Family {
    let o0 = append(d, key, "orders", json!({"n": 0}), json!([]));
    let o1 = append(d, key, "orders", json!({"n": 1}), json!([{"seq": 0}]));
    let i0 = append(
        d,
        key,
        "invoices",
        json!({"for": 1}),
        json!([{"ledger": "orders", "seq": 1, "hash": o1}, {"ledger": "orders", "seq": 0}]),
    );
    let o2 = append(d, key, "orders", json!({"n": 2}), json!([{"ledger": "invoices", "seq": 0}]));
    Family { o0, o1, i0, o2 }
}

fn check_family(d: &Daemon, key: &str, f: &Family) {
    let s = |l: &str, seq: u64, h: &str, depth: u64| (l.to_owned(), seq, h.to_owned(), depth);
    let v = lineage(d, key, "orders", 1);
    assert_eq!(
        (v["ledger"].clone(), v["seq"].clone(), v["hash"].clone()),
        (json!("orders"), json!(1), json!(f.o1))
    );
    assert_eq!(nodes(&v["ancestors"]), BTreeSet::from([s("orders", 0, &f.o0, 1)]));
    assert_eq!(
        nodes(&v["descendants"]),
        BTreeSet::from([s("invoices", 0, &f.i0, 1), s("orders", 2, &f.o2, 2)])
    );
    assert_eq!(
        (v["ancestors_truncated"].clone(), v["descendants_truncated"].clone()),
        (json!(false), json!(false))
    );
    assert_eq!(v["ledger_size"], 3);

    let v = lineage(d, key, "orders", 0);
    assert!(nodes(&v["ancestors"]).is_empty());
    assert_eq!(
        nodes(&v["descendants"]),
        BTreeSet::from([s("orders", 1, &f.o1, 1), s("invoices", 0, &f.i0, 1), s("orders", 2, &f.o2, 2)]),
        "each descendant once, at its shortest depth"
    );

    let v = lineage(d, key, "orders", 2);
    assert_eq!(
        nodes(&v["ancestors"]),
        BTreeSet::from([s("invoices", 0, &f.i0, 1), s("orders", 1, &f.o1, 2), s("orders", 0, &f.o0, 2)])
    );
    assert!(nodes(&v["descendants"]).is_empty());
}

#[test]
fn lineage_lists_same_and_cross_ledger_ancestors_and_descendants() {
    let d = Daemon::start(None);
    let key = d.tenant_with_key("acme");
    let f = family(&d, &key);
    check_family(&d, &key, &f);

    let r = d.call("GET", "/v1/ledgers/orders/records/99/lineage", &key, None);
    assert_eq!((r.status, code(&r)), (404, "record.not_found".to_owned()));
    let r = d.call("GET", "/v1/ledgers/nothing/records/0/lineage", &key, None);
    assert_eq!((r.status, code(&r)), (404, "ledger.not_found".to_owned()));
    let r = d.call("GET", "/v1/ledgers/NOT%20VALID/records/0/lineage", &key, None);
    assert_eq!((r.status, code(&r)), (404, "ledger.not_found".to_owned()));
}

/// The nice value (field 19 of `/proc/<pid>/task/<tid>/stat`) of each of
/// the daemon's threads named `name`.
fn thread_nice(pid: u32, name: &str) -> Vec<i64> {
    let mut nice = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).expect("tasks") {
        let dir = task.expect("task").path();
        if std::fs::read_to_string(dir.join("comm")).is_ok_and(|c| c.trim() == name) {
            let stat = std::fs::read_to_string(dir.join("stat")).expect("stat");
            // Fields after the parenthesised name; the name may hold spaces.
            let rest = &stat[stat.rfind(')').expect("comm end") + 2..];
            nice.push(rest.split(' ').nth(16).expect("nice field").parse().expect("nice"));
        }
    }
    nice
}

/// Index passes run on threads of their own: one at the lowest priority
/// (`INDEX_THREAD_NICE`), so indexing takes CPU time appends leave over,
/// and one at normal priority for an index left behind too long; the
/// request path and the committer stay at normal priority; the index
/// catches up.
#[test]
fn index_passes_run_on_threads_of_their_own_at_low_priority_first() {
    let d = Daemon::start(None);
    let key = d.tenant_with_key("acme");
    let f = family(&d, &key);
    check_family(&d, &key, &f);
    // Whatever nice value the test runs at, the daemon's other threads keep
    // it; the low-priority indexing thread sets 19.
    let own = thread_nice(d.pid(), "annald")[0];
    assert_eq!(thread_nice(d.pid(), "annal-index-low"), vec![19]);
    assert_eq!(thread_nice(d.pid(), "annal-index"), vec![own]);
    let workers = thread_nice(d.pid(), "tokio-rt-worker");
    assert!(!workers.is_empty() && workers.iter().all(|&n| n == own), "{workers:?}");
    assert_eq!(thread_nice(d.pid(), "annal-committer"), vec![own]);
    // Once the event writer has recorded the admin calls too, nothing is
    // behind.
    poll("index lag 0", || json!(d.metric("annal_index_lag_records")), |v| *v == json!(0));
    // Never that far behind here: every pass ran at low priority.
    let low = d.metric("annal_index_passes_total{priority=\"low\"}");
    let normal = d.metric("annal_index_passes_total{priority=\"normal\"}");
    assert!(low.is_some_and(|n| n > 0) && normal == Some(0), "low {low:?}, normal {normal:?}");
}

/// A record's children past what one answer lists (`LINEAGE_NODES_MAX`,
/// 256): exactly 256 are listed whole; one more and the answer lists the
/// first 256 in (ledger, seq) order and says it was cut short.
#[test]
fn a_record_with_more_children_than_an_answer_lists_is_truncated() {
    let d = Daemon::start(None);
    let key = d.tenant_with_key("acme");
    let children = |v: &Value| -> (Vec<(u64, u64)>, Value) {
        let listed = v["descendants"]
            .as_array()
            .expect("descendants")
            .iter()
            .map(|n| (n["seq"].as_u64().expect("seq"), n["depth"].as_u64().expect("depth")))
            .collect();
        (listed, v["descendants_truncated"].clone())
    };
    let first_256: Vec<(u64, u64)> = (1..=256).map(|s| (s, 1)).collect();
    append(&d, &key, "orders", json!({"n": 0}), json!([]));
    for n in 1..=256 {
        append(&d, &key, "orders", json!({"n": n}), json!([{"seq": 0}]));
    }
    assert_eq!(children(&lineage(&d, &key, "orders", 0)), (first_256.clone(), json!(false)));
    append(&d, &key, "orders", json!({"n": 257}), json!([{"seq": 0}]));
    let v = lineage(&d, &key, "orders", 0);
    assert_eq!(v["ledger_size"], 258);
    assert_eq!(children(&v), (first_256, json!(true)));
}

#[test]
fn another_tenants_ledger_is_exactly_a_missing_one_on_the_lineage_route() {
    let d = Daemon::start(None);
    let acme = d.tenant_with_key("acme");
    let beta = d.tenant_with_key("beta");
    family(&d, &acme);
    let strip = |r: &Reply| {
        let mut v = r.json();
        v["request_id"] = Value::Null;
        (r.status, v)
    };
    let foreign = d.call("GET", "/v1/ledgers/orders/records/1/lineage", &beta, None);
    let missing = d.call("GET", "/v1/ledgers/never/records/1/lineage", &beta, None);
    assert_eq!(strip(&foreign), strip(&missing));
    assert_eq!(code(&foreign), "ledger.not_found");
    assert!(!String::from_utf8_lossy(&foreign.body).contains("invoices"));

    // beta's own ledger of the same name is its own, with no acme lineage.
    append(&d, &beta, "orders", json!({"beta": true}), json!([]));
    let v = lineage(&d, &beta, "orders", 0);
    assert!(nodes(&v["ancestors"]).is_empty() && nodes(&v["descendants"]).is_empty(), "{v}");
    // And acme's descendants never include beta's records.
    let v = lineage(&d, &acme, "orders", 0);
    assert_eq!(nodes(&v["descendants"]).len(), 3);

    for token in ["", "annal_k_0000000000000000_nope", d.admin_key().as_str()] {
        let r = d.call("GET", "/v1/ledgers/orders/records/0/lineage", token, None);
        assert_eq!(r.status, 401, "token {token:?}");
    }
}

/// Polls the event API with `query` until `n` events match and the answer
/// read only those (`scanned == n`: the index found them, nothing was scanned).
fn indexed_events(d: &Daemon, query: &str, n: usize) -> Vec<Value> {
    let admin = d.admin_key();
    let v = poll(
        query,
        || {
            let r = d.call("GET", &format!("/admin/v1/events?{query}&limit=1000"), &admin, None);
            assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
            r.json()
        },
        |v| v["events"].as_array().is_some_and(|e| e.len() == n) && v["scanned"] == n as u64,
    );
    v["events"].as_array().expect("events").clone()
}

/// Three denied requests with chosen ids: two for beta (a foreign ledger, a
/// missing record of its own... answered as ledger.not_found), one bad key.
fn denials(d: &Daemon, beta: &str) {
    let auth = format!("Bearer {beta}");
    for (id, path) in
        [("lin-req-1", "/v1/ledgers/orders/records/0"), ("lin-req-2", "/v1/ledgers/nope/records/0")]
    {
        let r = request(d.addr, "GET", path, &[("Authorization", &auth), ("X-Request-Id", id)], b"");
        assert_eq!(r.status, 404);
    }
    let bad = [("Authorization", "Bearer annal_k_0000000000000000_nope"), ("X-Request-Id", "lin-req-3")];
    assert_eq!(request(d.addr, "GET", "/v1/ledgers/orders/records", &bad, b"").status, 401);
}

fn check_events(d: &Daemon) {
    let one = indexed_events(d, "request_id=lin-req-2", 1);
    assert_eq!(one[0]["code"], "ledger.not_found");
    assert_eq!(one[0]["tenant"], "beta");
    assert_eq!(one[0]["route"], "GET /v1/ledgers/{ledger}/records/{seq}");
    let beta = indexed_events(d, "tenant=beta&code=ledger.not_found", 2);
    let ids: BTreeSet<_> = beta.iter().map(|e| e["request_id"].as_str().expect("id").to_owned()).collect();
    assert_eq!(ids, BTreeSet::from(["lin-req-1".to_owned(), "lin-req-2".to_owned()]));
    let bad = indexed_events(d, "code=auth.invalid_key", 1);
    assert_eq!(bad[0]["request_id"], "lin-req-3");
    // Time filters still apply on top of the index, and `after` pages.
    let t = one[0]["time_ms"].as_u64().expect("time");
    let path = format!("/admin/v1/events?request_id=lin-req-2&since_ms={}", t + 1);
    let late = d.call("GET", &path, &d.admin_key(), None).json();
    assert_eq!(
        (late["events"].clone(), late["scanned"].clone()),
        (json!([]), json!(1)),
        "read, then filtered"
    );
    let first = beta[0]["seq"].as_u64().expect("seq");
    let rest = indexed_events(d, &format!("tenant=beta&code=ledger.not_found&after={first}"), 1);
    assert_eq!(rest[0]["seq"], beta[1]["seq"]);
}

#[test]
fn events_are_found_by_request_id_tenant_and_code_through_the_index() {
    let d = Daemon::start(None);
    let acme = d.tenant_with_key("acme");
    let beta = d.tenant_with_key("beta");
    append(&d, &acme, "orders", json!(1), json!([]));
    // Admin actions make events that the filters below must skip.
    for i in 0..20 {
        d.tenant_with_key(&format!("noise{i}"));
    }
    denials(&d, &beta);
    check_events(&d);
}

fn stop(mut d: Daemon) {
    d.signal("TERM");
    assert!(d.wait().success(), "clean exit");
}

#[test]
fn a_restart_with_a_wiped_index_catches_up_to_the_same_answers() {
    let root = tempfile::tempdir().expect("temp dir");
    let start = |root: &Path| Daemon::launch(root, None, &[]).unwrap_or_else(|e| panic!("annald: {e:?}"));
    let d = start(root.path());
    let acme = d.tenant_with_key("acme");
    let beta = d.tenant_with_key("beta");
    let f = family(&d, &acme);
    denials(&d, &beta);
    check_family(&d, &acme, &f);
    check_events(&d);
    stop(d);

    let index = root.path().join("data/index");
    assert!(index.is_dir(), "the index lives in <data dir>/index");
    std::fs::remove_dir_all(&index).expect("wipe the index");
    let d = start(root.path());
    check_family(&d, &acme, &f);
    check_events(&d);
    stop(d);
}
