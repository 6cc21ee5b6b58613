//! annal-bench: writes synthetic exports for benchmarks and the sample
//! artifacts in `examples/`. Not shipped; every key it uses is a test key.

#![forbid(unsafe_code)]

mod generate;
mod sample;

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// annal's benchmark and sample-artifact generator (test keys only).
#[derive(Debug, Parser)]
#[command(name = "annal-bench", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Writes a large synthetic export signed by a test key and prints the
    /// matching `--trust-key` value (public key only) on stdout.
    GenExport {
        /// Number of records.
        #[arg(long)]
        records: u64,
        /// Payload size of every record, in bytes.
        #[arg(long, default_value_t = 256)]
        payload_bytes: usize,
        /// Sign a checkpoint after every this many records (and after the last).
        #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..))]
        checkpoint_every: u64,
        /// Where to write the export.
        #[arg(long)]
        out: PathBuf,
        /// Also write a trust file (for `annal-verify --trust-file`) here.
        #[arg(long)]
        trust_out: Option<PathBuf>,
    },
    /// Writes the README's sample artifacts into DIR: orders.export.jsonl,
    /// orders-7.bundle.json, orders.checkpoint and trusted.keys.
    Sample {
        /// Directory to write into (created if missing).
        #[arg(long)]
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("annal-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> io::Result<()> {
    match command {
        Command::GenExport { records, payload_bytes, checkpoint_every, out, trust_out } => {
            if payload_bytes > annal_chain::limits::PAYLOAD_BYTES_MAX {
                return Err(io::Error::other("--payload-bytes is above the format's payload limit"));
            }
            let mut file = BufWriter::with_capacity(1 << 20, File::create(&out)?);
            let vkey = generate::write_export(&mut file, records, payload_bytes, checkpoint_every)?;
            file.into_inner().map_err(|e| e.into_error())?.sync_all()?;
            if let Some(path) = trust_out {
                std::fs::write(path, sample::trust_file(&vkey, "the annal-bench signer"))?;
            }
            let mut stdout = io::stdout().lock();
            writeln!(stdout, "{vkey}")?;
            stdout.flush()
        }
        Command::Sample { out } => {
            std::fs::create_dir_all(&out)?;
            sample::write(&out)
        }
    }
}
