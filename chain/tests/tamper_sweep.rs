//! Goal: no single-byte edit, truncation, or line deletion, duplication or
//! swap of an export goes unnoticed, and every rejection names the failure
//! index that chain/src/failure.rs and export.rs promise.
//!
//! Method: build a 64-record export with the testkit (checkpoints every 8
//! records, the last at the end; same-ledger and cross-ledger lineage
//! parents), check that it verifies, then mutate it exhaustively. Every
//! byte gets three mutations: xor 0x01 (a neighbouring value: another hex
//! digit, base64 letter or decimal digit), xor 0x20 (the ASCII case flip,
//! which a lenient hex or base64 decoder would let through) and replacement
//! by a decimal digit (valid in every hex, base64 and number field). Each
//! mutated stream goes through the CLI's reading rule (common::verify_stream:
//! complete lines are pushed, `finish` only if the stream ends in `\n`, a
//! cut-off last line is `truncated` unless it is data after the end line)
//! and must be rejected. The expected failure is derived from the line and the field
//! the mutated byte sits in, never from the verifier's own answer:
//!
//! * the reason must be one the field can produce (e.g. a `prev` digit gives
//!   `chain_mismatch`; a non-hex byte in a hex field gives `malformed`);
//! * record-scoped reasons carry the mutated record's seq (for `seq_gap` and
//!   `seq_duplicate` that is the expected seq, which is the same one because
//!   every earlier line is intact); checkpoint-scoped reasons carry the
//!   number of records before the checkpoint line; `malformed` carries the
//!   1-based line number; `count_mismatch` and `truncated` carry the number
//!   of records read.
//!
//! A mutated `hash` value fails on its own line (`record_hash_mismatch`): the
//! verifier compares the stated hash with the recomputed one before the next
//! record's `prev` is ever read. A mutated `\n` joins two lines, which is
//! `malformed` at the first of them, except the final `\n`, whose loss leaves
//! a cut-off end line: `truncated` at 64.
//!
//! The header's origin is the one place where the failure lands elsewhere,
//! because no expected origin is given (as with the CLI's default): a valid
//! but different origin is caught by the first line that binds it, which is
//! record 0's hash when the tenant or ledger changed (`record_hash_mismatch`
//! at 0) and the first checkpoint when only the log name changed
//! (`origin_mismatch` at 8). With `--expect-origin` the same edits fail on
//! line 1; that is checked too.

mod common;

use std::collections::BTreeMap;

use annal_chain::{ExportVerifier, Failure, Origin, Reason};
use common::{CHECKPOINT_EVERY, Fixture, RECORDS, trusted, verify_stream};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Header,
    /// A record line and its seq.
    Record(u64),
    /// A checkpoint line and the number of records before it.
    Checkpoint(u64),
    End,
}

/// One line of the pristine export: `bytes[start..end]`, then `\n` at `end`.
#[derive(Clone, Copy, Debug)]
struct Line {
    number: u64,
    start: usize,
    end: usize,
    kind: Kind,
}

