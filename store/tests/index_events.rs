//! Goal: the sled index of system events (by request id, tenant and code)
//! follows the same discipline as the lineage and digest indexes: built
//! incrementally in bounded steps it equals a rebuild from scratch and a
//! catch-up into a wiped directory; a changed configuration or a store whose
//! history differs from the one indexed clears it instead of answering from
//! it; queries page by seq. Method: a real store in a temporary directory,
//! an event ledger whose payloads are `request_id|tenant|code` text parsed by
//! a test extractor (the store knows no payload format), exact comparisons.

mod common;

use std::path::Path;

use annal_chain::{Parent, Seq};
use annal_store::{EventFields, EventLedger, Index, Store};
use common::*;

/// `rid|tenant|code`; an empty part is absent.
fn extract(payload: &[u8]) -> EventFields {
    let text = String::from_utf8_lossy(payload);
    let mut parts = text.split('|').map(|p| (!p.is_empty()).then(|| p.to_owned()));
    EventFields {
        request_id: parts.next().flatten(),
        tenant: parts.next().flatten(),
        code: parts.next().flatten(),
    }
}

fn events_ledger(version: &'static str) -> EventLedger {
    EventLedger { tenant: tenant("annal-system"), ledger: ledger("events"), extract, version }
}

fn open_index(dir: &Path) -> Index {
    Index::open_with_events(&dir.join("index"), events_ledger("test-1")).unwrap()
}

fn event(s: &Store, rid: &str, t: &str, code: &str) -> u64 {
    let payload = format!("{rid}|{t}|{code}");
    append(s, request("annal-system", "events", 0, payload.as_bytes(), vec![])).seq.get()
}

fn seqs(v: Vec<Seq>) -> Vec<u64> {
    v.into_iter().map(Seq::get).collect()
}

/// Events and tenant records interleaved, 60 events: request ids r0..r19
/// (three events each), tenants acme/beta/none, codes by i % 4.
fn workload(s: &Store, index: Option<&Index>) {
    let codes = ["auth.invalid_key", "rate.limited", "ok", "ledger.not_found"];
    let mut first: Option<Parent> = None;
    for i in 0..60u64 {
        let t = match i % 3 {
            0 => "acme",
            1 => "beta",
            _ => "",
        };
        event(s, &format!("r{}", i % 20), t, codes[(i % 4) as usize]);
        let parents = match &first {
            Some(p) if i % 6 == 0 => vec![p.clone()],
            _ => vec![],
        };
        let a = append(s, request("acme", "orders", i, &i.to_le_bytes(), parents));
        first.get_or_insert(Parent { ledger: ledger("orders"), seq: a.seq, hash: a.hash });
        if let Some(index) = index
            && i % 7 == 0
        {
            // Small bounded steps, as the daemon's worker takes them.
            index.catch_up_step(s, 5).unwrap();
        }
    }
}

#[test]
fn event_indexes_find_exactly_the_matching_events_and_page_by_seq() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let index = open_index(dir.path());
    workload(&s, Some(&index));
    index.catch_up(&s).unwrap();
    assert_eq!(index.watermark(&tenant("annal-system"), &ledger("events")).unwrap(), 60);
    assert_eq!(index.watermark(&tenant("acme"), &ledger("orders")).unwrap(), 60);
    assert_eq!(index.watermark(&tenant("acme"), &ledger("nothing")).unwrap(), 0);

    assert_eq!(seqs(index.events_by_request_id("r3", None, 100).unwrap()), vec![3, 23, 43]);
    assert_eq!(seqs(index.events_by_request_id("r3", Some(Seq::new(3)), 100).unwrap()), vec![23, 43]);
    assert_eq!(seqs(index.events_by_request_id("r3", Some(Seq::new(43)), 100).unwrap()), Vec::<u64>::new());
    assert_eq!(
        seqs(index.events_by_request_id("r3", Some(Seq::new(u64::MAX)), 1).unwrap()),
        Vec::<u64>::new()
    );
    assert!(index.events_by_request_id("r", None, 100).unwrap().is_empty(), "no prefix matches");
    let acme: Vec<u64> = (0..60).filter(|i| i % 3 == 0).collect();
    assert_eq!(seqs(index.events_by_tenant("acme", None, 1000).unwrap()), acme);
    assert_eq!(seqs(index.events_by_tenant("acme", None, 2).unwrap()), vec![0, 3]);
    assert_eq!(seqs(index.events_by_tenant("acme", Some(Seq::new(3)), 2).unwrap()), vec![6, 9]);
    let limited: Vec<u64> = (0..60).filter(|i| i % 4 == 1).collect();
    assert_eq!(seqs(index.events_by_code("rate.limited", None, 1000).unwrap()), limited);
    // Tenant records are not events, however their payload reads.
    assert!(index.events_by_tenant("", None, 10).unwrap().is_empty());
    assert!(index.events_by_code("nope", None, 10).unwrap().is_empty());
    // Lineage and digests are still indexed beside the events.
    assert_eq!(index.children(&tenant("acme"), &ledger("orders"), Seq::new(0), None, 100).unwrap().len(), 9);
}

