//! Goal: every guard the store promises holds: append-only refusals (and
//! a tidy scan of every module for a public mutating fn), idempotency (also
//! under concurrency and inside one batch), a bounded queue, checkpoint
//! refusals, migration checks (nothing applied on a refused head), the
//! rollback guard, byte corruption found by reads and `check`, `check`
//! verifying the identity log, backup/restore/check with appends acked
//! during a backup, the sled index equal to its rebuild. Method: small
//! scenarios against a real store in a temporary directory, each asserting
//! the exact outcome.

mod common;

use std::sync::{Arc, Barrier};

use annal_chain::testkit::test_signer;
use annal_chain::{Checkpoint, Hash32, Parent, Seq};
use annal_store::{
    AppendRefusal, CheckpointRefusal, CheckpointRequest, IdentityEntry, Index, OpenError, OpenOptions,
    Position, ReadError, Store, WriteError,
};
use common::backend::FaultBackend;
use common::*;

#[test]
fn position_and_lineage_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let a0 = append(&s, request("acme", "orders", 1, b"a", vec![]));
    let a1 = append(&s, request("acme", "orders", 2, b"b", vec![]));
    let exact = |seq: u64, prev: Hash32| {
        let mut r = request("acme", "orders", 3, b"c", vec![]);
        r.position = Position::Exact { seq: Seq::new(seq), prev };
        s.append(r).wait().unwrap()
    };
    let next = Seq::new(2);
    assert_eq!(exact(1, a0.hash), Err(AppendRefusal::SeqExists { next }));
    assert_eq!(exact(3, a1.hash), Err(AppendRefusal::SeqGap { next }));
    assert_eq!(exact(2, a0.hash), Err(AppendRefusal::PrevMismatch));
    assert_eq!(exact(2, a1.hash).unwrap().seq, next);
    let link = |l: &str, seq: u64, hash: Hash32| Parent { ledger: ledger(l), seq: Seq::new(seq), hash };
    let with_parent = |p: Parent| s.append(request("acme", "invoices", 4, b"d", vec![p])).wait().unwrap();
    assert_eq!(with_parent(link("nope", 0, a0.hash)), Err(AppendRefusal::ParentNotFound { index: 0 }));
    assert_eq!(with_parent(link("orders", 9, a0.hash)), Err(AppendRefusal::ParentNotFound { index: 0 }));
    assert_eq!(with_parent(link("orders", 1, a0.hash)), Err(AppendRefusal::ParentHashMismatch { index: 0 }));
    assert!(with_parent(link("orders", 0, a0.hash)).is_ok());
    // Another tenant's ledger of the same name is not a parent.
    let other = s.append(request("beta", "x", 5, b"e", vec![link("orders", 0, a0.hash)])).wait().unwrap();
    assert_eq!(other, Err(AppendRefusal::ParentNotFound { index: 0 }));
    let mut bad = request("acme", "orders", 6, b"f", vec![]);
    bad.content_type = String::new();
    assert!(matches!(s.append(bad).wait().unwrap(), Err(AppendRefusal::Invalid(_))));
    // Nothing refused was written: the ledger has exactly the accepted records.
    assert_eq!(s.ledger_state(&tenant("acme"), &ledger("orders")).unwrap().unwrap().size, 3);
    assert!(s.ledger_state(&tenant("beta"), &ledger("x")).unwrap().is_none());
}

#[test]
fn idempotency_under_concurrency_and_within_one_batch() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(open(dir.path()));
    let keyed = |key: &str, payload: &[u8], ts: u64| {
        let mut r = request("acme", "orders", ts, payload, vec![]);
        r.idempotency_key = Some(key.into());
        r
    };
    // 16 threads race the same key with the same content: one record, 15 replays.
    let barrier = Arc::new(Barrier::new(16));
    let handles: Vec<_> = (0..16)
        .map(|i| {
            let (s, barrier) = (s.clone(), barrier.clone());
            let r = keyed("k1", b"same", 100 + i);
            std::thread::spawn(move || {
                barrier.wait();
                s.append(r).wait().unwrap().unwrap()
            })
        })
        .collect();
    let outcomes: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(outcomes.iter().filter(|o| !o.replayed).count(), 1);
    assert!(outcomes.iter().all(|o| o.seq == outcomes[0].seq && o.hash == outcomes[0].hash));
    // Same key, different content racing: exactly one wins, the rest conflict.
    let barrier = Arc::new(Barrier::new(8));
    let handles: Vec<_> = (0..8u8)
        .map(|i| {
            let (s, barrier) = (s.clone(), barrier.clone());
            let r = keyed("k2", &[i], 200);
            std::thread::spawn(move || {
                barrier.wait();
                s.append(r).wait().unwrap()
            })
        })
        .collect();
    let outcomes: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let winners: Vec<_> = outcomes.iter().filter_map(|o| o.as_ref().ok()).collect();
    assert_eq!(winners.len(), 1);
    assert!(!winners[0].replayed);
    for o in &outcomes {
        if let Err(e) = o {
            assert_eq!(e, &AppendRefusal::IdempotencyConflict { seq: winners[0].seq });
        }
    }
    // Two requests with one key queued together (one batch): still one record.
    let t1 = s.append(keyed("k3", b"x", 300));
    let t2 = s.append(keyed("k3", b"x", 301));
    let (o1, o2) = (t1.wait().unwrap().unwrap(), t2.wait().unwrap().unwrap());
    assert_eq!((o1.seq, o1.replayed, o2.seq, o2.replayed), (o1.seq, false, o1.seq, true));
    assert_eq!(s.ledger_state(&tenant("acme"), &ledger("orders")).unwrap().unwrap().size, 3);
    // Keys are per ledger, and survive a reopen (they live in redb).
    let other = {
        let mut r = keyed("k1", b"same", 1);
        r.ledger = ledger("invoices");
        s.append(r).wait().unwrap().unwrap()
    };
    assert!(!other.replayed);
    let s = Arc::into_inner(s).unwrap();
    s.close().unwrap();
    let s = open(dir.path());
    let again = s.append(keyed("k1", b"same", 999)).wait().unwrap().unwrap();
    assert_eq!((again.seq, again.replayed), (Seq::new(0), true));
    assert_eq!(
        s.append(keyed("k1", b"other", 999)).wait().unwrap(),
        Err(AppendRefusal::IdempotencyConflict { seq: again.seq })
    );
    let mut empty = keyed("", b"x", 1);
    empty.idempotency_key = Some(String::new());
    assert_eq!(s.append(empty).wait().unwrap(), Err(AppendRefusal::IdempotencyKeyInvalid));
}

