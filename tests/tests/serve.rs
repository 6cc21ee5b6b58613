//! Goal: `annald serve` behaves as an HTTP server should before any ledger
//! logic: request ids on every response, problem+json errors with stable
//! codes, liveness and readiness, a header-read timeout that cuts off slow
//! clients while others are served, a request timeout whose 503 is recorded
//! as a failure event, a connection cap, config refusals with exit code 78,
//! and a clean exit on SIGTERM, also when the grace runs out. Method: start
//! the real binary on 127.0.0.1:0; hold requests open by sending a body
//! that never completes.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::harness::{Daemon, annald, read_one_reply, request, run_annald};

#[test]
fn health_and_ready_answer_with_request_ids() {
    let d = Daemon::start(None);
    let r = d.get("/health");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["status"], "ok");
    let id = r.header("x-request-id").expect("generated request id");
    assert_eq!(uuid_version(id), Some('7'), "generated ids are UUIDv7: {id}");

    let r = d.get("/ready");
    assert_eq!(r.status, 200);
    let body = r.json();
    assert_eq!(body["status"], "ready");
    assert!(body["checks"].as_array().expect("checks").iter().all(|c| c["status"] == "ok"));
}

fn uuid_version(id: &str) -> Option<char> {
    (id.len() == 36).then(|| id.chars().nth(14)).flatten()
}

#[test]
fn client_request_ids_are_kept_only_when_sane() {
    let d = Daemon::start(None);
    let check = |sent: &str, kept: bool| {
        let r = request(d.addr, "GET", "/health", &[("X-Request-Id", sent)], b"");
        let got = r.header("x-request-id").expect("request id");
        assert_eq!(got == sent, kept, "sent {sent:?}, got {got:?}");
    };
    check("req-123.abc_DEF:9", true);
    check("has space", false);
    check("semi;colon", false);
    check(&"a".repeat(129), false);
}

#[test]
fn errors_are_problem_json_with_stable_codes() {
    let d = Daemon::start(None);
    let check = |method: &str, path: &str, status: u16, code: &str| {
        let r = request(d.addr, method, path, &[("X-Request-Id", "t-1")], b"");
        assert_eq!(r.status, status, "{method} {path}");
        assert_eq!(r.header("content-type"), Some("application/problem+json"), "{method} {path}");
        let body = r.json();
        assert_eq!(body["code"], code, "{method} {path}");
        assert_eq!(body["status"], status);
        assert_eq!(body["request_id"], "t-1");
        assert!(body["title"].is_string() && body["type"].is_string());
    };
    check("GET", "/nope", 404, "route.not_found");
    check("POST", "/health", 405, "route.method_not_allowed");
}

#[test]
fn slow_header_is_cut_off_while_others_are_served() {
    let d = Daemon::start(Some("[server]\nheader_read_timeout_ms = 300\n"));
    let mut slow = TcpStream::connect(d.addr).expect("connect");
    slow.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    // A header that would take 30 s at this pace; the server must not wait for it.
    let head = format!("GET /health HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n", "p".repeat(300));
    let mut cut_after = None;
    for (i, byte) in head.bytes().enumerate() {
        if slow.write_all(&[byte]).is_err() {
            cut_after = Some(i);
            break;
        }
        // Meanwhile a well-behaved client is served.
        if i == 3 {
            assert_eq!(d.get("/health").status, 200);
        }
        let mut probe = [0u8; 1];
        slow.set_nonblocking(true).expect("nonblocking");
        let closed = matches!(slow.read(&mut probe), Ok(0))
            || matches!(slow.read(&mut probe), Err(e) if e.kind() != std::io::ErrorKind::WouldBlock);
        slow.set_nonblocking(false).expect("blocking");
        if closed {
            cut_after = Some(i);
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let cut_after = cut_after.expect("the server closed the slow connection");
    assert!(cut_after < head.len() - 1, "cut before the header was complete");
    assert_eq!(d.get("/health").status, 200);
}

#[test]
fn sigterm_exits_cleanly() {
    let mut d = Daemon::start(None);
    assert_eq!(d.get("/health").status, 200);
    d.signal("TERM");
    let status = d.wait();
    assert_eq!(status.code(), Some(0), "log: {:?}", d.log());
    assert!(d.log().iter().any(|l| l.contains("SIGTERM")));
}

#[test]
fn bad_config_is_refused_with_ex_config() {
    let dir = tempfile::tempdir().expect("temp dir");
    let check = |config: Option<&str>, env: &[(&str, &str)], needle: &str| {
        let mut cmd = std::process::Command::new(annald());
        cmd.arg("serve").arg("--listen").arg("127.0.0.1:0");
        if let Some(text) = config {
            let path = dir.path().join("bad.toml");
            std::fs::write(&path, text).expect("write config");
            cmd.arg("--config").arg(path);
        }
        cmd.env_remove("ANNAL_ENVIRONMENT");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("run annald");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{stderr}");
        assert!(stderr.contains(needle), "{stderr:?} should name {needle:?}");
    };
    check(Some("no_such_key = 1\n"), &[], "no_such_key");
    check(Some("[server]\nconnections_max = 0\n"), &[], "server.connections_max");
    check(None, &[("ANNAL_ENVIRONMENT", "production")], "production");
}

#[test]
fn sighup_is_ignored_and_a_second_sigterm_exits_at_once() {
    let mut d = Daemon::start(Some("[shutdown]\ngrace_ms = 120000\n"));
    d.signal("HUP");
    assert_eq!(d.get("/health").status, 200, "SIGHUP does not stop the daemon");
    // A request whose body never completes keeps the drain waiting for the grace period.
    let mut stalled = TcpStream::connect(d.addr).expect("connect");
    stalled
        .write_all(b"POST /v1/verify HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        .expect("partial request");
    assert_eq!(d.get("/health").status, 200);
    d.signal("TERM");
    let started = std::time::Instant::now();
    // Bounded poll until the listener is closed: the drain has begun.
    while std::net::TcpStream::connect(d.addr).is_ok() {
        assert!(started.elapsed() < Duration::from_secs(30), "the listener did not close");
        std::thread::sleep(Duration::from_millis(10));
    }
    d.signal("TERM");
    let status = d.wait();
    assert_eq!(status.code(), Some(1), "the second signal exits at once, not after the 120 s grace");
    let log = d.log().join("\n");
    assert!(log.contains("SIGHUP ignored") && log.contains("second signal"), "{log}");
    drop(stalled);
}

/// Sends only a request head announcing `length` body bytes and reads the answer.
fn announce(addr: std::net::SocketAddr, path: &str, length: &str) -> (u16, serde_json::Value) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    let head = format!("POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{length}\r\n\r\n");
    stream.write_all(head.as_bytes()).expect("send head");
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw);
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status line");
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or(serde_json::Value::Null))
}

