//! Goal: an export and a bundle produced by the ledger simulator verify, and
//! obvious edits fail with the documented reason and index. Method: build a
//! small ledger with lineage across two ledgers, verify its artifacts.

use annal_chain::testkit::{Ledger, test_signer};
use annal_chain::{ExportVerifier, Failure, Reason, TrustedKey, verify_bundle};

fn verify_export(bytes: &[u8], trusted: &[TrustedKey]) -> Result<annal_chain::ExportSummary, Failure> {
    let mut v = ExportVerifier::new(trusted.to_vec(), None);
    let body = bytes.strip_suffix(b"\n").expect("ends in newline");
    for line in body.split(|&b| b == b'\n') {
        v.push_line(line)?;
    }
    v.finish()
}

#[test]
fn export_and_bundle_round_trip() {
    let signer = test_signer("annal.test", 1);
    let mut other = Ledger::new("annal.test", "acme", "invoices");
    other.append(1, "text/plain", b"invoice 1", vec![]);
    other.checkpoint(&[&signer]);
    let mut l = Ledger::new("annal.test", "acme", "orders");
    for i in 0..10u64 {
        let parents = match i {
            3 => vec![l.link(1)],
            7 => vec![l.link(2), other.link(0)],
            _ => vec![],
        };
        l.append(1000 + i, "application/json", format!("{{\"n\":{i}}}").as_bytes(), parents);
        if i % 4 == 3 {
            l.checkpoint(&[&signer]);
        }
    }
    l.checkpoint(&[&signer]);
    let trusted = vec![signer.trusted_key()];
    let export = l.export(&[signer.vkey()]);
    let summary = verify_export(&export, &trusted).expect("export verifies");
    assert_eq!((summary.records, summary.checkpoints, summary.anchored_size), (10, 3, 10));
    assert_eq!(summary.external_parents, 1);
    assert_eq!(summary.anchored_root, Some(l.tree().root(10).unwrap()));

    let attacker = test_signer("annal.test", 2);
    let err = verify_export(&export, &[attacker.trusted_key()]).unwrap_err();
    assert_eq!((err.reason, err.index), (Reason::UnknownSigner, 4));

    for seq in 0..10 {
        let bundle = l.bundle(seq, &[&other]);
        let s = verify_bundle(&bundle, &trusted, None).expect("bundle verifies");
        assert_eq!(s.seq.get(), seq);
    }
    let b = l.bundle(7, &[&other]);
    let err = verify_bundle(&b, &[attacker.trusted_key()], None).unwrap_err();
    assert_eq!(err.reason, Reason::UnknownSigner);
    let tampered =
        String::from_utf8(b).unwrap().replacen("\"timestamp_ms\":1007", "\"timestamp_ms\":1008", 1);
    let err = verify_bundle(tampered.as_bytes(), &trusted, None).unwrap_err();
    assert_eq!((err.reason, err.index), (Reason::RecordHashMismatch, 7));
}
