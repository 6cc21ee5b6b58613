//! annal-verify: the offline verifier. Reads an exported ledger, a proof
//! bundle or a signed checkpoint, trusts only the keys it is given, and
//! prints one deterministic line. No network, no database, no clock.

#![forbid(unsafe_code)]

mod input;
mod report;
mod trust;

use std::io::{self, IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use annal_chain::limits::{BUNDLE_BYTES_MAX, NOTE_BYTES_MAX};
use annal_chain::{Origin, TrustedKey, verify_bundle, verify_checkpoint};
use clap::error::ErrorKind;
use clap::{CommandFactory as _, Parser, Subcommand};

use crate::input::Input;
use crate::report::{Artifact, Outcome};

/// Exit codes (sysexits.h where one fits); documented in `--help`.
/// Largest identity log read: 1024 entries of a few hundred bytes each.
const IDENTITY_LOG_BYTES_MAX: usize = 1024 * 1024;
const EXIT_VERIFIED: u8 = 0;
const EXIT_FAILED: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EX_NOINPUT: u8 = 66;
const EX_IOERR: u8 = 74;

const AFTER_HELP: &str = "\
Trust is explicit: nothing verifies unless it is signed by a key given with
--trust-key or --trust-file (at least one is required). A key is either
`ed25519:<base64 public key>` (any key name) or a C2SP verifier key
`<name>+<hex key id>+<base64(0x01 || public key)>` (that name only). A trust
file holds one key per line; lines starting with `#` and blank lines are ignored.

Output: one line on stdout; the same input and options give the same bytes.
  export      verified: N records, C checkpoints, root <base64 root of the last
              checkpoint>[; M records after the last checkpoint are not
              anchored][; E cross-ledger lineage links not proven by this export]
  bundle      verified: record S of <origin>, hash <hex>, in checkpoint size N
              root <base64>[; P lineage parents proven]
  checkpoint  verified: checkpoint <origin> size N root <base64>, signed by
              <ed25519:...>[, <ed25519:...>]
  failure     FAILED at index I: <reason>: <description>[ (line L)]

With --json, one object per run with keys in this fixed order:
  \"verified\" (bool), \"artifact\" (\"export\"|\"bundle\"|\"checkpoint\"),
  \"reason\", \"index\", \"line\" (null when verified; \"line\" is null for bundles
  and checkpoints), then for an export \"origin\", \"records\", \"checkpoints\",
  \"anchored_size\", \"root\", \"unanchored\", \"external_parents\"; for a bundle
  \"origin\", \"seq\", \"hash\", \"checkpoint_size\", \"root\", \"parents\"; for a
  checkpoint \"origin\", \"size\", \"root\", \"signers\" (array). These are null
  when verification failed; \"root\" is base64, \"hash\" lowercase hex.

Exit codes:
  0   verified
  1   verification failed (the reason and index are printed on stdout)
  2   usage error: bad arguments, no trusted key, unreadable or invalid trust file
  66  the input FILE is missing or unreadable
  74  the result could not be written to stdout";

/// annal's offline verifier: checks exported ledgers, proof bundles and
/// signed checkpoints against the keys you trust.
#[derive(Debug, Parser)]
#[command(name = "annal-verify", version, about, after_help = AFTER_HELP)]
struct Cli {
    #[command(subcommand)]
    artifact: Command,
    /// Trust this public key (repeatable): `ed25519:<base64>` or a C2SP verifier key.
    #[arg(long = "trust-key", value_name = "KEY", global = true, value_parser = parse_trusted_key)]
    trust_key: Vec<TrustedKey>,
    /// Trust every key in FILE (repeatable): one key per line, `#` comments.
    #[arg(long = "trust-file", value_name = "FILE", global = true)]
    trust_file: Vec<PathBuf>,
    /// The log's genesis signing key; with --identity-log, every key the log
    /// delegated to by a rotation signed by old and new key is trusted too.
    #[arg(long = "trust-root", value_name = "KEY", global = true, value_parser = parse_trusted_key, requires = "identity_log")]
    trust_root: Option<TrustedKey>,
    /// The identity log (`GET /v1/identity`), verified from --trust-root.
    #[arg(long = "identity-log", value_name = "FILE", global = true, requires = "trust_root")]
    identity_log: Option<PathBuf>,
    /// Fail unless the artifact is for this origin: `<log>/<tenant>/<ledger>`.
    #[arg(long, value_name = "ORIGIN", global = true, value_parser = parse_origin)]
    expect_origin: Option<Origin>,
    /// Print one JSON object instead of a sentence.
    #[arg(long, global = true)]
    json: bool,
}

/// The subcommands' help repeats the exit codes; the formats are in the main help.
const SUBCOMMAND_AFTER_HELP: &str = "\
Exit codes: 0 verified, 1 verification failed, 2 usage error, 66 input missing
or unreadable, 74 output not written. Output formats: see `annal-verify --help`.";

