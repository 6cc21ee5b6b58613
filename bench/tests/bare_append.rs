//! bare-append answers like the floor http-bench.sh compares annald with:
//! 201 with each ledger's seqs in order, every answered append durable in
//! its own row, 400 for a body annald would refuse, and `/health`.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use redb::{ReadableDatabase as _, ReadableTableMetadata as _, TableDefinition};

struct Server(Child);

impl Server {
    fn start(data: &std::path::Path) -> (Server, String) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_bare-append"))
            .arg(data)
            .stderr(Stdio::piped())
            .spawn()
            .expect("start bare-append");
        let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
        let server = Server(child);
        let mut line = String::new();
        stderr.read_line(&mut line).expect("first line");
        let addr = line.trim().strip_prefix("listening on ").expect("listening line").to_owned();
        (server, addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sends one request on a new connection; returns the status line and body.
fn request(addr: &str, method: &str, path: &str, body: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
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
fn appends_are_answered_in_order_and_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let (server, addr) = Server::start(&data);

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

    // Concurrent appends share commits; each ledger's seqs stay dense.
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                (0..8)
                    .map(|_| {
                        let (status, body) =
                            request(&addr, "POST", "/v1/ledgers/c/records", &format!(r#"{{"payload":{t}}}"#));
                        assert!(status.contains(" 201 "), "{status}");
                        let seq = body.rsplit_once(":").expect("seq").1.trim_end_matches('}');
                        seq.parse::<u64>().expect("numeric seq")
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut seqs: Vec<u64> = threads.into_iter().flat_map(|t| t.join().expect("client thread")).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (0..128).collect::<Vec<_>>());

    // Every answered append has its own row.
    drop(server);
    let db = redb::Database::open(data.join("bare.redb")).expect("open the floor's database");
    let read = db.begin_read().expect("read");
    let rows = read.open_table(TableDefinition::<u64, &[u8]>::new("records")).expect("table");
    assert_eq!(rows.len().expect("len"), 4 + 128);
    drop(rows);
    drop(read);
    drop(db);

    // A used data directory is refused: seqs are counted from zero.
    let again = Command::new(env!("CARGO_BIN_EXE_bare-append"))
        .arg(&data)
        .stderr(Stdio::null())
        .status()
        .expect("run bare-append again");
    assert!(!again.success());
}
