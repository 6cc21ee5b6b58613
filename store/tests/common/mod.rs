//! Helpers shared by the store's integration tests.
#![allow(dead_code)]

use std::path::Path;

use annal_chain::{
    ExportSummary, ExportVerifier, Failure, Hash32, LedgerName, Origin, Parent, TenantId, TrustedKey,
};
use annal_store::{AppendRequest, Appended, OpenOptions, Position, Store};

pub const LOG: &str = "annal.test";

pub fn tenant(t: &str) -> TenantId {
    TenantId::new(t).unwrap()
}

pub fn ledger(l: &str) -> LedgerName {
    LedgerName::new(l).unwrap()
}

pub fn origin(t: &str, l: &str) -> Origin {
    Origin::parse(&format!("{LOG}/{t}/{l}")).unwrap()
}

pub fn open(dir: &Path) -> Store {
    Store::open(dir, OpenOptions::default()).expect("store opens")
}

pub fn request(t: &str, l: &str, ts: u64, payload: &[u8], parents: Vec<Parent>) -> AppendRequest {
    AppendRequest {
        tenant: tenant(t),
        ledger: ledger(l),
        position: Position::Next,
        timestamp_ms: ts,
        content_type: "application/json".into(),
        payload: payload.to_vec(),
        parents,
        idempotency_key: None,
    }
}

/// Appends and expects success.
pub fn append(store: &Store, req: AppendRequest) -> Appended {
    store.append(req).wait().expect("committed").expect("accepted")
}

pub fn verify_export(
    bytes: &[u8],
    trusted: &[TrustedKey],
    origin: &Origin,
) -> Result<ExportSummary, Failure> {
    let mut v = ExportVerifier::new(trusted.to_vec(), Some(origin.clone()));
    let body = bytes.strip_suffix(b"\n").expect("ends in newline");
    for line in body.split(|&b| b == b'\n') {
        v.push_line(line)?;
    }
    v.finish()
}

pub fn h(b: u8) -> Hash32 {
    Hash32::from_bytes([b; 32])
}

pub mod backend {
    //! A redb `StorageBackend` in memory that can lose power: it keeps the
    //! bytes written since the last `sync_data`, and at a chosen sync it
    //! fails that sync and keeps a survivor image with the unsynced writes
    //! dropped, kept or torn. It can also hold a sync until released (to fill
    //! the queue deterministically), answer ENOSPC past a byte budget, and
    //! fail exactly one write or sync and then work again (a transient error).

    use std::sync::{Arc, Condvar, Mutex};

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Loss {
        /// Nothing since the last sync reached the disk.
        DropAll,
        /// Everything reached the disk, only the sync itself failed.
        KeepAll,
        /// The first half of the unsynced writes reached the disk and the
        /// next one only half-way.
        Torn,
    }

