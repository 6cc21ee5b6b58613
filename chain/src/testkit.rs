//! A ledger simulator for tests, vectors and benchmarks (feature `testkit`).
//!
//! It appends records the way the daemon does (chain link, Merkle tree,
//! lineage proofs) and emits a valid export, bundle or checkpoint. It is pure:
//! output goes to a caller-supplied sink. Not part of the verifier's TCB.

use crate::bundle::{ParentProof, write_bundle};
use crate::export::{write_checkpoint, write_end, write_header, write_record};
use crate::merkle::MemoryTree;
use crate::note::{Checkpoint, NoteSigner, SignedNote};
use crate::record::{Parent, Record, RecordFields};
use crate::types::{Hash32, LedgerName, LogName, Origin, Seq, TenantId};

/// A deterministic signer for tests: never use outside tests.
pub fn test_signer(name: &str, seed: u8) -> NoteSigner {
    NoteSigner::new(name, &[seed; 32]).expect("valid key name")
}

/// One simulated ledger: records, full tree, and the checkpoints issued.
#[derive(Debug)]
pub struct Ledger {
    origin: Origin,
    records: Vec<Record>,
    hashes: Vec<Hash32>,
    tree: MemoryTree,
    /// (size, note) in issue order.
    checkpoints: Vec<(u64, SignedNote)>,
}

