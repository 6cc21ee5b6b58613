//! Goal: the tenant and admin HTTP API does what docs/API.md promises, end to
//! end: tenants and keys, durable appends with idempotency, reads and
//! pagination, proof bundles that `annal-verify` accepts (and rejects once
//! tampered), append-only 405s that are recorded as system events, rate
//! limits with their headers, and tenant isolation with zero leaks.
//! Method: the real `annald` on 127.0.0.1:0, raw HTTP, the real verifier.

use std::process::Command;

use serde_json::json;

use crate::harness::{Daemon, Reply, annal_verify};

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

#[test]
fn tenants_are_isolated() {
    let d = Daemon::start(None);
    let admin = d.admin_key();
    let a = d.tenant_with_key("alpha");
    let b = d.tenant_with_key("beta");
    let (revoked, suspended) = d.refused_keys("gamma", "delta");
    assert_eq!(append(&d, &a, "orders", json!({"secret": "alpha"})).status, 201);
    assert_eq!(d.call("POST", "/admin/v1/checkpoints", &admin, None).status, 200);

    let routes: [(&str, &str); 8] = [
        ("GET", "/v1/ledgers/orders/records"),
        ("GET", "/v1/ledgers/orders/records/0"),
        ("GET", "/v1/ledgers/orders/records/0/proof"),
        ("GET", "/v1/ledgers/orders/checkpoint"),
        ("GET", "/v1/ledgers/orders/consistency?from=1&to=1"),
        ("GET", "/v1/ledgers/orders/export"),
        ("POST", "/v1/ledgers/orders/records"),
        ("POST", "/v1/verify"),
    ];
    for (method, path) in routes {
        let body = (method == "POST").then(|| json!({"payload": 1}));
        // Beta sees alpha's ledger exactly as a ledger that does not exist.
        let foreign = d.call(method, path, &b, body.as_ref());
        let missing = d.call(method, &path.replace("orders", "nosuch"), &a, body.as_ref());
        if method == "GET" {
            assert_eq!((foreign.status, code(&foreign)), (missing.status, code(&missing)), "{method} {path}");
            assert_eq!(foreign.status, 404, "{method} {path}");
        }
        assert!(!String::from_utf8_lossy(&foreign.body).contains("alpha"), "{method} {path} leaked");
        let r = d.call(method, path, &revoked, body.as_ref());
        assert_eq!((r.status, code(&r)), (401, "auth.invalid_key".to_owned()), "revoked {method} {path}");
        let r = d.call(method, path, &suspended, body.as_ref());
        assert_eq!((r.status, code(&r)), (403, "tenant.suspended".to_owned()), "suspended {method} {path}");
        let r = d.call(method, path, &admin, body.as_ref());
        assert_eq!(
            (r.status, code(&r)),
            (401, "auth.invalid_key".to_owned()),
            "admin key on {method} {path}"
        );
        let r = d.call(method, path, "annal_0123456789abcdef_AAAA", body.as_ref());
        assert_eq!((r.status, code(&r)), (401, "auth.invalid_key".to_owned()), "malformed {method} {path}");
        let r = crate::harness::request(d.addr, method, path, &[], b"");
        assert_eq!((r.status, code(&r)), (401, "auth.required".to_owned()), "anonymous {method} {path}");
    }
    // Beta's own write to "orders" made beta's own ledger, not alpha's.
    let mine = d.call("GET", "/v1/ledgers/orders/records/0", &b, None);
    assert_eq!(mine.json()["payload"], json!(1));
    let theirs = d.call("GET", "/v1/ledgers/orders/records/0", &a, None);
    assert_eq!(theirs.json()["payload"], json!({"secret": "alpha"}));

    for (method, path) in [
        ("GET", "/admin/v1/tenants"),
        ("POST", "/admin/v1/tenants/alpha/keys"),
        ("GET", "/admin/v1/events"),
        ("GET", "/admin/v1/events/export"),
        ("GET", "/admin/v1/ledgers/alpha/orders/export"),
        ("POST", "/admin/v1/checkpoints"),
        ("GET", "/metrics"),
    ] {
        let r = d.call(method, path, &a, None);
        assert_eq!(
            (r.status, code(&r)),
            (401, "auth.invalid_key".to_owned()),
            "tenant key on {method} {path}"
        );
    }
    let denials = wait_for_events(&d, "auth.invalid_key", 8);
    assert!(denials.iter().any(|e| e["tenant"] == "gamma"), "revoked key attempts are attributed");
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
