//! Goal: a full disk never produces an acknowledgement without a durable
//! record, never leaves a partial record, and the store works again once
//! space is freed and it is reopened. Method: mount a 4 MiB tmpfs (we run
//! as root) holding a 1 MiB filler file and the data directory; append
//! 16 KiB records until the store fails; check that every later write is
//! refused, then delete the filler, reopen, and check every acknowledged
//! record, `check`, and new appends. The real tmpfs is required: if it
//! cannot be mounted that test fails with the reason, unless
//! `ANNAL_TEST_ENOSPC_SIMULATED=1` is set (for machines where the tests
//! cannot be root), which skips it with a message. The same scenario always
//! runs on a backend that answers ENOSPC past a byte budget too, where the
//! disk fills inside a tail flush (every caller must get `Failed`).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use annal_chain::{Hash32, Seq};
use annal_store::{OpenOptions, Store, WriteError};
use common::backend::FaultBackend;
use common::*;

struct Mount(PathBuf);

/// Opts out of the real tmpfs (see the file's first lines).
const SIMULATED_ENV: &str = "ANNAL_TEST_ENOSPC_SIMULATED";

impl Mount {
    /// Mounts a 4 MiB tmpfs at `at`, or says why it could not.
    fn new(at: &Path) -> Result<Mount, String> {
        std::fs::create_dir_all(at).map_err(|e| format!("create {}: {e}", at.display()))?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
            .arg(at)
            .output()
            .map_err(|e| format!("run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount exited {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Mount(at.to_owned()))
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

const PAYLOAD_BYTES: usize = 16 * 1024;

/// Appends until the store fails; returns the acknowledged (seq, hash).
fn fill(store: &Store) -> Vec<(Seq, Hash32)> {
    let mut acked = Vec::new();
    for i in 0..10_000u64 {
        let payload = vec![(i % 251) as u8; PAYLOAD_BYTES];
        match store.append(request("acme", "orders", i, &payload, vec![])).wait() {
            Ok(Ok(a)) => acked.push((a.seq, a.hash)),
            Ok(Err(r)) => panic!("refused: {r}"),
            Err(WriteError::Failed(reason)) => {
                eprintln!("store failed after {} acks: {reason}", acked.len());
                // No ack after the error: every later write and read is refused.
                let again = store.append(request("acme", "orders", 0, b"{}", vec![])).wait();
                assert!(matches!(again, Err(WriteError::Failed(_))), "{again:?}");
                assert!(store.ledger_state(&tenant("acme"), &ledger("orders")).is_err());
                return acked;
            }
            Err(e) => panic!("unexpected {e}"),
        }
    }
    panic!("the disk never filled");
}

fn verify_after(store: &Store, acked: &[(Seq, Hash32)]) {
    let (t, l) = (tenant("acme"), ledger("orders"));
    for (seq, hash) in acked {
        assert_eq!(store.record(&t, &l, *seq).unwrap().map(|e| e.hash), Some(*hash), "acked {seq} survives");
    }
    let size = store.ledger_state(&t, &l).unwrap().unwrap().size;
    // The failed commit may or may not have reached the disk, but whole or not at all.
    assert!(
        size == acked.len() as u64 || size == acked.len() as u64 + 1,
        "size {size}, acked {}",
        acked.len()
    );
    assert_eq!(store.check(&[]).unwrap().failure, None);
    let next = append(store, request("acme", "orders", 1, b"after", vec![]));
    assert_eq!(next.seq.get(), size);
}

#[test]
fn disk_full_acks_nothing_and_recovers_after_space_is_freed() {
    if std::env::var_os(SIMULATED_ENV).is_some_and(|v| v == "1") {
        eprintln!("ENOSPC test: {SIMULATED_ENV}=1, no real tmpfs; only the ENOSPC backend test runs");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    let mount = Mount::new(&mnt).unwrap_or_else(|why| {
        panic!(
            "ENOSPC test needs a real tmpfs (run as root with mount installed), or set {SIMULATED_ENV}=1 \
             to run only the simulated one: {why}"
        )
    });
    eprintln!("ENOSPC test: real tmpfs (4 MiB) at {}", mnt.display());
    let filler = mnt.join("filler");
    std::fs::write(&filler, vec![1u8; 1024 * 1024]).unwrap();
    let data = mnt.join("data");
    let store = Store::open(&data, OpenOptions::default()).expect("store fits on the tmpfs");
    let acked = fill(&store);
    assert!(acked.len() > 10, "some appends fit before the disk filled");
    drop(store);
    std::fs::remove_file(&filler).unwrap();
    let store = Store::open(&data, OpenOptions::default()).expect("reopens once space is freed");
    verify_after(&store, &acked);
    drop(store);
    drop(mount);
}

#[test]
fn disk_full_on_the_enospc_backend_acks_nothing_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let backend = FaultBackend::new();
    backend.set_space_bytes_max(Some(3 * 1024 * 1024));
    let store = Store::open(
        dir.path(),
        OpenOptions { backend: Some(Box::new(backend.clone())), ..OpenOptions::default() },
    )
    .unwrap();
    let acked = fill(&store);
    assert!(acked.len() > 10, "some appends fit before the disk filled");
    drop(store);
    let freed = FaultBackend::from_image(backend.current_image());
    let store =
        Store::open(dir.path(), OpenOptions { backend: Some(Box::new(freed)), ..OpenOptions::default() })
            .unwrap();
    verify_after(&store, &acked);
}
