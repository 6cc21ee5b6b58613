//! Goal: the store behaves exactly like a plain in-memory ledger. Method:
//! random appends over five ledgers (with same- and cross-ledger lineage,
//! idempotency keys, retries that replay or conflict, `Position::Exact`
//! appends that hit or miss, bursts submitted together that reach the
//! stored Merkle levels and the direct path), reads, range reads, inclusion
//! and consistency proofs, checkpoints, clean reopens and crashes (the
//! database image and mark files as they were at the last ack, so the open
//! replays the append log), checked against `annal_chain::testkit::Ledger`
//! (a Vec of records and a MemoryTree) plus a map of idempotency keys; at
//! the end every ledger's export must equal the model's byte for byte and
//! verify, every key must replay, and `check` must pass.

mod common;

use std::collections::HashMap;
use std::path::Path;

use annal_chain::testkit::{Ledger, test_signer};
use annal_chain::{Hash32, Parent, Seq};
use annal_store::{AppendRefusal, AppendRequest, CheckpointRequest, OpenOptions, Position, Store};
use common::backend::FaultBackend;
use common::*;
use proptest::prelude::*;

const LEDGERS: [&str; 5] = ["orders", "invoices", "events", "audit", "misc"];
const MARK_FILES: [&str; 2] = ["annal.hwm", "annal.marks"];

/// Where an append asks to go.
#[derive(Clone, Copy, Debug)]
enum Place {
    Next,
    /// `Exact` at the head: accepted.
    ExactHit,
    /// `Exact` one past the head: a gap.
    ExactGap,
    /// `Exact` at the last record: it exists (a gap on an empty ledger).
    ExactExists,
    /// `Exact` at the head with another prev.
    ExactPrev,
}

#[derive(Clone, Debug)]
enum Op {
    Append {
        ledger: usize,
        payload: Vec<u8>,
        parent: Option<(usize, u64)>,
        key: Option<u8>,
        place: Place,
    },
    /// Resends the content of a key already used on the ledger (`same`) or
    /// other content under it.
    Retry {
        ledger: usize,
        pick: usize,
        same: bool,
    },
    /// `count` appends submitted together, then awaited.
    Burst {
        ledger: usize,
        count: usize,
    },
    Read {
        ledger: usize,
        seq: u64,
    },
    Range {
        ledger: usize,
        after: Option<u64>,
        limit: u64,
    },
    Inclusion {
        ledger: usize,
        seq: u64,
        size: u64,
    },
    Consistency {
        ledger: usize,
        old: u64,
        new: u64,
    },
    Checkpoint {
        ledger: usize,
    },
    Reopen,
    Crash,
}

/// Mostly the first two ledgers, so some grow past 16 and 32 records.
fn ledger_index() -> impl Strategy<Value = usize> {
    prop_oneof![3 => 0..2usize, 1 => 2..5usize]
}

fn place() -> impl Strategy<Value = Place> {
    prop_oneof![
        8 => Just(Place::Next),
        2 => Just(Place::ExactHit),
        1 => Just(Place::ExactGap),
        1 => Just(Place::ExactExists),
        1 => Just(Place::ExactPrev),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => (
            ledger_index(),
            proptest::collection::vec(any::<u8>(), 0..48),
            proptest::option::of((0..5usize, any::<u64>())),
            proptest::option::weighted(0.3, 0..4u8),
            place(),
        )
            .prop_map(|(ledger, payload, parent, key, place)| Op::Append { ledger, payload, parent, key, place }),
        2 => (ledger_index(), any::<usize>(), any::<bool>()).prop_map(|(ledger, pick, same)| Op::Retry { ledger, pick, same }),
        1 => (ledger_index(), 1..72usize).prop_map(|(ledger, count)| Op::Burst { ledger, count }),
        2 => (ledger_index(), any::<u64>()).prop_map(|(ledger, seq)| Op::Read { ledger, seq }),
        1 => (ledger_index(), proptest::option::of(any::<u64>()), 1..8u64)
            .prop_map(|(ledger, after, limit)| Op::Range { ledger, after, limit }),
        2 => (ledger_index(), any::<u64>(), any::<u64>()).prop_map(|(ledger, seq, size)| Op::Inclusion { ledger, seq, size }),
        1 => (ledger_index(), any::<u64>(), any::<u64>()).prop_map(|(ledger, old, new)| Op::Consistency { ledger, old, new }),
        1 => ledger_index().prop_map(|ledger| Op::Checkpoint { ledger }),
        1 => Just(Op::Reopen),
        1 => Just(Op::Crash),
    ]
}

