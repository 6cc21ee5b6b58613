//! The one line annal-verify prints: a sentence, or a JSON object with a
//! fixed key order. Nothing here depends on time, paths or hash-map order.

use annal_chain::{BundleSummary, CheckpointSummary, ExportSummary, Failure, Hash32};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Artifact {
    Export,
    Bundle,
    Checkpoint,
}

impl Artifact {
    fn as_str(self) -> &'static str {
        match self {
            Artifact::Export => "export",
            Artifact::Bundle => "bundle",
            Artifact::Checkpoint => "checkpoint",
        }
    }
}

#[derive(Debug)]
pub enum Outcome {
    Export(Result<ExportSummary, Failure>),
    Bundle(Result<BundleSummary, Failure>),
    Checkpoint(Result<CheckpointSummary, Failure>),
}

impl Outcome {
    fn artifact(&self) -> Artifact {
        match self {
            Outcome::Export(_) => Artifact::Export,
            Outcome::Bundle(_) => Artifact::Bundle,
            Outcome::Checkpoint(_) => Artifact::Checkpoint,
        }
    }

    fn failure(&self) -> Option<&Failure> {
        match self {
            Outcome::Export(r) => r.as_ref().err(),
            Outcome::Bundle(r) => r.as_ref().err(),
            Outcome::Checkpoint(r) => r.as_ref().err(),
        }
    }

    pub fn verified(&self) -> bool {
        self.failure().is_none()
    }
}

fn base64(hash: &Hash32) -> String {
    // The checkpoint's own spelling of a root: standard base64 with padding.
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = hash.as_bytes();
    let mut out = String::with_capacity(44);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
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

/// The human sentence, with its newline.
pub fn human(outcome: &Outcome) -> String {
    if let Some(failure) = outcome.failure() {
        return format!("{failure}\n");
    }
    let mut out = String::from("verified: ");
    match outcome {
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
            if unanchored > 0 && s.checkpoints > 0 {
                let (n, verb) = if unanchored == 1 { ("record", "is") } else { ("records", "are") };
                out += &format!("; {unanchored} {n} after the last checkpoint {verb} not anchored");
            } else if unanchored > 0 {
                let (n, verb) = if unanchored == 1 { ("record", "is") } else { ("records", "are") };
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

/// Builds one JSON object, keys in the order they are written.
struct Object {
    out: String,
}

impl Object {
    fn new() -> Object {
        Object { out: String::from("{") }
    }

    fn key(&mut self, key: &str) {
        if self.out.len() > 1 {
            self.out.push(',');
        }
        write_string(&mut self.out, key);
        self.out.push(':');
    }

    fn bool(&mut self, key: &str, value: bool) {
        self.key(key);
        self.out += if value { "true" } else { "false" };
    }

    fn u64(&mut self, key: &str, value: Option<u64>) {
        self.key(key);
        match value {
            Some(v) => self.out += &v.to_string(),
            None => self.out += "null",
        }
    }

    fn str(&mut self, key: &str, value: Option<&str>) {
        self.key(key);
        match value {
            Some(v) => write_string(&mut self.out, v),
            None => self.out += "null",
        }
    }

    fn strs(&mut self, key: &str, values: Option<&[String]>) {
        self.key(key);
        let Some(values) = values else {
            self.out += "null";
            return;
        };
        self.out.push('[');
        for (i, v) in values.iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            write_string(&mut self.out, v);
        }
        self.out.push(']');
    }

    fn finish(mut self) -> String {
        self.out += "}\n";
        self.out
    }
}

/// Appends `text` as a JSON string (RFC 8259): `"` and `\` escaped, control
/// characters as their short escape or `\u00XX`, everything else verbatim.
pub fn write_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The JSON object, with its newline.
pub fn json(outcome: &Outcome) -> String {
    let mut o = Object::new();
    let failure = outcome.failure();
    let has_lines = outcome.artifact() == Artifact::Export;
    o.bool("verified", failure.is_none());
    o.str("artifact", Some(outcome.artifact().as_str()));
    o.str("reason", failure.map(|f| f.reason.as_str()));
    o.u64("index", failure.map(|f| f.index));
    o.u64("line", failure.filter(|_| has_lines).map(|f| f.line));
    match outcome {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_are_escaped() {
        let check = |text: &str, expected: &str| {
            let mut out = String::new();
            write_string(&mut out, text);
            assert_eq!(out, expected, "{text:?}");
        };
        check("plain", r#""plain""#);
        check("q\"b\\", r#""q\"b\\""#);
        check("a\nb\rc\td", r#""a\nb\rc\td""#);
        check("\u{0}\u{8}\u{c}\u{1f}", r#""\u0000\b\f\u001f""#);
        check("é—/", "\"é—/\"");
    }

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
}