#[test]
fn full_queue_answers_overloaded_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let backend = FaultBackend::new();
    let s = Store::open(
        dir.path(),
        OpenOptions { backend: Some(Box::new(backend.clone())), ..OpenOptions::default() },
    )
    .unwrap();
    backend.close_gate();
    let first = s.append(request("acme", "orders", 0, b"first", vec![]));
    backend.wait_in_sync();
    // The committer is inside a commit; the queue is empty and bounded.
    let queued: Vec<_> = (0..annal_store::limits::QUEUE_DEPTH_MAX)
        .map(|i| s.append(request("acme", "orders", 1 + i as u64, b"q", vec![])))
        .collect();
    let overflow = s.append(request("acme", "orders", 0, b"overflow", vec![]));
    assert_eq!(overflow.wait().unwrap_err(), WriteError::Overloaded);
    backend.open_gate();
    assert_eq!(first.wait().unwrap().unwrap().seq, Seq::new(0));
    for (i, t) in queued.into_iter().enumerate() {
        assert_eq!(t.wait().unwrap().unwrap().seq, Seq::new(1 + i as u64));
    }
}

#[test]
fn checkpoint_refusals_keep_history_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let signer = test_signer(LOG, 1);
    for i in 0..20 {
        append(&s, request("acme", "orders", i, &[i as u8], vec![]));
    }
    let (t, l) = (tenant("acme"), ledger("orders"));
    let store_cp = |size: u64, root: Hash32, o: &str| {
        let note = Checkpoint::new(annal_chain::Origin::parse(o).unwrap(), size, root).sign(&signer);
        s.store_checkpoint(CheckpointRequest { tenant: t.clone(), ledger: l.clone(), note }).wait().unwrap()
    };
    let root = |size| s.root_at(&t, &l, size).unwrap();
    let o = "annal.test/acme/orders";
    assert_eq!(store_cp(5, root(6), o), Err(CheckpointRefusal::RootMismatch { size: 5 }));
    assert_eq!(store_cp(21, root(20), o), Err(CheckpointRefusal::BeyondHead { size: 20 }));
    assert_eq!(store_cp(17, root(17), "annal.test/acme/other"), Err(CheckpointRefusal::WrongLedger));
    assert_eq!(store_cp(17, root(17), o).unwrap().size, 17);
    assert_eq!(store_cp(17, root(17), o), Err(CheckpointRefusal::NotNewer { last: 17 }));
    assert_eq!(store_cp(9, root(9), o), Err(CheckpointRefusal::NotNewer { last: 17 }));
    assert_eq!(store_cp(20, root(20), o).unwrap().size, 20);
    assert!(s.checkpoint_at(&t, &l, 17).unwrap().is_some());
    assert!(s.checkpoint_at(&t, &l, 9).unwrap().is_none());
    assert_eq!(s.check(&[signer.trusted_key()]).unwrap().checkpoints, 2);
    // A checkpoint signed by a key that is not trusted fails `check`.
    let report = s.check(&[test_signer(LOG, 2).trusted_key()]).unwrap();
    assert_eq!(report.failure.unwrap().seq, Some(17));
    // With no keys given, `check` trusts the identity log.
    let entry = IdentityEntry {
        seq: 0,
        key_name: LOG.into(),
        public: signer.public(),
        timestamp_ms: 1,
        statement: "genesis".into(),
    };
    assert_eq!(s.append_identity(entry.clone()).wait().unwrap(), Ok(0));
    assert!(s.append_identity(entry).wait().unwrap().is_err(), "identity seq 0 cannot be appended twice");
    assert_eq!(s.check(&[]).unwrap().failure, None);
}

/// How an identity-log entry is stated (`identity_log_check`).
#[derive(Clone, Copy, Debug)]
enum Statement {
    Genesis,
    /// A rotation from the previous entry's key, signed by the old key
    /// and/or the new one.
    Rotation {
        old_signs: bool,
        new_signs: bool,
    },
}

/// `check`'s first failure as (ledger, seq, what).
type Found = Option<(String, Option<u64>, String)>;

/// A store with acme/orders (8 records, a checkpoint signed by `cp_seed`'s
/// key) and an identity log of `(key seed, statement)`; `check(trusted)`'s
/// failure as (ledger, seq, what).
fn identity_log_check(log: &[(u8, Statement)], cp_seed: u8, trusted: &[u8]) -> Found {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    for i in 0..8 {
        append(&s, request("acme", "orders", i, &[i as u8], vec![]));
    }
    let st = s.ledger_state(&tenant("acme"), &ledger("orders")).unwrap().unwrap();
    let note = Checkpoint::new(origin("acme", "orders"), st.size, st.root).sign(&test_signer(LOG, cp_seed));
    s.store_checkpoint(CheckpointRequest { tenant: tenant("acme"), ledger: ledger("orders"), note })
        .wait()
        .unwrap()
        .unwrap();
    for (seq, (seed, statement)) in log.iter().enumerate() {
        let new = test_signer(LOG, *seed);
        let statement = match statement {
            Statement::Genesis => annal_chain::GENESIS_STATEMENT.to_owned(),
            Statement::Rotation { old_signs, new_signs } => {
                let old = test_signer(LOG, log[seq - 1].0);
                let text = annal_chain::rotation_text(seq as u64, &old.vkey(), &new.vkey());
                let mut note = if *old_signs { old.sign_text(&text) } else { new.sign_text(&text) };
                if *old_signs && *new_signs {
                    new.cosign(&mut note);
                }
                note.to_string()
            }
        };
        let entry = IdentityEntry {
            seq: seq as u64,
            key_name: LOG.into(),
            public: new.public(),
            timestamp_ms: seq as u64,
            statement,
        };
        assert_eq!(s.append_identity(entry).wait().unwrap(), Ok(seq as u64), "the store takes any entry");
    }
    let trusted: Vec<_> = trusted.iter().map(|seed| test_signer(LOG, *seed).trusted_key()).collect();
    s.check(&trusted).unwrap().failure.map(|f| (f.ledger, f.seq, f.what))
}