/// What an idempotency key made: its content, and the record.
#[derive(Clone, Debug)]
struct Keyed {
    payload: Vec<u8>,
    parents: Vec<Parent>,
    seq: Seq,
    hash: Hash32,
}

/// The store under test, on an in-memory backend, with the data directory
/// holding its mark files.
struct Under {
    dir: tempfile::TempDir,
    backend: FaultBackend,
    store: Option<Store>,
}

fn open_on(dir: &Path, backend: &FaultBackend) -> Store {
    Store::open(dir, OpenOptions { backend: Some(Box::new(backend.clone())), ..OpenOptions::default() })
        .expect("store opens")
}

impl Under {
    fn new() -> Under {
        let dir = tempfile::tempdir().unwrap();
        let backend = FaultBackend::new();
        let store = Some(open_on(dir.path(), &backend));
        Under { dir, backend, store }
    }

    fn store(&self) -> &Store {
        self.store.as_ref().unwrap()
    }

    fn reopen(&mut self) {
        self.store.take().unwrap().close().unwrap();
        self.backend = FaultBackend::from_image(self.backend.current_image());
        self.store = Some(open_on(self.dir.path(), &self.backend));
    }

    /// The process dies after its last ack: the database and the mark
    /// files stay as they were (the tails only in the log, the marks as
    /// last written); the old store's clean close goes to a discarded copy.
    fn crash(&mut self) {
        let image = self.backend.current_image();
        let marks: Vec<(&str, Option<Vec<u8>>)> =
            MARK_FILES.iter().map(|n| (*n, std::fs::read(self.dir.path().join(n)).ok())).collect();
        drop(self.store.take());
        for (name, bytes) in marks {
            let path = self.dir.path().join(name);
            match bytes {
                Some(b) => std::fs::write(&path, b).unwrap(),
                None => drop(std::fs::remove_file(&path)),
            }
        }
        self.backend = FaultBackend::from_image(image);
        self.store = Some(open_on(self.dir.path(), &self.backend));
    }
}

fn keyed_request(li: usize, ts: u64, payload: &[u8], parents: Vec<Parent>, key: Option<u8>) -> AppendRequest {
    let mut r = request("acme", LEDGERS[li], ts, payload, parents);
    r.idempotency_key = key.map(|k| format!("key-{k}"));
    r
}

