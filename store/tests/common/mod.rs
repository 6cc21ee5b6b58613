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