/// `check` trusts only the keys the identity log proves: its genesis (one
/// of the given keys, when any are given) and rotations signed by the old
/// and the new key. An entry appended without a valid rotation signature
/// fails the check, naming the entry; so does a genesis that is not trusted.
#[test]
fn check_verifies_the_identity_log() {
    use Statement::*;
    let both = Rotation { old_signs: true, new_signs: true };
    let identity = |seq: u64, what: &str| Some(("identity".to_owned(), Some(seq), what.to_owned()));
    // (what, identity log, checkpoint signer, trusted keys, expected failure)
    type Case<'a> = (&'a str, &'a [(u8, Statement)], u8, &'a [u8], Found);
    let cases: &[Case] = &[
        ("genesis signs", &[(1, Genesis)], 1, &[], None),
        ("genesis given and signs", &[(1, Genesis)], 1, &[1], None),
        ("rotated key signs", &[(1, Genesis), (2, both)], 2, &[], None),
        ("rotated key signs, genesis given", &[(1, Genesis), (2, both)], 2, &[1], None),
        (
            "an entry only its own key signed",
            &[(1, Genesis), (3, Rotation { old_signs: false, new_signs: true })],
            3,
            &[],
            identity(1, "identity log does not verify (unknown_signer)"),
        ),
        (
            "an entry the new key never signed",
            &[(1, Genesis), (3, Rotation { old_signs: true, new_signs: false })],
            3,
            &[],
            identity(1, "identity log does not verify (unknown_signer)"),
        ),
        (
            "a second genesis",
            &[(1, Genesis), (3, Genesis)],
            3,
            &[],
            identity(1, "identity log does not verify (malformed)"),
        ),
        (
            "a genesis that is not trusted",
            &[(1, Genesis)],
            1,
            &[4],
            identity(0, "the identity log's genesis key is not one of the trusted keys"),
        ),
        (
            "a checkpoint by a key the log never proved",
            &[(1, Genesis)],
            5,
            &[],
            Some(("orders".into(), Some(8), "checkpoint signature does not verify".into())),
        ),
        ("no identity log, the signer given", &[], 1, &[1], None),
        (
            "no identity log, nothing given",
            &[],
            1,
            &[],
            Some(("orders".into(), Some(8), "checkpoint signature does not verify".into())),
        ),
    ];
    for (what, log, cp_seed, trusted, expected) in cases {
        let got = identity_log_check(log, *cp_seed, trusted);
        match (&got, expected) {
            (Some((l, seq, why)), Some((want_l, want_seq, want_why))) => {
                assert_eq!((l, seq), (want_l, want_seq), "{what}: {why}");
                assert!(why.starts_with(want_why.as_str()), "{what}: {why}");
            }
            _ => assert_eq!(&got, expected, "{what}"),
        }
    }
}

/// `unanchored` lists exactly the ledgers with records past their last
/// checkpoint, with the state `ledger_state` gives (logged and direct
/// ledgers alike), and `commits` moves with every commit and only then.
#[test]
fn unanchored_lists_ledgers_past_their_checkpoint_and_commits_count_writes() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let signer = test_signer(LOG, 1);
    let before = s.commits();
    for i in 0..30 {
        append(&s, request("acme", ["a", "b", "c"][i as usize % 3], i, &[i as u8], vec![]));
    }
    assert!(s.commits() > before);
    let (t, b) = (tenant("acme"), ledger("b"));
    let note = Checkpoint::new(
        annal_chain::Origin::parse("annal.test/acme/b").unwrap(),
        10,
        s.root_at(&t, &b, 10).unwrap(),
    )
    .sign(&signer);
    s.store_checkpoint(CheckpointRequest { tenant: t.clone(), ledger: b.clone(), note })
        .wait()
        .unwrap()
        .unwrap();
    let note = Checkpoint::new(
        annal_chain::Origin::parse("annal.test/acme/c").unwrap(),
        5,
        s.root_at(&t, &ledger("c"), 5).unwrap(),
    )
    .sign(&signer);
    s.store_checkpoint(CheckpointRequest { tenant: t.clone(), ledger: ledger("c"), note })
        .wait()
        .unwrap()
        .unwrap();
    let listed = s.unanchored().unwrap();
    let names: Vec<&str> = listed.iter().map(|(_, l, _)| l.as_str()).collect();
    assert_eq!(names, vec!["a", "c"], "b is anchored at its head");
    for (tenant, ledger, state) in &listed {
        assert_eq!(Some(state), s.ledger_state(tenant, ledger).unwrap().as_ref());
    }
    assert_eq!(listed[1].2.checkpoint_size, 5);
    let idle = s.commits();
    let _ = s.unanchored().unwrap();
    let _ = s.records(&t, &b, None, 100).unwrap();
    assert_eq!(s.commits(), idle, "reads commit nothing");
}

/// `caught_up_with` is true only while nothing was committed since a step
/// that indexed everything, and never for another store instance.
#[test]
fn an_index_knows_when_it_caught_up_with_its_store() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let index = Index::open(&dir.path().join("index")).unwrap();
    assert!(!index.caught_up_with(&s), "no step yet");
    append(&s, request("acme", "orders", 0, b"a", vec![]));
    index.catch_up(&s).unwrap();
    assert!(index.caught_up_with(&s));
    append(&s, request("acme", "orders", 1, b"b", vec![]));
    assert!(!index.caught_up_with(&s), "a commit since");
    index.catch_up(&s).unwrap();
    assert!(index.caught_up_with(&s));
    s.close().unwrap();
    let reopened = open(dir.path());
    assert!(!index.caught_up_with(&reopened), "another store instance, whatever its count");
}

