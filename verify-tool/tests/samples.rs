//! Goal: the sample artifacts committed under `examples/` (used by the
//! README) are exactly what `annal-bench sample` writes today, and
//! `annal-verify` verifies them, so they can never rot. Method: include the
//! generator's source, regenerate into a temporary directory, compare bytes,
//! then run the real binary on the committed files.

use std::path::PathBuf;
use std::process::Command;

#[path = "../../bench/src/sample.rs"]
mod sample;

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

#[test]
fn committed_samples_match_the_generator() {
    let dir = tempfile::tempdir().expect("tempdir");
    sample::write(dir.path()).expect("samples written");
    for name in sample::FILES {
        let fresh = std::fs::read(dir.path().join(name)).expect("generated");
        let committed = std::fs::read(examples().join(name))
            .unwrap_or_else(|e| panic!("examples/{name}: {e}; run `annal-bench sample --out examples`"));
        assert!(fresh == committed, "examples/{name} is stale; run `annal-bench sample --out examples`");
    }
}

#[test]
fn committed_samples_verify() {
    let examples = examples();
    let keys = examples.join("trusted.keys");
    let run = |artifact: &str, file: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_annal-verify"))
            .arg(artifact)
            .arg(examples.join(file))
            .arg("--trust-file")
            .arg(&keys)
            .arg("--expect-origin=annal.example/acme/orders")
            .output()
            .expect("annal-verify runs");
        assert_eq!(out.status.code(), Some(0), "{artifact} {file}: {}", String::from_utf8_lossy(&out.stdout));
        String::from_utf8(out.stdout).expect("utf-8")
    };
    let export = run("export", "orders.export.jsonl");
    assert!(export.starts_with("verified: 22 records, 3 checkpoints, root "), "{export}");
    assert!(
        export.ends_with(
            "; 2 records after the last checkpoint are not anchored; \
             1 cross-ledger lineage link not proven by this export\n"
        ),
        "{export}"
    );
    let bundle = run("bundle", "orders-7.bundle.json");
    assert!(bundle.starts_with("verified: record 7 of annal.example/acme/orders, hash "), "{bundle}");
    assert!(bundle.ends_with("; 2 lineage parents proven\n"), "{bundle}");
    let checkpoint = run("checkpoint", "orders.checkpoint");
    assert!(
        checkpoint.starts_with("verified: checkpoint annal.example/acme/orders size 20 root "),
        "{checkpoint}"
    );
    // The three agree on the anchored root.
    let root = checkpoint.split(" root ").nth(1).and_then(|r| r.split(',').next()).expect("root");
    assert!(export.contains(&format!("root {root};")) && bundle.contains(&format!("root {root};")));
}
