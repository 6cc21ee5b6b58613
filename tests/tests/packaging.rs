//! Goal: what the Debian package installs still runs annald the way
//! docs/RUNBOOK.md says: `systemd-analyze verify` has nothing to say about
//! systemd/annald.service, `systemd-analyze security` rates its exposure at
//! most `EXPOSURE_MAX`, the unit is Type=notify with the config path, user,
//! state directory and timeouts the rest of the package assumes, and the
//! default config (packaging/annal.toml) passes `annald config check` and
//! starts production annald to ready with its keys given exactly as the
//! unit's LoadCredential= lines name them (and refuses without them).
//! Method: copy the unit into a temp dir with ExecStart pointing at the
//! built annald and the packaged man pages on MANPATH, run systemd-analyze
//! offline on it (no running systemd needed; CI installs the `systemd`
//! package), and start the real binary with a temp CREDENTIALS_DIRECTORY.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::harness::{Daemon, annald, run_annald};

/// The highest `systemd-analyze security` exposure the unit may have (0.0
/// best, 10.0 worst). It reaches 1.4; what is left is the network itself
/// (AF_INET/AF_INET6, no PrivateNetwork=, no IP allow-list: the listen
/// address is configurable), AF_UNIX for sd_notify, PrivateUsers=,
/// ProtectClock='s rtc read access, the host's root directory, and
/// `setpriority` (0.2): the indexing thread lowers its own priority, and
/// without CAP_SYS_NICE no priority can be raised.
const EXPOSURE_MAX: f64 = 1.4;

/// The largest `server.connections_max` annald accepts (daemon/src/limits.rs):
/// LimitNOFILE must cover it plus the store's own descriptors.
const CONNECTIONS_MAX_MAX: u64 = 65_536;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