    /// The operation a transient fault fails once.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Fault {
        Write,
        Sync,
    }

    #[derive(Debug)]
    enum Pending {
        Write(u64, Vec<u8>),
        SetLen(u64),
    }

    #[derive(Debug, Default)]
    struct State {
        current: Vec<u8>,
        durable: Vec<u8>,
        pending: Vec<Pending>,
        syncs: u64,
        crash: Option<(u64, Loss)>,
        survivor: Option<Vec<u8>>,
        dead: bool,
        gate_closed: bool,
        in_sync: bool,
        space_bytes_max: Option<u64>,
        fail_once: Option<Fault>,
    }

    #[derive(Clone, Debug, Default)]
    pub struct FaultBackend {
        state: Arc<(Mutex<State>, Condvar)>,
    }

    fn apply(image: &mut Vec<u8>, op: &Pending) {
        match op {
            Pending::Write(offset, data) => {
                let end = *offset as usize + data.len();
                if image.len() < end {
                    image.resize(end, 0);
                }
                image[*offset as usize..end].copy_from_slice(data);
            }
            Pending::SetLen(len) => image.resize(*len as usize, 0),
        }
    }

    fn dead() -> std::io::Error {
        std::io::Error::other("simulated power loss")
    }

    fn transient() -> std::io::Error {
        std::io::Error::other("simulated transient I/O error")
    }

    impl FaultBackend {
        pub fn new() -> FaultBackend {
            FaultBackend::default()
        }

        pub fn from_image(image: Vec<u8>) -> FaultBackend {
            let b = FaultBackend::default();
            {
                let mut s = b.state.0.lock().unwrap();
                s.current = image.clone();
                s.durable = image;
            }
            b
        }

        /// Fails sync number `at` (counted from 1) with `loss`.
        pub fn crash_at(&self, at: u64, loss: Loss) {
            self.state.0.lock().unwrap().crash = Some((at, loss));
        }

        pub fn syncs(&self) -> u64 {
            self.state.0.lock().unwrap().syncs
        }

        /// The disk after the simulated power loss, once it happened.
        pub fn survivor(&self) -> Option<Vec<u8>> {
            self.state.0.lock().unwrap().survivor.clone()
        }

        /// What reads see now (as after a process crash without power loss).
        pub fn current_image(&self) -> Vec<u8> {
            self.state.0.lock().unwrap().current.clone()
        }

        pub fn close_gate(&self) {
            self.state.0.lock().unwrap().gate_closed = true;
        }

        /// Waits until a sync is held at the closed gate.
        pub fn wait_in_sync(&self) {
            let (m, cv) = &*self.state;
            let mut s = m.lock().unwrap();
            while !s.in_sync {
                s = cv.wait(s).unwrap();
            }
        }

        pub fn open_gate(&self) {
            let (m, cv) = &*self.state;
            m.lock().unwrap().gate_closed = false;
            cv.notify_all();
        }

        pub fn set_space_bytes_max(&self, max: Option<u64>) {
            self.state.0.lock().unwrap().space_bytes_max = max;
        }

        /// Fails the next `fault` (write or sync) with an I/O error, once:
        /// every operation after it succeeds again, so a store that retried
        /// would succeed. A failed write changes nothing; a failed sync makes
        /// nothing durable.
        pub fn fail_once(&self, fault: Fault) {
            self.state.0.lock().unwrap().fail_once = Some(fault);
        }

        /// Whether the fault set by `fail_once` has not struck yet.
        pub fn fault_pending(&self) -> bool {
            self.state.0.lock().unwrap().fail_once.is_some()
        }
    }

    impl redb::StorageBackend for FaultBackend {
        fn len(&self) -> Result<u64, std::io::Error> {
            let s = self.state.0.lock().unwrap();
            if s.dead {
                return Err(dead());
            }
            Ok(s.current.len() as u64)
        }

        fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
            let s = self.state.0.lock().unwrap();
            if s.dead {
                return Err(dead());
            }
            let end = offset as usize + out.len();
            if end > s.current.len() {
                return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "read past end"));
            }
            out.copy_from_slice(&s.current[offset as usize..end]);
            Ok(())
        }

        fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
            let mut s = self.state.0.lock().unwrap();
            if s.dead {
                return Err(dead());
            }
            if s.space_bytes_max.is_some_and(|max| len > max) {
                return Err(std::io::Error::from_raw_os_error(28));
            }
            let op = Pending::SetLen(len);
            apply(&mut s.current, &op);
            s.pending.push(op);
            Ok(())
        }

        fn sync_data(&self) -> Result<(), std::io::Error> {
            let (m, cv) = &*self.state;
            let mut s = m.lock().unwrap();
            if s.dead {
                return Err(dead());
            }
            s.in_sync = true;
            cv.notify_all();
            while s.gate_closed {
                s = cv.wait(s).unwrap();
            }
            s.in_sync = false;
            if s.fail_once == Some(Fault::Sync) {
                s.fail_once = None;
                return Err(transient());
            }
            s.syncs += 1;
            if let Some((at, loss)) = s.crash
                && at == s.syncs
            {
                let mut image = s.durable.clone();
                let keep = match loss {
                    Loss::DropAll => 0,
                    Loss::KeepAll => s.pending.len(),
                    Loss::Torn => s.pending.len() / 2,
                };
                for op in &s.pending[..keep] {
                    apply(&mut image, op);
                }
                if loss == Loss::Torn
                    && let Some(Pending::Write(offset, data)) = s.pending.get(keep)
                {
                    apply(&mut image, &Pending::Write(*offset, data[..data.len() / 2].to_vec()));
                }
                s.survivor = Some(image);
                s.dead = true;
                return Err(dead());
            }
            s.durable = s.current.clone();
            s.pending.clear();
            Ok(())
        }

        fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
            let mut s = self.state.0.lock().unwrap();
            if s.dead {
                return Err(dead());
            }
            if s.space_bytes_max.is_some_and(|max| offset + data.len() as u64 > max) {
                return Err(std::io::Error::from_raw_os_error(28));
            }
            if s.fail_once == Some(Fault::Write) {
                s.fail_once = None;
                return Err(transient());
            }
            let op = Pending::Write(offset, data.to_vec());
            apply(&mut s.current, &op);
            s.pending.push(op);
            Ok(())
        }
    }
}
