//! The verdict annal-verify prints, and `POST /v1/verify` answers, for one
//! artifact: a sentence, or a JSON object with a fixed key order. Both
//! callers use this one writer so their answers cannot drift apart; nothing
//! here depends on time, paths or hash-map order.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::bundle::{BundleSummary, CheckpointSummary};
use crate::export::ExportSummary;
use crate::failure::Failure;
use crate::json::{write_string, write_u64};
use crate::types::Hash32;

/// The kind of artifact a verdict is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Artifact {
    Export,
    Bundle,
    Checkpoint,
}

impl Artifact {
    /// The `artifact` member of the JSON verdict.
    pub const fn as_str(self) -> &'static str {
        match self {
            Artifact::Export => "export",
            Artifact::Bundle => "bundle",
            Artifact::Checkpoint => "checkpoint",
        }
    }
}

/// What verifying one artifact gave.
#[derive(Debug)]
pub enum Outcome {
    Export(Result<ExportSummary, Failure>),
    Bundle(Result<BundleSummary, Failure>),
    Checkpoint(Result<CheckpointSummary, Failure>),
}

impl Outcome {
    pub fn artifact(&self) -> Artifact {
        match self {
            Outcome::Export(_) => Artifact::Export,
            Outcome::Bundle(_) => Artifact::Bundle,
            Outcome::Checkpoint(_) => Artifact::Checkpoint,
        }
    }

    pub fn failure(&self) -> Option<&Failure> {
        match self {
            Outcome::Export(r) => r.as_ref().err(),
            Outcome::Bundle(r) => r.as_ref().err(),
            Outcome::Checkpoint(r) => r.as_ref().err(),
        }
    }

    pub fn verified(&self) -> bool {
        self.failure().is_none()
    }

    /// The human sentence, with its newline.
    pub fn human(&self) -> String {
        if let Some(failure) = self.failure() {
            return format!("{failure}\n");
        }
        let mut out = String::from("verified: ");
        match self {
            Outcome::Export(Ok(s)) => {
                out += &format!(
                    "{}, {}",
                    plural(s.records, "record", "records"),
                    plural(s.checkpoints, "checkpoint", "checkpoints")
                );
                match &s.anchored_root {
                    Some(root) => out += &format!(", root {}", base64(root)),
                    None => out += ", no signed root",
                }
                let unanchored = s.records - s.anchored_size;
                let (n, verb) = if unanchored == 1 { ("record", "is") } else { ("records", "are") };
                if unanchored > 0 && s.checkpoints > 0 {
                    out += &format!("; {unanchored} {n} after the last checkpoint {verb} not anchored");
                } else if unanchored > 0 {
                    out += &format!("; {unanchored} {n} {verb} not anchored by any checkpoint");
                }
                if s.external_parents > 0 {
                    let links =
                        plural(s.external_parents, "cross-ledger lineage link", "cross-ledger lineage links");
                    out += &format!("; {links} not proven by this export");
                }
            }
            Outcome::Bundle(Ok(s)) => {
                out += &format!(
                    "record {} of {}, hash {}, in checkpoint size {} root {}",
                    s.seq,
                    s.origin,
                    s.hash,
                    s.checkpoint_size,
                    base64(&s.checkpoint_root)
                );
                if s.parents > 0 {
                    out += &format!("; {} proven", plural(s.parents, "lineage parent", "lineage parents"));
                }
            }
            Outcome::Checkpoint(Ok(s)) => {
                out += &format!(
                    "checkpoint {} size {} root {}, signed by {}",
                    s.origin,
                    s.size,
                    base64(&s.root),
                    signers(s).join(", ")
                );
            }
            _ => unreachable!("failures returned above"),
        }
        out.push('\n');
        out
    }

    /// The JSON object, with its newline. Keys in this fixed order:
    /// `verified`, `artifact`, `reason`, `index`, `line`, then the
    /// artifact's own members (null when verification failed).
    pub fn json(&self) -> String {
        let mut o = Object::new();
        let failure = self.failure();
        let has_lines = self.artifact() == Artifact::Export;
        o.bool("verified", failure.is_none());
        o.str("artifact", Some(self.artifact().as_str()));
        o.str("reason", failure.map(|f| f.reason.as_str()));
        o.u64("index", failure.map(|f| f.index));
        o.u64("line", failure.filter(|_| has_lines).map(|f| f.line));
        match self {
            Outcome::Export(r) => {
                let s = r.as_ref().ok();
                o.str("origin", s.map(|s| s.origin.to_string()).as_deref());
                o.u64("records", s.map(|s| s.records));
                o.u64("checkpoints", s.map(|s| s.checkpoints));
                o.u64("anchored_size", s.map(|s| s.anchored_size));
                o.str("root", s.and_then(|s| s.anchored_root.as_ref()).map(base64).as_deref());
                o.u64("unanchored", s.map(|s| s.records - s.anchored_size));
                o.u64("external_parents", s.map(|s| s.external_parents));
            }
            Outcome::Bundle(r) => {
                let s = r.as_ref().ok();
                o.str("origin", s.map(|s| s.origin.to_string()).as_deref());
                o.u64("seq", s.map(|s| s.seq.get()));
                o.str("hash", s.map(|s| s.hash.to_hex()).as_deref());
                o.u64("checkpoint_size", s.map(|s| s.checkpoint_size));
                o.str("root", s.map(|s| base64(&s.checkpoint_root)).as_deref());
                o.u64("parents", s.map(|s| s.parents));
            }
            Outcome::Checkpoint(r) => {
                let s = r.as_ref().ok();
                o.str("origin", s.map(|s| s.origin.to_string()).as_deref());
                o.u64("size", s.map(|s| s.size));
                o.str("root", s.map(|s| base64(&s.root)).as_deref());
                o.strs("signers", s.map(signers).as_deref());
            }
        }
        o.finish()
    }
}

