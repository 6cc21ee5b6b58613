//! Goal: the store behaves exactly like a plain in-memory ledger. Method:
//! random appends (with same- and cross-ledger lineage), reads, range reads,
//! inclusion and consistency proofs, checkpoints and reopens, checked
//! against `annal_chain::testkit::Ledger` (a Vec of records and a
//! MemoryTree); at the end every ledger's export must equal the model's
//! export byte for byte and verify, and `check` must pass.

mod common;

use annal_chain::Seq;
use annal_chain::testkit::{Ledger, test_signer};
use annal_store::{CheckpointRequest, Store};
use common::*;
use proptest::prelude::*;

const LEDGERS: [&str; 3] = ["orders", "invoices", "events"];

#[derive(Clone, Debug)]
enum Op {
    Append { ledger: usize, payload: Vec<u8>, parent: Option<(usize, u64)> },
    Read { ledger: usize, seq: u64 },
    Range { ledger: usize, after: Option<u64>, limit: u64 },
    Inclusion { ledger: usize, seq: u64, size: u64 },
    Consistency { ledger: usize, old: u64, new: u64 },
    Checkpoint { ledger: usize },
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..3usize, proptest::collection::vec(any::<u8>(), 0..48), proptest::option::of((0..3usize, any::<u64>())))
            .prop_map(|(ledger, payload, parent)| Op::Append { ledger, payload, parent }),
        2 => (0..3usize, any::<u64>()).prop_map(|(ledger, seq)| Op::Read { ledger, seq }),
        1 => (0..3usize, proptest::option::of(any::<u64>()), 1..8u64)
            .prop_map(|(ledger, after, limit)| Op::Range { ledger, after, limit }),
        2 => (0..3usize, any::<u64>(), any::<u64>()).prop_map(|(ledger, seq, size)| Op::Inclusion { ledger, seq, size }),
        1 => (0..3usize, any::<u64>(), any::<u64>()).prop_map(|(ledger, old, new)| Op::Consistency { ledger, old, new }),
        1 => (0..3usize).prop_map(|ledger| Op::Checkpoint { ledger }),
        1 => Just(Op::Reopen),
    ]
}

