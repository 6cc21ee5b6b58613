//! Goal: the tenant and admin HTTP API does what docs/API.md promises, end to
//! end: tenants and keys, durable appends with idempotency, reads and
//! pagination, proof bundles that `annal-verify` accepts (and rejects once
//! tampered), at the latest or an older checkpoint, consistency proofs that
//! tie two signed roots, an online verifier that answers with annal-verify's
//! exact bytes, append-only 405s that are recorded as system events, rate
//! limits with their headers, and tenant isolation with zero leaks on every
//! documented route.
//! Method: the real `annald` on 127.0.0.1:0, raw HTTP, the real verifier;
//! the isolation matrix walks the routes of docs/openapi.json.

use std::process::Command;

use serde_json::json;

use crate::harness::{Daemon, Reply, annal_verify};
use crate::openapi::{Access, Operation, operations};

fn body(r: &Reply) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

fn code(r: &Reply) -> String {
    r.json()["code"].as_str().unwrap_or("").to_owned()
}

fn append(d: &Daemon, key: &str, ledger: &str, payload: serde_json::Value) -> Reply {
    d.call("POST", &format!("/v1/ledgers/{ledger}/records"), key, Some(&json!({ "payload": payload })))
}

#[test]
fn tenant_and_key_lifecycle() {
    let d = Daemon::start(None);
    let admin = d.admin_key();
    let check = |method: &str, path: &str, body: Option<serde_json::Value>, status: u16, code_: &str| {
        let r = d.call(method, path, &admin, body.as_ref());
        assert_eq!(r.status, status, "{method} {path}: {}", String::from_utf8_lossy(&r.body));
        if !code_.is_empty() {
            assert_eq!(code(&r), code_, "{method} {path}");
        }
        r
    };
    check("POST", "/admin/v1/tenants", Some(json!({"id": "acme"})), 201, "");
    check("POST", "/admin/v1/tenants", Some(json!({"id": "acme"})), 409, "tenant.exists");
    check("POST", "/admin/v1/tenants", Some(json!({"id": "annal-system"})), 422, "tenant.reserved");
    check("POST", "/admin/v1/tenants", Some(json!({"id": "Not Valid"})), 400, "request.invalid");
    check("POST", "/admin/v1/tenants", Some(json!({"name": "x"})), 400, "request.invalid");
    check("GET", "/admin/v1/tenants/nope", None, 404, "tenant.not_found");
    let list = check("GET", "/admin/v1/tenants", None, 200, "");
    assert_eq!(list.json()["tenants"][0]["id"], "acme");

    let issued = check("POST", "/admin/v1/tenants/acme/keys", None, 201, "");
    assert_eq!(issued.header("cache-control"), Some("no-store"));
    let key = issued.json()["key"].as_str().expect("secret shown once").to_owned();
    let key_id = issued.json()["key_id"].as_str().expect("key id").to_owned();
    let keys = check("GET", "/admin/v1/tenants/acme/keys", None, 200, "");
    assert!(!body(&keys).contains(&key), "a listed key never shows its secret");
    assert_eq!(keys.json()["keys"][0]["key_id"], key_id.as_str());
    check("POST", "/admin/v1/tenants/nope/keys", None, 404, "tenant.not_found");

    assert_eq!(append(&d, &key, "orders", json!({"n": 1})).status, 201);
    // The tenant's ledgers come a page at a time.
    for l in ["a", "b"] {
        assert_eq!(append(&d, &key, l, json!({"n": 1})).status, 201);
    }
    let t = check("GET", "/admin/v1/tenants/acme?limit=2", None, 200, "").json();
    assert_eq!(t["ledgers"], json!([{"ledger": "a", "size": 1}, {"ledger": "b", "size": 1}]));
    assert_eq!(t["ledgers_next"], "/admin/v1/tenants/acme?after=b&limit=2");
    let t = check("GET", "/admin/v1/tenants/acme?after=b&limit=2", None, 200, "").json();
    assert_eq!(
        (t["ledgers"].clone(), t["ledgers_next"].clone()),
        (json!([{"ledger": "orders", "size": 1}]), json!(null))
    );
    assert_eq!(
        check("GET", "/admin/v1/tenants/acme", None, 200, "").json()["ledgers"].as_array().map(Vec::len),
        Some(3)
    );
    check("GET", "/admin/v1/tenants/acme?limit=0", None, 422, "request.out_of_range");
    check("GET", "/admin/v1/tenants/acme?after=NOT%20A%20NAME", None, 400, "request.invalid");
    check("POST", &format!("/admin/v1/tenants/acme/keys/{key_id}/revoke"), None, 200, "");
    check("POST", &format!("/admin/v1/tenants/acme/keys/{key_id}/revoke"), None, 409, "key.already_revoked");
    check("POST", "/admin/v1/tenants/acme/keys/0000000000000000/revoke", None, 404, "key.not_found");
    let r = append(&d, &key, "orders", json!({"n": 2}));
    assert_eq!((r.status, code(&r)), (401, "auth.invalid_key".to_owned()));
}