/// The checkpoint's own spelling of a root: standard base64 with padding.
fn base64(hash: &Hash32) -> String {
    STANDARD.encode(hash.as_bytes())
}

/// The keys that signed, each once, in the order they were trusted: one
/// public key given twice (say as `ed25519:` and as a named vkey) is one signer.
fn signers(s: &CheckpointSummary) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(s.signers.len());
    for key in &s.signers {
        if !out.contains(key) {
            out.push(key.clone());
        }
    }
    out
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Builds one JSON object, keys in the order they are written.
struct Object {
    out: Vec<u8>,
}

impl Object {
    fn new() -> Object {
        Object { out: vec![b'{'] }
    }

    fn key(&mut self, key: &str) {
        if self.out.len() > 1 {
            self.out.push(b',');
        }
        write_string(&mut self.out, key);
        self.out.push(b':');
    }

    fn null(&mut self) {
        self.out.extend_from_slice(b"null");
    }

    fn bool(&mut self, key: &str, value: bool) {
        self.key(key);
        self.out.extend_from_slice(if value { b"true" } else { b"false" });
    }

    fn u64(&mut self, key: &str, value: Option<u64>) {
        self.key(key);
        match value {
            Some(v) => write_u64(&mut self.out, v),
            None => self.null(),
        }
    }

    fn str(&mut self, key: &str, value: Option<&str>) {
        self.key(key);
        match value {
            Some(v) => write_string(&mut self.out, v),
            None => self.null(),
        }
    }

    fn strs(&mut self, key: &str, values: Option<&[String]>) {
        self.key(key);
        let Some(values) = values else { return self.null() };
        self.out.push(b'[');
        for (i, v) in values.iter().enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            write_string(&mut self.out, v);
        }
        self.out.push(b']');
    }

    fn finish(mut self) -> String {
        self.out.extend_from_slice(b"}\n");
        // Built only from `&str` pieces and ASCII punctuation.
        String::from_utf8(self.out).expect("JSON built from strings is UTF-8")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failure::Reason;
    use crate::types::{Origin, Seq};

    #[test]
    fn base64_matches_checkpoint_spelling() {
        let check =
            |bytes: [u8; 32], expected: &str| assert_eq!(base64(&Hash32::from_bytes(bytes)), expected);
        check([0; 32], "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=");
        check([0xff; 32], "//////////////////////////////////////////8=");
        let mut b = [0u8; 32];
        b[..3].copy_from_slice(b"Man");
        b[31] = 1;
        check(b, "TWFuAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAE=");
    }

    /// Known answers: the exact bytes both the CLI and the daemon print.
    #[test]
    fn bundle_verdicts_have_fixed_bytes() {
        let origin = Origin::parse("annal.local/acme/orders").expect("origin");
        let ok = Outcome::Bundle(Ok(BundleSummary {
            origin,
            seq: Seq::new(6),
            hash: Hash32::from_bytes([0xab; 32]),
            checkpoint_size: 7,
            checkpoint_root: Hash32::from_bytes([0; 32]),
            parents: 1,
        }));
        let hash = "ab".repeat(32);
        let root = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
        assert_eq!(
            ok.json(),
            format!(
                "{{\"verified\":true,\"artifact\":\"bundle\",\"reason\":null,\"index\":null,\"line\":null,\
                 \"origin\":\"annal.local/acme/orders\",\"seq\":6,\"hash\":\"{hash}\",\
                 \"checkpoint_size\":7,\"root\":\"{root}\",\"parents\":1}}\n"
            )
        );
        assert_eq!(
            ok.human(),
            format!(
                "verified: record 6 of annal.local/acme/orders, hash {hash}, in checkpoint size 7 root \
                 {root}; 1 lineage parent proven\n"
            )
        );
        let failed = Outcome::Bundle(Err(Failure::new(Reason::RecordHashMismatch, 6, 0)));
        assert_eq!(
            failed.json(),
            "{\"verified\":false,\"artifact\":\"bundle\",\"reason\":\"record_hash_mismatch\",\"index\":6,\
             \"line\":null,\"origin\":null,\"seq\":null,\"hash\":null,\"checkpoint_size\":null,\
             \"root\":null,\"parents\":null}\n"
        );
        assert_eq!(
            failed.human(),
            "FAILED at index 6: record_hash_mismatch: stated hash does not match the record's contents\n"
        );
    }
}