/// A tenant cannot make more ledgers than `ledgers_per_tenant_max`, counting
/// flushed rows and ledgers still in a tail alike, also after a reopen; the
/// refusal writes nothing, and existing ledgers and other tenants go on.
#[test]
fn ledgers_per_tenant_are_capped() {
    let dir = tempfile::tempdir().unwrap();
    let options = || OpenOptions { ledgers_per_tenant_max: 3, ..OpenOptions::default() };
    let s = Store::open(dir.path(), options()).unwrap();
    append(&s, request("acme", "a", 0, b"x", vec![]));
    s.close().unwrap();
    // "a" is a flushed row now; "b" and "c" live in tails.
    let s = Store::open(dir.path(), options()).unwrap();
    append(&s, request("acme", "b", 0, b"x", vec![]));
    append(&s, request("acme", "c", 0, b"x", vec![]));
    let refused = s.append(request("acme", "d", 0, b"x", vec![])).wait().unwrap();
    assert_eq!(refused, Err(AppendRefusal::LedgerLimit { max: 3 }));
    assert!(s.ledger_state(&tenant("acme"), &ledger("d")).unwrap().is_none(), "nothing written");
    append(&s, request("acme", "a", 1, b"y", vec![]));
    append(&s, request("beta", "d", 0, b"x", vec![]));
    // A tenant whose name prefixes another's is counted on its own.
    append(&s, request("acme0", "z", 0, b"x", vec![]));
    s.close().unwrap();
    let s = Store::open(dir.path(), options()).unwrap();
    let refused = s.append(request("acme", "e", 0, b"x", vec![])).wait().unwrap();
    assert_eq!(refused, Err(AppendRefusal::LedgerLimit { max: 3 }));
    assert_eq!(s.tenant_ledgers(&tenant("acme")).unwrap().len(), 3);
}

#[test]
fn migrations_are_checked_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let head = annal_store::code_head();
    drop(open(dir.path()));
    let status = annal_store::migration_status(dir.path()).unwrap();
    assert_eq!((status.head, status.pending.len()), (head, 0));
    let err =
        Store::open(dir.path(), OpenOptions { expected_head: Some(head + 1), ..OpenOptions::default() })
            .unwrap_err();
    assert!(
        matches!(err, OpenError::HeadMismatch { expected, actual } if expected == head + 1 && actual == head),
        "{err}"
    );
    assert!(err.to_string().contains(&format!("expected {}, actual {head}", head + 1)));
    // Tamper with an applied step's recorded checksum: open names both sums.
    {
        let db = redb::Database::open(dir.path().join(annal_store::DB_FILE_NAME)).unwrap();
        let mut txn = db.begin_write().unwrap();
        txn.set_durability(redb::Durability::Immediate).unwrap();
        {
            let def: redb::TableDefinition<u32, &[u8]> = redb::TableDefinition::new("schema_migrations");
            let mut t = txn.open_table(def).unwrap();
            let row =
                bincode::encode_to_vec(("ledgers".to_string(), [0xeeu8; 32]), bincode::config::standard())
                    .unwrap();
            t.insert(1, row.as_slice()).unwrap();
        }
        txn.commit().unwrap();
    }
    let err = Store::open(dir.path(), OpenOptions::default()).unwrap_err();
    let expected =
        annal_store::MIGRATION_STEPS[0].checksum().iter().map(|b| format!("{b:02x}")).collect::<String>();
    match err {
        OpenError::MigrationChecksum { id: 1, expected: e, actual } => {
            assert_eq!(e, expected);
            assert_eq!(actual, "ee".repeat(32));
        }
        other => panic!("{other}"),
    }
    // A fresh directory with `apply_pending_migrations: false` reports what is pending.
    let fresh = tempfile::tempdir().unwrap();
    let err =
        Store::open(fresh.path(), OpenOptions { apply_pending_migrations: false, ..OpenOptions::default() })
            .unwrap_err();
    assert!(
        matches!(err, OpenError::MigrationsPending { head: 0, ref pending } if pending.len() == annal_store::MIGRATION_STEPS.len())
    );
    assert_eq!(annal_store::migrate_up(fresh.path()).unwrap().head, head);
}

/// The expected head is compared before pending steps are applied: a
/// database one step behind, opened to apply it but expecting its current
/// head, is refused and left exactly as it was (same status, same tables);
/// expecting the head it would reach, it opens and migrates.
#[test]
fn a_refused_head_leaves_the_database_unmigrated() {
    use redb::{ReadableDatabase, TableHandle};
    const MIGRATIONS: redb::TableDefinition<u32, &[u8]> = redb::TableDefinition::new("schema_migrations");
    const DUE: redb::TableDefinition<(u64, u64), ()> = redb::TableDefinition::new("webhook_outbox_due");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(annal_store::DB_FILE_NAME);
    let head = annal_store::code_head();
    append_and_close(dir.path(), 0..3);
    // Back to the layout before the last step (migration 5: no webhook outbox due index).
    {
        let db = redb::Database::open(&path).unwrap();
        let mut txn = db.begin_write().unwrap();
        txn.set_durability(redb::Durability::Immediate).unwrap();
        txn.open_table(MIGRATIONS).unwrap().remove(head).unwrap();
        assert!(txn.delete_table(DUE).unwrap());
        txn.commit().unwrap();
    }
    let tables = || -> Vec<String> {
        let db = redb::Database::open(&path).unwrap();
        let txn = db.begin_read().unwrap();
        txn.list_tables().unwrap().map(|t| t.name().to_owned()).collect()
    };
    let status = annal_store::migration_status(dir.path()).unwrap();
    assert_eq!((status.head, status.pending.clone()), (head - 1, vec![head]));
    let layout = tables();
    assert!(!layout.iter().any(|t| t == "webhook_outbox_due"), "{layout:?}");
    for apply_pending_migrations in [true, false] {
        let options =
            OpenOptions { expected_head: Some(head - 1), apply_pending_migrations, ..OpenOptions::default() };
        let err = Store::open(dir.path(), options).unwrap_err();
        match (apply_pending_migrations, &err) {
            (true, OpenError::HeadMismatch { expected, actual }) => {
                assert_eq!((*expected, *actual), (head - 1, head), "{err}");
            }
            (false, OpenError::MigrationsPending { head: h, pending }) => {
                assert_eq!((*h, pending.clone()), (head - 1, vec![head]));
            }
            _ => panic!("{err}"),
        }
        assert_eq!(annal_store::migration_status(dir.path()).unwrap(), status, "nothing applied");
        assert_eq!(tables(), layout, "no table changed");
    }
    let s =
        Store::open(dir.path(), OpenOptions { expected_head: Some(head), ..OpenOptions::default() }).unwrap();
    assert_eq!(s.migration_status().unwrap().head, head);
    assert_eq!(s.ledger_state(&tenant("acme"), &ledger("orders")).unwrap().unwrap().size, 3);
}