#[derive(Debug, Subcommand)]
enum Command {
    /// Verify a JSON Lines ledger export (FILE may be `-` for stdin), streaming,
    /// in constant memory.
    #[command(after_help = SUBCOMMAND_AFTER_HELP)]
    Export {
        /// The export file, or `-` for stdin.
        file: PathBuf,
    },
    /// Verify a proof bundle for one record (FILE may be `-` for stdin).
    #[command(after_help = SUBCOMMAND_AFTER_HELP)]
    Bundle {
        /// The bundle file, or `-` for stdin.
        file: PathBuf,
    },
    /// Verify a signed checkpoint note on its own (FILE may be `-` for stdin).
    #[command(after_help = SUBCOMMAND_AFTER_HELP)]
    Checkpoint {
        /// The checkpoint note file, or `-` for stdin.
        file: PathBuf,
    },
}

fn parse_trusted_key(text: &str) -> Result<TrustedKey, String> {
    TrustedKey::parse(text).ok_or_else(|| trust::KEY_FORMS.to_owned())
}

fn parse_origin(text: &str) -> Result<Origin, String> {
    Origin::parse(text).ok_or_else(|| "expected <log>/<tenant>/<ledger>, lowercase names".to_owned())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    ExitCode::from(run(cli))
}

/// Prints a usage error in clap's format (so every usage error looks alike).
fn usage_error(kind: ErrorKind, message: String) -> u8 {
    // If stderr is gone there is nobody to tell; the exit code still says it.
    let _ = Cli::command().error(kind, message).print();
    EXIT_USAGE
}

fn run(cli: Cli) -> u8 {
    let mut trusted = cli.trust_key;
    for path in &cli.trust_file {
        match trust::read_trust_file(path) {
            Ok(keys) => trusted.extend(keys),
            Err(message) => return usage_error(ErrorKind::ValueValidation, message),
        }
    }
    if let (Some(root), Some(path)) = (&cli.trust_root, &cli.identity_log) {
        let mut log = match Input::open(path) {
            Ok(input) => input,
            Err(e) => return no_input(path, &e),
        };
        let bytes = match log.read_capped(IDENTITY_LOG_BYTES_MAX) {
            Ok(bytes) => bytes,
            Err(e) => return no_input(path, &e),
        };
        match annal_chain::verify_identity_log(&bytes, root) {
            Ok(keys) => trusted.extend(keys),
            Err(failure) => {
                let line = if cli.json {
                    format!(
                        "{{\"verified\":false,\"artifact\":\"identity_log\",\"reason\":\"{}\",\"index\":{},\"line\":null}}\n",
                        failure.reason, failure.index
                    )
                } else {
                    format!(
                        "FAILED identity log at entry {}: {}: {}\n",
                        failure.index,
                        failure.reason,
                        failure.reason.describe()
                    )
                };
                let mut stdout = io::stdout().lock();
                if stdout.write_all(line.as_bytes()).and_then(|()| stdout.flush()).is_err() {
                    return EX_IOERR;
                }
                return EXIT_FAILED;
            }
        }
    }
    if trusted.is_empty() {
        return usage_error(
            ErrorKind::MissingRequiredArgument,
            "no trusted key: give at least one --trust-key KEY or --trust-file FILE \
             (annal-verify trusts no key by default)"
                .to_owned(),
        );
    }
    let expect = cli.expect_origin.as_ref();
    let (artifact, file) = match &cli.artifact {
        Command::Export { file } => (Artifact::Export, file),
        Command::Bundle { file } => (Artifact::Bundle, file),
        Command::Checkpoint { file } => (Artifact::Checkpoint, file),
    };
    let mut input = match Input::open(file) {
        Ok(input) => input,
        Err(e) => return no_input(file, &e),
    };
    let outcome = match artifact {
        Artifact::Export => {
            let progress = io::stderr().is_terminal().then(|| input::Progress::new(input.len()));
            let result = input::verify_export(&mut input, trusted, cli.expect_origin.clone(), progress);
            match result {
                Ok(r) => Outcome::Export(r),
                Err(e) => return no_input(file, &e),
            }
        }
        Artifact::Bundle => match input.read_capped(BUNDLE_BYTES_MAX) {
            Ok(bytes) => Outcome::Bundle(verify_bundle(&bytes, &trusted, expect)),
            Err(e) => return no_input(file, &e),
        },
        Artifact::Checkpoint => match input.read_capped(NOTE_BYTES_MAX) {
            Ok(bytes) => Outcome::Checkpoint(verify_checkpoint(&bytes, &trusted, expect)),
            Err(e) => return no_input(file, &e),
        },
    };
    let line = if cli.json { report::json(&outcome) } else { report::human(&outcome) };
    let mut stdout = io::stdout().lock();
    if let Err(e) = stdout.write_all(line.as_bytes()).and_then(|()| stdout.flush()) {
        eprintln!("annal-verify: cannot write the result: {e}");
        return EX_IOERR;
    }
    if outcome.verified() { EXIT_VERIFIED } else { EXIT_FAILED }
}

fn no_input(path: &Path, e: &io::Error) -> u8 {
    let name = if path == Path::new("-") { "stdin".into() } else { path.display().to_string() };
    eprintln!("annal-verify: cannot read {name}: {e}");
    EX_NOINPUT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn usage_code_matches_clap() {
        // clap exits 2 on a usage error; our documented code must be the same.
        let err = Cli::try_parse_from(["annal-verify", "export"]).unwrap_err();
        assert_eq!(err.exit_code(), i32::from(EXIT_USAGE));
    }
}
