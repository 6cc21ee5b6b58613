//! Goal: no acknowledged record is ever lost and the chain always verifies
//! after a power loss, wherever it strikes. Method: run a small workload
//! (single and batched appends on two ledgers, a checkpoint) on an in-memory
//! redb backend; then for every sync point of that workload rerun it with a
//! simulated power loss at that sync, in three ways (unsynced writes
//! dropped, kept, torn), reopen the survivor image and check that every
//! acknowledged record and checkpoint is there, `check` passes, and appends
//! continue.

mod common;

use annal_chain::testkit::test_signer;
use annal_chain::{Checkpoint, Hash32, Seq};
use annal_store::{CheckpointRequest, OpenOptions, Store, WriteError};
use common::backend::{FaultBackend, Loss};
use common::*;

const LEDGERS: [&str; 2] = ["orders", "invoices"];

#[derive(Default, Debug)]
struct Acked {
    records: Vec<(usize, Seq, Hash32)>,
    checkpoint: Option<u64>,
}

fn open_on(dir: &std::path::Path, backend: FaultBackend) -> Result<Store, annal_store::OpenError> {
    Store::open(dir, OpenOptions { backend: Some(Box::new(backend)), ..OpenOptions::default() })
}

/// Runs until the first failure; returns what was acknowledged.
fn workload(store: &Store) -> Acked {
    let signer = test_signer(LOG, 1);
    let mut acked = Acked::default();
    let mut ts = 0;
    for round in 0..4 {
        // One append alone, then a batch of four submitted together.
        let mut tickets = Vec::new();
        for i in 0..if round % 2 == 0 { 1 } else { 4 } {
            ts += 1;
            let li = (round + i) % 2;
            tickets.push((
                li,
                store.append(request("acme", LEDGERS[li], ts, format!("{{\"n\":{ts}}}").as_bytes(), vec![])),
            ));
        }
        let mut failed = false;
        for (li, t) in tickets {
            match t.wait() {
                Ok(Ok(a)) => acked.records.push((li, a.seq, a.hash)),
                Ok(Err(refusal)) => panic!("refused: {refusal}"),
                Err(WriteError::Failed(_)) => failed = true,
                Err(e) => panic!("unexpected {e}"),
            }
        }
        if failed {
            return acked;
        }
        if round == 2 {
            let l = ledger(LEDGERS[0]);
            let state = store.ledger_state(&tenant("acme"), &l).unwrap().unwrap();
            let note = Checkpoint::new(origin("acme", LEDGERS[0]), state.size, state.root).sign(&signer);
            match store.store_checkpoint(CheckpointRequest { tenant: tenant("acme"), ledger: l, note }).wait()
            {
                Ok(Ok(s)) => acked.checkpoint = Some(s.size),
                Ok(Err(r)) => panic!("refused: {r}"),
                Err(_) => return acked,
            }
        }
    }
    acked
}

#[test]
fn acknowledged_records_survive_power_loss_at_every_sync() {
    // Dry run: count the syncs of opening and of the workload.
    let dir = tempfile::tempdir().unwrap();
    let probe = FaultBackend::new();
    let store = open_on(dir.path(), probe.clone()).unwrap();
    let after_open = probe.syncs();
    let acked = workload(&store);
    assert_eq!(acked.records.len(), 10);
    drop(store);
    let total = probe.syncs();
    assert!(total > after_open + 5, "the workload syncs ({after_open}..{total})");

    let signer = test_signer(LOG, 1);
    let mut runs = 0;
    for at in after_open + 1..=total {
        for loss in [Loss::DropAll, Loss::KeepAll, Loss::Torn] {
            let dir = tempfile::tempdir().unwrap();
            let backend = FaultBackend::new();
            backend.crash_at(at, loss);
            let store = open_on(dir.path(), backend.clone()).unwrap();
            let acked = workload(&store);
            // After the loss the store refuses everything until reopened.
            assert!(store.failure().is_some() || backend.survivor().is_none());
            drop(store);
            let Some(image) = backend.survivor() else { continue };
            runs += 1;
            let store = open_on(dir.path(), FaultBackend::from_image(image))
                .unwrap_or_else(|e| panic!("reopen after loss at sync {at} ({loss:?}): {e}"));
            for (li, seq, hash) in &acked.records {
                let got = store.record(&tenant("acme"), &ledger(LEDGERS[*li]), *seq).unwrap();
                assert_eq!(
                    got.map(|e| e.hash),
                    Some(*hash),
                    "acked {}/{seq} lost at sync {at} ({loss:?})",
                    LEDGERS[*li]
                );
            }
            if let Some(size) = acked.checkpoint {
                assert!(store.checkpoint_at(&tenant("acme"), &ledger(LEDGERS[0]), size).unwrap().is_some());
            }
            let report = store.check(&[signer.trusted_key()]).unwrap();
            assert_eq!(report.failure, None, "check after loss at sync {at} ({loss:?})");
            // The store continues where the durable state ends.
            let next = append(&store, request("acme", LEDGERS[0], 99, b"{}", vec![]));
            let state = store.ledger_state(&tenant("acme"), &ledger(LEDGERS[0])).unwrap().unwrap();
            assert_eq!(next.seq.get() + 1, state.size);
        }
    }
    eprintln!("{runs} power-loss runs over syncs {}..={total}", after_open + 1);
    assert!(runs >= 3 * (total - after_open) - 3, "every sync point was exercised ({runs})");
}