/// Migration 4 re-keys the Merkle nodes by the seq their subtree ends at. A
/// database in the layout before it (made here from a current one by the
/// inverse mapping) migrates to exactly the current layout, and proofs and
/// `check` agree with what they were.
#[test]
fn migration_4_rekeys_merkle_nodes_by_end() {
    use redb::{ReadableDatabase, ReadableTable};
    type ByEnd = redb::TableDefinition<'static, (u64, u64, u8), [u8; 32]>;
    type ByLevel = redb::TableDefinition<'static, (u64, u8, u64), [u8; 32]>;
    const BY_END: ByEnd = redb::TableDefinition::new("merkle_nodes_by_end");
    const BY_LEVEL: ByLevel = redb::TableDefinition::new("merkle_nodes");
    const MIGRATIONS: redb::TableDefinition<u32, &[u8]> = redb::TableDefinition::new("schema_migrations");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(annal_store::DB_FILE_NAME);
    let (t, l) = (tenant("acme"), ledger("orders"));
    let proofs = |s: &Store| -> Vec<Vec<Hash32>> {
        (0..300).map(|seq| s.inclusion_proof(&t, &l, Seq::new(seq), 300).unwrap()).collect()
    };
    let s = open(dir.path());
    for i in 0..300 {
        append(&s, request("acme", "orders", i, &i.to_le_bytes(), vec![]));
    }
    let expected = proofs(&s);
    s.close().unwrap();
    let nodes = |db: &redb::Database| -> Vec<((u64, u64, u8), [u8; 32])> {
        let txn = db.begin_read().unwrap();
        let table = txn.open_table(BY_END).unwrap();
        table.iter().unwrap().map(|row| row.map(|(k, v)| (k.value(), v.value())).unwrap()).collect()
    };
    let before = {
        let db = redb::Database::open(&path).unwrap();
        let before = nodes(&db);
        // 300 leaves: 18 subtrees of 16, 9 of 32, 4 of 64, 2 of 128, 1 of 256.
        assert_eq!(before.len(), 34);
        let mut txn = db.begin_write().unwrap();
        txn.set_durability(redb::Durability::Immediate).unwrap();
        {
            let mut old = txn.open_table(BY_LEVEL).unwrap();
            for ((id, end, level), hash) in &before {
                old.insert((*id, *level, ((end + 1) >> level) - 1), hash).unwrap();
            }
            // Migration 5 (the webhook outbox due index) is undone too.
            txn.open_table(MIGRATIONS).unwrap().remove(4).unwrap();
            txn.open_table(MIGRATIONS).unwrap().remove(5).unwrap();
        }
        txn.delete_table(BY_END).unwrap();
        txn.delete_table(redb::TableDefinition::<(u64, u64), ()>::new("webhook_outbox_due")).unwrap();
        txn.commit().unwrap();
        before
    };
    let status = annal_store::migration_status(dir.path()).unwrap();
    assert_eq!((status.head, status.pending), (3, vec![4, 5]));
    let s = open(dir.path());
    assert_eq!(proofs(&s), expected);
    assert_eq!(s.check(&[]).unwrap().failure, None);
    s.close().unwrap();
    let db = redb::Database::open(&path).unwrap();
    assert_eq!(nodes(&db), before);
    let txn = db.begin_read().unwrap();
    assert!(matches!(txn.open_table(BY_LEVEL), Err(redb::TableError::TableDoesNotExist(_))));
}

/// `tenant_ledgers` reads one tenant's ledgers (flushed rows and live tails
/// alike), never a neighbour whose name shares a prefix or sorts next to it.
#[test]
fn tenant_ledgers_lists_exactly_one_tenants_ledgers() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    for (t, l, n) in [
        ("acme", "orders", 3),
        ("acme", "a.b", 1),
        ("acme.x", "orders", 1),
        ("acme0", "x", 2),
        ("acm", "y", 1),
    ] {
        for i in 0..n {
            append(&s, request(t, l, i, b"p", vec![]));
        }
    }
    let expected = vec![(ledger("a.b"), 1), (ledger("orders"), 3)];
    assert_eq!(s.tenant_ledgers(&tenant("acme")).unwrap(), expected, "live tails");
    s.close().unwrap();
    let s = open(dir.path());
    assert_eq!(s.tenant_ledgers(&tenant("acme")).unwrap(), expected, "flushed rows");
    assert_eq!(s.tenant_ledgers(&tenant("acme0")).unwrap(), vec![(ledger("x"), 2)]);
    assert!(s.tenant_ledgers(&tenant("nobody")).unwrap().is_empty());
    // Pages, over flushed rows and live tails together.
    for l in ["b", "c", "zz"] {
        append(&s, request("acme", l, 0, b"p", vec![]));
    }
    let all = s.tenant_ledgers(&tenant("acme")).unwrap();
    let names: Vec<&str> = all.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(names, vec!["a.b", "b", "c", "orders", "zz"]);
    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let page = s.tenant_ledgers_page(&tenant("acme"), after.as_ref(), 2).unwrap();
        assert!(page.len() <= 2);
        let Some((last, _)) = page.last().cloned() else { break };
        paged.extend(page);
        after = Some(last);
    }
    assert_eq!(paged, all);
}

/// A range read stops once its payloads reach 4 MiB (always returning at
/// least one record), so a page of 1,000 records of 1 MiB is not a gigabyte
/// in memory; reading on after its last record returns the rest.
#[test]
fn range_reads_stop_at_the_payload_budget() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let big = vec![b'x'; annal_chain::limits::PAYLOAD_BYTES_MAX];
    for i in 0..6 {
        append(&s, request("acme", "orders", i, &big, vec![]));
    }
    append(&s, request("acme", "orders", 6, b"small", vec![]));
    let seqs = |after: Option<u64>| -> Vec<u64> {
        s.records(&tenant("acme"), &ledger("orders"), after.map(Seq::new), 100)
            .unwrap()
            .iter()
            .map(|e| e.record.seq().get())
            .collect()
    };
    assert_eq!(seqs(None), vec![0, 1, 2, 3]);
    assert_eq!(seqs(Some(3)), vec![4, 5, 6]);
    assert_eq!(seqs(Some(5)), vec![6]);
}

/// Opens the store in `dir`, appends the records `seqs` to acme/orders and
/// closes it cleanly.
fn append_and_close(dir: &std::path::Path, seqs: std::ops::Range<u64>) {
    let s = open(dir);
    for i in seqs {
        append(&s, request("acme", "orders", i, b"x", vec![]));
    }
    s.close().unwrap();
}

