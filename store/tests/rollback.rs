//! Goal: the rollback guard refuses a database that is behind, or holds
//! another history than, what the store acknowledged, ledger by ledger, and
//! never refuses what a crash or a proper backup and restore leaves. Method:
//! build a live store and replacement databases with chosen histories, put
//! a replacement's `annal.redb` (or a backup's files) in place and check the
//! exact outcome of opening; put older mark files back (a crash between the
//! redb commit and the mark write) and tear the mark log, and check the store
//! opens with every acknowledged record.

mod common;

use std::path::Path;

use annal_chain::testkit::test_signer;
use annal_chain::{Checkpoint, Seq};
use annal_store::{CheckpointRequest, DB_FILE_NAME, OpenError, OpenOptions, Store};
use common::*;

const MARK_FILES: [&str; 2] = ["annal.hwm", "annal.marks"];

/// Appends record `i` of each `(ledger, seqs, payload prefix)` to acme/ledger:
/// the same triple always makes the same record.
fn grow(s: &Store, history: &[(&str, std::ops::Range<u64>, &str)]) {
    for (l, seqs, prefix) in history {
        for i in seqs.clone() {
            let a = append(s, request("acme", l, i, format!("{prefix}{i}").as_bytes(), vec![]));
            assert_eq!(a.seq.get(), i, "{l}/{i}");
        }
    }
}

fn build(dir: &Path, history: &[(&str, std::ops::Range<u64>, &str)]) {
    let s = open(dir);
    grow(&s, history);
    s.close().unwrap();
}

fn checkpoint(s: &Store, l: &str) {
    let signer = test_signer(LOG, 1);
    let st = s.ledger_state(&tenant("acme"), &ledger(l)).unwrap().unwrap();
    let note = Checkpoint::new(origin("acme", l), st.size, st.root).sign(&signer);
    s.store_checkpoint(CheckpointRequest { tenant: tenant("acme"), ledger: ledger(l), note })
        .wait()
        .unwrap()
        .unwrap();
}

/// What opening gave: `Ok(())`, or the refused ledger and the error text.
fn outcome(dir: &Path) -> Result<(), (Option<String>, String)> {
    match Store::open(dir, OpenOptions::default()) {
        Ok(s) => {
            s.close().unwrap();
            Ok(())
        }
        Err(e @ OpenError::RolledBack { .. }) => {
            let text = e.to_string();
            let OpenError::RolledBack { ledger, .. } = e else { unreachable!() };
            Err((ledger, text))
        }
        Err(other) => panic!("not a rollback refusal: {other}"),
    }
}

/// The live store holds acme/a and acme/b with six records each. Each
/// replacement is built separately and its database put in place of the
/// live one; the live mark files stay.
#[test]
fn a_replacement_with_as_many_records_but_another_history_is_refused() {
    type History<'a> = &'a [(&'a str, std::ops::Range<u64>, &'a str)];
    let live: History = &[("a", 0..6, "a"), ("b", 0..6, "b")];
    /// Ok, or the ledger named and a phrase of the message.
    type Expected<'a> = Result<(), (Option<&'a str>, &'a str)>;
    let cases: &[(&str, History, Expected)] = &[
        ("the same history", live, Ok(())),
        ("the same history and more", &[("a", 0..9, "a"), ("b", 0..6, "b"), ("c", 0..2, "c")], Ok(())),
        (
            "as many records, b rewritten",
            &[("a", 0..6, "a"), ("b", 0..6, "B")],
            Err((Some("acme/b"), "seq 5 with record hash")),
        ),
        (
            "more records, b diverging at 3",
            &[("a", 0..6, "a"), ("b", 0..3, "b"), ("b", 3..9, "B")],
            Err((Some("acme/b"), "another history")),
        ),
        (
            "as many records, b shorter and a longer",
            &[("a", 0..8, "a"), ("b", 0..4, "b")],
            Err((Some("acme/b"), "the database has 4 records")),
        ),
        (
            "as many records, b missing and c instead",
            &[("a", 0..6, "a"), ("c", 0..6, "c")],
            Err((Some("acme/b"), "no such ledger")),
        ),
        ("an older copy", &[("a", 0..6, "a"), ("b", 0..4, "b")], Err((None, "12 were acknowledged"))),
    ];
    for (what, replacement, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        build(dir.path(), live);
        let other = tempfile::tempdir().unwrap();
        build(other.path(), replacement);
        std::fs::copy(other.path().join(DB_FILE_NAME), dir.path().join(DB_FILE_NAME)).unwrap();
        match (outcome(dir.path()), expected) {
            (Ok(()), Ok(())) => {}
            (Err((ledger, text)), Err((want_ledger, want_text))) => {
                assert_eq!(ledger.as_deref(), *want_ledger, "{what}: {text}");
                assert!(text.contains(want_text), "{what}: {text}");
            }
            (got, want) => panic!("{what}: got {got:?}, expected {want:?}"),
        }
    }
}

