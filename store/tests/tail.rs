//! Goal: records that go through the append log (ledgers with only a few
//! appends per commit) read back exactly like records in the ledger tables:
//! before the log is flushed, across flushes, after a crash that left them
//! only in the log, and after a clean close. Method: many single-append
//! commits round-robin over three ledgers (crossing several flushes), a
//! cross-ledger parent, a checkpoint and a hot batch in between; every phase
//! compares every record, proof, export and `check` against what was
//! acknowledged.

mod common;

use annal_chain::testkit::test_signer;
use annal_chain::{Checkpoint, Hash32, MemoryTree, Parent, Seq, root_from_inclusion};
use annal_store::limits::{DIRECT_APPENDS_MIN, TAIL_FLUSH_COMMITS};
use annal_store::{CheckpointRequest, OpenOptions, Store};
use common::backend::FaultBackend;
use common::*;

const LEDGERS: [&str; 3] = ["a", "b", "c"];

fn open_on(dir: &std::path::Path, backend: FaultBackend) -> Store {
    Store::open(dir, OpenOptions { backend: Some(Box::new(backend)), ..OpenOptions::default() })
        .expect("opens")
}

/// Every acknowledged record, proof and export of every ledger, and `check`.
fn assert_matches(store: &Store, acked: &[Vec<Hash32>], checkpoint: Option<(usize, u64)>, phase: &str) {
    let signer = test_signer(LOG, 1);
    for (li, hashes) in acked.iter().enumerate().filter(|(_, h)| !h.is_empty()) {
        let (t, l) = (tenant("acme"), ledger(LEDGERS[li]));
        let state = store.ledger_state(&t, &l).unwrap().unwrap_or_else(|| panic!("{phase}: ledger missing"));
        assert_eq!(state.size, hashes.len() as u64, "{phase}: size of {}", LEDGERS[li]);
        let mut tree = MemoryTree::new();
        let mut got = Vec::new();
        let mut after = None;
        loop {
            let page = store.records(&t, &l, after, 7).unwrap();
            let Some(last) = page.last() else { break };
            after = Some(last.record.seq());
            got.extend(page.iter().map(|e| e.hash));
        }
        assert_eq!(&got, hashes, "{phase}: records of {}", LEDGERS[li]);
        for h in hashes {
            tree.append(*h);
        }
        assert_eq!(Some(state.root), tree.root(state.size), "{phase}: root of {}", LEDGERS[li]);
        for seq in 0..hashes.len() as u64 {
            let proof = store.inclusion_proof(&t, &l, Seq::new(seq), state.size).unwrap();
            let root = root_from_inclusion(seq, state.size, &hashes[seq as usize], &proof);
            assert_eq!(root, Some(state.root), "{phase}: proof of {}/{seq}", LEDGERS[li]);
        }
        let mut out = Vec::new();
        store.export(&origin("acme", LEDGERS[li]), &[signer.vkey()], &mut out).unwrap();
        let summary = verify_export(&out, &[signer.trusted_key()], &origin("acme", LEDGERS[li]))
            .unwrap_or_else(|e| panic!("{phase}: export of {}: {e:?}", LEDGERS[li]));
        assert_eq!(summary.records, hashes.len() as u64);
    }
    if let Some((li, size)) = checkpoint {
        let cp = store.latest_checkpoint(&tenant("acme"), &ledger(LEDGERS[li])).unwrap();
        assert!(cp.is_some(), "{phase}: latest checkpoint");
        assert!(store.checkpoint_at(&tenant("acme"), &ledger(LEDGERS[li]), size).unwrap().is_some());
    }
    let total: u64 = acked.iter().map(|h| h.len() as u64).sum();
    assert_eq!(store.records_total(), total, "{phase}: records_total, logged records included");
    let report = store.check(&[signer.trusted_key()]).unwrap();
    assert_eq!(report.failure, None, "{phase}: check");
    assert_eq!(report.records, total, "{phase}: check count");
}

