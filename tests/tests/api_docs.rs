//! Goal: the curl walk-through in docs/API.md works exactly as written, so
//! the guide cannot rot: every step exits 0 and prints what the page says it
//! prints, and the walk-through keeps covering the whole tour.
//! Method: the ```sh blocks whose first line is `# test: NAME` are run in
//! order in one `bash -euo pipefail` against a fresh `annald` (BASE, DATA and
//! ADMIN exported as a reader would set them; the built `annald` and
//! `annal-verify` first on PATH); each block's output must contain every
//! `# => TEXT` line the block lists.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::{Daemon, annald};

/// The steps the walk-through must keep (the issue asks for each).
const REQUIRED_STEPS: [&str; 15] = [
    "setup",
    "create-tenant",
    "issue-key",
    "append",
    "idempotency",
    "read",
    "list",
    "anchor",
    "checkpoint",
    "proof",
    "export",
    "verify-offline",
    "events",
    "webhooks",
    "revoke",
];

const MARKER: &str = "@@annal-doc-step ";

#[derive(Debug)]
struct Block {
    name: String,
    script: String,
    expected: Vec<String>,
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

/// The tested blocks of a Markdown page, in order.
fn blocks(markdown: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut lines = markdown.lines();
    while let Some(line) = lines.next() {
        if line.trim_end() != "```sh" {
            continue;
        }
        let body: Vec<&str> = lines.by_ref().take_while(|l| l.trim_end() != "```").collect();
        let Some(name) = body.first().and_then(|l| l.strip_prefix("# test: ")) else { continue };
        let expected = body.iter().filter_map(|l| l.strip_prefix("# => ")).map(str::to_owned).collect();
        out.push(Block { name: name.trim().to_owned(), script: body[1..].join("\n"), expected });
    }
    out
}

#[test]
fn block_extraction() {
    let page = "text\n```sh\n# test: one\necho hi\n# => hi\n```\n```sh\nnot tested\n```\n```json\n{}\n```\n";
    let got = blocks(page);
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].name.as_str(), got[0].script.as_str()), ("one", "echo hi\n# => hi"));
    assert_eq!(got[0].expected, ["hi"]);
}

/// House rules for the examples: quiet curl that still shows errors, and
/// `--fail-with-body` except where a block shows an error code on purpose.
fn check_style(block: &Block) {
    let shows_error = block.expected.iter().any(|e| e.starts_with("\"code\":"));
    for line in block.script.lines().filter(|l| l.contains("curl ")) {
        assert!(line.contains(" -sS "), "step {}: curl without -sS: {line}", block.name);
        assert!(
            shows_error || line.contains("--fail-with-body"),
            "step {}: curl without --fail-with-body: {line}",
            block.name
        );
    }
    assert!(block.name == "setup" || !block.expected.is_empty(), "step {} checks no output", block.name);
}

#[test]
fn the_walk_through_in_api_md_runs() {
    let curl = Command::new("curl").arg("--version").output();
    assert!(curl.is_ok_and(|o| o.status.success()), "the docs test needs curl: apt-get install -y curl");
    let page = std::fs::read_to_string(root().join("docs/API.md")).expect("docs/API.md");
    let steps = blocks(&page);
    let names: Vec<&str> = steps.iter().map(|b| b.name.as_str()).collect();
    for required in REQUIRED_STEPS {
        assert!(names.contains(&required), "docs/API.md lost its `# test: {required}` step; has {names:?}");
    }
    let mut script = String::from("set -euo pipefail\n");
    for step in &steps {
        check_style(step);
        script.push_str(&format!("echo '{MARKER}{}'\n{}\n", step.name, step.script));
    }

    let d = Daemon::start(None);
    let work = tempfile::tempdir().expect("temp dir");
    let bin_dir = annald().parent().expect("binary dir").to_path_buf();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(work.path())
        .env("PATH", path)
        .env("BASE", format!("http://{}", d.addr))
        .env("DATA", d.data_dir())
        .env("ADMIN", d.admin_key())
        .output()
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Output per step: the text between one step's marker and the next.
    let outputs: Vec<(&str, &str)> =
        stdout.split(MARKER).skip(1).map(|chunk| chunk.split_once('\n').unwrap_or((chunk, ""))).collect();
    let last = outputs.last().map_or("(before the first step)", |(name, _)| name);
    assert!(
        out.status.success(),
        "docs/API.md step `{last}` failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    assert_eq!(outputs.len(), steps.len(), "every step ran: {stdout}");
    for (step, (name, output)) in steps.iter().zip(&outputs) {
        assert_eq!(step.name, *name);
        for expected in &step.expected {
            assert!(
                output.contains(expected.as_str()),
                "docs/API.md step `{name}` should print {expected:?}; it printed:\n{output}\nstderr:\n{stderr}"
            );
        }
    }
}