/// The mark is written only after the redb commit it describes returned, so
/// a crash in between leaves it behind the database: older mark files (or
/// none) put back under a newer database open, with every record.
#[test]
fn a_crash_between_the_commit_and_the_mark_write_reopens() {
    for keep in ["older marks", "no marks", "older store-wide mark only"] {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        grow(&s, &[("a", 0..3, "a")]);
        checkpoint(&s, "a");
        s.close().unwrap();
        let saved: Vec<(String, Vec<u8>)> =
            MARK_FILES.iter().map(|n| (n.to_string(), std::fs::read(dir.path().join(n)).unwrap())).collect();
        let s = open(dir.path());
        grow(&s, &[("a", 3..7, "a"), ("b", 0..2, "b")]);
        checkpoint(&s, "a");
        s.close().unwrap();
        for (name, bytes) in &saved {
            let path = dir.path().join(name);
            match keep {
                "older marks" => std::fs::write(&path, bytes).unwrap(),
                "no marks" => std::fs::remove_file(&path).unwrap(),
                _ if name == "annal.hwm" => std::fs::write(&path, bytes).unwrap(),
                _ => {}
            }
        }
        let s = Store::open(dir.path(), OpenOptions::default()).unwrap_or_else(|e| panic!("{keep}: {e}"));
        let (t, a) = (tenant("acme"), ledger("a"));
        assert_eq!(s.ledger_state(&t, &a).unwrap().unwrap().size, 7, "{keep}");
        assert_eq!(s.record(&t, &a, Seq::new(6)).unwrap().unwrap().record.payload(), b"a6");
        assert_eq!(s.check(&[test_signer(LOG, 1).trusted_key()]).unwrap().failure, None, "{keep}");
        grow(&s, &[("b", 2..3, "b")]);
        s.close().unwrap();
        // The store closes and reopens cleanly from the marks it then wrote.
        assert!(outcome(dir.path()).is_ok(), "{keep}");
    }
}

/// A backup's marks describe the copy: `restore` gives a directory that
/// opens and checks. The backup's database put over the newer live one is
/// refused, and so are all its files copied over it.
#[test]
fn backup_restore_round_trips_and_a_backup_in_place_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    grow(&s, &[("a", 0..5, "a"), ("b", 0..3, "b")]);
    checkpoint(&s, "a");
    let backups = tempfile::tempdir().unwrap();
    let bdir = backups.path().join("b1");
    assert_eq!(s.backup(&bdir).unwrap().records_total, 8);
    grow(&s, &[("a", 5..7, "a")]);
    s.close().unwrap();

    let target = tempfile::tempdir().unwrap();
    let rdir = target.path().join("restored");
    annal_store::restore(&bdir, &rdir).unwrap();
    let r = open(&rdir);
    assert_eq!(r.ledger_state(&tenant("acme"), &ledger("a")).unwrap().unwrap().size, 5);
    assert_eq!(r.check(&[test_signer(LOG, 1).trusted_key()]).unwrap().failure, None);
    grow(&r, &[("a", 5..6, "A")]);
    r.close().unwrap();
    assert!(outcome(&rdir).is_ok(), "a restored copy reopens after appends");
    // The restored copy guards its own history: its first backup state put
    // back in place is refused by ledger.
    std::fs::copy(bdir.join(DB_FILE_NAME), rdir.join(DB_FILE_NAME)).unwrap();
    let (_, text) = outcome(&rdir).unwrap_err();
    assert!(text.contains("8 records, 9 were acknowledged"), "{text}");

    // The old backup's database over the newer live directory.
    std::fs::copy(bdir.join(DB_FILE_NAME), dir.path().join(DB_FILE_NAME)).unwrap();
    let (_, text) = outcome(dir.path()).unwrap_err();
    assert!(text.contains("8 records, 10 were acknowledged"), "{text}");
    // Every file of the backup copied over it.
    for entry in std::fs::read_dir(&bdir).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    let (ledger, text) = outcome(dir.path()).unwrap_err();
    assert_eq!(ledger, None);
    assert!(text.contains("backup's"), "{text}");
    // The backup directory itself is not a data directory either.
    assert!(outcome(&bdir).is_err());
}

/// A torn last group of the mark log (a crash while it was written) is
/// dropped and the log rewritten; damage before the last group refuses.
#[test]
fn a_torn_mark_log_tail_is_dropped_and_earlier_damage_refused() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), &[("a", 0..3, "a")]);
    build(dir.path(), &[("b", 0..2, "b")]);
    build(dir.path(), &[("a", 3..4, "a")]);
    let log = dir.path().join("annal.marks");
    let good = std::fs::read(&log).unwrap();
    // Three groups of one entry each, after a 64-byte header.
    assert_eq!(good.len(), 64 + 3 * 288);

    let mut torn = good.clone();
    torn.truncate(good.len() - 100);
    std::fs::write(&log, &torn).unwrap();
    let s = Store::open(dir.path(), OpenOptions::default()).expect("a torn tail is dropped");
    assert_eq!((std::fs::metadata(&log).unwrap().len() - 64) % 288, 0, "rewritten whole");
    grow(&s, &[("a", 4..5, "a")]);
    s.close().unwrap();
    assert!(outcome(dir.path()).is_ok());

    let mut damaged = good.clone();
    damaged[64 + 100] ^= 1;
    std::fs::write(&log, &damaged).unwrap();
    match Store::open(dir.path(), OpenOptions::default()) {
        Err(e @ OpenError::HwmUnreadable { .. }) => {
            assert!(e.to_string().contains("annal.marks"), "{e}");
            assert!(e.to_string().contains("entry 0 is damaged"), "{e}");
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("opened over a damaged mark log"),
    }
}
