//! Goal: `annald serve` behaves as an HTTP server should before any ledger
//! logic: request ids on every response, problem+json errors with stable
//! codes, liveness and readiness, a header-read timeout that cuts off slow
//! clients while others are served, config refusals with exit code 78, and a
//! clean exit on SIGTERM. Method: start the real binary on 127.0.0.1:0.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::harness::{Daemon, annald, request};

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
