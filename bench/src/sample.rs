//! The small sample artifacts in `examples/`, used by the README.
//!
//! Two ledgers of tenant `acme` on log `annal.example`: `invoices` (3 records)
//! and `orders` (22 records, checkpoints at 8, 16 and 20, so the last two
//! records are not yet anchored). Orders link to earlier orders (same-ledger
//! lineage) and record 7 also links to an invoice (cross-ledger lineage).
//! Everything is a pure function of the constants here: regenerating gives
//! the same bytes, which a test in verify-tool checks against `examples/`.
//! That test includes this file as a module (so it needs nothing else from
//! this crate and exposes only `FILES`, `write` and `trust_file`).

use std::io;
use std::path::Path;

use annal_chain::testkit::{Ledger, test_signer};
use annal_chain::{NoteSigner, Parent};

/// The sample's signing key name.
const KEY_NAME: &str = "annal.example";
/// Fake, fixed seed of the sample's test key.
const KEY_SEED: u8 = 7;
/// 2026-01-01T00:00:00Z; records follow one minute apart.
const START_MS: u64 = 1_767_225_600_000;
const MINUTE_MS: u64 = 60_000;
const ORDERS: u64 = 22;
/// The record the sample bundle proves: it has a same-ledger and a cross-ledger parent.
const BUNDLE_SEQ: u64 = 7;

/// File names, in the order `artifacts` returns them.
pub const FILES: [&str; 4] =
    ["orders.export.jsonl", "orders-7.bundle.json", "orders.checkpoint", "trusted.keys"];

/// The sample's test signer (tests and examples only).
fn sample_signer() -> NoteSigner {
    test_signer(KEY_NAME, KEY_SEED)
}

/// Every sample artifact as (file name, bytes), in `FILES` order.
fn artifacts() -> Vec<(&'static str, Vec<u8>)> {
    let signer = sample_signer();
    let mut invoices = Ledger::new("annal.example", "acme", "invoices");
    for (i, amount) in [1250u64, 399, 8000].into_iter().enumerate() {
        let payload = format!("{{\"invoice\":\"INV-{}\",\"amount_cents\":{amount}}}", 501 + i);
        invoices.append(START_MS + i as u64 * MINUTE_MS, "application/json", payload.as_bytes(), vec![]);
    }
    invoices.checkpoint(&[&signer]);

    let mut orders = Ledger::new("annal.example", "acme", "orders");
    let statuses = ["created", "paid", "packed", "shipped"];
    for seq in 0..ORDERS {
        let parents: Vec<Parent> = match seq {
            5 => vec![orders.link(2)],
            7 => vec![orders.link(3), invoices.link(1)],
            12 => vec![orders.link(7)],
            15 => vec![orders.link(12), orders.link(5)],
            _ => vec![],
        };
        let payload =
            format!("{{\"order\":\"A-{}\",\"status\":\"{}\"}}", 1001 + seq / 4, statuses[(seq % 4) as usize]);
        orders.append(START_MS + (10 + seq) * MINUTE_MS, "application/json", payload.as_bytes(), parents);
        if matches!(seq + 1, 8 | 16 | 20) {
            orders.checkpoint(&[&signer]);
        }
    }

    let export = orders.export(&[signer.vkey()]);
    let bundle = orders.bundle(BUNDLE_SEQ, &[&invoices]);
    let (_, latest) = orders.checkpoints().last().expect("orders were anchored");
    let checkpoint = latest.to_string().into_bytes();
    let keys = trust_file(&signer.vkey(), "the annal.example sample signer").into_bytes();
    vec![(FILES[0], export), (FILES[1], bundle), (FILES[2], checkpoint), (FILES[3], keys)]
}

/// Writes every sample artifact into `dir` (which must exist).
pub fn write(dir: &Path) -> io::Result<()> {
    for (name, bytes) in artifacts() {
        std::fs::write(dir.join(name), bytes)?;
    }
    Ok(())
}

/// A trust file naming `vkey`, with a comment saying it is a test key.
pub fn trust_file(vkey: &str, what: &str) -> String {
    format!(
        "# annal-verify trust file: one key per line; '#' comments and blank lines are ignored.\n\
         # TEST KEY ONLY ({what}): the public half of a testkit key whose seed is public.\n\
         {vkey}\n"
    )
}