#[test]
fn rollback_guard_refuses_an_older_copy() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join(annal_store::DB_FILE_NAME);
    append_and_close(dir.path(), 0..5);
    let old = std::fs::read(&db_path).unwrap();
    append_and_close(dir.path(), 5..8);
    std::fs::write(&db_path, &old).unwrap();
    let err = Store::open(dir.path(), OpenOptions::default()).unwrap_err();
    assert!(matches!(err, OpenError::RolledBack { .. }), "{err}");
    assert!(err.to_string().contains("5 records, 8 were acknowledged"), "{err}");
}

#[test]
fn rollback_guard_refuses_a_copy_missing_the_last_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join(annal_store::DB_FILE_NAME);
    let signer = test_signer(LOG, 1);
    append_and_close(dir.path(), 0..4);
    let old = std::fs::read(&db_path).unwrap();
    let s = open(dir.path());
    let st = s.ledger_state(&tenant("acme"), &ledger("orders")).unwrap().unwrap();
    let note = Checkpoint::new(origin("acme", "orders"), st.size, st.root).sign(&signer);
    s.store_checkpoint(CheckpointRequest { tenant: tenant("acme"), ledger: ledger("orders"), note })
        .wait()
        .unwrap()
        .unwrap();
    s.close().unwrap();
    std::fs::write(&db_path, &old).unwrap();
    let err = Store::open(dir.path(), OpenOptions::default()).unwrap_err();
    assert!(err.to_string().contains("last checkpoint"), "{err}");
}

#[test]
fn flipped_bytes_are_reported_by_reads_and_check() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    for i in 0..10u64 {
        let payload =
            if i == 6 { b"NEEDLE-payload-six".to_vec() } else { format!("payload {i}").into_bytes() };
        append(&s, request("acme", "orders", i, &payload, vec![]));
    }
    s.close().unwrap();
    let path = dir.path().join(annal_store::DB_FILE_NAME);
    let mut bytes = std::fs::read(&path).unwrap();
    // Copy-on-write leaves stale copies in freed pages: flip every copy.
    let hits: Vec<usize> =
        bytes.windows(6).enumerate().filter(|(_, w)| *w == b"NEEDLE").map(|(i, _)| i).collect();
    assert!(!hits.is_empty(), "payload is in the file");
    for at in hits {
        bytes[at + 3] ^= 0x20;
    }
    std::fs::write(&path, &bytes).unwrap();

    let s = open(dir.path());
    let (t, l) = (tenant("acme"), ledger("orders"));
    let err = s.record(&t, &l, Seq::new(6)).unwrap_err();
    match err {
        ReadError::Corrupt(c) => assert_eq!((c.ledger.as_str(), c.seq), ("orders", Some(6))),
        other => panic!("{other}"),
    }
    assert!(matches!(s.records(&t, &l, None, 100), Err(ReadError::Corrupt(c)) if c.seq == Some(6)));
    assert!(s.record(&t, &l, Seq::new(5)).unwrap().is_some(), "other records are still served");
    let mut out = Vec::new();
    assert!(s.export(&origin("acme", "orders"), &[], &mut out).is_err());
    let report = s.check(&[]).unwrap();
    let f = report.failure.expect("check finds it");
    assert_eq!((f.tenant.as_str(), f.ledger.as_str(), f.seq), ("acme", "orders", Some(6)));
    drop(s);
    let report = annal_store::check(dir.path(), &[]).unwrap();
    assert_eq!(report.failure.map(|f| f.seq), Some(Some(6)));
}

#[test]
fn backup_while_appending_restore_and_check() {
    let dir = tempfile::tempdir().unwrap();
    let signer = test_signer(LOG, 1);
    let s = Arc::new(open(dir.path()));
    for i in 0..50 {
        append(&s, request("acme", "orders", i, b"x", vec![]));
    }
    let st = s.ledger_state(&tenant("acme"), &ledger("orders")).unwrap().unwrap();
    let note = Checkpoint::new(origin("acme", "orders"), st.size, st.root).sign(&signer);
    s.store_checkpoint(CheckpointRequest { tenant: tenant("acme"), ledger: ledger("orders"), note })
        .wait()
        .unwrap()
        .unwrap();
    let writer = {
        let s = s.clone();
        std::thread::spawn(move || {
            for i in 0..100 {
                append(&s, request("acme", "orders", 100 + i, b"y", vec![]));
            }
        })
    };
    let backup = tempfile::tempdir().unwrap();
    let bdir = backup.path().join("b");
    let stats = s.backup(&bdir).unwrap();
    writer.join().unwrap();
    assert!(stats.records_total >= 50);
    assert!(matches!(s.backup(&bdir), Err(annal_store::MaintenanceError::NotEmpty { .. })));
    // Restore refuses a non-empty target, then writes into an empty one.
    assert!(matches!(
        annal_store::restore(&bdir, dir.path()),
        Err(annal_store::MaintenanceError::NotEmpty { .. })
    ));
    let target = tempfile::tempdir().unwrap();
    let rdir = target.path().join("restored");
    annal_store::restore(&bdir, &rdir).unwrap();
    let report = annal_store::check(&rdir, &[signer.trusted_key()]).unwrap();
    assert_eq!((report.failure, report.records, report.checkpoints), (None, stats.records_total, 1));
    let r = open(&rdir);
    let size = r.ledger_state(&tenant("acme"), &ledger("orders")).unwrap().unwrap().size;
    assert_eq!(size, stats.records_total);
    // The snapshot is a prefix of the live ledger.
    assert_eq!(
        r.root_at(&tenant("acme"), &ledger("orders"), size).unwrap(),
        s.root_at(&tenant("acme"), &ledger("orders"), size).unwrap()
    );
}

