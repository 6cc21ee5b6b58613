//! Goal: the operator runbook's procedures work with our commands, as
//! docs/RUNBOOK.md writes them: start (startup line, READY=1 to systemd,
//! health and readiness), stop safely (SIGTERM, STOPPING=1, exit 0),
//! migration status and mismatch, signing-key rotation that keeps history
//! verifiable, redeploy with the same key, an undelegated key that is never
//! ready and signs nothing, admin key rotation, production refusals (one per
//! reason), workers switched off, and the README's first command: plain
//! `annald serve` on the embedded defaults. Method: the real binaries, a fake
//! NOTIFY_SOCKET, restarts on one data directory.

use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::json;

use crate::harness::{DEFAULT_LISTEN, Daemon, annal_verify, run_annald as run};

fn secret(path: &Path, text: &str) {
    std::fs::write(path, format!("{text}\n")).expect("write secret");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

fn ready(d: &Daemon) -> (u16, serde_json::Value) {
    let r = d.get("/ready");
    (r.status, r.json())
}

fn check_status(body: &serde_json::Value, name: &str) -> String {
    body["checks"].as_array().expect("checks").iter().find(|c| c["name"] == name).expect("check present")["status"]
        .as_str()
        .expect("status")
        .to_owned()
}

/// Binds a fake systemd notify socket and returns it and its path.
fn notify_socket(root: &Path) -> (UnixDatagram, String) {
    let path = root.join("notify.sock");
    let sock = UnixDatagram::bind(&path).expect("bind notify socket");
    sock.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout");
    (sock, path.to_str().expect("utf-8").to_owned())
}

fn next_notification(sock: &UnixDatagram) -> String {
    let mut buf = [0u8; 512];
    let n = sock.recv(&mut buf).expect("a notification");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn start_verify_readiness_and_stop_safely() {
    let root = tempfile::tempdir().expect("temp dir");
    let (sock, path) = notify_socket(root.path());
    let mut d = Daemon::launch(root.path(), None, &[("NOTIFY_SOCKET", &path)]).expect("starts");
    assert_eq!(next_notification(&sock), "READY=1\n");
    let startup = d.log().into_iter().find(|l| l.contains("annald starting")).expect("startup line");
    for field in [
        "environment=development",
        "version=",
        "migration_head=",
        "signer=SHA256:",
        "listen=",
        "workers=enabled",
    ] {
        assert!(startup.contains(field), "startup line lacks {field}: {startup}");
    }
    // The webhook key by its fingerprint (16 hex digits), never the key.
    let webhook_key = startup.split("webhook_key=").nth(1).expect("webhook_key field");
    let fingerprint: String = webhook_key.chars().take_while(char::is_ascii_hexdigit).collect();
    assert_eq!(fingerprint.len(), 16, "{startup}");
    let key_file = std::fs::read_to_string(d.data_dir().join("dev-webhook.key")).expect("dev webhook key");
    assert!(!startup.contains(key_file.trim()), "the key itself is never logged");
    assert_eq!(d.get("/health").status, 200);
    let (status, body) = ready(&d);
    assert_eq!(status, 200, "{body}");
    for name in ["database", "migrations", "signing", "workers", "anchoring", "not_draining"] {
        assert_eq!(check_status(&body, name), "ok", "{name}: {body}");
    }
    d.signal("TERM");
    assert_eq!(next_notification(&sock), "STOPPING=1\n");
    assert_eq!(d.wait().code(), Some(0));
    let log = d.log().join("\n");
    assert!(log.contains("anchoring worker stopped") && log.contains("stopped cleanly"), "{log}");
}

#[test]
fn migration_status_and_mismatch() {
    let root = tempfile::tempdir().expect("temp dir");
    let data = root.path().join("data");
    let data_arg = data.to_str().expect("utf-8");
    let (code, _, _) = run(&["migrate", "status", "--data-dir", data_arg]);
    assert_eq!(code, Some(66), "no database yet");
    let (code, out, err) = run(&["migrate", "up", "--data-dir", data_arg]);
    assert_eq!(code, Some(0), "{err}");
    let head: u32 =
        out.lines().find_map(|l| l.strip_prefix("head: ")).expect("head line").parse().expect("number");
    assert!(out.contains("pending: []"), "{out}");
    let (code, out, _) = run(&["migrate", "status", "--data-dir", data_arg]);
    assert_eq!(code, Some(0));
    assert!(out.contains(&format!("head: {head}")), "{out}");

    let wrong = (head + 7).to_string();
    let exited = Daemon::launch(root.path(), None, &[("ANNAL_MIGRATIONS_EXPECTED_HEAD", &wrong)])
        .err()
        .expect("a head mismatch refuses to start");
    assert_eq!(exited.status.code(), Some(78));
    assert!(exited.log_text().contains(&format!("expected {wrong}, actual {head}")), "{}", exited.log_text());
    let right = head.to_string();
    let d = Daemon::launch(root.path(), None, &[("ANNAL_MIGRATIONS_EXPECTED_HEAD", &right)]).expect("starts");
    assert_eq!(ready(&d).0, 200);
}

fn verify_export(export: &[u8], dir: &Path, args: &[&str]) -> (Option<i32>, String) {
    let path = dir.join("export.jsonl");
    std::fs::write(&path, export).expect("write export");
    let out =
        Command::new(annal_verify()).arg("export").arg(&path).args(args).output().expect("run annal-verify");
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn signing_key_rotation_keeps_history_verifiable() {
    let root = tempfile::tempdir().expect("temp dir");
    let d = Daemon::launch(root.path(), None, &[]).expect("starts");
    let key = d.tenant_with_key("acme");
    let admin = d.admin_key();
    let genesis = d.trust_key();
    assert_eq!(d.call("POST", "/v1/ledgers/orders/records", &key, Some(&json!({"payload": 1}))).status, 201);
    assert_eq!(d.call("POST", "/admin/v1/checkpoints", &admin, None).status, 200);
    let before = d.call("GET", "/v1/ledgers/orders/export", &key, None).body;
    let mut d = d;
    d.signal("TERM");
    assert_eq!(d.wait().code(), Some(0));

    // Generate offline, register by rotation (signed by old and new key), deploy.
    let new_key = root.path().join("new-signing.key");
    let new_arg = new_key.to_str().expect("utf-8");
    let data = root.path().join("data");
    let data_arg = data.to_str().expect("utf-8");
    let (code, _, err) = run(&["keys", "generate", "--out", new_arg, "--name", "annal.local"]);
    assert_eq!(code, Some(0), "{err}");
    let (code, out, err) = run(&["keys", "rotate", "--new", new_arg, "--data-dir", data_arg]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("rotated: identity log entry 1"), "{out}");
    // Rotating again from the old key is refused: it is no longer current.
    let newer = root.path().join("newer.key");
    run(&["keys", "generate", "--out", newer.to_str().expect("utf-8")]);
    let (code, _, err) =
        run(&["keys", "rotate", "--new", newer.to_str().expect("utf-8"), "--data-dir", data_arg]);
    assert_eq!(code, Some(1), "{err}");

    let config = format!("[secrets]\nsigning_key_file = \"{new_arg}\"\n");
    let d = Daemon::launch(root.path(), Some(&config), &[]).expect("restarts with the new key");
    assert_eq!(ready(&d).0, 200, "{}", ready(&d).1);
    assert_eq!(d.call("POST", "/v1/ledgers/orders/records", &key, Some(&json!({"payload": 2}))).status, 201);
    assert_eq!(d.call("POST", "/admin/v1/checkpoints", &admin, None).status, 200);
    let after = d.call("GET", "/v1/ledgers/orders/export", &key, None).body;
    // History was not re-signed: the old export is a prefix of the new one's records.
    let first_record = |e: &[u8]| String::from_utf8_lossy(e).lines().nth(1).map(str::to_owned);
    assert_eq!(first_record(&before), first_record(&after));

    let identity = d.get("/v1/identity");
    assert_eq!(identity.status, 200);
    let id_path = root.path().join("identity.json");
    std::fs::write(&id_path, &identity.body).expect("write identity log");
    let id_arg = id_path.to_str().expect("utf-8");
    let (code, out) =
        verify_export(&after, root.path(), &["--trust-root", &genesis, "--identity-log", id_arg]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.starts_with("verified: 2 records, 2 checkpoints"), "{out}");
    // Trusting only the old key leaves the new checkpoint unverified.
    let (code, out) = verify_export(&after, root.path(), &["--trust-key", &genesis]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("unknown_signer"), "{out}");
    // A forged identity log (the rotation statement altered) is refused.
    let forged = String::from_utf8_lossy(&identity.body).replacen("\"seq\":1", "\"seq\":2", 1);
    std::fs::write(&id_path, forged).expect("write");
    let (code, out) =
        verify_export(&after, root.path(), &["--trust-root", &genesis, "--identity-log", id_arg]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.starts_with("FAILED identity log"), "{out}");
}

#[test]
fn redeploy_with_same_key_and_refuse_an_undelegated_one() {
    let root = tempfile::tempdir().expect("temp dir");
    let mut d = Daemon::launch(root.path(), None, &[]).expect("starts");
    let key = d.tenant_with_key("acme");
    let trust = d.trust_key();
    d.signal("TERM");
    assert_eq!(d.wait().code(), Some(0));

    // Same key: ready, and new outputs verify with the existing trust key.
    let d = Daemon::launch(root.path(), None, &[]).expect("restarts");
    assert_eq!(ready(&d).0, 200);
    assert_eq!(d.call("POST", "/v1/ledgers/orders/records", &key, Some(&json!({"payload": 1}))).status, 201);
    assert_eq!(d.call("POST", "/admin/v1/checkpoints", &d.admin_key(), None).status, 200);
    let export = d.call("GET", "/v1/ledgers/orders/export", &key, None).body;
    let (code, out) = verify_export(&export, root.path(), &["--trust-key", &trust]);
    assert_eq!(code, Some(0), "{out}");
    let mut d = d;
    d.signal("TERM");
    assert_eq!(d.wait().code(), Some(0));

    // Another key, never delegated: up, but never ready, and it signs nothing.
    let other = root.path().join("other.key");
    let other_arg = other.to_str().expect("utf-8");
    run(&["keys", "generate", "--out", other_arg, "--name", "annal.local"]);
    let config = format!("[secrets]\nsigning_key_file = \"{other_arg}\"\n");
    let d = Daemon::launch(root.path(), Some(&config), &[]).expect("starts, not ready");
    let (status, body) = ready(&d);
    assert_eq!(status, 503);
    assert_eq!(check_status(&body, "signing"), "failed", "{body}");
    let log = d.log().join("\n");
    assert!(log.contains("is not the current identity"), "{log}");
    let other_fp = run(&["keys", "show", other_arg]).1;
    let other_fp = other_fp.lines().find_map(|l| l.strip_prefix("fingerprint: ")).expect("fingerprint");
    assert!(log.contains(other_fp), "the log names the refused key's fingerprint: {log}");
    assert_eq!(d.call("POST", "/v1/ledgers/orders/records", &key, Some(&json!({"payload": 2}))).status, 201);
    let r = d.call("POST", "/admin/v1/checkpoints", &d.admin_key(), None);
    assert_eq!((r.status, r.json()["code"].as_str()), (503, Some("signing.unavailable")));
    let cp = d.call("GET", "/v1/ledgers/orders/checkpoint", &key, None);
    assert!(String::from_utf8_lossy(&cp.body).contains("\n1\n"), "no checkpoint was signed past size 1");
}

#[test]
fn admin_key_rotation() {
    let root = tempfile::tempdir().expect("temp dir");
    let old = root.path().join("admin-old");
    let new = root.path().join("admin-new");
    secret(&old, &"o".repeat(40));
    secret(&new, &"n".repeat(40));
    let config = |path: &Path| format!("[secrets]\nadmin_key_file = \"{}\"\n", path.display());
    let mut d = Daemon::launch(root.path(), Some(&config(&old)), &[]).expect("starts");
    assert_eq!(d.call("GET", "/admin/v1/tenants", &"o".repeat(40), None).status, 200);
    d.signal("TERM");
    assert_eq!(d.wait().code(), Some(0));
    let d = Daemon::launch(root.path(), Some(&config(&new)), &[]).expect("restarts");
    assert_eq!(d.call("GET", "/admin/v1/tenants", &"n".repeat(40), None).status, 200);
    assert_eq!(d.call("GET", "/admin/v1/tenants", &"o".repeat(40), None).status, 401);
}

#[test]
fn production_refuses_unsafe_starts() {
    let root = tempfile::tempdir().expect("temp dir");
    let admin = root.path().join("admin.key");
    secret(&admin, &"a".repeat(40));
    let signing = root.path().join("signing.key");
    let (code, _, err) = run(&["keys", "generate", "--out", signing.to_str().expect("utf-8")]);
    assert_eq!(code, Some(0), "{err}");
    let open = root.path().join("open.key");
    secret(&open, &"b".repeat(40));
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let prod =
        |secrets: &str, extra: &str| format!("environment = \"production\"\n{extra}[secrets]\n{secrets}");
    let both =
        format!("admin_key_file = \"{}\"\nsigning_key_file = \"{}\"\n", admin.display(), signing.display());
    let check = |config: Option<String>, env: &[(&str, &str)], needle: &str| {
        let exited = Daemon::launch(root.path(), config.as_deref(), env).err().expect("refused");
        assert_eq!(exited.status.code(), Some(78), "{}", exited.log_text());
        assert!(exited.log_text().contains(needle), "{needle:?} not in {}", exited.log_text());
    };
    check(None, &[("ANNAL_ENVIRONMENT", "production")], "no --config file");
    check(Some(prod(&format!("signing_key_file = \"{}\"\n", signing.display()), "")), &[], "no admin key");
    check(Some(prod(&format!("admin_key_file = \"{}\"\n", admin.display()), "")), &[], "no signing key");
    check(
        Some(prod(
            &format!(
                "admin_key_file = \"{}\"\nsigning_key_file = \"{}\"\n",
                open.display(),
                signing.display()
            ),
            "",
        )),
        &[],
        "chmod 600",
    );
    check(Some(prod(&both, "")), &[("RUST_LOG", "debug")], "RUST_LOG=debug");
    check(Some(prod(&both, "[migrations]\napply_on_start = true\n")), &[], "apply_on_start");
    let private = "[webhooks]\nallow_private_destinations = true\n";
    check(Some(prod(&both, private)), &[], "allow_private_destinations");
    // With everything in place, production migrates deliberately, then starts.
    let data = root.path().join("data");
    let (code, _, err) = run(&["migrate", "up", "--data-dir", data.to_str().expect("utf-8")]);
    assert_eq!(code, Some(0), "{err}");
    let d = Daemon::launch(root.path(), Some(&prod(&both, "")), &[]).expect("production starts");
    assert_eq!(ready(&d).0, 200, "{}", ready(&d).1);
    assert!(!d.data_dir().join("dev-admin.key").exists(), "production generates no keys");
    assert!(!d.data_dir().join("dev-webhook.key").exists(), "production generates no keys");

    // Without a webhook key webhooks are off, and say so.
    let admin_key = "a".repeat(40);
    let key = tenant_key(&d, &admin_key);
    let hook = serde_json::json!({"url": "http://93.184.216.34/hook"});
    let r = d.call("POST", "/v1/ledgers/orders/webhooks", &key, Some(&hook));
    assert_eq!((r.status, r.json()["code"].clone()), (409, "webhook.not_configured".into()));
    assert!(d.log().iter().any(|l| l.contains("webhooks off")), "{:?}", d.log());
    assert!(d.log().iter().any(|l| l.contains("webhook_key=off")), "{:?}", d.log());
    drop(d);

    // With one, they work; nothing is appended, so nothing is sent off the host.
    let webhook_key = root.path().join("webhook.key");
    let (code, out, err) =
        run(&["keys", "generate-webhook-key", "--out", webhook_key.to_str().expect("utf-8")]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("fingerprint "), "{out}");
    let with_key = format!("{both}webhook_key_file = \"{}\"\n", webhook_key.display());
    let d = Daemon::launch(root.path(), Some(&prod(&with_key, "")), &[]).expect("production starts");
    let r = d.call("POST", "/v1/ledgers/orders/webhooks", &key, Some(&hook));
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let r = d.call(
        "POST",
        "/v1/ledgers/orders/webhooks",
        &key,
        Some(&serde_json::json!({"url": "http://10.0.0.1/"})),
    );
    assert_eq!(r.json()["code"], "webhook.url_forbidden", "production delivers to public addresses only");
}

/// Creates tenant `acme` with the given admin key and returns a key for it.
fn tenant_key(d: &Daemon, admin: &str) -> String {
    let r = d.call("POST", "/admin/v1/tenants", admin, Some(&serde_json::json!({"id": "acme"})));
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let r = d.call("POST", "/admin/v1/tenants/acme/keys", admin, None);
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    r.json()["key"].as_str().expect("key").to_owned()
}

#[test]
fn workers_disabled_is_reported_and_honoured() {
    let d = Daemon::start(Some("[worker]\nenabled = false\n"));
    let (status, body) = ready(&d);
    assert_eq!(status, 200, "{body}");
    assert_eq!(check_status(&body, "workers"), "ok");
    assert!(d.log().iter().any(|l| l.contains("workers=disabled")));
}

/// A daemon with online backups into `<root>/backups` and `appends`
/// records in acme/orders: (root, backups dir, daemon, tenant key, admin key).
fn daemon_with_backups(appends: u64) -> (tempfile::TempDir, std::path::PathBuf, Daemon, String, String) {
    let root = tempfile::tempdir().expect("temp dir");
    let backups = root.path().join("backups");
    let config = format!("[storage]\nbackup_dir = \"{}\"\n", backups.display());
    let d = Daemon::launch(root.path(), Some(&config), &[]).expect("starts");
    let key = d.tenant_with_key("acme");
    let admin = d.admin_key();
    for i in 0..appends {
        assert_eq!(
            d.call("POST", "/v1/ledgers/orders/records", &key, Some(&json!({"payload": i}))).status,
            201
        );
    }
    (root, backups, d, key, admin)
}

#[test]
fn backup_restore_to_isolation_check_and_promote() {
    let (_root, _backups, d, key, admin) = daemon_with_backups(5);
    assert_eq!(d.call("POST", "/admin/v1/checkpoints", &admin, None).status, 200);
    let r = d.call("POST", "/admin/v1/backups", &admin, None);
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let backup = r.json()["path"].as_str().expect("backup path").to_owned();
    let trust = d.trust_key();
    // Appends continue after the snapshot; the backup holds what it held.
    assert_eq!(d.call("POST", "/v1/ledgers/orders/records", &key, Some(&json!({"payload": 5}))).status, 201);

    // Restore into an isolated directory, check, then serve from it.
    let isolated = tempfile::tempdir().expect("temp dir");
    let target = isolated.path().join("data");
    let target_arg = target.to_str().expect("utf-8");
    let (code, out, err) = run(&["restore", "--from", &backup, "--data-dir", target_arg]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("annald check"), "{out}");
    let (code, _, _) = run(&["restore", "--from", &backup, "--data-dir", target_arg]);
    assert_eq!(code, Some(1), "restore never writes over existing data");
    let (code, out, err) = run(&["check", "--data-dir", target_arg, "--trust-key", &trust]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.starts_with("check ok:"), "{out}");
    let (code, out, _) = run(&["migrate", "status", "--data-dir", target_arg]);
    assert_eq!(code, Some(0));
    assert!(out.contains("pending: []"), "{out}");
    // The dev keys live in the data dir; copy them so the restored log's identity signs on.
    for name in ["dev-signing.key", "dev-admin.key"] {
        std::fs::copy(d.data_dir().join(name), target.join(name)).expect("copy key");
    }
    drop(d);
    let promoted = Daemon::launch(isolated.path(), None, &[]).expect("restored store serves");
    assert_eq!(ready(&promoted).0, 200, "{}", ready(&promoted).1);
    let records = promoted.call("GET", "/v1/ledgers/orders/records", &key, None);
    assert_eq!(records.json()["records"].as_array().map(Vec::len), Some(5));
    let export = promoted.call("GET", "/v1/ledgers/orders/export", &key, None).body;
    let (code, out) = verify_export(&export, isolated.path(), &["--trust-key", &trust]);
    assert_eq!(code, Some(0), "{out}");
}

#[test]
fn offline_export_equals_the_served_export() {
    let root = tempfile::tempdir().expect("temp dir");
    let mut d = Daemon::launch(root.path(), None, &[]).expect("starts");
    let key = d.tenant_with_key("acme");
    for i in 0..3 {
        assert_eq!(
            d.call("POST", "/v1/ledgers/orders/records", &key, Some(&json!({"payload": i}))).status,
            201
        );
    }
    assert_eq!(d.call("POST", "/admin/v1/checkpoints", &d.admin_key(), None).status, 200);
    let served = d.call("GET", "/v1/ledgers/orders/export", &key, None).body;
    let trust = d.trust_key();
    d.signal("TERM");
    assert_eq!(d.wait().code(), Some(0));
    let out = root.path().join("orders.jsonl");
    let data = root.path().join("data");
    let (code, _, err) = run(&[
        "export",
        "--tenant",
        "acme",
        "--ledger",
        "orders",
        "--data-dir",
        data.to_str().expect("utf-8"),
        "--out",
        out.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, Some(0), "{err}");
    let offline = std::fs::read(&out).expect("export written");
    assert_eq!(offline, served, "one ledger, one export");
    let (code, out) = verify_export(&offline, root.path(), &["--trust-key", &trust]);
    assert_eq!(code, Some(0), "{out}");
}

/// DESIGN invariant 9, "never logs": after a run that generates the dev
/// secrets, issues a tenant key, uses it, presents a wrong secret for its id
/// and revokes it, with debug logging on, no secret appears in the log: not
/// the admin key, not the tenant key or its secret part, not the wrong
/// secret, not the signing key file or its seed.
#[test]
fn secrets_never_reach_the_log() {
    let root = tempfile::tempdir().expect("temp dir");
    let mut d = Daemon::launch(root.path(), None, &[("RUST_LOG", "debug")]).expect("starts");
    let admin = d.admin_key();
    let key = d.tenant_with_key("acme");
    assert_eq!(d.call("POST", "/v1/ledgers/orders/records", &key, Some(&json!({"payload": 1}))).status, 201);
    // annal_<16 hex id>_<base64url secret>
    let (prefix, secret) = key.split_at("annal_".len() + 16 + 1);
    let key_id = &prefix["annal_".len()..prefix.len() - 1];
    let wrong = format!("{prefix}{}", "A".repeat(secret.len()));
    assert_eq!(d.call("GET", "/v1/ledgers/orders/records", &wrong, None).status, 401);
    let r = d.call("POST", &format!("/admin/v1/tenants/acme/keys/{key_id}/revoke"), &admin, None);
    assert_eq!(r.status, 200, "revoke: {}", String::from_utf8_lossy(&r.body));
    assert_eq!(d.call("GET", "/v1/ledgers/orders/records", &key, None).status, 401);
    d.signal("TERM");
    assert_eq!(d.wait().code(), Some(0));

    let signing = std::fs::read_to_string(d.data_dir().join("dev-signing.key")).expect("dev signing key");
    let seed = signing.trim().splitn(5, '+').nth(4).expect("PRIVATE+KEY+<name>+<id>+<key>");
    let log = d.log().join("\n");
    assert!(log.contains("generated admin key at"), "the location is logged once: {log}");
    for (what, secret) in [
        ("admin key", admin.as_str()),
        ("tenant key", key.as_str()),
        ("tenant key secret", secret),
        ("wrong secret", &wrong[prefix.len()..]),
        ("signing key file", signing.trim()),
        ("signing seed", seed),
    ] {
        assert!(secret.len() >= 16, "{what} is a real secret");
        assert!(!log.contains(secret), "the log holds the {what}");
    }
}

/// Polls `/ready` until `done` accepts the answer; bounded.
fn ready_until(d: &Daemon, what: &str, done: impl Fn(u16, &serde_json::Value) -> bool) -> serde_json::Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = ready(d);
        if done(status, &body) {
            return body;
        }
        assert!(std::time::Instant::now() < deadline, "{what}: last answer {status} {body}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A record that waits for a checkpoint longer than `freshness_max_ms`
/// turns readiness red, naming it; anchoring it turns readiness green again.
/// (The worker's cadence is an hour here, so only its first pass runs.)
#[test]
fn a_record_waiting_too_long_for_a_checkpoint_fails_readiness_until_anchored() {
    let d = Daemon::start(Some("[anchor]\ninterval_ms = 3600000\nfreshness_max_ms = 300\n"));
    ready_until(&d, "ready at start", |status, _| status == 200);
    let key = d.tenant_with_key("acme");
    assert_eq!(d.call("POST", "/v1/ledgers/orders/records", &key, Some(&json!({"payload": 1}))).status, 201);
    let body = ready_until(&d, "anchoring goes red", |status, body| {
        status == 503 && check_status(body, "anchoring") == "failed"
    });
    let reason =
        body["checks"].as_array().expect("checks").iter().find(|c| c["name"] == "anchoring").expect("check")
            ["reason"]
            .as_str()
            .expect("reason")
            .to_owned();
    // The oldest waiting record: the event of the tenant's creation, or the append.
    assert!(
        ["annal-system/events seq 0 unanchored for ", "acme/orders seq 0 unanchored for "]
            .iter()
            .any(|p| reason.starts_with(p))
            && reason.ends_with(" ms (bound 300 ms)"),
        "{reason}"
    );
    let r = d.call("POST", "/admin/v1/checkpoints", &d.admin_key(), None);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    ready_until(&d, "ready once anchored", |status, _| status == 200);
}

/// Backups asked for at once are written one at a time: each answer is a
/// backup (in its own directory) or 409 `backup.in_progress`, never a
/// collision, and every backup written is in the event ledger.
#[test]
fn concurrent_backups_are_one_at_a_time_and_each_is_recorded() {
    let (_root, backups, d, _key, admin) = daemon_with_backups(1);
    let barrier = std::sync::Barrier::new(8);
    let answers: Vec<(u16, serde_json::Value)> = std::thread::scope(|s| {
        let asks: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    let r = d.call("POST", "/admin/v1/backups", &admin, None);
                    (r.status, r.json())
                })
            })
            .collect();
        asks.into_iter().map(|a| a.join().expect("thread")).collect()
    });
    let mut written = std::collections::BTreeSet::new();
    for (status, body) in &answers {
        match status {
            201 => assert!(written.insert(body["path"].as_str().expect("path").to_owned()), "{answers:?}"),
            409 => assert_eq!(body["code"], "backup.in_progress", "{body}"),
            _ => panic!("unexpected answer {status} {body}"),
        }
    }
    assert!(!written.is_empty());
    let on_disk = std::fs::read_dir(&backups).expect("backup dir").count();
    assert_eq!(on_disk, written.len());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let events = d.call("GET", "/admin/v1/events?code=ok&limit=1000", &admin, None).json();
        let recorded = events["events"]
            .as_array()
            .expect("events")
            .iter()
            .filter(|e| e["route"] == "POST /admin/v1/backups")
            .count();
        if recorded == written.len() {
            break;
        }
        assert!(
            recorded < written.len() && std::time::Instant::now() < deadline,
            "{recorded} of {}",
            written.len()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// DESIGN invariant 4, "on a configured cadence": with `anchor.interval_ms`
/// set and nobody asking, the worker signs a checkpoint covering new
/// records, again after more arrive.
#[test]
fn the_anchoring_worker_signs_on_its_cadence() {
    let d = Daemon::start(Some("[anchor]\ninterval_ms = 100\n"));
    let key = d.tenant_with_key("acme");
    let size_signed = || -> Option<u64> {
        let r = d.call("GET", "/v1/ledgers/orders/checkpoint", &key, None);
        (r.status == 200).then(|| String::from_utf8_lossy(&r.body).lines().nth(1)?.parse().ok()).flatten()
    };
    for (appends, size) in [(3u64, 3u64), (2, 5)] {
        for n in 0..appends {
            assert_eq!(
                d.call("POST", "/v1/ledgers/orders/records", &key, Some(&json!({"payload": n}))).status,
                201
            );
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while size_signed() != Some(size) {
            assert!(
                std::time::Instant::now() < deadline,
                "no checkpoint of size {size}: {:?}",
                size_signed()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The README's first command: `annald serve` with no config and no flags,
/// in development, listens on 127.0.0.1:7878, creates `./annal-data` with a
/// dev admin key and a dev signing key (mode 0600), and prints the admin
/// key's location once (even under RUST_LOG=error), never its value; a second
/// start on the same directory prints no location and reuses both keys.
#[test]
fn plain_serve_uses_the_embedded_defaults() {
    // CI machines are fresh: a taken port is a broken machine, not a pass.
    let port_free = std::net::TcpListener::bind(DEFAULT_LISTEN);
    assert!(port_free.is_ok(), "this test needs {DEFAULT_LISTEN} free (the embedded default): {port_free:?}");
    drop(port_free);
    let location = "generated admin key at ./annal-data/dev-admin.key";
    let stop = |mut d: Daemon| -> String {
        d.signal("TERM");
        assert_eq!(d.wait().code(), Some(0), "{:?}", d.log());
        d.log().join("\n")
    };

    let cwd = tempfile::tempdir().expect("temp dir");
    let d = Daemon::launch_with_defaults(cwd.path(), &[]).expect("starts on the defaults");
    assert_eq!(d.addr.to_string(), DEFAULT_LISTEN);
    assert_eq!(d.get("/health").status, 200);
    assert_eq!(ready(&d).0, 200, "{}", ready(&d).1);
    let data = cwd.path().join("annal-data");
    let read_key = |name: &str| {
        let path = data.join(name);
        let mode = std::fs::metadata(&path).expect(name).permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{name} is readable by its owner only");
        std::fs::read_to_string(&path).expect(name)
    };
    let (admin, signing) = (read_key("dev-admin.key"), read_key("dev-signing.key"));
    let admin = admin.trim();
    assert_eq!(d.call("GET", "/admin/v1/tenants", admin, None).status, 200);
    let first = stop(d);
    assert_eq!(first.matches(location).count(), 1, "{first}");
    assert!(first.contains("listening on 127.0.0.1:7878"), "{first}");
    assert!(first.contains("data_dir=./annal-data"), "{first}");
    assert!(!first.contains(admin), "the admin key's value was printed");

    let d = Daemon::launch_with_defaults(cwd.path(), &[]).expect("restarts on the same directory");
    assert_eq!(d.call("GET", "/admin/v1/tenants", admin, None).status, 200, "the admin key is reused");
    let second = stop(d);
    assert!(!second.contains("generated admin key"), "the location is printed once: {second}");
    assert!(!second.contains("generated signing key"), "{second}");
    assert_eq!((read_key("dev-admin.key").trim(), read_key("dev-signing.key")), (admin, signing));
    let signer = |log: &str| log.split("signer=").nth(1).and_then(|s| s.split(' ').next()).map(str::to_owned);
    assert_eq!(signer(&first), signer(&second), "the same signing key");
    assert!(!second.contains(admin), "the admin key's value was printed");

    // The location is printed, not logged: RUST_LOG=error does not hide it.
    let quiet = tempfile::tempdir().expect("temp dir");
    let d = Daemon::launch_with_defaults(quiet.path(), &[("RUST_LOG", "error")]).expect("starts");
    let quiet_log = stop(d);
    assert!(quiet_log.contains(location), "{quiet_log}");
}