#[test]
fn logged_records_read_back_across_flushes_crashes_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let backend = FaultBackend::new();
    let store = open_on(dir.path(), backend.clone());
    let signer = test_signer(LOG, 1);
    let mut acked: Vec<Vec<Hash32>> = vec![Vec::new(); LEDGERS.len()];
    let mut checkpoint = None;
    // Enough one-append commits to flush the tails twice and leave a tail.
    let commits = 2 * TAIL_FLUSH_COMMITS as usize + 17;
    for i in 0..commits {
        let li = i % LEDGERS.len();
        // Now and then a record with a parent in another ledger's tail.
        let parents = match (i % 5, acked[(li + 1) % 3].last()) {
            (0, Some(h)) => vec![Parent {
                ledger: ledger(LEDGERS[(li + 1) % 3]),
                seq: Seq::new(acked[(li + 1) % 3].len() as u64 - 1),
                hash: *h,
            }],
            _ => vec![],
        };
        let a = append(
            &store,
            request("acme", LEDGERS[li], i as u64, format!("{{\"i\":{i}}}").as_bytes(), parents),
        );
        assert_eq!(a.seq.get(), acked[li].len() as u64);
        acked[li].push(a.hash);
        if i == commits / 2 {
            // A checkpoint of a ledger whose head is in its tail.
            let state = store.ledger_state(&tenant("acme"), &ledger(LEDGERS[0])).unwrap().unwrap();
            let note = Checkpoint::new(origin("acme", LEDGERS[0]), state.size, state.root).sign(&signer);
            let req = CheckpointRequest { tenant: tenant("acme"), ledger: ledger(LEDGERS[0]), note };
            store.store_checkpoint(req).wait().unwrap().unwrap();
            checkpoint = Some((0, state.size));
        }
        if i == commits / 3 {
            // A hot batch: this ledger is then written straight to `records`
            // (once its tail was flushed) or goes on in its tail.
            let tickets: Vec<_> = (0..DIRECT_APPENDS_MIN + 2)
                .map(|j| store.append(request("acme", LEDGERS[2], 10_000 + j as u64, b"{}", vec![])))
                .collect();
            for t in tickets {
                let a = t.wait().unwrap().unwrap();
                assert_eq!(a.seq.get(), acked[2].len() as u64);
                acked[2].push(a.hash);
            }
        }
        if i % 50 == 0 {
            assert_matches(&store, &acked, checkpoint, &format!("live after {i}"));
        }
    }
    assert_matches(&store, &acked, checkpoint, "live");

    // A crash: the last records are only in the log on disk.
    let image = backend.current_image();
    drop(store);
    let crashed = tempfile::tempdir().unwrap();
    let backend = FaultBackend::from_image(image);
    let store = open_on(crashed.path(), backend.clone());
    assert_matches(&store, &acked, checkpoint, "after crash");
    // It continues where it was, and a new checkpoint is newer than the old.
    let a = append(&store, request("acme", LEDGERS[0], 99_999, b"{}", vec![]));
    acked[0].push(a.hash);
    let state = store.ledger_state(&tenant("acme"), &ledger(LEDGERS[0])).unwrap().unwrap();
    let note = Checkpoint::new(origin("acme", LEDGERS[0]), state.size, state.root).sign(&signer);
    let req = CheckpointRequest { tenant: tenant("acme"), ledger: ledger(LEDGERS[0]), note };
    store.store_checkpoint(req).wait().unwrap().unwrap();
    checkpoint = Some((0, state.size));
    assert_matches(&store, &acked, checkpoint, "after crash and append");

    // A clean close moves the tails into the ledger tables; the reopened
    // store holds the same.
    store.close().unwrap();
    let reopened = tempfile::tempdir().unwrap();
    let store = open_on(reopened.path(), FaultBackend::from_image(backend.current_image()));
    assert_matches(&store, &acked, checkpoint, "after clean close");
}
