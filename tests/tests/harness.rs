//! The black-box harness: builds and starts the real `annald` on
//! 127.0.0.1:0 with a temp data dir, learns its address from the startup
//! log, and speaks plain HTTP/1.1 to it over a TcpStream (so tests can also
//! misbehave on purpose, byte by byte).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// Longest any test waits for the daemon to come up or exit.
const PROCESS_WAIT_MAX: Duration = Duration::from_secs(60);

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

/// Builds the workspace binaries once per test run, with the same cargo and
/// target directory as the tests, and returns the directory holding them.
fn binaries() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let status = Command::new(env!("CARGO"))
                .args(["build", "--quiet", "-p", "annal-daemon", "-p", "annal-verify", "--bins"])
                .current_dir(workspace_root())
                .status()
                .expect("cargo build runs");
            assert!(status.success(), "building the binaries failed");
            // The test binary lives in <target>/<profile>/deps/.
            let exe = std::env::current_exe().expect("current exe");
            exe.parent().and_then(Path::parent).expect("target profile dir").to_path_buf()
        })
        .clone()
}

/// Path of the `annald` binary.
pub fn annald() -> PathBuf {
    let bin = binaries().join("annald");
    assert!(bin.exists(), "annald not found at {}", bin.display());
    bin
}

/// Runs `annald` with `args` (no ANNAL_ENVIRONMENT from the caller) and
/// returns its exit code, standard output and standard error.
pub fn run_annald(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(annald()).args(args).env_remove("ANNAL_ENVIRONMENT").output().expect("run annald");
    let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
    (out.status.code(), text(out.stdout), text(out.stderr))
}

/// Path of the `annal-verify` binary.
pub fn annal_verify() -> PathBuf {
    let bin = binaries().join("annal-verify");
    assert!(bin.exists(), "annal-verify not found at {}", bin.display());
    bin
}

/// A running daemon; killed on drop if still alive.
pub struct Daemon {
    child: Child,
    pub addr: SocketAddr,
    /// Where `data/` and the config live; owned when `start` made it.
    root: PathBuf,
    _owned: Option<tempfile::TempDir>,
    log: std::sync::Arc<Mutex<Vec<String>>>,
}

/// A daemon that exited before it listened: its status and log.
#[derive(Debug)]
pub struct Exited {
    pub status: ExitStatus,
    pub log: Vec<String>,
}

impl Exited {
    pub fn log_text(&self) -> String {
        self.log.join("\n")
    }
}

impl Daemon {
    /// Starts `annald serve` with a fresh data dir and an optional config text.
    pub fn start(config: Option<&str>) -> Daemon {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut d =
            Daemon::launch(dir.path(), config, &[]).unwrap_or_else(|e| panic!("annald exited: {e:?}"));
        d._owned = Some(dir);
        d
    }