#[test]
fn unindexable_values_are_skipped_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let index = open_index(dir.path());
    let long = "x".repeat(257);
    event(&s, &long, "acme\0evil", "ok");
    event(&s, "r1", "acme", "ok");
    assert_eq!(index.catch_up(&s).unwrap(), 2);
    assert!(index.events_by_request_id(&long, None, 10).unwrap().is_empty());
    assert!(index.events_by_tenant("acme\0evil", None, 10).unwrap().is_empty());
    assert_eq!(seqs(index.events_by_tenant("acme", None, 10).unwrap()), vec![1], "NUL cannot forge a key");
    assert_eq!(seqs(index.events_by_code("ok", None, 10).unwrap()), vec![0, 1]);
}

#[test]
fn incremental_equals_rebuild_equals_a_wiped_directory() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let index = open_index(dir.path());
    workload(&s, Some(&index));
    index.catch_up(&s).unwrap();
    let incremental = index.dump().unwrap();
    assert!(incremental.iter().any(|k| k.starts_with(b"Et")), "event keys are present");
    assert_eq!(index.catch_up(&s).unwrap(), 0, "caught up means nothing to do");
    assert_eq!(index.rebuild(&s).unwrap(), 120);
    assert_eq!(index.dump().unwrap(), incremental);

    drop(index);
    std::fs::remove_dir_all(dir.path().join("index")).unwrap();
    let index = open_index(dir.path());
    assert_eq!(index.watermark(&tenant("annal-system"), &ledger("events")).unwrap(), 0);
    // Bounded steps reach the same state: each does at most about 50 records.
    let mut steps = 0;
    loop {
        let step = index.catch_up_step(&s, 50).unwrap();
        steps += 1;
        assert!(step.indexed <= 50 + 1000, "bounded by the request plus one chunk");
        if step.complete {
            break;
        }
        assert!(steps < 100, "catch-up converges");
    }
    assert!(steps >= 2, "work was split into steps");
    assert_eq!(index.dump().unwrap(), incremental);

    // After a restart the index goes on from its watermarks.
    drop(index);
    let index = open_index(dir.path());
    event(&s, "late", "acme", "ok");
    assert_eq!(index.catch_up(&s).unwrap(), 1);
    assert_eq!(seqs(index.events_by_request_id("late", None, 10).unwrap()), vec![60]);
}

#[test]
fn another_configuration_or_history_clears_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let index = open_index(dir.path());
    workload(&s, None);
    index.catch_up(&s).unwrap();
    let built = index.dump().unwrap();
    drop(index);

    // A new extractor version: cleared at open, then rebuilt by catch-up.
    let index = Index::open_with_events(&dir.path().join("index"), events_ledger("test-2")).unwrap();
    assert_eq!(index.watermark(&tenant("annal-system"), &ledger("events")).unwrap(), 0);
    assert_eq!(index.catch_up(&s).unwrap(), 120);
    drop(index);
    // Without events configured, no event keys are kept.
    let index = Index::open(&dir.path().join("index")).unwrap();
    index.catch_up(&s).unwrap();
    assert!(!index.dump().unwrap().iter().any(|k| k.starts_with(b"E")));
    drop(index);
    let index = open_index(dir.path());
    index.catch_up(&s).unwrap();
    assert_eq!(index.dump().unwrap(), built);
    drop(index);

    // The same index against another store with the same ledger names but
    // another history (a restored or replaced database): shorter, and equal
    // in length but different in content. Both clear and rebuild.
    for other_len in [10u64, 60] {
        let other_dir = tempfile::tempdir().unwrap();
        let other = open(other_dir.path());
        for i in 0..other_len {
            event(&other, &format!("other{i}"), "gamma", "ok");
            append(&other, request("acme", "orders", i, b"other", vec![]));
        }
        std::fs::remove_dir_all(other_dir.path().join("index")).ok();
        copy_dir(&dir.path().join("index"), &other_dir.path().join("index"));
        let index = open_index(other_dir.path());
        index.catch_up(&other).unwrap();
        assert!(
            index.events_by_request_id("r3", None, 10).unwrap().is_empty(),
            "nothing from the old history"
        );
        assert_eq!(seqs(index.events_by_tenant("gamma", None, 1000).unwrap()).len() as u64, other_len);
        let caught_up = index.dump().unwrap();
        index.rebuild(&other).unwrap();
        assert_eq!(index.dump().unwrap(), caught_up, "{other_len}: equals its rebuild");
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