fn run(ops: Vec<Op>) {
    let dir = tempfile::tempdir().unwrap();
    let signer = test_signer(LOG, 1);
    let mut store = Some(open(dir.path()));
    let mut model: Vec<Ledger> = LEDGERS.iter().map(|l| Ledger::new(LOG, "acme", l)).collect();
    let t = tenant("acme");
    let mut ts = 1_700_000_000_000u64;
    for op in ops {
        let s: &Store = store.as_ref().unwrap();
        match op {
            Op::Append { ledger: li, payload, parent } => {
                ts += 1;
                let parents = match parent {
                    Some((pl, pick)) if !model[pl].is_empty() && (pl != li || !model[li].is_empty()) => {
                        vec![model[pl].link(pick % model[pl].len())]
                    }
                    _ => vec![],
                };
                let got = append(s, request("acme", LEDGERS[li], ts, &payload, parents.clone()));
                let seq = model[li].append(ts, "application/json", &payload, parents);
                assert_eq!(got.seq, seq);
                assert!(!got.replayed);
                assert_eq!(got.hash, model[li].record(seq.get()).hash());
            }
            Op::Read { ledger: li, seq } => {
                let m = &model[li];
                let seq = if m.is_empty() { seq % 3 } else { seq % (m.len() + 2) };
                let got = s.record(&t, &ledger(LEDGERS[li]), Seq::new(seq)).unwrap();
                match got {
                    Some(e) => {
                        assert_eq!(&e.record, m.record(seq));
                        assert_eq!(e.hash, m.record(seq).hash());
                    }
                    None => assert!(seq >= m.len()),
                }
            }
            Op::Range { ledger: li, after, limit } => {
                let m = &model[li];
                let after = after.map(|a| a % (m.len() + 2));
                let got = s.records(&t, &ledger(LEDGERS[li]), after.map(Seq::new), limit).unwrap();
                let from = after.map_or(0, |a| a + 1);
                let expected: Vec<_> =
                    (from..m.len()).take(limit as usize).map(|i| m.record(i).clone()).collect();
                let got: Vec<_> = got.into_iter().map(|e| e.record).collect();
                assert_eq!(got, expected);
            }
            Op::Inclusion { ledger: li, seq, size } => {
                let m = &model[li];
                let size = size % (m.len() + 2);
                let seq = seq % (size + 1);
                let got = s.inclusion_proof(&t, &ledger(LEDGERS[li]), Seq::new(seq), size);
                match m.tree().inclusion_proof(seq, size) {
                    Some(p) if size <= m.len() => assert_eq!(got.unwrap(), p),
                    _ => assert!(got.is_err(), "seq {seq} size {size} len {}", m.len()),
                }
                if size <= m.len() && !m.is_empty() {
                    assert_eq!(
                        s.root_at(&t, &ledger(LEDGERS[li]), size).unwrap(),
                        m.tree().root(size).unwrap()
                    );
                }
            }
            Op::Consistency { ledger: li, old, new } => {
                let m = &model[li];
                let new = new % (m.len() + 2);
                let old = old % (new + 1);
                let got = s.consistency_proof(&t, &ledger(LEDGERS[li]), old, new);
                match (new <= m.len()).then(|| m.tree().consistency_proof(old, new)).flatten() {
                    Some(p) => assert_eq!(got.unwrap(), p),
                    None => assert!(got.is_err()),
                }
            }
            Op::Checkpoint { ledger: li } => {
                let m = &mut model[li];
                let last = m.checkpoints().last().map_or(0, |(size, _)| *size);
                if m.len() > last {
                    let note = m.checkpoint(&[&signer]);
                    let req = CheckpointRequest {
                        tenant: t.clone(),
                        ledger: ledger(LEDGERS[li]),
                        note: note.clone(),
                    };
                    assert_eq!(s.store_checkpoint(req).wait().unwrap().unwrap().size, m.len());
                    assert_eq!(s.latest_checkpoint(&t, &ledger(LEDGERS[li])).unwrap(), Some(note));
                }
            }
            Op::Reopen => {
                store.take().unwrap().close().unwrap();
                store = Some(open(dir.path()));
            }
        }
    }
    let s = store.unwrap();
    for (li, m) in model.iter().enumerate() {
        let state = s.ledger_state(&t, &ledger(LEDGERS[li])).unwrap();
        if m.is_empty() {
            assert!(state.is_none());
            continue;
        }
        let state = state.unwrap();
        assert_eq!((state.size, state.root), (m.len(), m.tree().root(m.len()).unwrap()));
        let mut out = Vec::new();
        s.export(m.origin(), &[signer.vkey()], &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            String::from_utf8(m.export(&[signer.vkey()])).unwrap()
        );
        verify_export(&out, &[signer.trusted_key()], m.origin()).expect("store export verifies");
    }
    let report = s.check(&[signer.trusted_key()]).unwrap();
    assert_eq!(report.failure, None);
    assert_eq!(report.records, model.iter().map(Ledger::len).sum::<u64>());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn store_matches_model(ops in proptest::collection::vec(op(), 1..48)) {
        run(ops);
    }
}

/// A long single run that crosses several stored Merkle levels (16, 32, 64, …).
#[test]
fn deep_tree_proofs_match_model() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let mut m = Ledger::new(LOG, "acme", "orders");
    let t = tenant("acme");
    let l = ledger("orders");
    let tickets: Vec<_> = (0..300u64)
        .map(|i| {
            m.append(i, "application/json", &i.to_le_bytes(), vec![]);
            s.append(request("acme", "orders", i, &i.to_le_bytes(), vec![]))
        })
        .collect();
    for (i, tk) in tickets.into_iter().enumerate() {
        assert_eq!(tk.wait().unwrap().unwrap().seq.get(), i as u64);
    }
    for size in [1u64, 15, 16, 17, 31, 32, 33, 64, 100, 255, 256, 257, 300] {
        assert_eq!(s.root_at(&t, &l, size).unwrap(), m.tree().root(size).unwrap(), "root {size}");
        for seq in [0, size / 3, size / 2, size - 1] {
            assert_eq!(
                s.inclusion_proof(&t, &l, Seq::new(seq), size).unwrap(),
                m.tree().inclusion_proof(seq, size).unwrap()
            );
        }
        for old in [1, size / 2, size] {
            if old >= 1 {
                assert_eq!(
                    s.consistency_proof(&t, &l, old, size).unwrap(),
                    m.tree().consistency_proof(old, size).unwrap()
                );
            }
        }
    }
}