fn run(ops: Vec<Op>) {
    let signer = test_signer(LOG, 1);
    let mut under = Under::new();
    let mut model: Vec<Ledger> = LEDGERS.iter().map(|l| Ledger::new(LOG, "acme", l)).collect();
    let mut keys: Vec<HashMap<u8, Keyed>> = vec![HashMap::new(); LEDGERS.len()];
    let t = tenant("acme");
    let mut ts = 1_700_000_000_000u64;
    for op in ops {
        let s: &Store = under.store();
        match op {
            Op::Append { ledger: li, payload, parent, key, place } => {
                ts += 1;
                let parents = match parent {
                    Some((pl, pick)) if !model[pl].is_empty() && (pl != li || !model[li].is_empty()) => {
                        vec![model[pl].link(pick % model[pl].len())]
                    }
                    _ => vec![],
                };
                let m = &model[li];
                let (len, head) =
                    (m.len(), if m.is_empty() { Hash32::ZERO } else { m.record(m.len() - 1).hash() });
                let (key, position, refusal) = match place {
                    Place::Next => (key, Position::Next, None),
                    Place::ExactHit => (None, Position::Exact { seq: Seq::new(len), prev: head }, None),
                    Place::ExactGap => (
                        None,
                        Position::Exact { seq: Seq::new(len + 1), prev: head },
                        Some(AppendRefusal::SeqGap { next: Seq::new(len) }),
                    ),
                    Place::ExactExists if len > 0 => (
                        None,
                        Position::Exact { seq: Seq::new(len - 1), prev: head },
                        Some(AppendRefusal::SeqExists { next: Seq::new(len) }),
                    ),
                    Place::ExactExists => (
                        None,
                        Position::Exact { seq: Seq::new(1), prev: head },
                        Some(AppendRefusal::SeqGap { next: Seq::new(0) }),
                    ),
                    Place::ExactPrev => (
                        None,
                        Position::Exact { seq: Seq::new(len), prev: h(7) },
                        Some(AppendRefusal::PrevMismatch),
                    ),
                };
                let mut req = keyed_request(li, ts, &payload, parents.clone(), key);
                req.position = position;
                let got = s.append(req).wait().expect("committed");
                // A key already used decides the outcome before anything else.
                let expected = match key.and_then(|k| keys[li].get(&k)) {
                    Some(k) if k.payload == payload && k.parents == parents => Ok((k.seq, k.hash, true)),
                    Some(k) => Err(AppendRefusal::IdempotencyConflict { seq: k.seq }),
                    None => match refusal {
                        Some(r) => Err(r),
                        None => {
                            let seq = model[li].append(ts, "application/json", &payload, parents.clone());
                            let hash = model[li].record(seq.get()).hash();
                            if let Some(k) = key {
                                keys[li].insert(k, Keyed { payload, parents, seq, hash });
                            }
                            Ok((seq, hash, false))
                        }
                    },
                };
                assert_eq!(got.map(|a| (a.seq, a.hash, a.replayed)), expected);
            }
            Op::Retry { ledger: li, pick, same } => {
                let mut used: Vec<(&u8, &Keyed)> = keys[li].iter().collect();
                if used.is_empty() {
                    continue;
                }
                used.sort_by_key(|(k, _)| **k);
                let (k, original) = used[pick % used.len()];
                ts += 1;
                let mut payload = original.payload.clone();
                if !same {
                    payload.push(0xff);
                }
                let got =
                    s.append(keyed_request(li, ts, &payload, original.parents.clone(), Some(*k))).wait();
                let expected = if same {
                    Ok((original.seq, original.hash, true))
                } else {
                    Err(AppendRefusal::IdempotencyConflict { seq: original.seq })
                };
                assert_eq!(got.expect("committed").map(|a| (a.seq, a.hash, a.replayed)), expected);
            }
            Op::Burst { ledger: li, count } => {
                let tickets: Vec<_> = (0..count)
                    .map(|i| {
                        ts += 1;
                        let payload = format!("burst {ts} {i}").into_bytes();
                        let seq = model[li].append(ts, "application/json", &payload, vec![]);
                        (seq, s.append(request("acme", LEDGERS[li], ts, &payload, vec![])))
                    })
                    .collect();
                for (seq, ticket) in tickets {
                    let a = ticket.wait().expect("committed").expect("accepted");
                    assert_eq!((a.seq, a.hash), (seq, model[li].record(seq.get()).hash()));
                }
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
            Op::Reopen => under.reopen(),
            Op::Crash => under.crash(),
        }
    }
    let s = under.store();
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
    // Every key survived every reopen and crash.
    for (li, used) in keys.iter().enumerate() {
        for (k, original) in used {
            let got =
                s.append(keyed_request(li, 1, &original.payload, original.parents.clone(), Some(*k))).wait();
            assert_eq!(
                got.unwrap().unwrap(),
                annal_store::Appended { seq: original.seq, hash: original.hash, replayed: true }
            );
        }
    }
    let report = s.check(&[signer.trusted_key()]).unwrap();
    assert_eq!(report.failure, None);
    assert_eq!(report.records, model.iter().map(Ledger::len).sum::<u64>());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn store_matches_model(ops in proptest::collection::vec(op(), 1..200)) {
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