/// Appends are acknowledged while a backup runs: between the backup's
/// bounded copying transactions (its progress calls, on the backup's
/// thread, with its snapshot open) an append is made and its ack awaited
/// with a generous deadline, so a backup that held up writers would turn
/// into a deadline failure. The backup holds exactly its snapshot.
#[test]
fn appends_are_acknowledged_while_a_backup_runs() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    for i in 0..50 {
        append(&s, request("acme", "orders", i, b"x", vec![]));
    }
    let backup = tempfile::tempdir().unwrap();
    let bdir = backup.path().join("b");
    let mut during = Vec::new();
    let stats = s
        .backup_with_progress(&bdir, &mut |progress| {
            let ticket = s.append(request("acme", "orders", 1000, progress.table.as_bytes(), vec![]));
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || tx.send(ticket.wait()));
            let acked = rx
                .recv_timeout(std::time::Duration::from_secs(60))
                .unwrap_or_else(|_| panic!("no ack within 60 s while copying {}", progress.table));
            during.push(acked.expect("committed").expect("accepted").seq.get());
        })
        .unwrap();
    assert!(during.len() >= 10, "a progress call per copied table: {}", during.len());
    assert_eq!(during, (50..50 + during.len() as u64).collect::<Vec<_>>());
    assert_eq!(stats.records_total, 50, "the backup holds its snapshot, not what came during it");
    let size = |s: &Store| s.ledger_state(&tenant("acme"), &ledger("orders")).unwrap().unwrap().size;
    assert_eq!(size(&s), 50 + during.len() as u64);
    let target = tempfile::tempdir().unwrap();
    let rdir = target.path().join("restored");
    annal_store::restore(&bdir, &rdir).unwrap();
    let r = open(&rdir);
    assert_eq!(size(&r), 50);
    assert_eq!(r.check(&[]).unwrap().failure, None);
}

/// A backup bigger than one copying transaction (16,384 rows) is whole:
/// the copy commits in chunks and only its last commit is durable.
#[test]
fn a_backup_of_many_transactions_restores_whole() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let n = 20_000;
    let mut tickets = Vec::new();
    for i in 0..n {
        tickets.push(s.append(request("acme", "orders", i, b"x", vec![])));
        if tickets.len() == 2_000 {
            for t in tickets.drain(..) {
                t.wait().unwrap().unwrap();
            }
        }
    }
    let backup = tempfile::tempdir().unwrap();
    let bdir = backup.path().join("b");
    assert_eq!(s.backup(&bdir).unwrap().records_total, n);
    let target = tempfile::tempdir().unwrap();
    let rdir = target.path().join("restored");
    annal_store::restore(&bdir, &rdir).unwrap();
    let report = annal_store::check(&rdir, &[]).unwrap();
    assert_eq!((report.failure, report.records), (None, n));
    let r = open(&rdir);
    let (t, l) = (tenant("acme"), ledger("orders"));
    assert_eq!(r.ledger_state(&t, &l).unwrap(), s.ledger_state(&t, &l).unwrap());
}

#[test]
fn sled_index_catches_up_and_equals_its_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let index = Index::open(&dir.path().join("index")).unwrap();
    let a0 = append(&s, request("acme", "orders", 0, b"dup", vec![]));
    index.catch_up(&s).unwrap();
    let link = |l: &str, seq: u64, hash| Parent { ledger: ledger(l), seq: Seq::new(seq), hash };
    for i in 1..40u64 {
        let parents = if i % 5 == 0 { vec![link("orders", 0, a0.hash)] } else { vec![] };
        let payload = if i % 7 == 0 { b"dup".to_vec() } else { i.to_le_bytes().to_vec() };
        let l = if i % 2 == 0 { "orders" } else { "invoices" };
        append(&s, request("acme", l, i, &payload, parents));
        if i % 9 == 0 {
            index.catch_up(&s).unwrap();
        }
    }
    index.catch_up(&s).unwrap();
    let incremental = index.dump().unwrap();
    let children = index.children(&tenant("acme"), &ledger("orders"), Seq::new(0), None, 100).unwrap();
    assert_eq!(children.len(), 7);
    assert!(children.windows(2).all(|w| w[0] < w[1]), "(ledger, seq) order: {children:?}");
    let first = index.children(&tenant("acme"), &ledger("orders"), Seq::new(0), None, 3).unwrap();
    let rest = index.children(&tenant("acme"), &ledger("orders"), Seq::new(0), first.last(), 100).unwrap();
    assert_eq!(first.len(), 3);
    assert_eq!([first, rest].concat(), children);
    let dup = blake3::hash(b"dup");
    let all = index.by_payload_digest(&tenant("acme"), dup.as_bytes(), None, 100).unwrap();
    assert_eq!(all.len(), 6);
    assert!(all.windows(2).all(|w| w[0] < w[1]), "(ledger, seq) order: {all:?}");
    // Pages of 4 from a cursor give the same list.
    let first = index.by_payload_digest(&tenant("acme"), dup.as_bytes(), None, 4).unwrap();
    let rest = index.by_payload_digest(&tenant("acme"), dup.as_bytes(), first.last(), 4).unwrap();
    assert_eq!([first, rest].concat(), all);
    assert!(index.by_payload_digest(&tenant("beta"), dup.as_bytes(), None, 100).unwrap().is_empty());
    assert_eq!(index.catch_up(&s).unwrap(), 0, "caught up means nothing to do");
    index.rebuild(&s).unwrap();
    assert_eq!(index.dump().unwrap(), incremental);
    // A wiped sled directory catches up to the same state.
    drop(index);
    std::fs::remove_dir_all(dir.path().join("index")).unwrap();
    let index = Index::open(&dir.path().join("index")).unwrap();
    assert_eq!(index.catch_up(&s).unwrap(), 40);
    assert_eq!(index.dump().unwrap(), incremental);
}

#[test]
fn export_verifies_with_the_chain_verifier() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let signer = test_signer(LOG, 1);
    let mut hashes = Vec::new();
    for i in 0..40u64 {
        let parents = if i > 3 && i % 4 == 0 {
            vec![Parent { ledger: ledger("orders"), seq: Seq::new(i / 2), hash: hashes[(i / 2) as usize] }]
        } else {
            vec![]
        };
        hashes.push(append(&s, request("acme", "orders", i, &i.to_le_bytes(), parents)).hash);
        if i % 13 == 12 {
            let st = s.ledger_state(&tenant("acme"), &ledger("orders")).unwrap().unwrap();
            let note = Checkpoint::new(origin("acme", "orders"), st.size, st.root).sign(&signer);
            s.store_checkpoint(CheckpointRequest { tenant: tenant("acme"), ledger: ledger("orders"), note })
                .wait()
                .unwrap()
                .unwrap();
        }
    }
    let mut out = Vec::new();
    let stats = s.export(&origin("acme", "orders"), &[signer.vkey()], &mut out).unwrap();
    assert_eq!((stats.records, stats.checkpoints), (40, 3));
    let summary = verify_export(&out, &[signer.trusted_key()], &origin("acme", "orders")).unwrap();
    assert_eq!((summary.records, summary.anchored_size), (40, 39));
}