fn split_lines(export: &[u8]) -> Vec<Line> {
    let mut lines = Vec::new();
    let mut start = 0;
    let mut records = 0;
    for (i, &b) in export.iter().enumerate() {
        if b != b'\n' {
            continue;
        }
        let text = std::str::from_utf8(&export[start..i]).unwrap();
        let kind = if text.starts_with(r#"{"type":"header","#) {
            Kind::Header
        } else if let Some(rest) = text.strip_prefix(r#"{"type":"record","seq":"#) {
            let seq: u64 = rest[..rest.find(',').unwrap()].parse().unwrap();
            assert_eq!(seq, records, "fixture records are in order");
            records += 1;
            Kind::Record(seq)
        } else if text.starts_with(r#"{"type":"checkpoint","#) {
            Kind::Checkpoint(records)
        } else {
            assert!(text.starts_with(r#"{"type":"end","#), "{text}");
            Kind::End
        };
        lines.push(Line { number: lines.len() as u64 + 1, start, end: i, kind });
        start = i + 1;
    }
    assert_eq!(start, export.len(), "export ends with a newline");
    lines
}

/// Which part of a line a byte belongs to; this decides the reasons a
/// mutation there may produce.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Field {
    /// JSON punctuation, member names, the `type` value.
    Structure,
    HeaderFormat,
    HeaderOrigin,
    HeaderKeys,
    Seq,
    Timestamp,
    Prev,
    ContentType,
    Payload,
    Parents,
    Hash,
    ParentProofs,
    NoteBody,
    NoteSignatures,
    EndCounts,
    Newline,
}

/// Value spans of one pristine line, as (field, byte range within the line).
fn fields(kind: Kind, text: &str) -> Vec<(Field, std::ops::Range<usize>)> {
    let after =
        |pat: &str| text.find(pat).map(|i| i + pat.len()).unwrap_or_else(|| panic!("{pat} in {text}"));
    let until = |from: usize, stop: char| from..from + text[from..].find(stop).unwrap();
    match kind {
        Kind::Header => vec![
            (Field::HeaderFormat, after(r#""format":"#)..after(r#""format":1,"#)),
            (Field::HeaderOrigin, until(after(r#""origin":""#), '"')),
            (Field::HeaderKeys, until(after(r#""keys":["#), ']')),
        ],
        Kind::Record(_) => {
            let hash_at = text.rfind(r#"],"hash":""#).unwrap() + r#"],"hash":""#.len();
            let parents_at = after(r#","parents":["#);
            let mut out = vec![
                (Field::Seq, until(after(r#""seq":"#), ',')),
                (Field::Timestamp, until(after(r#""timestamp_ms":"#), ',')),
                (Field::Prev, until(after(r#""prev":""#), '"')),
                (Field::ContentType, until(after(r#""content_type":""#), '"')),
                (Field::Payload, until(after(r#""payload":""#), '"')),
                (Field::Parents, parents_at..hash_at - r#"],"hash":""#.len()),
                (Field::Hash, hash_at..hash_at + 64),
            ];
            if let Some(i) = text.find(r#","parent_proofs":["#) {
                let from = i + r#","parent_proofs":["#.len();
                out.push((Field::ParentProofs, from..text.len() - 2));
            }
            out
        }
        Kind::Checkpoint(_) => {
            let from = after(r#""note":""#);
            let blank = text.find(r"\n\n").unwrap();
            vec![(Field::NoteBody, from..blank + 2), (Field::NoteSignatures, blank + 2..text.len() - 2)]
        }
        Kind::End => vec![
            (Field::EndCounts, until(after(r#""records":"#), ',')),
            (Field::EndCounts, until(after(r#""checkpoints":"#), '}')),
        ],
    }
}

fn field_at(spans: &[(Field, std::ops::Range<usize>)], at: usize) -> Field {
    spans.iter().find(|(_, r)| r.contains(&at)).map_or(Field::Structure, |(f, _)| *f)
}

fn is_hex(b: u8) -> bool {
    b.is_ascii_digit() || (b'a'..=b'f').contains(&b)
}

/// What one mutation must produce: the reasons allowed, and the index each
/// reason must carry.
#[derive(Debug)]
struct Expected {
    reasons: Vec<Reason>,
    line: Line,
}

impl Expected {
    /// The index rule of failure.rs applied to the mutated line.
    fn index(&self, reason: Reason) -> u64 {
        match (reason, self.line.kind) {
            (Reason::Malformed | Reason::UnsupportedVersion | Reason::TrailingData, _) => self.line.number,
            (Reason::CountMismatch | Reason::Truncated, _) => RECORDS,
            (_, Kind::Record(seq)) => seq,
            (_, Kind::Checkpoint(before)) => before,
            (_, kind) => panic!("{reason} cannot come from a {kind:?} line"),
        }
    }
}

/// The reasons a mutation `old -> new` in `field` may produce. Where the byte
/// class decides the outcome (hex, decimal), exactly one reason is allowed.
fn allowed(field: Field, old: u8, new: u8, digits: &str, at_in_digits: usize) -> Vec<Reason> {
    use Reason::*;
    let numeric = |semantic: &[Reason]| {
        // A digit that keeps the number in its one spelling changes its
        // value; anything else (a letter, a leading zero) is malformed.
        let leading_zero = at_in_digits == 0 && new == b'0' && digits.len() > 1;
        if new.is_ascii_digit() && !leading_zero { semantic.to_vec() } else { vec![Malformed] }
    };
    let hex = |semantic: Reason| {
        if is_hex(old) { vec![if is_hex(new) { semantic } else { Malformed }] } else { vec![Malformed] }
    };
    match field {
        Field::Structure | Field::HeaderKeys => vec![Malformed],
        // The format is `1` followed by `,`: any digit in either place makes
        // a valid number other than 1 (read before the comma is looked for).
        Field::HeaderFormat => vec![if new.is_ascii_digit() { UnsupportedVersion } else { Malformed }],
        Field::HeaderOrigin => unreachable!("handled by header_origin_expectation"),
        Field::Seq => numeric(&[SeqGap, SeqDuplicate]),
        Field::Timestamp => numeric(&[RecordHashMismatch]),
        Field::EndCounts => numeric(&[CountMismatch]),
        Field::Prev => hex(ChainMismatch),
        Field::Hash => hex(RecordHashMismatch),
        Field::ParentProofs => hex(LineageMismatch),
        // Printable ASCII stays a valid content type; a control byte is
        // refused by the JSON string reader.
        Field::ContentType => {
            vec![if (0x20..0x7f).contains(&new) && new != b'"' && new != b'\\' {
                RecordHashMismatch
            } else {
                Malformed
            }]
        }
        // A base64 letter may still be refused when it sets padding bits.
        Field::Payload => vec![RecordHashMismatch, Malformed],
        // Ledger names, seqs and hashes of the lineage links: a changed link
        // changes the record hash, unless it now names a later same-ledger
        // record (lineage) or is not valid at all.
        Field::Parents => vec![RecordHashMismatch, LineageMismatch, Malformed],
        // The signature covers origin, size and root; the origin is also
        // compared with the header's before the signature is checked.
        Field::NoteBody => vec![OriginMismatch, BadSignature, Malformed],
        // A changed key name or key id no longer names the trusted key; a
        // changed signature does not verify under it.
        Field::NoteSignatures => vec![UnknownSigner, BadSignature, Malformed],
        Field::Newline => unreachable!("handled by the caller"),
    }
}

/// For a mutation in the header's origin value: the single expected failure
/// (reason, index) without and with an expected origin.
fn header_origin_expectation(original: &Origin, mutated_line: &[u8]) -> [(Reason, u64); 2] {
    let text = std::str::from_utf8(mutated_line).ok();
    let origin = text.and_then(|t| {
        let from = t.find(r#""origin":""#)? + r#""origin":""#.len();
        let to = from + t[from..].find('"')?;
        Origin::parse(&t[from..to])
    });
    match origin {
        None => [(Reason::Malformed, 1), (Reason::Malformed, 1)],
        Some(o) => {
            assert_ne!(o, *original);
            let first = if o.tenant() != original.tenant() || o.ledger() != original.ledger() {
                (Reason::RecordHashMismatch, 0)
            } else {
                (Reason::OriginMismatch, CHECKPOINT_EVERY)
            };
            [first, (Reason::OriginMismatch, 1)]
        }
    }
}

type Mutation = (&'static str, fn(u8) -> u8);

const MUTATIONS: [Mutation; 3] = [
    ("xor 0x01", |b| b ^ 0x01),
    ("xor 0x20", |b| b ^ 0x20),
    ("digit", |b| if b == b'7' { b'3' } else { b'7' }),
];

/// Tallies of one sweep, printed at the end (run with --nocapture to see them).
#[derive(Default)]
struct Tally {
    tried: u64,
    rejected: u64,
    by_reason: BTreeMap<&'static str, u64>,
    by_field: BTreeMap<String, u64>,
    problems: Vec<String>,
}

impl Tally {
    fn record(
        &mut self,
        what: String,
        got: Result<annal_chain::ExportSummary, Failure>,
        check: impl FnOnce(Failure) -> Result<(), String>,
    ) {
        self.tried += 1;
        match got {
            Ok(_) => self.problems.push(format!("{what}: ACCEPTED")),
            Err(f) => {
                self.rejected += 1;
                *self.by_reason.entry(f.reason.as_str()).or_default() += 1;
                if let Err(msg) = check(f) {
                    self.problems.push(format!("{what}: {msg}"));
                }
            }
        }
    }

    fn merge(&mut self, other: Tally) {
        self.tried += other.tried;
        self.rejected += other.rejected;
        for (k, v) in other.by_reason {
            *self.by_reason.entry(k).or_default() += v;
        }
        for (k, v) in other.by_field {
            *self.by_field.entry(k).or_default() += v;
        }
        self.problems.extend(other.problems);
    }

    fn finish(self, name: &str) {
        println!("{name}: {} tried, {} rejected", self.tried, self.rejected);
        for (reason, n) in &self.by_reason {
            println!("  {reason:>22}: {n}");
        }
        for (field, n) in &self.by_field {
            println!("  field {field:>16}: {n}");
        }
        let shown: Vec<&String> = self.problems.iter().take(40).collect();
        assert!(
            self.problems.is_empty(),
            "{name}: {} problems, first ones:\n{shown:#?}",
            self.problems.len()
        );
        assert_eq!(self.tried, self.rejected);
    }
}

fn pristine() -> (Fixture, Vec<u8>, Vec<Line>) {
    let fixture = Fixture::build();
    let export = fixture.export();
    let lines = split_lines(&export);
    (fixture, export, lines)
}

#[test]
fn pristine_export_verifies() {
    let (fixture, export, lines) = pristine();
    let summary = verify_stream(&export, &trusted(), Some(fixture.orders.origin())).expect("verifies");
    assert_eq!(summary.records, RECORDS);
    assert_eq!(summary.checkpoints, RECORDS / CHECKPOINT_EVERY);
    assert_eq!(summary.anchored_size, RECORDS);
    assert_eq!(summary.anchored_root, fixture.orders.tree().root(RECORDS));
    assert_eq!(summary.root, fixture.orders.tree().root(RECORDS).unwrap());
    assert_eq!(summary.external_parents, 2);
    assert_eq!(lines.len() as u64, 1 + RECORDS + RECORDS / CHECKPOINT_EVERY + 1);
}

/// Sweeps `mutation` over every byte, on every core: each run re-verifies
/// the intact lines before the mutated one, so this is the suite's cost.
fn sweep(mutation: Mutation) {
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 4);
    let parts = std::thread::scope(|s| {
        let handles: Vec<_> =
            (0..workers).map(|w| s.spawn(move || sweep_part(mutation, w, workers))).collect();
        handles.into_iter().map(|h| h.join().expect("sweep worker")).collect::<Vec<_>>()
    });
    let mut tally = Tally::default();
    for part in parts {
        tally.merge(part);
    }
    tally.finish(&format!("byte sweep {}", mutation.0));
}

/// The lines whose index is `worker` modulo `workers` (interleaved, so the
/// cheap early lines and the costly late ones are shared out evenly).
fn sweep_part(mutation: Mutation, worker: usize, workers: usize) -> Tally {
    let (fixture, mut export, lines) = pristine();
    let trusted = trusted();
    let origin = fixture.orders.origin().clone();
    let mut tally = Tally::default();
    for line in lines.iter().skip(worker).step_by(workers) {
        let text = std::str::from_utf8(&export[line.start..line.end]).unwrap().to_owned();
        let spans = fields(line.kind, &text);
        for at in line.start..=line.end {
            let old = export[at];
            let new = (mutation.1)(old);
            assert_ne!(old, new);
            export[at] = new;
            let rel = at - line.start;
            let field = if at == line.end { Field::Newline } else { field_at(&spans, rel) };
            *tally.by_field.entry(format!("{field:?}")).or_default() += 1;
            let what = format!(
                "{} at byte {at} (line {}, {field:?}, {old:#04x}->{new:#04x})",
                mutation.0, line.number
            );
            let got = verify_stream(&export, &trusted, None);
            match field {
                Field::Newline => {
                    let expected = if at == export.len() - 1 {
                        (Reason::Truncated, RECORDS)
                    } else {
                        (Reason::Malformed, line.number)
                    };
                    tally.record(what, got, |f| check_exact(f, expected));
                }
                Field::HeaderOrigin => {
                    let [plain, expecting] =
                        header_origin_expectation(&origin, &export[line.start..line.end]);
                    tally.record(what.clone(), got, |f| check_exact(f, plain));
                    let got = verify_stream(&export, &trusted, Some(&origin));
                    tally.record(format!("{what} with expected origin"), got, |f| check_exact(f, expecting));
                }
                _ => {
                    let span = spans.iter().find(|(_, r)| r.contains(&rel));
                    let (digits, at_in_digits) =
                        span.map_or(("", 0), |(_, r)| (&text[r.clone()], rel - r.start));
                    let expected =
                        Expected { reasons: allowed(field, old, new, digits, at_in_digits), line: *line };
                    tally.record(what, got, |f| {
                        if !expected.reasons.contains(&f.reason) {
                            return Err(format!("got {f:?}, expected one of {:?}", expected.reasons));
                        }
                        check_exact(f, (f.reason, expected.index(f.reason)))
                    });
                }
            }
            export[at] = old;
        }
    }
    tally
}

fn check_exact(f: Failure, (reason, index): (Reason, u64)) -> Result<(), String> {
    if (f.reason, f.index) == (reason, index) {
        Ok(())
    } else {
        Err(format!(
            "got {} at index {} (line {}), expected {reason} at index {index}",
            f.reason, f.index, f.line
        ))
    }
}

#[test]
fn every_byte_xor_01_is_rejected_at_its_index() {
    sweep(MUTATIONS[0]);
}

#[test]
fn every_byte_case_flip_is_rejected_at_its_index() {
    sweep(MUTATIONS[1]);
}

#[test]
fn every_byte_replaced_by_a_digit_is_rejected_at_its_index() {
    sweep(MUTATIONS[2]);
}

/// Joins lines back into a stream, each with its `\n`.
fn join(lines: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for l in lines {
        out.extend_from_slice(l);
        out.push(b'\n');
    }
    out
}

/// The expected failure of deleting line `i` (0-based), from the kinds of
/// the line and its successor.
fn expect_delete(kinds: &[Kind], i: usize) -> (Reason, u64) {
    match (kinds[i], kinds.get(i + 1)) {
        // The first record arrives where the header must be.
        (Kind::Header, _) => (Reason::Malformed, 1),
        // Seq s is missing: the next record is past it, or the checkpoint
        // after it counts one record more than were read.
        (Kind::Record(s), Some(Kind::Record(_))) => (Reason::SeqGap, s),
        (Kind::Record(s), Some(Kind::Checkpoint(_))) => (Reason::AnchorMismatch, s),
        // Checkpoints are counted only by the (unsigned) end line.
        (Kind::Checkpoint(_), _) => (Reason::CountMismatch, RECORDS),
        (Kind::End, _) => (Reason::Truncated, RECORDS),
        other => panic!("unexpected {other:?}"),
    }
}

fn expect_duplicate(kinds: &[Kind], i: usize) -> (Reason, u64) {
    match kinds[i] {
        Kind::Header => (Reason::Malformed, 2),
        Kind::Record(s) => (Reason::SeqDuplicate, s + 1),
        // Same size and root again: consistent, but not increasing.
        Kind::Checkpoint(before) => (Reason::CheckpointOrder, before),
        // The copy is line i+2, after the end line.
        Kind::End => (Reason::TrailingData, i as u64 + 2),
    }
}

/// The expected failure of swapping lines `i` and `i + 1`.
fn expect_swap(kinds: &[Kind], i: usize) -> (Reason, u64) {
    match (kinds[i], kinds[i + 1]) {
        (Kind::Header, _) => (Reason::Malformed, 1),
        (Kind::Record(s), Kind::Record(_)) => (Reason::SeqGap, s),
        // The checkpoint for s+1 records arrives after only s.
        (Kind::Record(s), Kind::Checkpoint(_)) => (Reason::AnchorMismatch, s),
        // The checkpoint for `before` records arrives after one more.
        (Kind::Checkpoint(before), Kind::Record(_)) => (Reason::AnchorMismatch, before + 1),
        // The end line arrives one checkpoint short.
        (Kind::Checkpoint(_), Kind::End) => (Reason::CountMismatch, RECORDS),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn every_line_deleted_duplicated_or_swapped_is_rejected_at_its_index() {
    let (_fixture, export, lines) = pristine();
    let trusted = trusted();
    let slices: Vec<&[u8]> = lines.iter().map(|l| &export[l.start..l.end]).collect();
    let kinds: Vec<Kind> = lines.iter().map(|l| l.kind).collect();
    let mut tally = Tally::default();
    for i in 0..slices.len() {
        let mut deleted = slices.clone();
        deleted.remove(i);
        let got = verify_stream(&join(&deleted), &trusted, None);
        tally.record(format!("delete line {}", i + 1), got, |f| check_exact(f, expect_delete(&kinds, i)));

        let mut duplicated = slices.clone();
        duplicated.insert(i, slices[i]);
        let got = verify_stream(&join(&duplicated), &trusted, None);
        tally.record(format!("duplicate line {}", i + 1), got, |f| {
            check_exact(f, expect_duplicate(&kinds, i))
        });

        if i + 1 < slices.len() {
            let mut swapped = slices.clone();
            swapped.swap(i, i + 1);
            let got = verify_stream(&join(&swapped), &trusted, None);
            tally.record(format!("swap lines {} and {}", i + 1, i + 2), got, |f| {
                check_exact(f, expect_swap(&kinds, i))
            });
        }
    }
    // Anything after the end line, even an empty line or a cut-off one.
    let n = slices.len() as u64;
    for (extra, expected) in [
        (&b"\n"[..], (Reason::TrailingData, n + 1)),
        (b"x", (Reason::TrailingData, n + 1)),
        (b"{}\n", (Reason::TrailingData, n + 1)),
    ] {
        let mut bytes = export.clone();
        bytes.extend_from_slice(extra);
        let got = verify_stream(&bytes, &trusted, None);
        tally.record(format!("append {extra:?}"), got, |f| check_exact(f, expected));
    }
    tally.finish("line edits");
}

/// Records whose line, newline included, lies wholly before byte `cut`.
fn records_before(lines: &[Line], cut: usize) -> u64 {
    lines.iter().filter(|l| l.end < cut && matches!(l.kind, Kind::Record(_))).count() as u64
}

/// Cutting the export at any byte offset is `truncated`, at the number of
/// complete records before the cut.
///
/// A full harness run re-verifies everything before the cut, so running one
/// per offset would cost as much as a whole byte sweep. Instead: (1) an
/// independent harness run at every line boundary and at the first, middle
/// and last byte of every line, and at every offset of the first two and last
/// two lines (the cut end line is the case the CLI's rule exists for); (2) at
/// every offset of every line, the cut-off line itself, pushed into a
/// verifier that has read the intact lines before it, must be refused:
/// whatever that push says, the harness then reports `truncated`, so what
/// matters is that no prefix of a line is ever taken for a whole line (and
/// that none panics). Only `Err` is asserted in (2), since the verifier is
/// reused after a refusal and its line counter moves on.
#[test]
fn truncation_at_every_byte_offset_is_rejected() {
    let (_fixture, export, lines) = pristine();
    let trusted = trusted();
    let mut tally = Tally::default();
    let n = lines.len();
    let mut cuts: Vec<usize> = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        if i < 2 || i + 2 >= n {
            cuts.extend(l.start..=l.end);
        } else {
            cuts.extend([l.start, l.start + 1, (l.start + l.end) / 2, l.end]);
        }
    }
    for cut in cuts {
        let got = verify_stream(&export[..cut], &trusted, None);
        tally.record(format!("cut at {cut}"), got, |f| {
            check_exact(f, (Reason::Truncated, records_before(&lines, cut)))
        });
    }
    let mut refused = 0u64;
    for (i, line) in lines.iter().enumerate() {
        let mut v = ExportVerifier::new(trusted.clone(), None);
        for before in &lines[..i] {
            v.push_line(&export[before.start..before.end]).expect("intact line");
        }
        for cut in line.start + 1..line.end {
            assert!(
                v.push_line(&export[line.start..cut]).is_err(),
                "line {} cut to {} bytes accepted",
                line.number,
                cut - line.start
            );
            refused += 1;
        }
    }
    println!("truncation: {} full runs; {refused} cut-off lines refused", tally.tried);
    tally.finish("truncation");
}

/// Hand-built exports at the edges of the format: each with the outcome
/// failure.rs and docs/FORMAT.md give for it. `Ok(n)` is verified with `n`
/// records.
#[test]
fn edge_cases_give_documented_outcomes() {
    use annal_chain::testkit::Ledger;
    use annal_chain::{Checkpoint, TrustedKey, empty_root, write_checkpoint, write_end, write_header};
    use common::{LOG, attacker, signer};

    let (fixture, export, _) = pristine();
    let origin = fixture.orders.origin().clone();
    let real = signer();
    let vkeys = vec![real.vkey()];
    let check = |name: &str,
                 bytes: &[u8],
                 keys: Vec<TrustedKey>,
                 expect: Option<&Origin>,
                 expected: Result<u64, (Reason, u64)>| {
        let got = verify_stream(bytes, &keys, expect).map(|s| s.records).map_err(|f| (f.reason, f.index));
        assert_eq!(got, expected, "{name}");
    };
    let header_only = {
        let mut out = Vec::new();
        write_header(&mut out, &origin, &vkeys);
        out
    };
    let with_end = |mut out: Vec<u8>, records: u64, checkpoints: u64| {
        write_end(&mut out, records, checkpoints);
        out
    };

    check("empty input", b"", trusted(), None, Err((Reason::Truncated, 0)));
    check("header only", &header_only, trusted(), None, Err((Reason::Truncated, 0)));
    check("header and end", &with_end(header_only.clone(), 0, 0), trusted(), None, Ok(0));
    check(
        "no header",
        &export[export.iter().position(|&b| b == b'\n').unwrap() + 1..],
        trusted(),
        None,
        Err((Reason::Malformed, 1)),
    );
    let format2 = String::from_utf8(export.clone()).unwrap().replacen("\"format\":1", "\"format\":2", 1);
    check("format 2", format2.as_bytes(), trusted(), None, Err((Reason::UnsupportedVersion, 1)));
    let crlf = String::from_utf8(export.clone()).unwrap().replace('\n', "\r\n");
    // A carriage return is JSON whitespace after the closing brace.
    check("CRLF line ends", crlf.as_bytes(), trusted(), None, Ok(RECORDS));

    // A checkpoint of the empty tree: consistent, but size 0 is not an anchor.
    let mut zero = header_only.clone();
    write_checkpoint(&mut zero, &Checkpoint::new(origin.clone(), 0, empty_root()).sign(&real));
    check("checkpoint at size 0", &with_end(zero, 0, 1), trusted(), None, Err((Reason::CheckpointOrder, 0)));

    // Who may sign: trusted AND declared, under the declared name.
    let first_cp = CHECKPOINT_EVERY;
    check("nobody trusted", &export, vec![], None, Err((Reason::UnknownSigner, first_cp)));
    check(
        "attacker trusted",
        &export,
        vec![attacker().trusted_key()],
        None,
        Err((Reason::UnknownSigner, first_cp)),
    );
    let undeclared = fixture.orders.export(&[]);
    check("key not declared", &undeclared, trusted(), None, Err((Reason::UnknownSigner, first_cp)));
    let other_decl = fixture.orders.export(&[attacker().vkey()]);
    check("other key declared", &other_decl, trusted(), None, Err((Reason::UnknownSigner, first_cp)));
    let renamed = annal_chain::NoteSigner::new("annal.other", &[1; 32]).unwrap();
    check(
        "same key trusted under another name",
        &export,
        vec![TrustedKey::parse(&renamed.vkey()).unwrap()],
        None,
        Err((Reason::UnknownSigner, first_cp)),
    );
    let bare = TrustedKey::parse(&real.trusted_key().to_ed25519_string()).unwrap();
    check("bare ed25519 key", &export, vec![bare], None, Ok(RECORDS));
    check("expected origin", &export, trusted(), Some(&origin), Ok(RECORDS));
    for other in ["annal.test/acme/invoices", "annal.test/globex/orders", "annal.other/acme/orders"] {
        check(
            other,
            &export,
            trusted(),
            Some(&Origin::parse(other).unwrap()),
            Err((Reason::OriginMismatch, 1)),
        );
    }

    // Signature lines from keys nobody trusts are ignored (C2SP), but one
    // that claims the trusted key and fails is fatal.
    let mut cosigned = Ledger::new(LOG, "acme", "cosigned");
    for i in 0..4u64 {
        cosigned.append(i, "text/plain", b"x", vec![]);
    }
    cosigned.checkpoint(&[&real, &attacker()]);
    check("cosigned by an unknown key", &cosigned.export(&vkeys), trusted(), None, Ok(4));
    let both = [real.trusted_key(), attacker().trusted_key()].to_vec();
    check(
        "cosigned, attacker declared too",
        &cosigned.export(&[real.vkey(), attacker().vkey()]),
        both,
        None,
        Ok(4),
    );

    // The tail after the last checkpoint is a verified chain but is not
    // anchored: rewriting it (and every hash after) still verifies. Only the
    // summary's anchored size tells the auditor; annal-verify must show it.
    let tail = |payload: &[u8]| {
        let mut l = Ledger::new(LOG, "acme", "tail");
        for i in 0..12u64 {
            l.append(i, "text/plain", if i == 10 { payload } else { b"t" }, vec![]);
            if i == 7 {
                l.checkpoint(&[&real]);
            }
        }
        l
    };
    let (genuine, rewritten) = (tail(b"genuine"), tail(b"rewritten"));
    let g = verify_stream(&genuine.export(&vkeys), &trusted(), None).unwrap();
    let r = verify_stream(&rewritten.export(&vkeys), &trusted(), None).unwrap();
    assert_eq!((g.records, g.anchored_size), (12, 8));
    assert_eq!((r.anchored_size, r.anchored_root), (g.anchored_size, g.anchored_root));
    assert_ne!(g.root, r.root);
}