    /// Starts `annald serve` on `<root>/data` (kept across restarts), with an
    /// optional config text written to `<root>/annal.toml` and extra
    /// environment variables. `Err` if it exits before listening.
    pub fn launch(root: &Path, config: Option<&str>, env: &[(&str, &str)]) -> Result<Daemon, Exited> {
        let mut cmd = Command::new(annald());
        cmd.arg("serve").arg("--listen").arg("127.0.0.1:0").arg("--data-dir").arg(root.join("data"));
        if let Some(text) = config {
            let path = root.join("annal.toml");
            std::fs::write(&path, text).expect("write config");
            cmd.arg("--config").arg(path);
        }
        cmd.env_remove("ANNAL_ENVIRONMENT").env_remove("NOTIFY_SOCKET").env("RUST_LOG", "info");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn annald");
        let stderr = child.stderr.take().expect("stderr piped");
        let log = std::sync::Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        collect_lines(stderr, &log, move |line| {
            if let Some(addr) = line.split("listening on ").nth(1) {
                let _ = tx.send(addr.trim().parse::<SocketAddr>().expect("address in log"));
            }
        });
        match rx.recv_timeout(PROCESS_WAIT_MAX) {
            Ok(addr) => Ok(Daemon { child, addr, root: root.to_path_buf(), _owned: None, log }),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = child.wait().expect("wait for annald");
                let log = log.lock().expect("log lock").clone();
                Err(Exited { status, log })
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                panic!("annald did not report its address; log: {:?}", log.lock().expect("log lock"))
            }
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    /// The development admin key the daemon generated on first start.
    pub fn admin_key(&self) -> String {
        std::fs::read_to_string(self.data_dir().join("dev-admin.key"))
            .expect("dev admin key")
            .trim()
            .to_owned()
    }

    /// The development signing key's vkey, as `annal-verify --trust-key` takes it.
    pub fn trust_key(&self) -> String {
        let out = Command::new(annald())
            .args(["keys", "show"])
            .arg(self.data_dir().join("dev-signing.key"))
            .output()
            .expect("annald keys show");
        let text = String::from_utf8(out.stdout).expect("utf-8");
        text.lines().find_map(|l| l.strip_prefix("vkey: ")).expect("vkey line").to_owned()
    }

    /// Sends a request with a bearer token and an optional JSON body.
    pub fn call(&self, method: &str, path: &str, token: &str, body: Option<&serde_json::Value>) -> Reply {
        let auth = format!("Bearer {token}");
        let bytes = body.map(|b| serde_json::to_vec(b).expect("json")).unwrap_or_default();
        let mut headers = vec![("Authorization", auth.as_str())];
        if body.is_some() {
            headers.push(("Content-Type", "application/json"));
        }
        request(self.addr, method, path, &headers, &bytes)
    }

    /// The value of one `/metrics` series (its name with its labels), if
    /// the daemon reports it.
    pub fn metric(&self, series: &str) -> Option<u64> {
        let r = self.call("GET", "/metrics", &self.admin_key(), None);
        assert_eq!(r.status, 200, "GET /metrics");
        let text = String::from_utf8_lossy(&r.body).into_owned();
        let prefix = format!("{series} ");
        text.lines().find_map(|l| l.strip_prefix(prefix.as_str())).map(|n| n.parse().expect("a count"))
    }

    /// Creates a tenant and issues it a key; returns the key.
    pub fn tenant_with_key(&self, tenant: &str) -> String {
        let admin = self.admin_key();
        let r = self.call("POST", "/admin/v1/tenants", &admin, Some(&serde_json::json!({"id": tenant})));
        assert_eq!(r.status, 201, "create tenant: {:?}", String::from_utf8_lossy(&r.body));
        let r = self.call("POST", &format!("/admin/v1/tenants/{tenant}/keys"), &admin, None);
        assert_eq!(r.status, 201, "issue key: {:?}", String::from_utf8_lossy(&r.body));
        r.json()["key"].as_str().expect("key shown once").to_owned()
    }

    /// Keys that may not read: one of tenant `revoked_tenant`, issued and
    /// then revoked, and one of tenant `suspended_tenant`, which is then
    /// suspended. Returns (revoked key, suspended key).
    pub fn refused_keys(&self, revoked_tenant: &str, suspended_tenant: &str) -> (String, String) {
        let admin = self.admin_key();
        let revoked = self.tenant_with_key(revoked_tenant);
        let suspended = self.tenant_with_key(suspended_tenant);
        let keys = self.call("GET", &format!("/admin/v1/tenants/{revoked_tenant}/keys"), &admin, None).json();
        let key_id = keys["keys"][0]["key_id"].as_str().expect("key id").to_owned();
        let revoke = format!("/admin/v1/tenants/{revoked_tenant}/keys/{key_id}/revoke");
        assert_eq!(self.call("POST", &revoke, &admin, None).status, 200, "revoke");
        let suspend = format!("/admin/v1/tenants/{suspended_tenant}/suspend");
        assert_eq!(self.call("POST", &suspend, &admin, None).status, 200, "suspend");
        (revoked, suspended)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> Vec<String> {
        self.log.lock().expect("log lock").clone()
    }

    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill").arg(format!("-{sig}")).arg(self.pid().to_string()).status();
        assert!(status.expect("kill runs").success(), "kill -{sig} failed");
    }

    /// Waits for the process to exit (bounded) and returns its status.
    pub fn wait(&mut self) -> ExitStatus {
        let deadline = std::time::Instant::now() + PROCESS_WAIT_MAX;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(std::time::Instant::now() < deadline, "annald did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn get(&self, path: &str) -> Reply {
        request(self.addr, "GET", path, &[], b"")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A parsed HTTP response.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body))
    }
}

