//! Goal: the structural rules of DESIGN.md and STYLE.md hold, so a change that
//! breaks one fails CI instead of a review. Method: read `cargo metadata` and
//! the source tree, and check each rule as data.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ sits in the workspace").to_path_buf()
}

fn metadata() -> serde_json::Value {
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .current_dir(workspace_root())
        .output()
        .expect("cargo metadata runs");
    assert!(out.status.success(), "cargo metadata: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("metadata is JSON")
}

/// The normal (non-dev, non-build) dependencies of a workspace package.
fn normal_deps(meta: &serde_json::Value, package: &str) -> BTreeSet<String> {
    let pkg = meta["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .find(|p| p["name"] == package)
        .unwrap_or_else(|| panic!("package {package} is in the workspace"));
    pkg["dependencies"]
        .as_array()
        .expect("dependencies")
        .iter()
        .filter(|d| d["kind"].is_null())
        .map(|d| d["name"].as_str().expect("name").to_owned())
        .collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn dependency_direction() {
    let meta = metadata();
    // (package, what it may depend on): DESIGN.md "Parts and their rooms".
    let check = |package: &str, allowed: &[&str]| {
        let deps = normal_deps(&meta, package);
        let allowed = set(allowed);
        let extra: Vec<_> = deps.difference(&allowed).collect();
        assert!(extra.is_empty(), "{package} may not depend on {extra:?}");
    };
    // The verifier's TCB: pure, no I/O crates, no serde_json.
    check("annal-chain", &["base64", "blake3", "ed25519-dalek", "sha2"]);
    // The offline verifier trusts annal-chain alone (plus its CLI plumbing).
    check("annal-verify", &["annal-chain", "clap", "indicatif"]);
    // blake3 only for the store's own checksums (high-water-mark file,
    // migration definitions, idempotency fingerprints, the payload-digest
    // index); every hashed or signed format byte still comes from annal-chain.
    check("annal-store", &["annal-chain", "redb", "sled", "bincode", "blake3"]);
}

#[test]
fn only_the_daemon_speaks_http_and_only_the_store_touches_the_database() {
    let meta = metadata();
    for pkg in meta["packages"].as_array().expect("packages") {
        let name = pkg["name"].as_str().expect("name");
        let deps = normal_deps(&meta, name);
        for http in ["warp", "hyper", "hyper-util", "tokio", "axum"] {
            assert!(
                !deps.contains(http) || name == "annal-daemon" || name == "annal-bench",
                "{name} depends on {http}; only annal-daemon speaks HTTP"
            );
        }
        // annal-bench's floor server keeps a redb file of its own to
        // measure a bare group commit (docs/PERFORMANCE.md); that file
        // alone may name redb, and the crate has no annal-store.
        let scratch_redb = name == "annal-bench" && !deps.contains("annal-store") && {
            let bench = workspace_root().join("bench");
            let mut files = Vec::new();
            rust_files(&bench, &mut files);
            files
                .iter()
                .filter(|f| {
                    *f != &bench.join("src/bin/bare-append.rs") && !f.starts_with(bench.join("tests"))
                })
                .all(|f| !std::fs::read_to_string(f).expect("source readable").contains("redb"))
        };
        for db in ["redb", "sled"] {
            assert!(
                !deps.contains(db) || name == "annal-store" || (db == "redb" && scratch_redb),
                "{name} depends on {db}; only annal-store may"
            );
        }
    }
}

#[test]
fn every_crate_uses_the_workspace_lints() {
    let root = workspace_root();
    for pkg in metadata()["packages"].as_array().expect("packages") {
        let manifest = PathBuf::from(pkg["manifest_path"].as_str().expect("manifest path"));
        let text = std::fs::read_to_string(&manifest).expect("manifest readable");
        assert!(
            text.contains("[lints]\nworkspace = true"),
            "{} must opt into [workspace.lints]",
            manifest.strip_prefix(&root).unwrap_or(&manifest).display()
        );
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable dir") {
        let path = entry.expect("dir entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.is_dir() {
            if !matches!(name, "target" | ".git" | "annal-data" | "bench-data") && !name.starts_with('.') {
                rust_files(&path, out);
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

#[test]
fn source_files_say_what_they_own_and_tests_run_everything() {
    let root = workspace_root();
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    assert!(files.len() > 10, "found the sources");
    let mut problems = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("readable source");
        let rel = file.strip_prefix(&root).unwrap_or(file).display().to_string();
        let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
        if !first.starts_with("//!") {
            problems.push(format!("{rel}: must start with a //! line saying what it owns"));
        }
        // Spelled in pieces so that this file does not trip its own rule.
        for banned in [
            concat!("#[", "ignore"),
            concat!("#[", "should_panic"),
            concat!("todo", "!("),
            concat!("unimplemented", "!("),
        ] {
            if text.contains(banned) {
                problems.push(format!("{rel}: contains {banned}"));
            }
        }
    }
    assert!(problems.is_empty(), "tidy problems:\n{}", problems.join("\n"));
}
