//! Goal: `GET /v1/payloads/{digest}/records` lists exactly the caller's
//! records whose payload bytes have that blake3 digest (JSON and base64
//! payloads alike), in (ledger, seq) order, in pages that follow the `Link`
//! header; another tenant's records answer like a digest nobody recorded;
//! bad input gets its stable code, and every key that may not read gets the
//! same refusals as on the other tenant routes.
//! Method: the real `annald` on 127.0.0.1:0, raw HTTP; waiting for the
//! indexer is bounded polling of the answer's `index_complete`.

use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

use crate::harness::{Daemon, Reply, request};

const POLL_MAX: Duration = Duration::from_secs(30);

fn code(r: &Reply) -> String {
    r.json()["code"].as_str().unwrap_or("").to_owned()
}

/// Appends and returns (ledger, seq, hash).
fn append(d: &Daemon, key: &str, ledger: &str, body: Value) -> (String, u64, String) {
    let r = d.call("POST", &format!("/v1/ledgers/{ledger}/records"), key, Some(&body));
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let v = r.json();
    (ledger.to_owned(), v["seq"].as_u64().expect("seq"), v["hash"].as_str().expect("hash").to_owned())
}

/// The answer for `path` once the index covers every ledger of the tenant.
fn complete(d: &Daemon, key: &str, path: &str) -> Reply {
    let deadline = Instant::now() + POLL_MAX;
    loop {
        let r = d.call("GET", path, key, None);
        assert_eq!(r.status, 200, "{path}: {}", String::from_utf8_lossy(&r.body));
        if r.json()["index_complete"] == true {
            return r;
        }
        assert!(Instant::now() < deadline, "{path}: the index never caught up");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn listed(r: &Reply) -> Vec<(String, u64, String)> {
    r.json()["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|e| {
            let (ledger, seq) = (e["ledger"].as_str().expect("ledger"), e["seq"].as_u64().expect("seq"));
            assert_eq!(e["record_url"], format!("/v1/ledgers/{ledger}/records/{seq}"));
            assert_eq!(e["proof_url"], format!("/v1/ledgers/{ledger}/records/{seq}/proof"));
            (ledger.to_owned(), seq, e["hash"].as_str().expect("hash").to_owned())
        })
        .collect()
}

#[test]
fn records_are_found_by_payload_digest_within_the_tenant() {
    let d = Daemon::start(None);
    let acme = d.tenant_with_key("acme");
    let beta = d.tenant_with_key("beta");
    let doc = br#"{"doc":"same"}"#;
    let digest = blake3::hash(doc).to_hex().to_string();
    let as_json = || json!({"payload": {"doc": "same"}});
    let as_bytes = json!({"payload_base64": base64::engine::general_purpose::STANDARD.encode(doc)});
    let mut expected = vec![
        append(&d, &acme, "orders", as_json()),
        append(&d, &acme, "orders", json!({"payload": {"doc": "other"}})),
        append(&d, &acme, "orders", as_bytes),
        append(&d, &acme, "invoices", as_json()),
    ];
    expected.remove(1);
    expected.sort();
    let mine = append(&d, &beta, "orders", as_json());

    let path = format!("/v1/payloads/{digest}/records");
    let all = complete(&d, &acme, &path);
    assert_eq!(all.json()["payload_digest"], digest);
    assert_eq!(listed(&all), expected);
    assert_eq!(all.json()["next"], Value::Null);
    assert!(all.header("link").is_none());

    // Pages of two follow the Link header to the same list.
    let first = complete(&d, &acme, &format!("{path}?limit=2"));
    let next = first.json()["next"].as_str().expect("a next page").to_owned();
    assert_eq!(first.header("link"), Some(format!("<{next}>; rel=\"next\"").as_str()));
    let second = complete(&d, &acme, &next);
    assert_eq!([listed(&first), listed(&second)].concat(), expected);
    assert_eq!(second.json()["next"], Value::Null, "a short page is the last");

    // Beta sees only its own record; a digest nobody recorded lists nothing.
    assert_eq!(listed(&complete(&d, &beta, &path)), vec![mine]);
    let nobody = format!("/v1/payloads/{}/records", blake3::hash(b"nobody").to_hex());
    assert!(listed(&complete(&d, &acme, &nobody)).is_empty());
}

#[test]
fn the_payload_digest_route_refuses_bad_input_and_foreign_keys() {
    let d = Daemon::start(None);
    let admin = d.admin_key();
    let acme = d.tenant_with_key("acme");
    let (revoked, suspended) = d.refused_keys("gamma", "delta");
    let digest = blake3::hash(b"x").to_hex().to_string();
    let path = format!("/v1/payloads/{digest}/records");

    for (query, status, expected) in [
        (format!("/v1/payloads/{}/records", digest.to_uppercase()), 400, "request.invalid"),
        ("/v1/payloads/abc/records".to_owned(), 400, "request.invalid"),
        (format!("{path}?after=orders"), 400, "request.invalid"),
        (format!("{path}?after=Orders:1"), 400, "request.invalid"),
        (format!("{path}?after=orders:x"), 400, "request.invalid"),
        (format!("{path}?limit=0"), 422, "request.out_of_range"),
        (format!("{path}?limit=1001"), 422, "request.out_of_range"),
        (format!("{path}?page=2"), 400, "request.invalid"),
    ] {
        let r = d.call("GET", &query, &acme, None);
        assert_eq!((r.status, code(&r)), (status, expected.to_owned()), "{query}");
    }
    for (who, key, status, expected) in [
        ("revoked", revoked.as_str(), 401, "auth.invalid_key"),
        ("suspended", suspended.as_str(), 403, "tenant.suspended"),
        ("admin", admin.as_str(), 401, "auth.invalid_key"),
        ("malformed", "annal_0123456789abcdef_AAAA", 401, "auth.invalid_key"),
    ] {
        let r = d.call("GET", &path, key, None);
        assert_eq!((r.status, code(&r)), (status, expected.to_owned()), "{who} key");
    }
    let r = request(d.addr, "GET", &path, &[], b"");
    assert_eq!((r.status, code(&r)), (401, "auth.required".to_owned()));
}
