//! Shared fixtures for annal-chain's integration tests: the export harness
//! that treats a byte stream as the CLI does, the signers, and the fixture
//! ledgers that tamper_sweep.rs and bundle_attacks.rs attack.

// Each test binary compiles this module and uses a different subset of it.
#![allow(dead_code)]

use annal_chain::testkit::{Ledger, test_signer};
use annal_chain::{ExportSummary, ExportVerifier, Failure, NoteSigner, Origin, Reason, TrustedKey};

/// The log name every fixture ledger lives in.
pub const LOG: &str = "annal.test";
/// Records in the fixture ledger.
pub const RECORDS: u64 = 64;
/// The fixture ledger issues a checkpoint after every this many records.
pub const CHECKPOINT_EVERY: u64 = 8;

/// The ledger's real signing key (seed 0x01; a test key, never a secret).
pub fn signer() -> NoteSigner {
    test_signer(LOG, 1)
}

/// A key the auditor does not trust, under the same key name.
pub fn attacker() -> NoteSigner {
    test_signer(LOG, 2)
}

/// Feeds an export byte stream to a fresh verifier the way `annal-verify
/// export` does (verify-tool/src/input.rs).
///
/// Harness rule: the stream is split after every `\n`; each complete line,
/// without its `\n`, goes to `push_line`, and the first failure is the
/// result. `finish` is reached only when the stream ends with `\n` (or is
/// empty). Bytes after the last `\n` are a cut-off line: `finish` is never
/// reached; the cut-off line is still pushed, because only the verifier knows
/// whether it is data after the end line (`trailing_data`, kept); any other
/// outcome of that push becomes `truncated`, with the records verified before
/// it as index (what `finish` would say) and its own line number.
pub fn verify_stream(
    bytes: &[u8],
    trusted: &[TrustedKey],
    expect_origin: Option<&Origin>,
) -> Result<ExportSummary, Failure> {
    let mut v = ExportVerifier::new(trusted.to_vec(), expect_origin.cloned());
    let mut rest = bytes;
    let mut lines = 0u64;
    while let Some(at) = rest.iter().position(|&b| b == b'\n') {
        v.push_line(&rest[..at])?;
        lines += 1;
        rest = &rest[at + 1..];
    }
    if rest.is_empty() {
        return v.finish();
    }
    let records = v.records();
    Err(match v.push_line(rest) {
        Err(f) if f.reason == Reason::TrailingData => f,
        _ => Failure::new(Reason::Truncated, records, lines + 1),
    })
}

/// The fixture: `acme/orders` with 64 records, a checkpoint every 8 records
/// (the last one at 64, the end), same-ledger lineage parents, one record
/// with several parents, and cross-ledger parents into `acme/invoices`.
#[derive(Debug)]
pub struct Fixture {
    pub orders: Ledger,
    pub invoices: Ledger,
}

impl Fixture {
    pub fn build() -> Fixture {
        Fixture::build_forged(&signer(), None)
    }

    /// The same ledgers, checkpoints signed by `signer`; with `forged_seq`,
    /// that record's payload is replaced, so its hash, every later `prev`
    /// and every root from then on differ: a rewritten history.
    pub fn build_forged(signer: &NoteSigner, forged_seq: Option<u64>) -> Fixture {
        let mut invoices = Ledger::new(LOG, "acme", "invoices");
        for i in 0..5u64 {
            invoices.append(1_700_000_000_000 + i, "text/plain", format!("invoice {i}").as_bytes(), vec![]);
        }
        invoices.checkpoint(&[signer]);

        let mut orders = Ledger::new(LOG, "acme", "orders");
        for i in 0..RECORDS {
            let parents = match i {
                3 => vec![orders.link(1)],
                9 => vec![orders.link(0), orders.link(8)],
                20 => vec![invoices.link(2)],
                27 => vec![orders.link(26), invoices.link(4), orders.link(5)],
                40 => vec![orders.link(39)],
                63 => vec![orders.link(31), orders.link(62)],
                _ => vec![],
            };
            let (content_type, payload) = match i % 4 {
                0 => ("application/json", format!("{{\"order\":{i},\"qty\":{}}}", i * 7 % 11).into_bytes()),
                1 => ("text/plain; charset=us-ascii", format!("order {i} shipped").into_bytes()),
                2 => ("application/octet-stream", (0..(i % 7) as u8).map(|b| b.wrapping_mul(37)).collect()),
                _ => ("application/x-empty", Vec::new()),
            };
            let payload = if forged_seq == Some(i) { b"forged".to_vec() } else { payload };
            orders.append(1_700_000_000_000 + i * 1_000, content_type, &payload, parents);
            if (i + 1) % CHECKPOINT_EVERY == 0 {
                orders.checkpoint(&[signer]);
            }
        }
        Fixture { orders, invoices }
    }

    /// The orders export with the real key declared in its header.
    pub fn export(&self) -> Vec<u8> {
        self.orders.export(&[signer().vkey()])
    }
}

/// The auditor's trust set: the real key only.
pub fn trusted() -> Vec<TrustedKey> {
    vec![signer().trusted_key()]
}