impl Ledger {
    pub fn new(log: &str, tenant: &str, ledger: &str) -> Ledger {
        let origin = Origin::new(
            LogName::new(log).expect("log name"),
            TenantId::new(tenant).expect("tenant"),
            LedgerName::new(ledger).expect("ledger"),
        );
        Ledger {
            origin,
            records: Vec::new(),
            hashes: Vec::new(),
            tree: MemoryTree::new(),
            checkpoints: Vec::new(),
        }
    }

    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    pub fn len(&self) -> u64 {
        self.records.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    pub fn record(&self, seq: u64) -> &Record {
        &self.records[seq as usize]
    }

    pub fn tree(&self) -> &MemoryTree {
        &self.tree
    }

    pub fn checkpoints(&self) -> &[(u64, SignedNote)] {
        &self.checkpoints
    }

    /// Appends a record and returns its seq.
    pub fn append(
        &mut self,
        timestamp_ms: u64,
        content_type: &str,
        payload: &[u8],
        parents: Vec<Parent>,
    ) -> Seq {
        let seq = Seq::new(self.len());
        let record = Record::new(RecordFields {
            tenant: self.origin.tenant().clone(),
            ledger: self.origin.ledger().clone(),
            seq,
            timestamp_ms,
            prev: self.hashes.last().copied().unwrap_or(Hash32::ZERO),
            content_type: content_type.to_owned(),
            payload: payload.to_vec(),
            parents,
        })
        .expect("valid test record");
        let hash = record.hash();
        self.records.push(record);
        self.hashes.push(hash);
        self.tree.append(hash);
        seq
    }

    /// A lineage link to one of this ledger's records.
    pub fn link(&self, seq: u64) -> Parent {
        Parent { ledger: self.origin.ledger().clone(), seq: Seq::new(seq), hash: self.hashes[seq as usize] }
    }

    /// Signs a checkpoint at the current size with every signer given.
    pub fn checkpoint(&mut self, signers: &[&NoteSigner]) -> SignedNote {
        let size = self.len();
        let cp = Checkpoint::new(self.origin.clone(), size, self.tree.root(size).expect("size in range"));
        let mut note = cp.sign(signers[0]);
        for s in &signers[1..] {
            s.cosign(&mut note);
        }
        self.checkpoints.push((size, note.clone()));
        note
    }

    /// The whole export, with checkpoints where they were issued.
    pub fn export(&self, vkeys: &[String]) -> Vec<u8> {
        let mut out = Vec::new();
        write_header(&mut out, &self.origin, vkeys);
        let mut cps = self.checkpoints.iter().peekable();
        for seq in 0..=self.len() {
            while let Some((_, note)) = cps.next_if(|(size, _)| *size == seq) {
                write_checkpoint(&mut out, note);
            }
            if seq < self.len() {
                self.write_record_line(&mut out, seq);
            }
        }
        write_end(&mut out, self.len(), self.checkpoints.len() as u64);
        out
    }

    /// One record line, with proofs for its same-ledger parents.
    pub fn write_record_line(&self, out: &mut Vec<u8>, seq: u64) {
        let record = &self.records[seq as usize];
        let proofs: Vec<Vec<Hash32>> = record
            .parents()
            .iter()
            .map(|p| {
                if p.ledger == *self.origin.ledger() {
                    self.tree.inclusion_proof(p.seq.get(), seq).expect("parent is earlier")
                } else {
                    Vec::new()
                }
            })
            .collect();
        write_record(out, record, &self.hashes[seq as usize], &proofs);
    }

    /// A bundle for `seq` against the latest checkpoint. Cross-ledger parents
    /// are looked up in `others` and proven in their latest checkpoint.
    pub fn bundle(&self, seq: u64, others: &[&Ledger]) -> Vec<u8> {
        let (size, note) = self.checkpoints.last().expect("a checkpoint was issued");
        let record = &self.records[seq as usize];
        let inclusion = self.tree.inclusion_proof(seq, *size).expect("record is anchored");
        let parents: Vec<ParentProof> = record
            .parents()
            .iter()
            .map(|p| {
                if p.ledger == *self.origin.ledger() {
                    let inclusion = self.tree.inclusion_proof(p.seq.get(), *size).expect("parent anchored");
                    ParentProof { checkpoint: None, inclusion }
                } else {
                    let other =
                        others.iter().find(|o| *o.origin.ledger() == p.ledger).expect("parent ledger given");
                    let (osize, onote) = other.checkpoints.last().expect("parent ledger anchored");
                    let inclusion = other.tree.inclusion_proof(p.seq.get(), *osize).expect("parent anchored");
                    ParentProof { checkpoint: Some(onote.clone()), inclusion }
                }
            })
            .collect();
        let mut out = Vec::new();
        write_bundle(&mut out, &self.origin, record, note, &inclusion, &parents);
        out
    }
}

/// Streams a large synthetic export without holding it: `n` records with
/// `payload_len`-byte payloads, a checkpoint every `every` records and one at
/// the end. Memory stays O(log n); `sink` receives whole lines.
pub fn generate_export(
    signer: &NoteSigner,
    origin: &Origin,
    n: u64,
    payload_len: usize,
    every: u64,
    sink: &mut dyn FnMut(&[u8]),
) {
    assert!(every > 0);
    let mut out = Vec::with_capacity(64 * 1024);
    write_header(&mut out, origin, &[signer.vkey()]);
    let mut tree = crate::merkle::CompactRange::new();
    let mut prev = Hash32::ZERO;
    let mut payload = vec![0u8; payload_len];
    let mut checkpoints = 0;
    for seq in 0..n {
        // Cheap, deterministic, incompressible-looking payload bytes.
        let mut x = seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        for b in payload.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        let record = Record::new(RecordFields {
            tenant: origin.tenant().clone(),
            ledger: origin.ledger().clone(),
            seq: Seq::new(seq),
            timestamp_ms: 1_700_000_000_000 + seq,
            prev,
            content_type: "application/octet-stream".to_owned(),
            payload: payload.clone(),
            parents: Vec::new(),
        })
        .expect("valid record");
        let hash = record.hash();
        write_record(&mut out, &record, &hash, &[]);
        tree.append(hash);
        prev = hash;
        let size = seq + 1;
        if size.is_multiple_of(every) || size == n {
            let note = Checkpoint::new(origin.clone(), size, tree.root()).sign(signer);
            write_checkpoint(&mut out, &note);
            checkpoints += 1;
        }
        if out.len() >= 60 * 1024 {
            sink(&out);
            out.clear();
        }
    }
    write_end(&mut out, n, checkpoints);
    sink(&out);
}
