//! Goal: the `annal-verify` binary prints exactly the documented line and
//! exits with the documented code for verified, tampered, mis-trusted,
//! truncated, over-long and missing inputs, and prints the same bytes every
//! time. Method: build small artifacts with `annal_chain::testkit` in a
//! temporary directory, run the real binary on them, compare stdout and the
//! exit code exactly.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use annal_chain::limits::EXPORT_LINE_BYTES_MAX;
use annal_chain::testkit::{Ledger, test_signer};
use annal_chain::{NoteSigner, Reason};

const BIN: &str = env!("CARGO_BIN_EXE_annal-verify");

/// Artifacts of a ledger `orders` (10 records, checkpoints at 4 and 8) whose
/// record 5 links to record 1 and record 7 to record 2 and to `invoices` 0.
struct Fixture {
    dir: tempfile::TempDir,
    signer: NoteSigner,
    /// The export's text, for tampering.
    export: String,
    /// base64 root of the last checkpoint (size 8).
    root: String,
    /// Hex hash of record 7.
    hash7: String,
}

impl Fixture {
    fn new() -> Fixture {
        let signer = test_signer("annal.test", 1);
        let mut invoices = Ledger::new("annal.test", "acme", "invoices");
        invoices.append(1, "text/plain", b"invoice 1", vec![]);
        invoices.checkpoint(&[&signer]);
        let mut orders = Ledger::new("annal.test", "acme", "orders");
        for i in 0..10u64 {
            let parents = match i {
                5 => vec![orders.link(1)],
                7 => vec![orders.link(2), invoices.link(0)],
                _ => vec![],
            };
            orders.append(1000 + i, "application/json", format!("{{\"n\":{i}}}").as_bytes(), parents);
            if i == 3 || i == 7 {
                orders.checkpoint(&[&signer]);
            }
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let export = String::from_utf8(orders.export(&[signer.vkey()])).expect("utf-8");
        let note = orders.checkpoints().last().expect("anchored").1.clone();
        let root = note.text().lines().nth(2).expect("root line").to_owned();
        let hash7 = orders.record(7).hash().to_hex();
        let f = Fixture { dir, signer, export, root, hash7 };
        f.write("orders.jsonl", f.export.as_bytes());
        f.write("bundle.json", &orders.bundle(7, &[&invoices]));
        f.write("checkpoint.note", note.to_string().as_bytes());
        f.write("trusted.keys", format!("# test key\n\n  {}  \n", f.signer.vkey()).as_bytes());
        f
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, bytes: &[u8]) -> String {
        std::fs::write(self.path(name), bytes).expect("write fixture");
        self.path(name).to_str().expect("utf-8 path").to_owned()
    }

    fn trust(&self) -> String {
        format!("--trust-key={}", self.signer.trusted_key().to_ed25519_string())
    }

    fn ed25519(&self) -> String {
        self.signer.trusted_key().to_ed25519_string()
    }

    /// The 1-based line of the export holding record `seq`.
    fn line_of(&self, seq: u64) -> usize {
        let needle = format!("\"type\":\"record\",\"seq\":{seq},");
        self.export.lines().position(|l| l.contains(&needle)).expect("record present") + 1
    }
}

struct Output {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("annal-verify starts");
    if let Some(bytes) = stdin {
        child.stdin.take().expect("stdin").write_all(bytes).expect("write stdin");
    }
    let out = child.wait_with_output().expect("annal-verify finishes");
    Output {
        code: out.status.code().expect("exited, not killed"),
        stdout: String::from_utf8(out.stdout).expect("utf-8 stdout"),
        stderr: String::from_utf8(out.stderr).expect("utf-8 stderr"),
    }
}

/// Runs and checks the exit code and the exact stdout.
fn check(args: &[&str], stdin: Option<&[u8]>, code: i32, stdout: &str) -> Output {
    let out = run(args, stdin);
    assert_eq!((out.code, out.stdout.as_str()), (code, stdout), "args {args:?}; stderr: {}", out.stderr);
    out
}

fn failed(reason: Reason, index: u64, line: usize) -> String {
    let at = if line == 0 { String::new() } else { format!(" (line {line})") };
    format!("FAILED at index {index}: {reason}: {}{at}\n", reason.describe())
}

fn failed_json(artifact: &str, reason: Reason, index: u64, line: Option<usize>) -> String {
    let line = line.map_or("null".to_owned(), |l| l.to_string());
    let rest = match artifact {
        "export" => {
            "\"origin\":null,\"records\":null,\"checkpoints\":null,\"anchored_size\":null,\"root\":null,\"unanchored\":null,\"external_parents\":null"
        }
        "bundle" => {
            "\"origin\":null,\"seq\":null,\"hash\":null,\"checkpoint_size\":null,\"root\":null,\"parents\":null"
        }
        _ => "\"origin\":null,\"size\":null,\"root\":null,\"signers\":null",
    };
    format!(
        "{{\"verified\":false,\"artifact\":\"{artifact}\",\"reason\":\"{reason}\",\"index\":{index},\"line\":{line},{rest}}}\n"
    )
}

#[test]
fn verified_artifacts_print_the_documented_line() {
    let f = Fixture::new();
    let (export, bundle, note) = (f.path("orders.jsonl"), f.path("bundle.json"), f.path("checkpoint.note"));
    let (export, bundle, note) = (export.to_str().unwrap(), bundle.to_str().unwrap(), note.to_str().unwrap());
    let trust = f.trust();
    let root = &f.root;
    let line = format!(
        "verified: 10 records, 2 checkpoints, root {root}; 2 records after the last checkpoint are not \
         anchored; 1 cross-ledger lineage link not proven by this export\n"
    );
    check(&["export", export, &trust], None, 0, &line);
    let json = format!(
        "{{\"verified\":true,\"artifact\":\"export\",\"reason\":null,\"index\":null,\"line\":null,\
         \"origin\":\"annal.test/acme/orders\",\"records\":10,\"checkpoints\":2,\"anchored_size\":8,\
         \"root\":\"{root}\",\"unanchored\":2,\"external_parents\":1}}\n"
    );
    check(&["export", export, &trust, "--json"], None, 0, &json);
    // Options may also come before the subcommand; a trust file works like keys.
    let keys = f.path("trusted.keys");
    check(&["--json", "--trust-file", keys.to_str().unwrap(), "export", export], None, 0, &json);

    let hash = &f.hash7;
    let line = format!(
        "verified: record 7 of annal.test/acme/orders, hash {hash}, in checkpoint size 8 root {root}; \
         2 lineage parents proven\n"
    );
    check(&["bundle", bundle, &trust], None, 0, &line);
    let json = format!(
        "{{\"verified\":true,\"artifact\":\"bundle\",\"reason\":null,\"index\":null,\"line\":null,\
         \"origin\":\"annal.test/acme/orders\",\"seq\":7,\"hash\":\"{hash}\",\"checkpoint_size\":8,\
         \"root\":\"{root}\",\"parents\":2}}\n"
    );
    check(&["bundle", bundle, &trust, "--json"], None, 0, &json);

    let key = f.ed25519();
    let line = format!("verified: checkpoint annal.test/acme/orders size 8 root {root}, signed by {key}\n");
    check(&["checkpoint", note, &trust], None, 0, &line);
    // The same key twice, as a flag and from a file, still names one signer.
    check(&["checkpoint", note, &trust, "--trust-file", keys.to_str().unwrap()], None, 0, &line);
    let json = format!(
        "{{\"verified\":true,\"artifact\":\"checkpoint\",\"reason\":null,\"index\":null,\"line\":null,\
         \"origin\":\"annal.test/acme/orders\",\"size\":8,\"root\":\"{root}\",\"signers\":[\"{key}\"]}}\n"
    );
    check(&["checkpoint", note, &trust, "--json"], None, 0, &json);
}

#[test]
fn tampering_fails_with_reason_index_and_line() {
    let f = Fixture::new();
    let trust = f.trust();
    let tampered = f.export.replacen("\"timestamp_ms\":1005", "\"timestamp_ms\":1006", 1);
    let path = f.write("tampered.jsonl", tampered.as_bytes());
    let line = f.line_of(5);
    check(&["export", &path, &trust], None, 1, &failed(Reason::RecordHashMismatch, 5, line));
    let json = failed_json("export", Reason::RecordHashMismatch, 5, Some(line));
    check(&["export", &path, &trust, "--json"], None, 1, &json);

    let bundle = std::fs::read_to_string(f.path("bundle.json")).unwrap();
    let path = f.write(
        "tampered.bundle",
        bundle.replacen("\"timestamp_ms\":1007", "\"timestamp_ms\":1", 1).as_bytes(),
    );
    check(&["bundle", &path, &trust], None, 1, &failed(Reason::RecordHashMismatch, 7, 0));
    check(
        &["bundle", &path, &trust, "--json"],
        None,
        1,
        &failed_json("bundle", Reason::RecordHashMismatch, 7, None),
    );

    let note = std::fs::read_to_string(f.path("checkpoint.note")).unwrap();
    let path = f.write("tampered.note", note.replacen("\n8\n", "\n9\n", 1).as_bytes());
    check(&["checkpoint", &path, &trust], None, 1, &failed(Reason::BadSignature, 9, 0));
}

#[test]
fn only_trusted_keys_count() {
    let f = Fixture::new();
    let export = f.path("orders.jsonl");
    let export = export.to_str().unwrap();
    let attacker = format!("--trust-key={}", test_signer("annal.test", 2).vkey());
    // The first checkpoint follows record 3, so it checks the tree of size 4.
    let line = f.line_of(3) + 1;
    check(&["export", export, &attacker], None, 1, &failed(Reason::UnknownSigner, 4, line));
    let bundle = f.path("bundle.json");
    check(&["bundle", bundle.to_str().unwrap(), &attacker], None, 1, &failed(Reason::UnknownSigner, 7, 0));
    let note = f.path("checkpoint.note");
    check(&["checkpoint", note.to_str().unwrap(), &attacker], None, 1, &failed(Reason::UnknownSigner, 8, 0));
}

#[test]
fn expected_origin_is_enforced() {
    let f = Fixture::new();
    let trust = f.trust();
    let export = f.path("orders.jsonl");
    let bundle = f.path("bundle.json");
    let note = f.path("checkpoint.note");
    let other = "--expect-origin=annal.test/acme/invoices";
    check(
        &["export", export.to_str().unwrap(), &trust, other],
        None,
        1,
        &failed(Reason::OriginMismatch, 1, 1),
    );
    check(
        &["bundle", bundle.to_str().unwrap(), &trust, other],
        None,
        1,
        &failed(Reason::OriginMismatch, 7, 0),
    );
    check(
        &["checkpoint", note.to_str().unwrap(), &trust, other],
        None,
        1,
        &failed(Reason::OriginMismatch, 8, 0),
    );
    let same = "--expect-origin=annal.test/acme/orders";
    assert_eq!(run(&["export", export.to_str().unwrap(), &trust, same], None).code, 0);
    let out = run(&["export", export.to_str().unwrap(), &trust, "--expect-origin=Not/An/Origin"], None);
    assert_eq!((out.code, out.stdout.as_str()), (2, ""));
}

#[test]
fn stdin_reads_like_a_file() {
    let f = Fixture::new();
    let trust = f.trust();
    let from_file = run(&["export", f.path("orders.jsonl").to_str().unwrap(), &trust], None);
    check(&["export", "-", &trust], Some(f.export.as_bytes()), 0, &from_file.stdout);
    let bundle = std::fs::read(f.path("bundle.json")).unwrap();
    let from_file = run(&["bundle", f.path("bundle.json").to_str().unwrap(), &trust, "--json"], None);
    check(&["bundle", "-", &trust, "--json"], Some(&bundle), 0, &from_file.stdout);
}

#[test]
fn cut_and_overlong_inputs_are_reported_at_their_line() {
    let f = Fixture::new();
    let trust = f.trust();
    let lines = f.export.lines().count();
    // No newline after the end line: truncated, after every record.
    let cut = f.export.strip_suffix('\n').unwrap();
    check(&["export", "-", &trust], Some(cut.as_bytes()), 1, &failed(Reason::Truncated, 10, lines));
    // Cut inside record 5: the first record not read is 5.
    let at = f.export.find("\"timestamp_ms\":1005").unwrap();
    check(
        &["export", "-", &trust],
        Some(&f.export.as_bytes()[..at]),
        1,
        &failed(Reason::Truncated, 5, f.line_of(5)),
    );
    // Cut right after a line: the end line is missing.
    let at = f.export.find("{\"type\":\"record\",\"seq\":5,").unwrap();
    check(
        &["export", "-", &trust],
        Some(&f.export.as_bytes()[..at]),
        1,
        &failed(Reason::Truncated, 5, f.line_of(5) - 1),
    );
    check(&["export", "-", &trust], Some(b""), 1, &failed(Reason::Truncated, 0, 0));
    // Data after the end line stays trailing data, newline or not.
    for tail in ["x", "x\n"] {
        let input = format!("{}{tail}", f.export);
        check(
            &["export", "-", &trust],
            Some(input.as_bytes()),
            1,
            &failed(Reason::TrailingData, lines as u64 + 1, lines + 1),
        );
    }
    // An over-long line is refused at its line without reading all of it.
    let header = f.export.lines().next().unwrap();
    let long = "x".repeat(EXPORT_LINE_BYTES_MAX + 1);
    for end in ["\n", ""] {
        let input = format!("{header}\n{long}{end}");
        check(&["export", "-", &trust], Some(input.as_bytes()), 1, &failed(Reason::Malformed, 2, 2));
    }
    // A line of exactly the limit is read (and is malformed only because it is not JSON).
    let input = format!("{header}\n{}\n", "x".repeat(EXPORT_LINE_BYTES_MAX));
    check(&["export", "-", &trust], Some(input.as_bytes()), 1, &failed(Reason::Malformed, 2, 2));
}

#[test]
fn usage_errors_exit_2_and_missing_input_exits_66() {
    let f = Fixture::new();
    let trust = f.trust();
    let export = f.path("orders.jsonl");
    let export = export.to_str().unwrap();

    let out = check(&["export", export], None, 2, "");
    assert!(out.stderr.contains("no trusted key"), "{}", out.stderr);
    let out = check(&["export", export, "--trust-key", "ed25519:AAAA"], None, 2, "");
    assert!(out.stderr.contains("--trust-key"), "{}", out.stderr);
    let missing = f.path("no-such.keys");
    let out = check(&["export", export, "--trust-file", missing.to_str().unwrap()], None, 2, "");
    assert!(out.stderr.contains("cannot read --trust-file"), "{}", out.stderr);
    let bad = f.write("bad.keys", b"# comment\nnot-a-key\n");
    let out = check(&["export", export, "--trust-file", &bad], None, 2, "");
    assert!(out.stderr.contains("line 2"), "{}", out.stderr);
    let empty = f.write("empty.keys", b"# only a comment\n\n");
    let out = check(&["export", export, "--trust-file", &empty], None, 2, "");
    assert!(out.stderr.contains("names no key"), "{}", out.stderr);
    check(&["export", &trust], None, 2, "");
    check(&["frobnicate", export, &trust], None, 2, "");
    check(&[], None, 2, "");

    let missing = f.path("missing.jsonl");
    for artifact in ["export", "bundle", "checkpoint"] {
        let out = check(&[artifact, missing.to_str().unwrap(), &trust], None, 66, "");
        assert!(out.stderr.contains("cannot read"), "{}", out.stderr);
        check(&[artifact, f.dir.path().to_str().unwrap(), &trust], None, 66, "");
    }

    for help in [&["--help"][..], &["export", "--help"], &["--version"]] {
        let out = run(help, None);
        assert_eq!(out.code, 0, "{help:?}");
        assert!(!out.stdout.is_empty());
    }
    let help = run(&["--help"], None).stdout;
    for documented in [
        "0   verified",
        "1   verification failed",
        "2   usage error",
        "66  the input FILE",
        "\"anchored_size\"",
    ] {
        assert!(help.contains(documented), "--help documents {documented:?}");
    }
}

#[test]
fn same_input_same_bytes() {
    let f = Fixture::new();
    let trust = f.trust();
    let tampered =
        f.write("t.jsonl", f.export.replacen("\"timestamp_ms\":1003", "\"timestamp_ms\":1", 1).as_bytes());
    let inputs: [(&str, &Path); 4] = [
        ("export", &f.path("orders.jsonl")),
        ("export", Path::new(&tampered)),
        ("bundle", &f.path("bundle.json")),
        ("checkpoint", &f.path("checkpoint.note")),
    ];
    for (artifact, path) in inputs {
        for json in [false, true] {
            let mut args = vec![artifact, path.to_str().unwrap(), &trust];
            if json {
                args.push("--json");
            }
            let (a, b) = (run(&args, None), run(&args, None));
            assert_eq!(a.code, if path == Path::new(&tampered) { 1 } else { 0 }, "{args:?}");
            assert_eq!((a.code, &a.stdout, &a.stderr), (b.code, &b.stdout, &b.stderr), "{args:?}");
            assert!(!a.stdout.contains(f.dir.path().to_str().unwrap()), "no paths in output");
        }
    }
}

#[test]
fn exports_larger_than_the_read_buffer_verify_from_file_and_pipe() {
    // 3000 records of ~620 bytes: lines straddle the 1 MiB read buffer.
    let signer = test_signer("annal.bench", 1);
    let origin = annal_chain::Origin::parse("annal.bench/bench/records").unwrap();
    let mut export = Vec::new();
    annal_chain::testkit::generate_export(&signer, &origin, 3000, 256, 1024, &mut |chunk| {
        export.extend_from_slice(chunk)
    });
    assert!(export.len() > 1024 * 1024);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.jsonl");
    std::fs::write(&path, &export).unwrap();
    let trust = format!("--trust-key={}", signer.vkey());
    let from_file = run(&["export", path.to_str().unwrap(), &trust], None);
    assert_eq!(from_file.code, 0, "{}", from_file.stdout);
    assert!(
        from_file.stdout.starts_with("verified: 3000 records, 3 checkpoints, root "),
        "{}",
        from_file.stdout
    );
    check(&["export", "-", &trust], Some(&export), 0, &from_file.stdout);
}

#[test]
fn unanchored_and_singular_counts_are_worded_plainly() {
    let signer = test_signer("annal.test", 1);
    let trust = format!("--trust-key={}", signer.vkey());
    let mut ledger = Ledger::new("annal.test", "acme", "orders");
    ledger.append(1, "text/plain", b"one", vec![]);
    let bare = ledger.export(&[signer.vkey()]);
    // No checkpoint: the chain verifies, but no key vouched for anything.
    check(
        &["export", "-", &trust],
        Some(&bare),
        0,
        "verified: 1 record, 0 checkpoints, no signed root; 1 record is not anchored by any checkpoint\n",
    );
    check(
        &["export", "-", &trust, "--json"],
        Some(&bare),
        0,
        "{\"verified\":true,\"artifact\":\"export\",\"reason\":null,\"index\":null,\"line\":null,\
         \"origin\":\"annal.test/acme/orders\",\"records\":1,\"checkpoints\":0,\"anchored_size\":0,\
         \"root\":null,\"unanchored\":1,\"external_parents\":0}\n",
    );
    let note = ledger.checkpoint(&[&signer]);
    let root = note.text().lines().nth(2).unwrap().to_owned();
    let anchored = ledger.export(&[signer.vkey()]);
    check(
        &["export", "-", &trust],
        Some(&anchored),
        0,
        &format!("verified: 1 record, 1 checkpoint, root {root}\n"),
    );
}
