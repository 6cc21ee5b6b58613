//! bare-append answers like the floor http-bench.sh compares annald with:
//! 201 with consecutive seqs per ledger after the commit, 400 for a body
//! annald would refuse, and `/health`.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sends one request on a new connection; returns the status line and body.
fn request(addr: &str, method: &str, path: &str, body: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    let status = out.lines().next().unwrap_or_default().to_owned();
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

#[test]
fn appends_are_answered_in_order_after_commit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_bare-append"))
        .arg(dir.path().join("data"))
        .stderr(Stdio::piped())
        .spawn()
        .expect("start bare-append");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let _server = Server(child);
    let mut line = String::new();
    stderr.read_line(&mut line).expect("first line");
    let addr = line.trim().strip_prefix("listening on ").expect("listening line").to_owned();

    let (status, body) = request(&addr, "GET", "/health", "");
    assert!(status.contains(" 200 "), "{status}");
    assert_eq!(body, r#"{"status":"ok"}"#);
    for (ledger, seq) in [("a", 0), ("a", 1), ("b", 0), ("a", 2)] {
        let (status, body) =
            request(&addr, "POST", &format!("/v1/ledgers/{ledger}/records"), r#"{"payload":{"n":1}}"#);
        assert!(status.contains(" 201 "), "{status}");
        assert_eq!(body, format!(r#"{{"ledger":"{ledger}","seq":{seq}}}"#));
    }
    let (status, _) = request(&addr, "POST", "/v1/ledgers/a/records", r#"{"payload":1,"extra":2}"#);
    assert!(status.contains(" 400 "), "{status}");

    // A used data directory is refused: seqs are counted from zero.
    let again = Command::new(env!("CARGO_BIN_EXE_bare-append"))
        .arg(dir.path().join("data"))
        .stderr(Stdio::null())
        .status()
        .expect("run bare-append again");
    assert!(!again.success());
}