fn read(rel: &str) -> String {
    let path = workspace_root().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn unit_text() -> String {
    read("systemd/annald.service")
}

/// The values of `Key=` lines in a unit file, in order.
fn unit_values(unit: &str, key: &str) -> Vec<String> {
    let prefix = format!("{key}=");
    unit.lines().filter_map(|l| l.trim().strip_prefix(&prefix)).map(str::to_owned).collect()
}

fn unit_value(unit: &str, key: &str) -> String {
    let values = unit_values(unit, key);
    assert_eq!(values.len(), 1, "annald.service should set {key}= once, has {values:?}");
    values[0].clone()
}

/// `Ns` / `N` seconds, as the unit writes them.
fn seconds(value: &str) -> u64 {
    value.trim_end_matches('s').parse().unwrap_or_else(|_| panic!("{value:?} is not whole seconds"))
}

/// The unit as `systemd-analyze` should see it on this machine: ExecStart at
/// the built annald, in a temp dir with the packaged man pages beside it.
struct PreparedUnit {
    dir: tempfile::TempDir,
}

impl PreparedUnit {
    fn new() -> PreparedUnit {
        let unit = unit_text();
        let exec = unit_value(&unit, "ExecStart");
        let args = exec.strip_prefix("/usr/bin/annald ").expect("ExecStart runs /usr/bin/annald");
        let dir = tempfile::tempdir().expect("temp dir");
        let local = unit.replace(&exec, &format!("\"{}\" {args}", annald().display()));
        std::fs::write(dir.path().join("annald.service"), local).expect("write unit");
        for (page, section) in [("annald.8", "man8"), ("annal-verify.1", "man1")] {
            let to = dir.path().join("man").join(section);
            std::fs::create_dir_all(&to).expect("man dir");
            std::fs::copy(workspace_root().join("packaging/man").join(page), to.join(page))
                .expect("copy page");
        }
        PreparedUnit { dir }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("annald.service")
    }

    /// Runs systemd-analyze with `args` then the unit's path; MANPATH finds
    /// the packaged pages, so Documentation=man:annald(8) is checked too.
    fn analyze(&self, args: &[&str]) -> Output {
        match Command::new("systemd-analyze")
            .args(args)
            .arg(self.path())
            .env("MANPATH", self.dir.path().join("man"))
            .env("SYSTEMD_LOG_COLOR", "0")
            .env("SYSTEMD_PAGER", "")
            .output()
        {
            Ok(out) => out,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                "systemd-analyze is not installed: the packaging tests need it \
                 (apt-get install systemd; .ci/run installs it)"
            ),
            Err(e) => panic!("systemd-analyze did not run: {e}"),
        }
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn systemd_analyze_verify_has_nothing_to_say() {
    let unit = PreparedUnit::new();
    let out = unit.analyze(&["verify"]);
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    // verify exits 0 on many warnings: any output at all is a finding.
    assert!(
        out.status.success() && said.trim().is_empty(),
        "systemd-analyze verify: {:?}\n{said}",
        out.status
    );
}

#[test]
fn systemd_analyze_security_exposure_is_low() {
    let unit = PreparedUnit::new();
    // The threshold is on systemd's internal 0..100 scale.
    let threshold = format!("--threshold={}", (EXPOSURE_MAX * 10.0).round() as u32);
    let out = unit.analyze(&["security", "--offline=yes", &threshold, "--no-pager"]);
    let report = text(&out.stdout);
    let gaps: Vec<&str> = report.lines().filter(|l| l.starts_with('✗')).collect();
    let exposure: f64 = report
        .lines()
        .find_map(|l| l.split("Overall exposure level for annald.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{report}{}", text(&out.stderr)));
    assert!(
        out.status.success() && exposure <= EXPOSURE_MAX,
        "exposure {exposure} > {EXPOSURE_MAX} ({:?}); open items:\n{}\n{}",
        out.status,
        gaps.join("\n"),
        text(&out.stderr)
    );
}

#[test]
fn unit_matches_the_daemon_and_the_package() {
    let unit = unit_text();
    let check = |key: &str, expected: &str| assert_eq!(unit_value(&unit, key), expected, "{key}=");
    // The indexing thread lowers its own priority (nice 19): setpriority,
    // denied with @resources, is allowed again by a later entry (later
    // entries win), or the call fails with EPERM and indexing competes
    // with appends.
    let filters = unit_values(&unit, "SystemCallFilter");
    let deny =
        filters.iter().position(|f| f.starts_with('~') && f.split_whitespace().any(|g| g == "@resources"));
    let allow = filters.iter().rposition(|f| f.split_whitespace().any(|c| c == "setpriority"));
    assert!(matches!((deny, allow), (Some(d), Some(a)) if a > d), "SystemCallFilter= {filters:?}");
    // READY=1 after the bind, STOPPING=1 on SIGTERM: only annald itself.
    check("Type", "notify");
    check("NotifyAccess", "main");
    check("ExecStart", "/usr/bin/annald serve --config /etc/annal/annal.toml");
    // The user the sysusers entry creates.
    check("User", "annal");
    check("Group", "annal");
    let sysusers = read("systemd/annal.sysusers");
    assert!(
        sysusers.lines().any(|l| l.split_whitespace().take(2).eq(["u", "annal"])),
        "annal.sysusers must create the annal user:\n{sysusers}"
    );
    check("StateDirectory", "annal");
    check("StateDirectoryMode", "0700");
    check("ConfigurationDirectory", "annal");
    check("UMask", "0077");
    check("Restart", "on-failure");

    // The packaged config uses that state directory, and the stop timeout
    // leaves the drain its grace period with room to close the store.
    let config = read("packaging/annal.toml");
    assert!(config.contains("data_dir = \"/var/lib/annal\""), "data_dir is the StateDirectory");
    let grace_ms: u64 = config
        .lines()
        .find_map(|l| l.trim().strip_prefix("grace_ms = "))
        .expect("annal.toml sets shutdown.grace_ms")
        .parse()
        .expect("grace_ms is a number");
    let stop_s = seconds(&unit_value(&unit, "TimeoutStopSec"));
    assert!(
        stop_s * 1000 >= grace_ms + 10_000,
        "TimeoutStopSec={stop_s}s leaves no room after {grace_ms} ms"
    );
    let nofile: u64 = unit_value(&unit, "LimitNOFILE").parse().expect("LimitNOFILE is a number");
    assert!(
        nofile > CONNECTIONS_MAX_MAX,
        "LimitNOFILE={nofile} cannot hold {CONNECTIONS_MAX_MAX} connections"
    );

    // The package installs the files where the unit looks for them.
    let manifest = read("daemon/Cargo.toml");
    for entry in [
        "[\"../packaging/annal.toml\", \"etc/annal/annal.toml\", \"644\"]",
        "[\"target/release/annald\", \"usr/bin/\", \"755\"]",
        // cargo-deb takes annald.service and annal.sysusers from systemd/.
        "unit-name = \"annald\", unit-scripts = \"../systemd/\"",
    ] {
        assert!(manifest.contains(entry), "[package.metadata.deb] lacks {entry}");
    }
    // The maintainer scripts parse.
    for script in ["postinst", "postrm"] {
        let path = workspace_root().join("packaging/debian").join(script);
        let status = Command::new("sh").arg("-n").arg(&path).status().expect("sh runs");
        assert!(status.success(), "{} is not valid sh", path.display());
    }
}

/// A credentials directory holding the unit's two LoadCredential= names,
/// mode 0440: systemd 252 leaves them 0400 and owned by the service user,
/// newer systemd root's with an access-control entry for the user, which
/// shows as group bits. Both must be accepted (systemd, not the mode,
/// keeps the directory private).
fn credentials(dir: &Path, unit: &str) -> Vec<String> {
    let names: Vec<String> = unit_values(unit, "LoadCredential")
        .iter()
        .map(|v| v.split(':').next().expect("name:path").to_owned())
        .collect();
    assert_eq!(names.len(), 2, "two credentials: {names:?}");
    for name in &names {
        let path = dir.join(name);
        let path_arg = path.to_str().expect("utf-8");
        if name.contains("signing") {
            let (code, _, err) =
                run_annald(&["keys", "generate", "--out", path_arg, "--name", "annal.local"]);
            assert_eq!(code, Some(0), "{err}");
        } else {
            std::fs::write(&path, "packaging-test-admin-key-0123456789abcdef\n").expect("write admin key");
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o440)).expect("chmod");
    }
    names
}

#[test]
fn packaged_config_starts_production_with_the_units_credentials() {
    let unit = unit_text();
    let config_path = workspace_root().join("packaging/annal.toml");
    let config_arg = config_path.to_str().expect("utf-8");
    let config = read("packaging/annal.toml");
    let root = tempfile::tempdir().expect("temp dir");
    let creds = root.path().join("credentials");
    std::fs::create_dir(&creds).expect("credentials dir");
    let names = credentials(&creds, &unit);
    let creds_arg = creds.to_str().expect("utf-8");

    let out = Command::new(annald())
        .args(["config", "check", "--config", config_arg])
        .env_remove("ANNAL_ENVIRONMENT")
        .env_remove("RUST_LOG")
        .env("CREDENTIALS_DIRECTORY", creds_arg)
        .output()
        .expect("annald config check");
    assert!(out.status.success(), "config check: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "config ok: environment production, listen 127.0.0.1:7878");

    // Without the credentials production refuses (78) and names them.
    let exited = Daemon::launch(root.path(), Some(&config), &[]).err().expect("refused without keys");
    assert_eq!(exited.status.code(), Some(78), "{}", exited.log_text());
    let log = exited.log_text();
    assert!(names.iter().any(|n| log.contains(n.as_str())), "none of {names:?} named in {log}");

    // The install procedure: migrate deliberately, then start (the harness
    // overrides only the listen address and the data directory).
    let data = root.path().join("data");
    let out = Command::new(annald())
        .args(["migrate", "up", "--config", config_arg, "--data-dir", data.to_str().expect("utf-8")])
        .env_remove("ANNAL_ENVIRONMENT")
        .env_remove("RUST_LOG")
        .output()
        .expect("annald migrate up");
    assert!(out.status.success(), "migrate up: {}", text(&out.stderr));
    let d = Daemon::launch(root.path(), Some(&config), &[("CREDENTIALS_DIRECTORY", creds_arg)])
        .unwrap_or_else(|e| panic!("production did not start: {}", e.log_text()));
    let startup = d.log().into_iter().find(|l| l.contains("annald starting")).expect("startup line");
    assert!(startup.contains("environment=production"), "{startup}");
    let ready = d.get("/ready");
    assert_eq!(ready.status, 200, "{}", text(&ready.body));
}
