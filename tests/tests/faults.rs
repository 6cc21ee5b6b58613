//! Goal: fail closed. When the disk fills under a running daemon, the failing
//! append is not acknowledged, every later request that needs the database
//! answers 503 `db.unavailable`, readiness turns red with the database check
//! failed, and nothing is served from a fallback. Method: the real daemon with
//! its data directory on a small tmpfs (we run as root), filled by appends.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;

use crate::harness::Daemon;

struct Mount(PathBuf);

impl Mount {
    fn new(at: &Path, size: &str) -> Mount {
        std::fs::create_dir_all(at).expect("mount point");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .expect("run mount");
        assert!(status.success(), "mounting a tmpfs needs root; CI runs as root");
        Mount(at.to_owned())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_fails_closed() {
    let root = tempfile::tempdir().expect("temp dir");
    let _mount = Mount::new(&root.path().join("data"), "6m");
    let d = Daemon::launch(root.path(), None, &[]).expect("starts");
    let key = d.tenant_with_key("acme");
    let payload = "x".repeat(64 * 1024);
    let mut acked = Vec::new();
    let failure = loop {
        let r = d.call("POST", "/v1/ledgers/orders/records", &key, Some(&json!({ "payload": payload })));
        if r.status != 201 {
            break r;
        }
        acked.push(r.json()["seq"].as_u64().expect("seq"));
        assert!(acked.len() < 1_000, "a 6 MiB disk cannot hold this much");
    };
    assert_eq!(failure.status, 503, "{}", String::from_utf8_lossy(&failure.body));
    assert_eq!(failure.json()["code"], "db.unavailable");
    assert!(!acked.is_empty(), "some appends fit before the disk filled");

    // Nothing is acknowledged any more, and reads do not fall back.
    let again = d.call("POST", "/v1/ledgers/orders/records", &key, Some(&json!({ "payload": 1 })));
    assert_eq!((again.status, again.json()["code"].as_str()), (503, Some("db.unavailable")));
    let read = d.call("GET", "/v1/ledgers/orders/records/0", &key, None);
    assert_eq!((read.status, read.json()["code"].as_str()), (503, Some("db.unavailable")));
    let ready = d.get("/ready");
    assert_eq!(ready.status, 503);
    let checks = ready.json()["checks"].clone();
    let database = checks
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["name"] == "database")
        .expect("db check")
        .clone();
    assert_eq!(database["status"], "failed", "{checks}");
    assert_eq!(d.get("/health").status, 200, "the process is alive, just not ready");
}
