//! Large synthetic exports for throughput benchmarks of `annal-verify export`.

use std::io::{self, Write};

use annal_chain::testkit::{generate_export, test_signer};
use annal_chain::{NoteSigner, Origin};

/// The origin every benchmark export claims.
pub const BENCH_ORIGIN: &str = "annal.bench/bench/records";
/// The key name of the benchmark signer.
pub const BENCH_KEY_NAME: &str = "annal.bench";
/// Seed of the benchmark test key (a fake, fixed seed: benchmarks only).
const BENCH_KEY_SEED: u8 = 1;

/// The deterministic test signer benchmark exports are signed with.
pub fn bench_signer() -> NoteSigner {
    test_signer(BENCH_KEY_NAME, BENCH_KEY_SEED)
}

/// Writes an export of `records` records with `payload_bytes`-byte payloads
/// and a checkpoint every `checkpoint_every` records (and one at the end).
/// Returns the signer's C2SP verifier key: the `--trust-key` that verifies it.
pub fn write_export(
    out: &mut dyn Write,
    records: u64,
    payload_bytes: usize,
    checkpoint_every: u64,
) -> io::Result<String> {
    let signer = bench_signer();
    let origin = Origin::parse(BENCH_ORIGIN).expect("valid origin");
    // The generator's sink cannot fail, so keep the first error and stop writing.
    let mut result = Ok(());
    generate_export(&signer, &origin, records, payload_bytes, checkpoint_every, &mut |chunk| {
        if result.is_ok() {
            result = out.write_all(chunk);
        }
    });
    result?;
    out.flush()?;
    Ok(signer.vkey())
}