#[test]
fn append_read_list_and_idempotency() {
    let d = Daemon::start(None);
    let key = d.tenant_with_key("acme");
    for i in 0..5 {
        let r = append(&d, &key, "orders", json!({"n": i}));
        assert_eq!(r.status, 201, "{}", body(&r));
        assert_eq!(r.json()["seq"], i);
        assert_eq!(r.header("location"), Some(format!("/v1/ledgers/orders/records/{i}").as_str()));
    }
    let r = d.call("GET", "/v1/ledgers/orders/records/3", &key, None);
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["payload"], json!({"n": 3}));
    let r = d.call("GET", "/v1/ledgers/orders/records/99", &key, None);
    assert_eq!((r.status, code(&r)), (404, "record.not_found".to_owned()));
    let r = d.call("GET", "/v1/ledgers/nothing/records/0", &key, None);
    assert_eq!((r.status, code(&r)), (404, "ledger.not_found".to_owned()));

    let page = d.call("GET", "/v1/ledgers/orders/records?limit=2", &key, None);
    assert_eq!(page.json()["records"].as_array().map(Vec::len), Some(2));
    assert_eq!(page.header("link"), Some("</v1/ledgers/orders/records?after=1&limit=2>; rel=\"next\""));
    let page = d.call("GET", "/v1/ledgers/orders/records?after=3&limit=2", &key, None);
    assert_eq!(page.json()["records"][0]["seq"], 4);
    assert_eq!(page.json()["next"], serde_json::Value::Null);
    // A full page that ends the ledger has no next page either.
    let page = d.call("GET", "/v1/ledgers/orders/records?after=2&limit=2", &key, None);
    assert_eq!(page.json()["records"].as_array().map(Vec::len), Some(2));
    assert_eq!((page.json()["next"].clone(), page.header("link")), (serde_json::Value::Null, None));
    let r = d.call("GET", "/v1/ledgers/orders/records?limit=0", &key, None);
    assert_eq!(code(&r), "request.out_of_range");

    // Idempotency: same key and content replays, other content is refused.
    let auth = format!("Bearer {key}");
    let send = |payload: &str| {
        crate::harness::request(
            d.addr,
            "POST",
            "/v1/ledgers/orders/records",
            &[("Authorization", auth.as_str()), ("Idempotency-Key", "order-77")],
            payload.as_bytes(),
        )
    };
    let first = send(r#"{"payload":{"order":77}}"#);
    assert_eq!(first.status, 201);
    let again = send(r#"{"payload":{"order":77}}"#);
    assert_eq!(again.status, 201);
    assert_eq!(again.json()["seq"], first.json()["seq"]);
    assert_eq!(again.json()["replayed"], true);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    let other = send(r#"{"payload":{"order":78}}"#);
    assert_eq!((other.status, code(&other)), (422, "idempotency.key_reused".to_owned()));

    // Bad input changes nothing.
    let before = d.call("GET", "/v1/ledgers/orders/records?limit=1000", &key, None).json()["records"]
        .as_array()
        .map(Vec::len);
    for bad in [r#"{"payload":1,"payload_base64":"AA=="}"#, r#"{}"#, r#"{"payload":1,"extra":1}"#, "not json"]
    {
        let r = crate::harness::request(
            d.addr,
            "POST",
            "/v1/ledgers/orders/records",
            &[("Authorization", auth.as_str())],
            bad.as_bytes(),
        );
        assert_eq!((r.status, code(&r)), (400, "request.invalid".to_owned()), "{bad}");
    }
    let r = d.call(
        "POST",
        "/v1/ledgers/orders/records",
        &key,
        Some(&json!({"payload": 1, "parents": [{"seq": 999}]})),
    );
    assert_eq!((r.status, code(&r)), (422, "lineage.parent_not_found".to_owned()));
    // More parents than a record may have is refused before any is looked
    // up (none of these exists, so a lookup would answer parent_not_found).
    let parents: Vec<_> = (1000..1017).map(|seq| json!({"seq": seq})).collect();
    let r =
        d.call("POST", "/v1/ledgers/orders/records", &key, Some(&json!({"payload": 1, "parents": parents})));
    assert_eq!((r.status, code(&r)), (422, "record.invalid".to_owned()), "{}", body(&r));
    // An Idempotency-Key that is not ASCII is refused, not ignored.
    let r = crate::harness::request(
        d.addr,
        "POST",
        "/v1/ledgers/orders/records",
        &[("Authorization", auth.as_str()), ("Idempotency-Key", "ключ-1")],
        br#"{"payload":{"order":79}}"#,
    );
    assert_eq!((r.status, code(&r)), (400, "idempotency.key_invalid".to_owned()), "{}", body(&r));
    let after = d.call("GET", "/v1/ledgers/orders/records?limit=1000", &key, None).json()["records"]
        .as_array()
        .map(Vec::len);
    assert_eq!(before, after);
}

#[test]
fn concurrent_retries_with_one_idempotency_key_make_one_record() {
    let d = Daemon::start(None);
    let key = d.tenant_with_key("acme");
    let auth = format!("Bearer {key}");
    let seqs: Vec<u64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..16)
            .map(|_| {
                s.spawn(|| {
                    let r = crate::harness::request(
                        d.addr,
                        "POST",
                        "/v1/ledgers/orders/records",
                        &[("Authorization", auth.as_str()), ("Idempotency-Key", "once")],
                        br#"{"payload":{"once":true}}"#,
                    );
                    assert_eq!(r.status, 201, "{}", body(&r));
                    r.json()["seq"].as_u64().expect("seq")
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    assert!(seqs.iter().all(|s| *s == seqs[0]), "{seqs:?}");
    let list = d.call("GET", "/v1/ledgers/orders/records", &key, None);
    assert_eq!(list.json()["records"].as_array().map(Vec::len), Some(1));
}

fn verify(kind: &str, path: &std::path::Path, trust: &str) -> (Option<i32>, String) {
    let out = Command::new(annal_verify())
        .args([kind, path.to_str().expect("utf-8"), "--trust-key", trust])
        .output()
        .expect("run annal-verify");
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn proofs_and_exports_verify_offline_and_fail_once_tampered() {
    let d = Daemon::start(None);
    let key = d.tenant_with_key("acme");
    let admin = d.admin_key();
    for i in 0..6 {
        assert_eq!(append(&d, &key, "orders", json!({"n": i})).status, 201);
    }
    let r = d.call(
        "POST",
        "/v1/ledgers/orders/records",
        &key,
        Some(&json!({"payload": 6, "parents": [{"seq": 2}]})),
    );
    assert_eq!(r.status, 201, "{}", body(&r));
    let r = d.call("POST", "/admin/v1/checkpoints", &admin, None);
    assert_eq!(r.status, 200, "{}", body(&r));

    let cp = d.call("GET", "/v1/ledgers/orders/checkpoint", &key, None);
    assert_eq!(cp.status, 200);
    assert!(body(&cp).starts_with("annal.local/acme/orders\n7\n"), "{}", body(&cp));

    let bundle = d.call("GET", "/v1/ledgers/orders/records/6/proof", &key, None);
    assert_eq!(bundle.status, 200, "{}", body(&bundle));
    assert_eq!(bundle.header("cache-control"), Some("no-store"));
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("bundle.json");
    std::fs::write(&path, &bundle.body).expect("write bundle");
    let trust = d.trust_key();
    let (code_, out) = verify("bundle", &path, &trust);
    assert_eq!(code_, Some(0), "{out}");
    assert!(out.starts_with("verified: record 6 of annal.local/acme/orders"), "{out}");

    // The online verifier answers the same.
    let online = crate::harness::request(
        d.addr,
        "POST",
        "/v1/verify",
        &[("Authorization", &format!("Bearer {key}"))],
        &bundle.body,
    );
    assert_eq!(online.json()["verified"], true);

    let tampered = body(&bundle).replacen("\"payload\":\"Ng==\"", "\"payload\":\"Nw==\"", 1);
    assert_ne!(tampered, body(&bundle), "the payload of record 6 is 6");
    std::fs::write(&path, &tampered).expect("write");
    let (code_, out) = verify("bundle", &path, &trust);
    assert_eq!(code_, Some(1), "{out}");
    assert!(out.contains("record_hash_mismatch"), "{out}");
    let online = crate::harness::request(
        d.addr,
        "POST",
        "/v1/verify",
        &[("Authorization", &format!("Bearer {key}"))],
        tampered.as_bytes(),
    );
    assert_eq!(online.json()["verified"], false);
    assert_eq!(online.json()["reason"], "record_hash_mismatch");

    let export = d.call("GET", "/v1/ledgers/orders/export", &key, None);
    assert_eq!(export.status, 200);
    assert_eq!(export.header("cache-control"), Some("no-store"));
    let path = dir.path().join("orders.jsonl");
    std::fs::write(&path, &export.body).expect("write export");
    let (code_, out) = verify("export", &path, &trust);
    assert_eq!(code_, Some(0), "{out}");
    assert!(out.starts_with("verified: 7 records, 1 checkpoint"), "{out}");

    let r = d.call("GET", "/v1/ledgers/orders/consistency?from=3&to=7", &key, None);
    assert_eq!(r.status, 200, "{}", body(&r));
    let r = d.call("GET", "/v1/ledgers/orders/consistency?from=3&to=70", &key, None);
    assert_eq!(code(&r), "request.out_of_range");

    // The system event ledger verifies the same way.
    let events = d.call("GET", "/admin/v1/events/export", &admin, None);
    assert_eq!(events.status, 200);
    let path = dir.path().join("events.jsonl");
    std::fs::write(&path, &events.body).expect("write events");
    let (code_, out) = verify("export", &path, &trust);
    assert_eq!(code_, Some(0), "{out}");
}

#[test]
fn the_event_ledger_exports_before_its_first_event() {
    let d = Daemon::start(None);
    let events = d.call("GET", "/admin/v1/events/export", &d.admin_key(), None);
    assert_eq!(events.status, 200, "{}", body(&events));
    assert_eq!(events.header("cache-control"), Some("no-store"));
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("events.jsonl");
    std::fs::write(&path, &events.body).expect("write events");
    let (code_, out) = verify("export", &path, &d.trust_key());
    assert_eq!(code_, Some(0), "{out}");
    assert!(out.starts_with("verified: 0 records, 0 checkpoints"), "{out}");
}

#[test]
fn admin_actions_are_recorded_with_the_status_they_answered() {
    let d = Daemon::start(None);
    let admin = format!("Bearer {}", d.admin_key());
    let call = |id: &str, path: &str, body: &[u8]| {
        let headers =
            [("Authorization", admin.as_str()), ("X-Request-Id", id), ("Content-Type", "application/json")];
        crate::harness::request(d.addr, "POST", path, &headers, body)
    };
    assert_eq!(call("adm-1", "/admin/v1/tenants", br#"{"id":"acme"}"#).status, 201);
    let issued = call("adm-2", "/admin/v1/tenants/acme/keys", b"");
    assert_eq!(issued.status, 201);
    let key_id = issued.json()["key_id"].as_str().expect("key id").to_owned();
    assert_eq!(call("adm-3", &format!("/admin/v1/tenants/acme/keys/{key_id}/revoke"), b"").status, 200);
    assert_eq!(call("adm-4", "/admin/v1/tenants/acme/suspend", b"").status, 200);
    let expected = [
        ("adm-1", 201, "tenant acme created".to_owned()),
        ("adm-2", 201, format!("key {key_id} issued for tenant acme")),
        ("adm-3", 200, format!("key {key_id} revoked for tenant acme")),
        ("adm-4", 200, "tenant acme suspended".to_owned()),
    ];
    for (id, status, detail) in expected {
        let mut event = None;
        for _ in 0..500 {
            let r = d.call("GET", &format!("/admin/v1/events?request_id={id}"), &d.admin_key(), None);
            if let Some(e) = r.json()["events"].as_array().and_then(|e| e.first().cloned()) {
                event = Some(e);
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let e = event.unwrap_or_else(|| panic!("no event for {id}"));
        assert_eq!((e["kind"].as_str(), e["code"].as_str()), (Some("admin"), Some("ok")), "{e}");
        assert_eq!(e["status"], status, "{e}");
        assert_eq!(e["detail"], detail.as_str(), "{e}");
    }
}

#[test]
fn history_cannot_be_rewritten_and_attempts_are_recorded() {
    let d = Daemon::start(None);
    let key = d.tenant_with_key("acme");
    assert_eq!(append(&d, &key, "orders", json!(1)).status, 201);
    for method in ["PUT", "PATCH", "DELETE"] {
        for path in ["/v1/ledgers/orders/records/0", "/v1/ledgers/orders", "/v1/ledgers/orders/records"] {
            let r = d.call(method, path, &key, Some(&json!({"payload": 2})));
            assert_eq!((r.status, code(&r)), (405, "ledger.append_only".to_owned()), "{method} {path}");
        }
    }
    let r = d.call("GET", "/v1/ledgers/orders/records/0", &key, None);
    assert_eq!(r.json()["payload"], json!(1));
    let events = wait_for_events(&d, "ledger.append_only", 9);
    assert!(events.iter().all(|e| e["tenant"] == "acme" && e["kind"] == "append_only_violation"));
}

/// Polls the event API until `n` events with `code` are recorded (bounded).
fn wait_for_events(d: &Daemon, code_: &str, n: usize) -> Vec<serde_json::Value> {
    let admin = d.admin_key();
    for _ in 0..500 {
        let r = d.call("GET", &format!("/admin/v1/events?code={code_}&limit=1000"), &admin, None);
        let events = r.json()["events"].as_array().cloned().unwrap_or_default();
        if events.len() >= n {
            return events;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("fewer than {n} {code_} events recorded");
}

#[test]
fn rate_limit_answers_429_with_headers_and_is_recorded() {
    let d = Daemon::start(Some("[rate_limit]\nkey_burst = 3\nkey_window_s = 3600\n"));
    let key = d.tenant_with_key("acme");
    for i in 0..3 {
        let r = append(&d, &key, "orders", json!(i));
        assert_eq!(r.status, 201);
        assert_eq!(r.header("ratelimit-policy"), Some("\"default\";q=3;w=3600"));
        assert!(r.header("ratelimit").is_some_and(|v| v.starts_with(&format!("\"default\";r={};", 2 - i))));
    }
    let r = append(&d, &key, "orders", json!(3));
    assert_eq!((r.status, code(&r)), (429, "rate.limited".to_owned()));
    let retry: u64 = r.header("retry-after").expect("Retry-After").parse().expect("seconds");
    assert!(retry > 0);
    assert_eq!(r.header("ratelimit-policy"), Some("\"default\";q=3;w=3600"));
    let events = wait_for_events(&d, "rate.limited", 1);
    assert_eq!(events[0]["tenant"], "acme");
}

/// An answer as a client could tell it apart: the status, every header but
/// X-Request-Id, Date and the RateLimit counters, and the body with its
/// request id blanked and the names the caller chose itself (`tokens`)
/// replaced by placeholders. A 201's `hash` is blanked too: it is the hash
/// of the caller's own new record.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

fn seen(r: &Reply, tokens: &[(&str, &str)]) -> Seen {
    let swap = |text: &str| tokens.iter().fold(text.to_owned(), |t, (from, to)| t.replace(from, to));
    let mut headers: Vec<(String, String)> = r
        .headers
        .iter()
        .filter_map(|(k, v)| {
            let k = k.to_ascii_lowercase();
            match k.as_str() {
                "x-request-id" | "date" => None,
                // `"default";r=41;t=1`: the bucket's name stays, its counters go.
                "ratelimit" => Some((k, v.split(';').next().unwrap_or("").to_owned())),
                _ => Some((k, swap(v))),
            }
        })
        .collect();
    headers.sort();
    let mut body = swap(&String::from_utf8_lossy(&r.body));
    if let Some(id) = r.header("x-request-id") {
        body = body.replace(&format!("\"request_id\":\"{id}\""), "\"request_id\":\"-\"");
    }
    if r.status == 201
        && let Some(at) = body.find("\"hash\":\"")
    {
        let start = at + "\"hash\":\"".len();
        body.replace_range(start..start + 64, "-");
    }
    Seen { status: r.status, headers, body }
}

/// One request with an optional bearer token.
fn send(d: &Daemon, method: &str, path: &str, token: Option<&str>, body: &[u8]) -> Reply {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = Vec::new();
    if let Some(a) = &auth {
        headers.push(("Authorization", a.as_str()));
    }
    if !body.is_empty() {
        headers.push(("Content-Type", "application/json"));
    }
    crate::harness::request(d.addr, method, path, &headers, body)
}

/// What one side of a comparison fills into a documented path.
#[derive(Clone, Copy)]
struct Fill<'a> {
    ledger: &'a str,
    seq: &'a str,
    digest: &'a str,
    webhook: &'a str,
}

/// A well-formed webhook id no endpoint has.
const NOBODYS_WEBHOOK: &str = "wh_00000000000000000000000000000000";

/// The documented path with its parameters filled in, and its query: the
/// required parameters only, or every one, with sample values.
fn concrete(op: &Operation, fill: Fill<'_>, key_id: &str, every_param: bool) -> String {
    let path = op
        .path
        .replace("{ledger}", fill.ledger)
        .replace("{seq}", fill.seq)
        .replace("{digest}", fill.digest)
        .replace("{tenant}", "alpha")
        .replace("{key_id}", key_id)
        .replace("{id}", fill.webhook)
        .replace("{version}", "1");
    let query: Vec<String> = op
        .query
        .iter()
        .filter(|(_, required)| *required || every_param)
        .map(|(name, _)| {
            let value = match (op.id.as_str(), name.as_str()) {
                ("list_records_by_payload_digest", "after") => "shared:0",
                (_, "tenant") => "alpha",
                (_, "code") => "ok",
                (_, "request_id") => "x",
                (_, "after" | "since_ms") => "0",
                _ => "1",
            };
            format!("{name}={value}")
        })
        .collect();
    if query.is_empty() { path } else { format!("{path}?{}", query.join("&")) }
}

/// The bodies an operation is tried with, each with whether it writes.
fn bodies(op: &Operation, fill: Fill<'_>, bundle: &[u8]) -> Vec<(Vec<u8>, bool)> {
    match op.id.as_str() {
        // A parent named in the other tenant's ledger, then a plain append
        // (which creates the caller's own ledger, so it runs last).
        "append" => vec![
            (
                format!(r#"{{"payload":1,"parents":[{{"ledger":"{}","seq":{}}}]}}"#, fill.ledger, fill.seq)
                    .into_bytes(),
                false,
            ),
            (br#"{"payload":1}"#.to_vec(), true),
        ],
        "verify" => vec![(bundle.to_vec(), false)],
        "create_tenant" => vec![(br#"{"id":"intruder"}"#.to_vec(), false)],
        // Refused before any ledger is looked at: the same whoever names what.
        "create_webhook" => vec![(br#"{"url":"ftp://example.com/"}"#.to_vec(), false)],
        _ if matches!(op.method.as_str(), "PUT" | "PATCH" | "DELETE") => {
            vec![(br#"{"payload":2}"#.to_vec(), false)]
        }
        _ => vec![(Vec::new(), false)],
    }
}

/// The keys of the isolation matrix: two working tenants with data, and
/// every kind of key that must get nothing.
struct Keys {
    admin: String,
    alpha: String,
    beta: String,
    alpha_key_id: String,
    /// Well formed, with a key id nobody has.
    unknown: String,
    /// Alpha's key id with another secret.
    wrong_secret: String,
    revoked: String,
    suspended: String,
}

/// Tenant isolation, walked over every route docs/openapi.json lists (which
/// a test in openapi.rs holds equal to the routes the daemon serves):
/// - for each tenant route, another tenant's existing ledger, record or
///   payload digest answers the caller exactly (status, headers, body but
///   its request id) as one that exists nowhere; `/v1/verify` answers the
///   same whoever asks;
/// - an unknown key, a wrong secret, a revoked key, a malformed key and the
///   admin key get one and the same answer on every tenant route; a
///   suspended tenant's key gets 403 `tenant.suspended`;
/// - any tenant key (or a refused one) on every admin route gets the same
///   answer as an unknown key, and changes nothing;
/// - no answer to another tenant carries alpha's payloads or record hashes.
#[test]
fn tenants_are_isolated_on_every_route() {
    let d = Daemon::start(Some(ANCHOR_ON_DEMAND));
    let admin = d.admin_key();
    let alpha = d.tenant_with_key("alpha");
    let beta = d.tenant_with_key("beta");
    let (revoked, suspended) = d.refused_keys("gamma", "delta");
    let alpha_key_id =
        d.call("GET", "/admin/v1/tenants/alpha/keys", &admin, None).json()["keys"][0]["key_id"]
            .as_str()
            .expect("key id")
            .to_owned();
    let at = alpha.find(&alpha_key_id).expect("the key id is in the key");
    let unknown = alpha.replacen(&alpha_key_id, "ffffffffffffffff", 1);
    assert_ne!(unknown, alpha);
    let secret_at = at + alpha_key_id.len() + 1;
    let flipped = if &alpha[secret_at..=secret_at] == "A" { "B" } else { "A" };
    let wrong_secret = format!("{}{flipped}{}", &alpha[..secret_at], &alpha[secret_at + 1..]);
    let keys = Keys { admin, alpha, beta, alpha_key_id, unknown, wrong_secret, revoked, suspended };

    // Alpha: "orders" (2 records) and "shared" (3); beta: "shared" (1).
    let mut secrets = vec!["alpha-secret".to_owned()];
    let mut alpha_append = |ledger: &str, i: usize| {
        let r = append(&d, &keys.alpha, ledger, json!({"secret": format!("alpha-secret-{ledger}-{i}")}));
        assert_eq!(r.status, 201, "{}", body(&r));
        secrets.push(r.json()["hash"].as_str().expect("hash").to_owned());
    };
    for i in 0..2 {
        alpha_append("orders", i);
    }
    for i in 0..3 {
        alpha_append("shared", i);
    }
    assert_eq!(append(&d, &keys.beta, "shared", json!({"beta": 0})).status, 201);
    let hook = json!({"url": "http://127.0.0.1:9/alpha-secret-hook"});
    let created = d.call("POST", "/v1/ledgers/orders/webhooks", &keys.alpha, Some(&hook));
    assert_eq!(created.status, 201, "{}", body(&created));
    let alpha_webhook = created.json()["id"].as_str().expect("webhook id").to_owned();
    secrets.push(created.json()["secret"].as_str().expect("secret").to_owned());
    anchor_now(&d);
    let bundle = d.call("GET", "/v1/ledgers/orders/records/0/proof", &keys.alpha, None).body;
    let digest = |payload: &str| blake3::hash(payload.as_bytes()).to_hex().to_string();
    let alpha_digest = digest(r#"{"secret":"alpha-secret-orders-0"}"#);
    let nobodys_digest = digest("recorded by nobody");
    // The index has caught up with beta's ledger, so `index_complete` is
    // settled for every comparison below.
    let beta_digest = format!("/v1/payloads/{}/records", digest(r#"{"beta":0}"#));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while d.call("GET", &beta_digest, &keys.beta, None).json()["index_complete"] != true {
        assert!(std::time::Instant::now() < deadline, "the index never caught up");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let leaks = |r: &Reply| -> Vec<String> {
        let text = format!("{:?}{}", r.headers, body(r));
        secrets.iter().filter(|s| text.contains(s.as_str())).cloned().collect()
    };

    let ops = operations();
    let tenant_ops: Vec<&Operation> =
        ops.iter().filter(|o| matches!(o.access, Access::Tenant | Access::TenantOrAnonymous)).collect();
    let admin_ops: Vec<&Operation> = ops.iter().filter(|o| o.access == Access::Admin).collect();
    for id in [
        "append",
        "verify",
        "list_records_by_payload_digest",
        "get_lineage",
        "proof",
        "checkpoint",
        "consistency",
        "export",
        "append_only_put_5",
        "append_only_patch_4",
        "append_only_delete_3",
        "create_webhook",
        "get_webhook",
        "add_webhook_secret",
        "revoke_webhook_secret",
        "disable_webhook",
    ] {
        assert!(tenant_ops.iter().any(|o| o.id == id), "{id} is a tenant route");
    }
    for id in [
        "get_tenant",
        "suspend_tenant",
        "resume_tenant",
        "list_keys",
        "revoke_key",
        "backup",
        "list_events",
        "export_events",
        "anchor_now",
        "metrics",
        "export_ledger",
        "admin_list_webhooks",
        "admin_disable_webhook",
    ] {
        assert!(admin_ops.iter().any(|o| o.id == id), "{id} is an admin route");
    }

    // Foreign vs missing, for the same caller (beta). First pair: a ledger
    // only alpha has vs one nobody has; second: a record only alpha's
    // "shared" has vs one no "shared" has (beta has its own "shared").
    let pairs = [
        (
            Fill { ledger: "orders", seq: "0", digest: &alpha_digest, webhook: &alpha_webhook },
            Fill { ledger: "absent", seq: "0", digest: &nobodys_digest, webhook: NOBODYS_WEBHOOK },
        ),
        (
            Fill { ledger: "shared", seq: "2", digest: &alpha_digest, webhook: &alpha_webhook },
            Fill { ledger: "shared", seq: "7", digest: &alpha_digest, webhook: &alpha_webhook },
        ),
    ];
    let mut writes = Vec::new();
    let mut compared = std::collections::BTreeSet::new();
    for op in &tenant_ops {
        if op.id == "list_webhooks" {
            // The caller's own endpoints: nothing names another tenant's,
            // so beta's list is empty and carries nothing of alpha's.
            let r = send(&d, &op.method, &op.path, Some(&keys.beta), &[]);
            assert_eq!((r.status, &r.json()["webhooks"]), (200, &json!([])), "{}", body(&r));
            assert_eq!(leaks(&r), Vec::<String>::new(), "{} {}", op.method, op.path);
            compared.insert(op.id.clone());
            continue;
        }
        for (foreign, missing) in pairs {
            for every_param in [false, true] {
                if !every_param && op.query.iter().all(|(_, required)| *required) {
                    continue;
                }
                let (path_f, path_m) = (
                    concrete(op, foreign, &keys.alpha_key_id, every_param),
                    concrete(op, missing, &keys.alpha_key_id, every_param),
                );
                for ((body_f, writes_), (body_m, _)) in
                    bodies(op, foreign, &bundle).into_iter().zip(bodies(op, missing, &bundle))
                {
                    let same_request = path_f == path_m && body_f == body_m;
                    if same_request && op.path.contains('{') {
                        // This pair names the same data on this route: nothing to tell apart.
                        continue;
                    }
                    let (path_f, path_m) = (path_f.clone(), path_m.clone());
                    let tokens_f = [(foreign.ledger, "{ledger}"), (foreign.digest, "{digest}")];
                    let tokens_m = if same_request {
                        tokens_f
                    } else {
                        [(missing.ledger, "{ledger}"), (missing.digest, "{digest}")]
                    };
                    let what = format!("{} {path_f} vs {path_m}", op.method);
                    let compare = move |d: &Daemon, keys: &Keys| {
                        let (f, m) = if same_request {
                            // Nothing in the request names a tenant's data
                            // (`/v1/verify`): the answer must not depend on who asks.
                            (
                                send(d, &op.method, &path_f, Some(&keys.beta), &body_f),
                                send(d, &op.method, &path_f, Some(&keys.alpha), &body_f),
                            )
                        } else {
                            (
                                send(d, &op.method, &path_f, Some(&keys.beta), &body_f),
                                send(d, &op.method, &path_m, Some(&keys.beta), &body_m),
                            )
                        };
                        assert_eq!(seen(&f, &tokens_f), seen(&m, &tokens_m), "{what}");
                        let code_ = (f.status >= 400).then(|| code(&f));
                        assert!(
                            f.status < 500 && !code_.as_deref().unwrap_or("").starts_with("route."),
                            "{what}: {} {}",
                            f.status,
                            body(&f)
                        );
                        f
                    };
                    compared.insert(op.id.clone());
                    if writes_ {
                        writes.push((op.id.clone(), compare));
                    } else {
                        let f = compare(&d, &keys);
                        if op.id != "verify" {
                            assert_eq!(leaks(&f), Vec::<String>::new(), "{} {}", op.method, op.path);
                        }
                    }
                }
            }
        }
    }
    let all: std::collections::BTreeSet<String> = tenant_ops.iter().map(|o| o.id.clone()).collect();
    assert_eq!(compared, all, "every tenant route was compared");

    // Refused keys on every tenant route, pointed at alpha's real data.
    let anyone_gets_405 = |op: &Operation| op.access == Access::TenantOrAnonymous;
    for op in &tenant_ops {
        let fill = pairs[0].0;
        let path = concrete(op, fill, &keys.alpha_key_id, true);
        let (body_, _) = bodies(op, fill, &bundle).remove(0);
        let unknown = send(&d, &op.method, &path, Some(&keys.unknown), &body_);
        let expected =
            if anyone_gets_405(op) { (405, "ledger.append_only") } else { (401, "auth.invalid_key") };
        assert_eq!(
            (unknown.status, code(&unknown)),
            (expected.0, expected.1.to_owned()),
            "{} {path}",
            op.method
        );
        let unknown = seen(&unknown, &[]);
        for (who, token) in [
            ("wrong secret", keys.wrong_secret.as_str()),
            ("revoked key", &keys.revoked),
            ("admin key", &keys.admin),
            ("malformed key", "annal_0123456789abcdef_AAAA"),
        ] {
            let r = send(&d, &op.method, &path, Some(token), &body_);
            assert_eq!(seen(&r, &[]), unknown, "{who} on {} {path}", op.method);
        }
        let r = send(&d, &op.method, &path, Some(&keys.suspended), &body_);
        assert_eq!(leaks(&r), Vec::<String>::new(), "suspended on {} {path}", op.method);
        let anonymous = send(&d, &op.method, &path, None, &body_);
        if anyone_gets_405(op) {
            assert_eq!(seen(&r, &[]), unknown, "suspended on {} {path}", op.method);
            assert_eq!(seen(&anonymous, &[]), unknown, "anonymous on {} {path}", op.method);
        } else {
            assert_eq!(
                (r.status, code(&r)),
                (403, "tenant.suspended".to_owned()),
                "suspended on {} {path}",
                op.method
            );
            let got = (anonymous.status, code(&anonymous));
            assert_eq!(got, (401, "auth.required".to_owned()), "anonymous on {} {path}", op.method);
        }
    }

    // Tenant keys on every admin route: the unknown key's answer, nothing done.
    for op in &admin_ops {
        let path = concrete(op, pairs[0].0, &keys.alpha_key_id, true);
        let (body_, _) = bodies(op, pairs[0].0, &bundle).remove(0);
        let unknown = send(&d, &op.method, &path, Some(&keys.unknown), &body_);
        assert_eq!(
            (unknown.status, code(&unknown)),
            (401, "auth.invalid_key".to_owned()),
            "{} {path}",
            op.method
        );
        let unknown = seen(&unknown, &[]);
        for (who, token) in [
            ("its own tenant's key", keys.alpha.as_str()),
            ("another tenant's key", &keys.beta),
            ("a revoked key", &keys.revoked),
            ("a suspended tenant's key", &keys.suspended),
        ] {
            let r = send(&d, &op.method, &path, Some(token), &body_);
            assert_eq!(seen(&r, &[]), unknown, "{who} on {} {path}", op.method);
        }
        let r = send(&d, &op.method, &path, None, &body_);
        assert_eq!(
            (r.status, code(&r)),
            (401, "auth.required".to_owned()),
            "anonymous on {} {path}",
            op.method
        );
    }
    let tenants = d.call("GET", "/admin/v1/tenants", &keys.admin, None).json();
    let ids: Vec<&str> =
        tenants["tenants"].as_array().expect("tenants").iter().filter_map(|t| t["id"].as_str()).collect();
    assert_eq!(ids, ["alpha", "beta", "delta", "gamma"], "no tenant was created");
    let t = d.call("GET", "/admin/v1/tenants/alpha", &keys.admin, None).json();
    assert_eq!(t["status"], "active", "alpha was not suspended: {t}");
    let listed = d.call("GET", "/admin/v1/tenants/alpha/keys", &keys.admin, None).json();
    assert_eq!(listed["keys"].as_array().map(Vec::len), Some(1), "no key was issued: {listed}");
    let hook = d.call("GET", &format!("/v1/webhooks/{alpha_webhook}"), &keys.alpha, None).json();
    assert_eq!(hook["status"], "active", "alpha's webhook was not disabled: {hook}");
    assert_eq!(hook["secrets"].as_array().map(Vec::len), Some(1), "no secret was added: {hook}");
    let beta_hooks = d.call("GET", "/v1/webhooks", &keys.beta, None).json();
    assert_eq!(beta_hooks["webhooks"], json!([]), "beta made no webhook: {beta_hooks}");

    // Last, the appends that create the caller's own ledger: beta's
    // "orders" is beta's, as new as "absent", and alpha's is untouched.
    assert!(!writes.is_empty());
    for (id, compare) in writes {
        let f = compare(&d, &keys);
        assert_eq!(f.status, 201, "{id}: {}", body(&f));
        assert_eq!(f.json()["seq"], 0, "{id}");
    }
    let mine = d.call("GET", "/v1/ledgers/orders/records/0", &keys.beta, None);
    assert_eq!(mine.json()["payload"], json!(1));
    let theirs = d.call("GET", "/v1/ledgers/orders/records?limit=10", &keys.alpha, None).json();
    assert_eq!(theirs["records"].as_array().map(Vec::len), Some(2), "{theirs}");
    assert_eq!(theirs["records"][0]["payload"], json!({"secret": "alpha-secret-orders-0"}));

    // Refusals are recorded: revoked keys attributed to their tenant, and
    // the cross-tenant misses as denials of the caller.
    let denials = wait_for_events(&d, "auth.invalid_key", 8);
    assert!(denials.iter().any(|e| e["tenant"] == "gamma"), "revoked key attempts are attributed");
    let misses = wait_for_events(&d, "ledger.not_found", 1);
    assert!(misses.iter().any(|e| e["tenant"] == "beta" && e["kind"] == "denial"), "{misses:?}");
}

#[test]
fn a_tenant_bucket_refusal_names_the_tenant_policy() {
    let d = Daemon::start(Some("[rate_limit]\ntenant_burst = 2\ntenant_window_s = 3600\n"));
    let first = d.tenant_with_key("acme");
    let admin = d.admin_key();
    let second = d.call("POST", "/admin/v1/tenants/acme/keys", &admin, None).json()["key"]
        .as_str()
        .expect("second key")
        .to_owned();
    assert_eq!(append(&d, &first, "orders", json!(1)).status, 201);
    assert_eq!(append(&d, &second, "orders", json!(2)).status, 201);
    // Each key has tokens left; the tenant's bucket is empty.
    let r = append(&d, &second, "orders", json!(3));
    assert_eq!((r.status, code(&r)), (429, "rate.limited".to_owned()));
    assert_eq!(r.header("ratelimit-policy"), Some("\"tenant\";q=2;w=3600"));
    assert!(r.header("ratelimit").is_some_and(|v| v.starts_with("\"tenant\";r=0;")));
}

/// Opens an export and reads only its status line and head, leaving the
/// body (tens of MB) in the socket: a client that stalled.
fn stalled_export(d: &Daemon, key: &str) -> std::net::TcpStream {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(d.addr).expect("connect");
    s.set_read_timeout(Some(std::time::Duration::from_secs(30))).expect("timeout");
    let head =
        format!("GET /v1/ledgers/big/export HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\r\n");
    s.write_all(head.as_bytes()).expect("send");
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut byte).expect("read head"), 1, "connection closed in the head");
        got.push(byte[0]);
    }
    assert!(got.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&got));
    s
}

/// Exports are bounded: at most 8 stream at once (the next answers 503
/// `overloaded`), and one whose client takes nothing for the request
/// timeout is cut, which frees its place for the next export.
#[test]
fn stalled_exports_are_capped_and_cut() {
    let d = Daemon::start(Some("[server]\nrequest_timeout_ms = 2000\n"));
    let key = d.tenant_with_key("acme");
    // ~24 MB of export, more than a stalled client's socket buffers hold.
    let big = "x".repeat(1_000_000);
    for _ in 0..24 {
        let r = d.call("POST", "/v1/ledgers/big/records", &key, Some(&json!({"payload": big})));
        assert_eq!(r.status, 201, "{}", body(&r));
    }
    let stalled: Vec<_> = (0..8).map(|_| stalled_export(&d, &key)).collect();
    let r = d.call("GET", "/v1/ledgers/big/export", &key, None);
    assert_eq!((r.status, code(&r)), (503, "overloaded".to_owned()), "{}", body(&r));
    // The stalled eight are cut after 2 s without progress; then an export
    // streams whole again. Bounded polling, no timing assertion.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let whole = loop {
        let r = d.call("GET", "/v1/ledgers/big/export", &key, None);
        if r.status == 200 {
            break r;
        }
        assert_eq!(code(&r), "overloaded", "{}", body(&r));
        assert!(std::time::Instant::now() < deadline, "stalled exports were never cut");
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let text = String::from_utf8_lossy(&whole.body);
    let end: serde_json::Value = serde_json::from_str(text.lines().last().expect("lines")).expect("end line");
    assert_eq!((end["type"].clone(), end["records"].clone()), (json!("end"), json!(24)));
    drop(stalled);
}

/// Events past the budget are counted, not recorded one by one: a flood
/// of bad keys leaves the burst's events and then summaries whose counts
/// add up to every refusal, none lost and none recorded twice.
#[test]
fn a_flood_of_denials_is_summarised_past_the_event_budget() {
    let d = Daemon::start(Some("[events]\nburst = 5\nper_s = 1\n"));
    let admin = d.admin_key();
    let sent = 40;
    for _ in 0..sent {
        let r = d.call("GET", "/v1/ledgers/orders/records", "annal_k_0000000000000000_nope", None);
        assert_eq!((r.status, code(&r)), (401, "auth.invalid_key".to_owned()));
    }
    let events = |code: &str| -> Vec<serde_json::Value> {
        let r = d.call("GET", &format!("/admin/v1/events?code={code}&limit=1000"), &admin, None);
        assert_eq!(r.status, 200, "{}", body(&r));
        r.json()["events"].as_array().expect("events").clone()
    };
    // "N since T: auth.invalid_key=n" -> n
    let summarised = |summaries: &[serde_json::Value]| -> u64 {
        summaries
            .iter()
            .map(|e| {
                assert_eq!((e["kind"].clone(), e["status"].clone()), (json!("summary"), json!(0)));
                let detail = e["detail"].as_str().expect("detail");
                let n = detail.rsplit_once("auth.invalid_key=").expect("count by code").1;
                n.parse::<u64>().expect("count")
            })
            .sum()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (one_by_one, summaries) = (events("auth.invalid_key"), events("events.suppressed"));
        let counted = summarised(&summaries);
        if one_by_one.len() as u64 + counted == sent {
            assert!(one_by_one.len() >= 5, "the burst is recorded one by one");
            assert!(counted > 0, "past the budget, refusals are counted");
            break;
        }
        assert!(one_by_one.len() as u64 + counted < sent, "an event counted twice");
        assert!(
            std::time::Instant::now() < deadline,
            "recorded {} + counted {counted} of {sent}",
            one_by_one.len()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let metrics = d.call("GET", "/metrics", &admin, None);
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(
        text.lines().any(
            |l| l.starts_with("annal_events_suppressed_total ") && l != "annal_events_suppressed_total 0"
        ),
        "{text}"
    );
}

/// A tenant's ledgers are capped (`storage.ledgers_per_tenant_max`): the
/// append that would make one more answers 409 `ledger.limit_reached` and
/// creates nothing; appends to its ledgers, and other tenants, go on.
#[test]
fn a_tenant_past_its_ledger_limit_is_refused_a_new_ledger() {
    let d = Daemon::start(Some("[storage]\nledgers_per_tenant_max = 2\n"));
    let acme = d.tenant_with_key("acme");
    let beta = d.tenant_with_key("beta");
    for l in ["a", "b"] {
        assert_eq!(append(&d, &acme, l, json!({"n": 0})).status, 201);
    }
    let r = append(&d, &acme, "c", json!({"n": 0}));
    assert_eq!((r.status, code(&r)), (409, "ledger.limit_reached".to_owned()), "{}", body(&r));
    assert!(r.json()["detail"].as_str().is_some_and(|d| d.contains("2 ledgers")), "{}", body(&r));
    assert_eq!(d.call("GET", "/v1/ledgers/c/records", &acme, None).status, 404, "nothing created");
    assert_eq!(append(&d, &acme, "a", json!({"n": 1})).status, 201);
    assert_eq!(append(&d, &beta, "c", json!({"n": 0})).status, 201);
}

/// A daemon whose anchoring worker never runs on its own during a test, so
/// the checkpoints are exactly the ones the test asks for.
const ANCHOR_ON_DEMAND: &str = "[anchor]\ninterval_ms = 3600000\n";

fn anchor_now(d: &Daemon) {
    let r = d.call("POST", "/admin/v1/checkpoints", &d.admin_key(), None);
    assert_eq!(r.status, 200, "{}", body(&r));
}

/// The root a signed checkpoint note commits to (its third line, base64).
fn note_root(note: &str) -> annal_chain::Hash32 {
    use base64::Engine as _;
    let line = note.lines().nth(2).expect("root line");
    let bytes = base64::engine::general_purpose::STANDARD.decode(line).expect("base64 root");
    annal_chain::Hash32::from_bytes(bytes.try_into().expect("32 bytes"))
}

fn verify_json(kind: &str, path: &std::path::Path, trust: &[String]) -> (Option<i32>, Vec<u8>) {
    let mut cmd = Command::new(annal_verify());
    cmd.args([kind, path.to_str().expect("utf-8"), "--json"]);
    for k in trust {
        cmd.args(["--trust-key", k]);
    }
    let out = cmd.output().expect("run annal-verify");
    (out.status.code(), out.stdout)
}

/// `?size=` on the proof and checkpoint routes, consistency proofs checked
/// against the two signed roots with annal-chain's own verification, and
/// the order of "not found" answers: a missing record is `record.not_found`
/// whether or not its ledger has a checkpoint.
#[test]
fn proofs_at_an_older_checkpoint_and_consistency_between_two_verify() {
    let d = Daemon::start(Some(ANCHOR_ON_DEMAND));
    let key = d.tenant_with_key("acme");
    let get = |path: &str| d.call("GET", path, &key, None);
    let check = |path: &str, status: u16, code_: &str| {
        let r = get(path);
        assert_eq!((r.status, code(&r)), (status, code_.to_owned()), "{path}: {}", body(&r));
    };
    for i in 0..3 {
        assert_eq!(append(&d, &key, "orders", json!({"n": i})).status, 201);
    }
    // No checkpoint yet: a stored record has no proof, a missing one is missing.
    check("/v1/ledgers/orders/records/1/proof", 404, "checkpoint.not_found");
    check("/v1/ledgers/orders/records/9/proof", 404, "record.not_found");
    check("/v1/ledgers/orders/checkpoint", 404, "checkpoint.not_found");
    check("/v1/ledgers/nosuch/records/0/proof", 404, "ledger.not_found");
    anchor_now(&d);
    for i in 3..7 {
        assert_eq!(append(&d, &key, "orders", json!({"n": i})).status, 201);
    }
    anchor_now(&d);

    let old = get("/v1/ledgers/orders/checkpoint?size=3");
    assert_eq!((old.status, old.header("cache-control")), (200, Some("no-store")), "{}", body(&old));
    assert!(body(&old).starts_with("annal.local/acme/orders\n3\n"), "{}", body(&old));
    let latest = get("/v1/ledgers/orders/checkpoint");
    assert!(body(&latest).starts_with("annal.local/acme/orders\n7\n"), "{}", body(&latest));
    assert_eq!(get("/v1/ledgers/orders/checkpoint?size=7").body, latest.body, "size=7 is the latest");
    check("/v1/ledgers/orders/checkpoint?size=5", 404, "checkpoint.not_found");
    // Any missing record answers record.not_found, with or without a size.
    check("/v1/ledgers/orders/records/9/proof", 404, "record.not_found");
    check("/v1/ledgers/orders/records/9/proof?size=3", 404, "record.not_found");
    // A checkpoint that does not cover the record, or no checkpoint of that size.
    check("/v1/ledgers/orders/records/5/proof?size=3", 404, "checkpoint.not_found");
    check("/v1/ledgers/orders/records/1/proof?size=5", 404, "checkpoint.not_found");

    let dir = tempfile::tempdir().expect("temp dir");
    let trust = vec![d.trust_key()];
    let note = dir.path().join("old.note");
    std::fs::write(&note, &old.body).expect("write note");
    let (exit, out) = verify_json("checkpoint", &note, &trust);
    let out: serde_json::Value = serde_json::from_slice(&out).expect("verdict");
    assert_eq!(
        (exit, out["verified"].clone(), out["size"].clone()),
        (Some(0), json!(true), json!(3)),
        "{out}"
    );

    // A bundle against the older checkpoint verifies offline, bound to its root.
    let (old_root, new_root) = (note_root(&body(&old)), note_root(&body(&latest)));
    for (path, size, root) in [
        ("/v1/ledgers/orders/records/1/proof?size=3", 3, &old_root),
        ("/v1/ledgers/orders/records/2/proof?size=3", 3, &old_root),
        ("/v1/ledgers/orders/records/1/proof", 7, &new_root),
    ] {
        let bundle = get(path);
        assert_eq!((bundle.status, bundle.header("cache-control")), (200, Some("no-store")), "{path}");
        let file = dir.path().join("bundle.json");
        std::fs::write(&file, &bundle.body).expect("write bundle");
        let (exit, out) = verify_json("bundle", &file, &trust);
        let out: serde_json::Value = serde_json::from_slice(&out).expect("verdict");
        assert_eq!(exit, Some(0), "{path}: {out}");
        assert_eq!(
            (out["checkpoint_size"].clone(), out["verified"].clone()),
            (json!(size), json!(true)),
            "{path}"
        );
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(root.as_bytes());
        assert_eq!(out["root"], b64.as_str(), "{path}");
    }

    // The consistency proof from 3 to 7 ties the two signed roots together.
    let c = get("/v1/ledgers/orders/consistency?from=3&to=7");
    assert_eq!((c.status, c.header("cache-control")), (200, Some("no-store")), "{}", body(&c));
    let c = c.json();
    assert_eq!(
        (c["from_root"].as_str(), c["to_root"].as_str()),
        (Some(&*old_root.to_hex()), Some(&*new_root.to_hex()))
    );
    let proof: Vec<annal_chain::Hash32> = c["proof"]
        .as_array()
        .expect("proof")
        .iter()
        .map(|h| annal_chain::Hash32::from_hex(h.as_str().expect("hex")).expect("hash"))
        .collect();
    assert!(!proof.is_empty());
    assert!(annal_chain::verify_consistency(3, 7, &old_root, &new_root, &proof), "{c}");
    // The check is not vacuous: another root, or a changed proof, fails it.
    assert!(!annal_chain::verify_consistency(3, 7, &new_root, &new_root, &proof));
    let mut bent = proof.clone();
    bent[0] = annal_chain::Hash32::ZERO;
    assert!(!annal_chain::verify_consistency(3, 7, &old_root, &new_root, &bent));
    // Equal sizes: the empty proof between a root and itself.
    let same = get("/v1/ledgers/orders/consistency?from=7&to=7").json();
    assert_eq!((same["proof"].clone(), same["from_root"].clone()), (json!([]), json!(new_root.to_hex())));
    check("/v1/ledgers/orders/consistency?from=0&to=7", 422, "request.out_of_range");
    check("/v1/ledgers/orders/consistency?from=7&to=3", 422, "request.out_of_range");
    check("/v1/ledgers/orders/consistency?from=3&to=8", 422, "request.out_of_range");
    check("/v1/ledgers/nosuch/consistency?from=1&to=1", 404, "ledger.not_found");
}

/// The `annal_verify_failures_total` counters of `/metrics`, by reason.
fn verify_failures(d: &Daemon) -> std::collections::BTreeMap<String, u64> {
    let r = d.call("GET", "/metrics", &d.admin_key(), None);
    assert_eq!(r.status, 200);
    body(&r)
        .lines()
        .filter_map(|l| l.strip_prefix("annal_verify_failures_total{reason=\""))
        .map(|l| {
            let (reason, n) = l.split_once("\"} ").expect("counter line");
            (reason.to_owned(), n.parse().expect("count"))
        })
        .collect()
}

/// `POST /v1/verify` answers with exactly the bytes `annal-verify bundle
/// FILE --json` prints for the same file, trusting the keys of the
/// daemon's identity log, for a valid bundle and for each kind of
/// tampering; each failure is counted by its reason in `/metrics`.
#[test]
fn online_verification_is_byte_for_byte_annal_verify_and_counts_failures() {
    let d = Daemon::start(Some(ANCHOR_ON_DEMAND));
    let key = d.tenant_with_key("acme");
    for i in 0..4 {
        assert_eq!(append(&d, &key, "orders", json!({"n": i})).status, 201);
    }
    let r = d.call(
        "POST",
        "/v1/ledgers/orders/records",
        &key,
        Some(&json!({"payload": {"n": 4}, "parents": [{"seq": 1}]})),
    );
    assert_eq!(r.status, 201, "{}", body(&r));
    anchor_now(&d);
    let bundle = body(&d.call("GET", "/v1/ledgers/orders/records/4/proof", &key, None));
    // The keys an auditor passes: every key of the identity log.
    let identity = d.get("/v1/identity").json();
    let trust: Vec<String> = identity["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["key"].as_str().expect("vkey").to_owned())
        .collect();
    assert!(!trust.is_empty());

    let replace_once = |from: &str, to: &str| {
        assert!(bundle.contains(from), "{from} in {bundle}");
        bundle.replacen(from, to, 1)
    };
    // A character of the signature line, well past its key id.
    let signature = {
        let sig = bundle.find("\u{2014} ").expect("signature line");
        let start = sig + bundle[sig..].find(' ').expect("space") + 1;
        let start = start + bundle[start..].find(' ').expect("space") + 1 + 30;
        let c = if &bundle[start..=start] == "A" { "B" } else { "A" };
        format!("{}{c}{}", &bundle[..start], &bundle[start + 1..])
    };
    let inclusion = {
        let at = bundle.find("\"inclusion\":[\"").expect("inclusion") + "\"inclusion\":[\"".len();
        let c = if &bundle[at..=at] == "0" { "1" } else { "0" };
        format!("{}{c}{}", &bundle[..at], &bundle[at + 1..])
    };
    // The bundle's proof for the parent (the record's own list comes first).
    let parent_proof = {
        let named = "\"parents\":[{\"ledger\":\"orders\",\"seq\":1,";
        let at = bundle.rfind(named).expect("parent proof") + named.len() - 2;
        format!("{}0{}", &bundle[..at], &bundle[at + 1..])
    };
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let cases: Vec<(&str, String)> = vec![
        ("valid", bundle.clone()),
        ("payload", replace_once(&format!("\"{}\"", b64("{\"n\":4}")), &format!("\"{}\"", b64("{\"n\":5}")))),
        ("inclusion", inclusion),
        ("signature", signature),
        ("signer name", replace_once("\u{2014} annal.local ", "\u{2014} other.example ")),
        ("parent proof", parent_proof),
        ("format", replace_once("\"format\":1,", "\"format\":2,")),
        ("truncated", bundle[..bundle.len() / 2].to_owned()),
        ("not json", "not a bundle".to_owned()),
    ];
    // docs/openapi.json's Verdict lists the members in the order they come.
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(crate::openapi::document_path()).expect("doc"))
            .expect("json");
    let documented_keys = |i: usize| -> Vec<String> {
        let required = &doc["components"]["schemas"]["Verdict"]["oneOf"][i]["required"];
        required.as_array().expect("required").iter().map(|k| k.as_str().expect("key").to_owned()).collect()
    };
    let before = verify_failures(&d);
    let dir = tempfile::tempdir().expect("temp dir");
    let mut failed: std::collections::BTreeMap<String, u64> = Default::default();
    for (name, text) in &cases {
        let file = dir.path().join("bundle.json");
        std::fs::write(&file, text).expect("write bundle");
        let (exit, cli) = verify_json("bundle", &file, &trust);
        let online = crate::harness::request(
            d.addr,
            "POST",
            "/v1/verify",
            &[("Authorization", &format!("Bearer {key}"))],
            text.as_bytes(),
        );
        assert_eq!((online.status, online.header("content-type")), (200, Some("application/json")), "{name}");
        assert_eq!(
            body(&online),
            String::from_utf8_lossy(&cli),
            "{name}: the daemon and annal-verify differ"
        );
        let verdict: serde_json::Value = serde_json::from_slice(&cli).expect("verdict");
        let keys = documented_keys(if *name == "valid" { 0 } else { 1 });
        let text = body(&online);
        let at: Vec<usize> = keys.iter().map(|k| text.find(&format!("\"{k}\":")).expect(k)).collect();
        assert!(at.is_sorted() && verdict.as_object().map(|o| o.len()) == Some(keys.len()), "{name}: {text}");
        assert_eq!(verdict["verified"] == true, *name == "valid", "{name}: {verdict}");
        assert_eq!(exit, Some(if *name == "valid" { 0 } else { 1 }), "{name}");
        if let Some(reason) = verdict["reason"].as_str() {
            *failed.entry(reason.to_owned()).or_default() += 1;
        }
    }
    // Each tampering was caught for its own reason.
    let reasons: Vec<&str> = failed.keys().map(String::as_str).collect();
    assert_eq!(
        reasons,
        [
            "anchor_mismatch",
            "bad_signature",
            "lineage_mismatch",
            "malformed",
            "record_hash_mismatch",
            "unknown_signer",
            "unsupported_version"
        ],
        "{failed:?}"
    );
    let after = verify_failures(&d);
    assert_eq!(after.len(), before.len(), "a counter per reason");
    for (reason, n) in &after {
        let expected = failed.get(reason).copied().unwrap_or(0);
        assert_eq!(n - before[reason], expected, "annal_verify_failures_total{{reason=\"{reason}\"}}");
    }
}
