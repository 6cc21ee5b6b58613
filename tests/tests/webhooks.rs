//! Goal: webhooks do what docs/API.md promises, end to end: every record
//! appended to a followed ledger reaches the receiver as a POST signed per
//! Standard Webhooks (checked here with HMAC-SHA256 written from the spec,
//! not the daemon's code), with a `webhook-id` that stays the same across
//! retries; a failed delivery is retried and, past `attempts_max`, given up
//! and recorded as a system event; secret rotation signs with old and new
//! until the old is revoked; a disabled endpoint gets nothing more; pending
//! deliveries survive a restart; URLs aimed at private addresses are refused
//! when private destinations are not allowed.
//! Method: the real `annald` on 127.0.0.1:0 and a plain TCP receiver in the
//! test that answers each request with a scripted status.

use std::collections::VecDeque;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{KeyInit as _, Mac as _};
use serde_json::{Value, json};

use crate::harness::{Daemon, Reply};

/// Fast retries, so a test sees several attempts in well under a second.
const FAST_RETRIES: &str =
    "[webhooks]\nretry_base_ms = 20\nretry_max_ms = 40\nattempts_max = 3\ntimeout_ms = 5000\n";

/// Longest a test waits for one delivery.
const DELIVERY_WAIT_MAX: Duration = Duration::from_secs(30);

/// One request the receiver got.
#[derive(Debug)]
struct Received {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> &str {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map_or("", |(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a delivery's body is JSON")
    }

    /// Whether `secret` (`whsec_...`) signed this delivery: some `v1,`
    /// signature in `webhook-signature` is HMAC-SHA256 over
    /// `{webhook-id}.{webhook-timestamp}.{body}`.
    fn signed_by(&self, secret: &str) -> bool {
        let key = STANDARD.decode(secret.strip_prefix("whsec_").expect("whsec_ prefix")).expect("base64");
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).expect("any key length");
        mac.update(self.header("webhook-id").as_bytes());
        mac.update(b".");
        mac.update(self.header("webhook-timestamp").as_bytes());
        mac.update(b".");
        mac.update(&self.body);
        let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
        self.header("webhook-signature").split(' ').any(|s| s == expected)
    }
}

/// A scripted "status" that holds the request unanswered, connection open.
const HOLD: u16 = 0;

/// A receiver on 127.0.0.1 that answers each request with the next scripted
/// status (204 once the script is used up; `HOLD`: no answer) and hands the
/// request over.
struct Receiver {
    addr: SocketAddr,
    got: mpsc::Receiver<Received>,
    script: Arc<Mutex<VecDeque<u16>>>,
    /// Connections held unanswered (`HOLD`).
    held: Arc<Mutex<Vec<std::net::TcpStream>>>,
}

impl Receiver {
    fn start(script: &[u16]) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind receiver");
        let addr = listener.local_addr().expect("addr");
        let (tx, got) = mpsc::channel();
        let script = Arc::new(Mutex::new(script.iter().copied().collect::<VecDeque<u16>>()));
        let answers = script.clone();
        let held = Arc::new(Mutex::new(Vec::new()));
        let holding = held.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let Some(request) = read_request(&mut stream) else { continue };
                let status = answers.lock().expect("script").pop_front().unwrap_or(204);
                // Handed over before the daemon hears back, so a request is
                // always seen before anything the daemon does after it.
                if tx.send(request).is_err() {
                    return;
                }
                if status == HOLD {
                    holding.lock().expect("held").push(stream);
                } else {
                    let reply = format!(
                        "HTTP/1.1 {status} Scripted\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    );
                    let _ = stream.write_all(reply.as_bytes());
                }
            }
        });
        Receiver { addr, got, script, held }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn next(&self) -> Received {
        self.got.recv_timeout(DELIVERY_WAIT_MAX).expect("a delivery arrived in time")
    }

    /// The next delivery to the endpoint `id`; deliveries to others are dropped.
    fn next_for(&self, id: &str) -> Received {
        loop {
            let r = self.next();
            if r.header("webhook-id").starts_with(&format!("msg_{id}_")) {
                return r;
            }
        }
    }

    fn answer_next(&self, statuses: &[u16]) {
        self.script.lock().expect("script").extend(statuses);
    }

    /// Closes the held connections unanswered: those attempts fail.
    fn release(&self) {
        self.held.lock().expect("held").clear();
    }

    /// Nothing has arrived (that was not taken yet).
    fn assert_idle(&self) {
        if let Ok(r) = self.got.try_recv() {
            panic!("unexpected delivery {:?}", r.headers);
        }
    }
}