/// Words that make a public fn name look like a mutation of history.
const MUTATING_WORDS: [&str; 15] = [
    "update",
    "delete",
    "remove",
    "set_",
    "replace",
    "truncate",
    "rewrite",
    "overwrite",
    "erase",
    "purge",
    "prune",
    "clear",
    "reset",
    "rollback",
    "upsert",
];

/// Public functions that match a word but change no history, each with why.
const ALLOWED: [(&str, &str, &str); 1] = [(
    "registry.rs",
    "set_tenant_status",
    "control plane: suspends or resumes a tenant; no record, checkpoint, identity or event changes",
)];

/// The public functions in `src` (in impl blocks, modules, anywhere; and
/// every method of a `pub trait`) whose names contain a mutating word.
fn mutating_public_fns(src: &str) -> Vec<String> {
    let mut found = Vec::new();
    // Brace depth at which a `pub trait` body ends, while inside one.
    let mut trait_until: Option<i64> = None;
    let mut depth = 0i64;
    for line in src.lines() {
        let code = line.split("//").next().unwrap_or("").trim();
        let public = code.strip_prefix("pub ").map(str::trim_start);
        if public.is_some_and(|rest| rest.starts_with("trait ")) && trait_until.is_none() {
            trait_until = Some(depth);
        }
        let signature = match (public, trait_until) {
            (Some(rest), _) => Some(rest),
            (None, Some(_)) => Some(code),
            (None, None) => None,
        };
        if let Some(mut rest) = signature {
            for qualifier in ["const ", "async ", "unsafe ", "extern \"C\" "] {
                rest = rest.strip_prefix(qualifier).unwrap_or(rest).trim_start();
            }
            if let Some(after) = rest.strip_prefix("fn ") {
                let name: String = after.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                if MUTATING_WORDS.iter().any(|w| name.contains(w)) {
                    found.push(name);
                }
            }
        }
        depth += code.matches('{').count() as i64 - code.matches('}').count() as i64;
        if trait_until.is_some_and(|d| depth <= d && code.contains('}')) {
            trait_until = None;
        }
    }
    found
}

/// The scanner finds mutating names in impl blocks, with qualifiers, and in
/// public traits, and ignores crate-private ones and comments.
#[test]
fn the_mutation_scanner_sees_impl_blocks_and_traits() {
    let src = "impl Store {\n    pub fn delete_record(&self) {}\n    pub async fn set_head(&self) {}\n    \
        pub(crate) fn remove_internal() {}\n    // pub fn update_in_a_comment()\n    pub fn read(&self) {}\n}\n\
        pub trait Backend {\n    fn truncate(&self);\n    fn len(&self) -> u64 { 0 }\n}\nfn replace_private() {}\n";
    assert_eq!(mutating_public_fns(src), vec!["delete_record", "set_head", "truncate"]);
}

/// Tidy: no public function of any module in `store/src` (free, in an impl
/// block or a public trait) updates or deletes history.
#[test]
fn no_public_update_or_delete() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
    let mut files = Vec::new();
    let mut pending = vec![std::path::PathBuf::from(dir)];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    let names: Vec<String> =
        files.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
    for module in ["lib.rs", "store.rs", "maintenance.rs", "index.rs", "registry.rs", "committer.rs"] {
        assert!(names.iter().any(|n| n == module), "{module} scanned: {names:?}");
    }
    let mut allowed_seen = vec![false; ALLOWED.len()];
    for path in &files {
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        for name in mutating_public_fns(&std::fs::read_to_string(path).unwrap()) {
            match ALLOWED.iter().position(|(f, n, _)| *f == file && *n == name) {
                Some(i) => allowed_seen[i] = true,
                None => panic!("public fn {name} in {file} looks like a mutation of history"),
            }
        }
    }
    for ((file, name, _), seen) in ALLOWED.iter().zip(allowed_seen) {
        assert!(seen, "allowed {file}:{name} no longer exists: drop it from the list");
    }
}

/// With a batch linger the committer waits for as many writes as its last
/// batch held; when fewer come, it commits what it has. Without one (the
/// default) it commits what is queued. Either way a lone append after a
/// batch of 64, and one append per ledger with invalid ones mixed in, are
/// all answered, each with its own outcome and in ledger order.
#[test]
fn lingering_batches_end_and_keep_per_request_outcomes() {
    for linger_us in [1000, 0] {
        let dir = tempfile::tempdir().unwrap();
        let options = OpenOptions {
            batch_linger: std::time::Duration::from_micros(linger_us),
            ..OpenOptions::default()
        };
        batches_keep_per_request_outcomes(Store::open(dir.path(), options).expect("store opens"));
    }
}

fn batches_keep_per_request_outcomes(s: Store) {
    let s = Arc::new(s);
    let barrier = Arc::new(Barrier::new(64));
    let threads: Vec<_> = (0..64u64)
        .map(|i| {
            let (s, barrier) = (s.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let mut r = request("acme", &format!("l{}", i % 8), i, b"x", vec![]);
                if i % 9 == 0 {
                    r.content_type = String::new();
                }
                (i, s.append(r).wait().unwrap())
            })
        })
        .collect();
    let mut per_ledger = vec![Vec::new(); 8];
    for t in threads {
        let (i, outcome) = t.join().unwrap();
        match outcome {
            Ok(a) => per_ledger[(i % 8) as usize].push(a.seq.get()),
            Err(e) => assert!(i % 9 == 0 && matches!(e, AppendRefusal::Invalid(_)), "{i}: {e:?}"),
        }
    }
    for seqs in &mut per_ledger {
        seqs.sort_unstable();
        assert_eq!(*seqs, (0..seqs.len() as u64).collect::<Vec<_>>());
    }
    let lone = append(&s, request("acme", "l0", 99, b"y", vec![]));
    assert_eq!(lone.seq.get(), per_ledger[0].len() as u64);
    let total: usize = per_ledger.iter().map(Vec::len).sum();
    assert_eq!(total, 64 - 8, "0, 9, ..., 63 were invalid");
}