#[test]
fn bodies_are_bounded() {
    let d = Daemon::start(None);
    let check = |path: &str, length: &str, status: u16, code: &str| {
        let (got, body) = announce(d.addr, path, length);
        assert_eq!((got, body["code"].as_str()), (status, Some(code)), "{path} {length}");
    };
    check("/v1/ledgers/orders/records", "Content-Length: 2097152", 413, "request.too_large");
    check("/admin/v1/tenants", "Content-Length: 65536", 413, "request.too_large");
    check("/v1/verify", "Content-Length: 8388608", 413, "request.too_large");
    check("/v1/ledgers/orders/records", "Transfer-Encoding: chunked", 411, "request.length_required");
}

/// Opens a connection and sends a POST head announcing 100 body bytes, then
/// one byte of body and nothing more: a request in flight until cut.
fn stall(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> TcpStream {
    let mut stream = TcpStream::connect(addr).expect("connect");
    let mut head = format!("POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{");
    stream.write_all(head.as_bytes()).expect("send partial request");
    stream
}

/// Whether the server has neither answered nor closed `stream` yet, without waiting.
fn unanswered(stream: &mut TcpStream) -> bool {
    stream.set_nonblocking(true).expect("nonblocking");
    let mut probe = [0u8; 1];
    let waiting = matches!(stream.read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
    stream.set_nonblocking(false).expect("blocking");
    waiting
}

/// Polls until connecting fails: the listener is closed and the drain began.
fn until_listener_closed(addr: SocketAddr) {
    let started = Instant::now();
    while TcpStream::connect(addr).is_ok() {
        assert!(started.elapsed() < Duration::from_secs(30), "the listener did not close");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// An append whose body never completes gets 503 `request.timeout` (with
/// its request id) at the request timeout while other clients are served,
/// and the failure is in the system event ledger under that request id,
/// naming the route.
#[test]
fn a_request_past_the_timeout_is_answered_503_and_recorded() {
    let d = Daemon::start(Some("[server]\nrequest_timeout_ms = 1000\n"));
    let key = d.tenant_with_key("acme");
    let bearer = format!("Bearer {key}");
    let mut stalled = stall(
        d.addr,
        "/v1/ledgers/orders/records",
        &[("Authorization", &bearer), ("X-Request-Id", "stalled-append-1")],
    );
    assert_eq!(d.get("/health").status, 200, "another client is served meanwhile");
    stalled.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout");
    let mut raw = Vec::new();
    stalled.read_to_end(&mut raw).expect("the answer, then close");
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").expect("a response");
    assert!(head.starts_with("HTTP/1.1 503 "), "{text}");
    let head = head.to_ascii_lowercase();
    assert!(head.contains("\r\ncontent-type: application/problem+json"), "{text}");
    assert!(head.contains("\r\nx-request-id: stalled-append-1"), "{text}");
    let problem: serde_json::Value = serde_json::from_str(body).expect("problem json");
    assert_eq!((problem["code"].as_str(), problem["status"].as_u64()), (Some("request.timeout"), Some(503)));
    assert_eq!(problem["request_id"], "stalled-append-1");

    let admin = d.admin_key();
    let started = Instant::now();
    let event = loop {
        let r = d.call("GET", "/admin/v1/events?request_id=stalled-append-1", &admin, None);
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        if let Some(event) = r.json()["events"].as_array().and_then(|e| e.first()).cloned() {
            break event;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "the timeout was never recorded");
        std::thread::sleep(Duration::from_millis(50));
    };
    let got = |field: &str| event[field].as_str().map(str::to_owned);
    assert_eq!(got("kind").as_deref(), Some("failure"), "{event}");
    assert_eq!(got("code").as_deref(), Some("request.timeout"), "{event}");
    assert_eq!(event["status"], 503, "{event}");
    assert_eq!(got("route").as_deref(), Some("POST /v1/ledgers/{ledger}/records"), "{event}");
}

/// At `connections_max = 2`, with two idle keep-alive connections held, a
/// third connection's request gets no answer, however many requests the
/// held ones make meanwhile; once one held connection closes, it is served.
#[test]
fn connections_past_the_cap_wait_until_one_closes() {
    // A long header timeout, so the held connections stay open while idle.
    let d = Daemon::start(Some("[server]\nconnections_max = 2\nheader_read_timeout_ms = 60000\n"));
    let health = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut held: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut s = TcpStream::connect(d.addr).expect("connect");
            s.write_all(health).expect("send");
            assert_eq!(read_one_reply(&mut s).status, 200);
            s
        })
        .collect();
    // The kernel completes the handshake; the server must not take it up.
    let mut third = TcpStream::connect(d.addr).expect("connect into the backlog");
    third.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").expect("send");
    for round in 0..5 {
        held[0].write_all(health).expect("send");
        assert_eq!(read_one_reply(&mut held[0]).status, 200);
        assert!(unanswered(&mut third), "round {round}: a third connection was served past the cap");
    }
    drop(held.pop());
    third.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout");
    let mut raw = Vec::new();
    third.read_to_end(&mut raw).expect("served once a slot is free");
    assert!(raw.starts_with(b"HTTP/1.1 200 "), "{}", String::from_utf8_lossy(&raw));
}

/// SIGTERM with a request in flight that would outlive the grace: readiness
/// is red during the drain, and when the grace runs out the request is cut,
/// the process releases the app, closes the store cleanly and exits 0 long
/// before the request timeout; the store then checks clean.
#[test]
fn past_the_grace_requests_are_cut_and_the_store_closes_cleanly() {
    // The probe must finish its head within the grace after SIGTERM: 6 s
    // leaves room for a machine busy with the rest of the suite.
    let config = "[server]\nrequest_timeout_ms = 600000\nheader_read_timeout_ms = 60000\n\
                  [shutdown]\ngrace_ms = 6000\n";
    let mut d = Daemon::start(Some(config));
    let key = d.tenant_with_key("acme");
    let append = d.call("POST", "/v1/ledgers/orders/records", &key, Some(&serde_json::json!({"payload": 1})));
    assert_eq!(append.status, 201);
    // A connection whose first request head is still arriving is not idle,
    // so the drain lets it finish: it asks /ready during the drain.
    let mut probe = TcpStream::connect(d.addr).expect("connect");
    probe.write_all(b"GET /ready HTTP/1.1\r\nHost: x\r\n").expect("partial head");
    let _stalled =
        stall(d.addr, "/v1/ledgers/orders/records", &[("Authorization", &format!("Bearer {key}"))]);
    // Accepted after both (the backlog is first in, first out), so both are being served.
    assert_eq!(d.get("/health").status, 200);

    d.signal("TERM");
    let signalled = Instant::now();
    until_listener_closed(d.addr);
    probe.write_all(b"Connection: close\r\n\r\n").expect("rest of the head");
    let ready = read_one_reply(&mut probe);
    assert_eq!(ready.status, 503, "{}", String::from_utf8_lossy(&ready.body));
    let draining = ready.json()["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .any(|c| c["name"] == "not_draining" && c["status"] == "failed");
    assert!(draining, "{}", String::from_utf8_lossy(&ready.body));
    drop(probe);

    let status = d.wait();
    let log = d.log().join("\n");
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(signalled.elapsed() < Duration::from_secs(60), "exit waited for the request, not the grace");
    assert!(log.contains("grace period over with 1 connection(s) open"), "{log}");
    assert!(log.contains("stopped cleanly"), "{log}");
    for warning in ["store still shared", "requests still hold the app"] {
        assert!(!log.contains(warning), "{warning:?}: {log}");
    }
    let data = d.data_dir();
    let (code, out, err) = run_annald(&["check", "--data-dir", data.to_str().expect("utf-8")]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.starts_with("check ok:"), "{out}");
}