/// Reads one HTTP/1.1 request (head, then a Content-Length body).
fn read_request(stream: &mut std::net::TcpStream) -> Option<Received> {
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    assert!(line.starts_with("POST /"), "deliveries are POSTs: {line:?}");
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).ok()?;
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            break;
        }
        let (k, v) = trimmed.split_once(':')?;
        headers.push((k.trim().to_owned(), v.trim().to_owned()));
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())?;
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    Some(Received { headers, body })
}

fn append(d: &Daemon, key: &str, ledger: &str, payload: Value) -> Value {
    let r =
        d.call("POST", &format!("/v1/ledgers/{ledger}/records"), key, Some(&json!({ "payload": payload })));
    assert_eq!(r.status, 201, "{}", text(&r));
    r.json()
}

fn text(r: &Reply) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

fn create(d: &Daemon, key: &str, ledger: &str, url: &str) -> Value {
    let r = d.call("POST", &format!("/v1/ledgers/{ledger}/webhooks"), key, Some(&json!({ "url": url })));
    assert_eq!(r.status, 201, "{}", text(&r));
    assert_eq!(r.header("cache-control"), Some("no-store"), "a secret is never cached");
    r.json()
}

/// Polls the endpoint until `done` holds for it (bounded).
fn wait_for_webhook(d: &Daemon, key: &str, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + DELIVERY_WAIT_MAX;
    loop {
        let w = d.call("GET", &format!("/v1/webhooks/{id}"), key, None).json();
        if done(&w) {
            return w;
        }
        assert!(std::time::Instant::now() < deadline, "webhook never reached the state: {w}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Delivery, retry with one `webhook-id`, rotation with two signatures,
/// revocation, the last-secret guard, disabling, and the audit trail.
#[test]
fn deliveries_are_signed_retried_rotated_and_stopped() {
    let receiver = Receiver::start(&[500]);
    let d = Daemon::start(Some(FAST_RETRIES));
    let key = d.tenant_with_key("acme");
    let created = create(&d, &key, "orders", &receiver.url("/hooks/a"));
    let id = created["id"].as_str().expect("id").to_owned();
    let v1 = created["secret"].as_str().expect("secret shown once").to_owned();
    assert_eq!((created["secret_version"].clone(), created["next_seq"].clone()), (json!(1), json!(0)));
    let shown = d.call("GET", &format!("/v1/webhooks/{id}"), &key, None);
    assert!(!text(&shown).contains(&v1), "the secret is shown once only");
    assert_eq!(shown.json()["secrets"][0]["status"], "active");

    // The first attempt is answered 500, the retry 204: same webhook-id.
    let appended = append(&d, &key, "orders", json!({"n": 0}));
    let (first, retry) = (receiver.next(), receiver.next());
    assert_eq!(first.header("webhook-id"), format!("msg_{id}_0"));
    assert_eq!(retry.header("webhook-id"), first.header("webhook-id"), "a retry keeps its id");
    for r in [&first, &retry] {
        assert!(r.signed_by(&v1), "signed with v1: {:?}", r.headers);
        assert_eq!(r.header("content-type"), "application/json");
    }
    let body = retry.json();
    assert_eq!(body["type"], "record.appended");
    assert_eq!(body["data"]["seq"], 0);
    assert_eq!(body["data"]["hash"], appended["hash"]);
    assert_eq!(body["data"]["payload"], json!({"n": 0}));
    let ts: u64 = retry.header("webhook-timestamp").parse().expect("unix seconds");
    assert!(ts > 1_700_000_000, "{ts}");
    let mut tampered = Received { headers: retry.headers.clone(), body: retry.body.clone() };
    tampered.body.push(b' ');
    assert!(!tampered.signed_by(&v1), "the signature covers the body");

    // Rotation: v2 issued; deliveries carry both signatures until v1 is revoked.
    let rotated = d.call("POST", &format!("/v1/webhooks/{id}/secrets"), &key, None);
    assert_eq!(rotated.status, 201, "{}", text(&rotated));
    assert_eq!(rotated.header("cache-control"), Some("no-store"));
    let v2 = rotated.json()["secret"].as_str().expect("v2").to_owned();
    assert_eq!(rotated.json()["secret_version"], 2);
    assert_ne!(v1, v2);
    append(&d, &key, "orders", json!({"n": 1}));
    let both = receiver.next();
    assert_eq!(both.header("webhook-id"), format!("msg_{id}_1"));
    assert!(both.signed_by(&v1) && both.signed_by(&v2), "{:?}", both.headers);

    let revoke =
        |version: u32| d.call("POST", &format!("/v1/webhooks/{id}/secrets/{version}/revoke"), &key, None);
    assert_eq!(revoke(1).status, 200);
    let again = revoke(1);
    assert_eq!((again.status, again.json()["code"].clone()), (409, json!("webhook.secret_already_revoked")));
    let last = revoke(2);
    assert_eq!((last.status, last.json()["code"].clone()), (409, json!("webhook.last_secret")));
    let none = revoke(9);
    assert_eq!((none.status, none.json()["code"].clone()), (404, json!("webhook.secret_not_found")));
    append(&d, &key, "orders", json!({"n": 2}));
    let only_v2 = receiver.next();
    assert!(only_v2.signed_by(&v2) && !only_v2.signed_by(&v1), "a revoked secret signs nothing");

    // A second endpoint on the ledger shows when a pass has run: once it has
    // record 3, the disabled first endpoint would have had it too.
    let witness = create(&d, &key, "orders", &receiver.url("/hooks/b"));
    let witness_id = witness["id"].as_str().expect("id").to_owned();
    assert_eq!(witness["next_seq"], 3, "a new endpoint starts at the ledger's end");
    let disabled = d.call("POST", &format!("/v1/webhooks/{id}/disable"), &key, None);
    assert_eq!((disabled.status, disabled.json()["status"].clone()), (200, json!("disabled")));
    let twice = d.call("POST", &format!("/v1/webhooks/{id}/disable"), &key, None);
    assert_eq!(twice.json()["code"], "webhook.disabled");
    let late = d.call("POST", &format!("/v1/webhooks/{id}/secrets"), &key, None);
    assert_eq!(late.json()["code"], "webhook.disabled");
    append(&d, &key, "orders", json!({"n": 3}));
    let seen = receiver.next();
    assert_eq!(
        seen.header("webhook-id"),
        format!("msg_{witness_id}_3"),
        "only the live endpoint gets record 3"
    );
    append(&d, &key, "orders", json!({"n": 4}));
    let seen = receiver.next();
    assert_eq!(seen.header("webhook-id"), format!("msg_{witness_id}_4"), "nor record 4");
    let after = d.call("GET", &format!("/v1/webhooks/{id}"), &key, None).json();
    assert_eq!((after["next_seq"].clone(), after["pending"].clone()), (json!(3), json!(0)), "{after}");

    // Secret issue and revocation are in the system event ledger, without the secrets.
    let admin = d.admin_key();
    let needles =
        ["created for ledger orders", "secret version 2 issued", "secret version 1 revoked", "disabled"];
    wait_for_events(&d, "tenant=acme&limit=100", |events| {
        needles
            .iter()
            .all(|needle| events.iter().any(|e| e["detail"].as_str().is_some_and(|t| t.contains(needle))))
    });
    let export = d.call("GET", "/admin/v1/events/export", &admin, None);
    for secret in [&v1, &v2] {
        assert!(!text(&export).contains(secret.as_str()), "no secret in the event ledger");
    }
    assert!(d.log().iter().all(|l| !l.contains(&v1) && !l.contains(&v2)), "no secret in the log");
}

/// A receiver that keeps failing: `attempts_max` attempts, then the delivery
/// leaves the outbox and a `webhook.delivery_failed` event names it.
#[test]
fn a_delivery_is_given_up_after_its_attempts_and_recorded() {
    let receiver = Receiver::start(&[500, 503, 502]);
    let d = Daemon::start(Some(FAST_RETRIES));
    let key = d.tenant_with_key("acme");
    let id = create(&d, &key, "orders", &receiver.url("/fails"))["id"].as_str().expect("id").to_owned();
    append(&d, &key, "orders", json!("doomed"));
    for _ in 0..3 {
        assert_eq!(receiver.next_for(&id).header("webhook-id"), format!("msg_{id}_0"));
    }
    wait_for_webhook(&d, &key, &id, |w| w["pending"] == 0 && w["next_seq"] == 1);
    let admin = d.admin_key();
    let deadline = std::time::Instant::now() + DELIVERY_WAIT_MAX;
    let event = loop {
        let page = d.call("GET", "/admin/v1/events?code=webhook.delivery_failed", &admin, None).json();
        if let Some(e) = page["events"].as_array().and_then(|a| a.first()).cloned() {
            break e;
        }
        assert!(std::time::Instant::now() < deadline, "no delivery_failed event: {page}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(event["request_id"], format!("msg_{id}_0"));
    assert_eq!(event["tenant"], "acme");
    assert_eq!(event["kind"], "failure");
    let detail = event["detail"].as_str().expect("detail");
    assert!(detail.contains("after 3 attempts") && detail.contains("502"), "{detail}");
    let metrics = text(&d.call("GET", "/metrics", &admin, None));
    assert!(metrics.contains("annal_webhook_deliveries_total{outcome=\"abandoned\"} 1"), "{metrics}");

    // The next record is delivered as usual.
    receiver.answer_next(&[200]);
    append(&d, &key, "orders", json!("fine"));
    assert_eq!(receiver.next_for(&id).header("webhook-id"), format!("msg_{id}_1"));
}

/// The outbox is in redb: a delivery in flight when annald is killed is
/// sent again after it restarts, with the same `webhook-id`.
#[test]
fn a_delivery_in_flight_survives_a_crash() {
    // The first request is held unanswered; annald dies while it waits.
    let receiver = Receiver::start(&[HOLD]);
    let root = tempfile::tempdir().expect("root");
    let mut d = Daemon::launch(root.path(), Some(FAST_RETRIES), &[]).expect("start");
    let key = d.tenant_with_key("acme");
    let id = create(&d, &key, "orders", &receiver.url("/slow"))["id"].as_str().expect("id").to_owned();
    append(&d, &key, "orders", json!(1));
    assert_eq!(receiver.next().header("webhook-id"), format!("msg_{id}_0"));
    d.signal("KILL");
    d.wait();

    let d = Daemon::launch(root.path(), Some(FAST_RETRIES), &[]).expect("restart");
    let again = receiver.next();
    assert_eq!(again.header("webhook-id"), format!("msg_{id}_0"), "the same delivery, sent again");
    let w = wait_for_webhook(&d, &key, &id, |w| w["pending"] == 0);
    assert_eq!(w["next_seq"], 1, "{w}");
}

/// URLs: only http(s); with private destinations not allowed, loopback and
/// private addresses are refused, and nothing is created.
#[test]
fn webhook_urls_are_checked() {
    let d = Daemon::start(Some("[webhooks]\nallow_private_destinations = false\n"));
    let key = d.tenant_with_key("acme");
    let try_url =
        |url: &str| d.call("POST", "/v1/ledgers/orders/webhooks", &key, Some(&json!({ "url": url })));
    for (url, code) in [
        ("ftp://example.com/x", "webhook.url_invalid"),
        ("http://user:pw@example.com/x", "webhook.url_invalid"),
        ("not a url", "webhook.url_invalid"),
        ("http://127.0.0.1:9/x", "webhook.url_forbidden"),
        ("http://10.1.2.3/x", "webhook.url_forbidden"),
        ("http://169.254.169.254/latest/meta-data", "webhook.url_forbidden"),
        ("http://[::1]/x", "webhook.url_forbidden"),
        ("http://[::ffff:192.168.0.1]/x", "webhook.url_forbidden"),
        ("http://localhost:9/x", "webhook.url_forbidden"),
        // `.invalid` never resolves (RFC 6761): the same answer as a
        // forbidden address, so tenants cannot tell which names exist.
        ("http://no-such-host.invalid/x", "webhook.url_forbidden"),
    ] {
        let r = try_url(url);
        assert_eq!((r.status, r.json()["code"].clone()), (422, json!(code)), "{url}: {}", text(&r));
        let named = text(&r).contains("127.0.0.1") || text(&r).contains("::1");
        assert!(!named, "no address is named: {}", text(&r));
    }
    let r = d.call("POST", "/v1/ledgers/orders/webhooks", &key, Some(&json!({"url": 1})));
    assert_eq!((r.status, r.json()["code"].clone()), (400, json!("request.invalid")));
    let listed = d.call("GET", "/v1/webhooks", &key, None).json();
    assert_eq!(listed["webhooks"], json!([]), "nothing was created");
}

/// Polls the system event ledger until an event with `code` appears (bounded).
fn wait_for_event(d: &Daemon, code: &str) -> Value {
    let page = wait_for_events(d, &format!("code={code}"), |events| !events.is_empty());
    page["events"][0].clone()
}

/// Polls `/admin/v1/events?{query}` until `done` accepts its events (bounded):
/// the event writer records them after the request that caused them answered.
fn wait_for_events(d: &Daemon, query: &str, done: impl Fn(&[Value]) -> bool) -> Value {
    let admin = d.admin_key();
    let deadline = std::time::Instant::now() + DELIVERY_WAIT_MAX;
    loop {
        let page = d.call("GET", &format!("/admin/v1/events?{query}"), &admin, None).json();
        if page["events"].as_array().is_some_and(|events| done(events)) {
            return page;
        }
        assert!(std::time::Instant::now() < deadline, "events?{query} never matched: {page}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A suspended tenant's webhooks send nothing: the attempt in flight when
/// it was suspended fails, the next ones are held back before any request
/// (no attempt counted, so nothing is given up however long it lasts), and
/// once the tenant is resumed the delivery goes out with its webhook-id.
#[test]
fn a_suspended_tenant_gets_no_deliveries_until_resumed() {
    let receiver = Receiver::start(&[HOLD]);
    let d = Daemon::start(Some(FAST_RETRIES));
    let key = d.tenant_with_key("acme");
    let id = create(&d, &key, "orders", &receiver.url("/s"))["id"].as_str().expect("id").to_owned();
    append(&d, &key, "orders", json!(1));
    assert_eq!(receiver.next().header("webhook-id"), format!("msg_{id}_0"));
    let admin = d.admin_key();
    assert_eq!(d.call("POST", "/admin/v1/tenants/acme/suspend", &admin, None).status, 200);
    receiver.release();
    // FAST_RETRIES gives up after 3 attempts: five holds would have been
    // two give-ups had they counted.
    let metric = |outcome: &str| -> u64 {
        d.metric(&format!("annal_webhook_deliveries_total{{outcome=\"{outcome}\"}}")).unwrap_or(0)
    };
    let deadline = std::time::Instant::now() + DELIVERY_WAIT_MAX;
    while metric("held") < 5 {
        assert!(std::time::Instant::now() < deadline, "attempts were not held");
        std::thread::sleep(Duration::from_millis(20));
    }
    receiver.assert_idle();
    assert_eq!(metric("abandoned"), 0, "nothing was given up while suspended");
    assert_eq!(d.call("POST", "/admin/v1/tenants/acme/resume", &admin, None).status, 200);
    assert_eq!(receiver.next().header("webhook-id"), format!("msg_{id}_0"), "sent once resumed");
    wait_for_webhook(&d, &key, &id, |w| w["pending"] == 0);
}

/// The address is checked before every attempt, not only at creation: an
/// endpoint made while private destinations were allowed gets nothing once
/// they are not.
#[test]
fn the_address_is_checked_again_before_every_attempt() {
    let receiver = Receiver::start(&[]);
    let root = tempfile::tempdir().expect("root");
    let mut d = Daemon::launch(root.path(), Some(FAST_RETRIES), &[]).expect("start");
    let key = d.tenant_with_key("acme");
    let id = create(&d, &key, "orders", &receiver.url("/private"))["id"].as_str().expect("id").to_owned();
    d.signal("TERM");
    assert!(d.wait().success());

    let strict = format!("{FAST_RETRIES}allow_private_destinations = false\n");
    let d = Daemon::launch(root.path(), Some(&strict), &[]).expect("restart");
    append(&d, &key, "orders", json!(1));
    let event = wait_for_event(&d, "webhook.delivery_failed");
    assert_eq!(event["request_id"], format!("msg_{id}_0"));
    receiver.assert_idle();
}

/// SIGTERM while a receiver holds a delivery: annald still stops cleanly
/// within its grace (the attempt is cut, its row kept), even with a
/// two-minute attempt timeout.
#[test]
fn shutdown_does_not_wait_for_a_slow_receiver() {
    // Both the attempt before and the one after the restart are held, so
    // the row is still pending when it is looked at.
    let receiver = Receiver::start(&[HOLD, HOLD]);
    let root = tempfile::tempdir().expect("root");
    let slow = "[webhooks]\ntimeout_ms = 120000\n[shutdown]\ngrace_ms = 1000\n";
    let mut d = Daemon::launch(root.path(), Some(slow), &[]).expect("start");
    let key = d.tenant_with_key("acme");
    let id = create(&d, &key, "orders", &receiver.url("/held"))["id"].as_str().expect("id").to_owned();
    append(&d, &key, "orders", json!(1));
    assert_eq!(receiver.next().header("webhook-id"), format!("msg_{id}_0"));
    d.signal("TERM");
    // `wait` gives up after 60 s, well before the attempt's own timeout.
    assert!(d.wait().success());
    assert!(d.log().iter().any(|l| l.contains("stopped cleanly")), "{:?}", d.log());
    let d = Daemon::launch(root.path(), Some(slow), &[]).expect("restart");
    let w = d.call("GET", &format!("/v1/webhooks/{id}"), &key, None).json();
    assert_eq!(w["pending"], 1, "the cut attempt's row is kept: {w}");
}

/// An admin sees a tenant's endpoints (never their secrets) and can disable
/// one; an endpoint of another tenant is not found under this one.
#[test]
fn an_admin_lists_and_disables_a_tenants_webhooks() {
    let d = Daemon::start(None);
    let admin = d.admin_key();
    let acme = d.tenant_with_key("acme");
    let other = d.tenant_with_key("other");
    let created = create(&d, &acme, "orders", "http://127.0.0.1:9/acme");
    let id = created["id"].as_str().expect("id").to_owned();
    let secret = created["secret"].as_str().expect("secret").to_owned();
    let theirs =
        create(&d, &other, "orders", "http://127.0.0.1:9/other")["id"].as_str().expect("id").to_owned();

    let listed = d.call("GET", "/admin/v1/tenants/acme/webhooks", &admin, None);
    assert_eq!(listed.status, 200, "{}", text(&listed));
    assert_eq!(listed.json()["webhooks"][0]["id"], id.as_str());
    assert_eq!(listed.json()["webhooks"].as_array().map(Vec::len), Some(1), "only acme's");
    assert!(!text(&listed).contains(&secret), "no secret");
    let missing = d.call("GET", "/admin/v1/tenants/nobody/webhooks", &admin, None);
    assert_eq!((missing.status, missing.json()["code"].clone()), (404, json!("tenant.not_found")));

    let foreign = d.call("POST", &format!("/admin/v1/tenants/acme/webhooks/{theirs}/disable"), &admin, None);
    assert_eq!((foreign.status, foreign.json()["code"].clone()), (404, json!("webhook.not_found")));
    let still = d.call("GET", &format!("/v1/webhooks/{theirs}"), &other, None).json();
    assert_eq!(still["status"], "active", "{still}");

    let disabled = d.call("POST", &format!("/admin/v1/tenants/acme/webhooks/{id}/disable"), &admin, None);
    assert_eq!((disabled.status, disabled.json()["status"].clone()), (200, json!("disabled")));
    let seen = d.call("GET", &format!("/v1/webhooks/{id}"), &acme, None).json();
    assert_eq!(seen["status"], "disabled", "{seen}");
    let disabled_by_admin = |events: &[Value]| {
        events.iter().any(|e| e["detail"].as_str().is_some_and(|t| t.contains("disabled by the admin")))
    };
    wait_for_events(&d, "tenant=acme&limit=100", disabled_by_admin);
}
