//! Goal: after one failed write or sync the store acknowledges nothing more
//! until it is reopened, even when the disk works again at once (a store
//! that retried would then succeed and ack). Method: a backend that fails
//! exactly one write or sync and then works; append before, during and
//! after the fault, then reopen on the same backend and check that every
//! acknowledged record is intact, the failed one is whole or absent, `check`
//! passes and appends work.

mod common;

use annal_chain::{Hash32, Seq};
use annal_store::{OpenOptions, ReadError, Store, WriteError};
use common::backend::{Fault, FaultBackend};
use common::*;

fn open_on(dir: &std::path::Path, backend: &FaultBackend) -> Store {
    Store::open(dir, OpenOptions { backend: Some(Box::new(backend.clone())), ..OpenOptions::default() })
        .expect("opens")
}

#[test]
fn one_transient_fault_fails_the_store_until_reopen() {
    for fault in [Fault::Write, Fault::Sync] {
        let dir = tempfile::tempdir().unwrap();
        let backend = FaultBackend::new();
        let store = open_on(dir.path(), &backend);
        let (t, l) = (tenant("acme"), ledger("orders"));
        let acked: Vec<(Seq, Hash32)> = (0..5)
            .map(|i| append(&store, request("acme", "orders", i, format!("ok {i}").as_bytes(), vec![])))
            .map(|a| (a.seq, a.hash))
            .collect();
        backend.fail_once(fault);
        let failed = store.append(request("acme", "orders", 5, b"failed", vec![])).wait();
        assert!(
            matches!(failed, Err(WriteError::Failed(_))),
            "{fault:?}: the failed batch is not acked: {failed:?}"
        );
        assert!(!backend.fault_pending(), "{fault:?}: the fault struck, and the backend works again");
        // Nothing more is acknowledged or served until reopen, though a
        // retry would now succeed.
        for i in 0..3 {
            let later = store.append(request("acme", "orders", 6 + i, b"later", vec![])).wait();
            assert!(matches!(later, Err(WriteError::Failed(_))), "{fault:?}: {later:?}");
        }
        assert!(matches!(store.ledger_state(&t, &l), Err(ReadError::Failed(_))), "{fault:?}");
        assert!(store.close().is_err(), "{fault:?}: close reports the failure");

        let store = open_on(dir.path(), &backend);
        for (seq, hash) in &acked {
            assert_eq!(store.record(&t, &l, *seq).unwrap().map(|e| e.hash), Some(*hash), "{fault:?}: {seq}");
        }
        let size = store.ledger_state(&t, &l).unwrap().unwrap().size;
        match size {
            5 => {}
            6 => assert_eq!(store.record(&t, &l, Seq::new(5)).unwrap().unwrap().record.payload(), b"failed"),
            other => panic!("{fault:?}: {other} records after reopen"),
        }
        assert_eq!(store.check(&[]).unwrap().failure, None, "{fault:?}");
        let next = append(&store, request("acme", "orders", 9, b"after reopen", vec![]));
        assert_eq!(next.seq.get(), size, "{fault:?}");
        store.close().unwrap();
    }
}