/// One request on a fresh connection (`Connection: close`).
pub fn request(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(PROCESS_WAIT_MAX)).expect("timeout");
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH") {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).expect("send head");
    stream.write_all(body).expect("send body");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read response");
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> Reply {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("response head");
    let head = std::str::from_utf8(&raw[..split]).expect("ascii head");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let status = status_line.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status code");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    Reply { status, headers, body }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n").expect("chunk size line");
        let size_text = std::str::from_utf8(&data[..line_end]).expect("chunk size");
        let size =
            usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16).expect("hex size");
        data = &data[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// Appends every line of `out` to `log` on a thread of its own, showing
/// each to `on_line` first; the thread ends with the stream.
fn collect_lines(
    out: impl Read + Send + 'static,
    log: &std::sync::Arc<Mutex<Vec<String>>>,
    mut on_line: impl FnMut(&str) + Send + 'static,
) -> std::thread::JoinHandle<()> {
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            on_line(&line);
            sink.lock().expect("log lock").push(line);
        }
    })
}

/// Where `annald serve` listens when given no config and no flags.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7878";

impl Daemon {
    /// Starts plain `annald serve` (no config, no flags, no `ANNAL_*`,
    /// `RUST_LOG` or credentials from the caller, only `env`) in `cwd`, so the
    /// embedded defaults apply: data in `<cwd>/annal-data` (not `data_dir()`),
    /// listening on `DEFAULT_LISTEN`. Standard output and error both go to
    /// the log. It is up once the port takes connections, which works at any
    /// log level; `Err` if it exits first.
    pub fn launch_with_defaults(cwd: &Path, env: &[(&str, &str)]) -> Result<Daemon, Exited> {
        let mut cmd = Command::new(annald());
        cmd.arg("serve").current_dir(cwd);
        for name in [
            "ANNAL_ENVIRONMENT",
            "ANNAL_LISTEN",
            "ANNAL_DATA_DIR",
            "ANNAL_MIGRATIONS_EXPECTED_HEAD",
            "CREDENTIALS_DIRECTORY",
            "NOTIFY_SOCKET",
            "RUST_LOG",
        ] {
            cmd.env_remove(name);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn annald");
        let log = std::sync::Arc::new(Mutex::new(Vec::new()));
        let outputs: [Box<dyn Read + Send>; 2] = [
            Box::new(child.stdout.take().expect("stdout piped")),
            Box::new(child.stderr.take().expect("stderr piped")),
        ];
        let readers: Vec<_> = outputs.into_iter().map(|out| collect_lines(out, &log, |_| {})).collect();
        let addr: SocketAddr = DEFAULT_LISTEN.parse().expect("address");
        let deadline = std::time::Instant::now() + PROCESS_WAIT_MAX;
        loop {
            if TcpStream::connect(addr).is_ok() {
                return Ok(Daemon { child, addr, root: cwd.to_path_buf(), _owned: None, log });
            }
            if let Some(status) = child.try_wait().expect("try_wait") {
                for reader in readers {
                    let _ = reader.join();
                }
                let log = log.lock().expect("log lock").clone();
                return Err(Exited { status, log });
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("annald did not listen on {addr}; log: {:?}", log.lock().expect("log lock"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Reads one HTTP/1.1 response from a connection that stays open: the head,
/// then exactly `Content-Length` body bytes (bounded waits).
pub fn read_one_reply(stream: &mut TcpStream) -> Reply {
    stream.set_read_timeout(Some(PROCESS_WAIT_MAX)).expect("timeout");
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        assert!(raw.len() < 64 * 1024, "response head too long");
        match stream.read(&mut byte).expect("read response head") {
            0 => panic!("connection closed after {:?}", String::from_utf8_lossy(&raw)),
            _ => raw.push(byte[0]),
        }
    }
    let head = parse_response(&raw);
    let length: usize = head.header("content-length").and_then(|v| v.parse().ok()).expect("Content-Length");
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).expect("read response body");
    Reply { body, ..head }
}
