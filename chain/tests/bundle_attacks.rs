//! Goal: a proof bundle proves one record of one ledger of one tenant under
//! a trusted key, and nothing else: re-signing, forging, splicing across
//! tenants, redirecting lineage, or pairing a valid signature with a root
//! the proof does not compute is rejected with the reason and index that
//! chain/src/bundle.rs and docs/FORMAT.md promise.
//!
//! Method: bundles of the tamper-sweep fixture (common::Fixture) from
//! `Ledger::bundle` must verify for every record. Attacks are built from
//! public parts (`write_bundle`, testkit ledgers, signers) or by editing the
//! bundle text, and each goes through one data-driven `check(case, expected)`.
//! Expected reasons are derived from the order of checks in `verify_bundle`:
//! expected origin; record rules; recomputed hash vs stated hash; checkpoint
//! parse, origin, signature; inclusion proof folds to the checkpoint's size
//! and root; then each parent (named = proven, in order; its checkpoint's
//! origin is the record's log and tenant with the parent's ledger, so any
//! other origin is `lineage_mismatch`; its proof folds to that root). Every
//! non-parse failure carries the record's seq. Last, every byte of two
//! bundles is flipped with xor 0x01 and xor 0x20: all must be rejected.

mod common;

use std::collections::BTreeMap;

use annal_chain::testkit::Ledger;
use annal_chain::{
    Failure, NoteSigner, Origin, ParentProof, Reason, Record, RecordFields, SignedNote, TrustedKey,
    verify_bundle, write_bundle,
};
use common::{Fixture, LOG, RECORDS, attacker, signer, trusted};

/// A record with two same-ledger parents and one in `acme/invoices`.
const RICH_SEQ: u64 = 27;

/// One attack: bundle bytes, the auditor's keys and expected origin.
struct Case {
    name: &'static str,
    bundle: Vec<u8>,
    trusted: Vec<TrustedKey>,
    expect_origin: Option<Origin>,
}

impl Case {
    fn new(name: &'static str, bundle: Vec<u8>) -> Case {
        Case { name, bundle, trusted: trusted(), expect_origin: None }
    }

    fn trusting(mut self, keys: Vec<TrustedKey>) -> Case {
        self.trusted = keys;
        self
    }

    fn expecting(mut self, origin: &Origin) -> Case {
        self.expect_origin = Some(origin.clone());
        self
    }
}

/// `Ok(seq)`: verifies as that record; `Err((reason, index))`: that failure.
fn check(case: Case, expected: Result<u64, (Reason, u64)>) {
    let got = verify_bundle(&case.bundle, &case.trusted, case.expect_origin.as_ref());
    let got = got.map(|s| s.seq.get()).map_err(|f: Failure| {
        assert_eq!(f.line, 0, "{}: bundles have no lines", case.name);
        (f.reason, f.index)
    });
    assert_eq!(got, expected, "{}", case.name);
}

/// Proofs for a record's parents as `Ledger::bundle` builds them, but in the
/// tree of `size` (the record's checkpoint) for same-ledger parents.
fn parent_proofs(orders: &Ledger, others: &[&Ledger], seq: u64, size: u64) -> Vec<ParentProof> {
    orders
        .record(seq)
        .parents()
        .iter()
        .map(|p| {
            if p.ledger == *orders.origin().ledger() {
                ParentProof {
                    checkpoint: None,
                    inclusion: orders.tree().inclusion_proof(p.seq.get(), size).unwrap(),
                }
            } else {
                let other = others.iter().find(|o| *o.origin().ledger() == p.ledger).unwrap();
                let (osize, onote) = other.checkpoints().last().unwrap();
                let inclusion = other.tree().inclusion_proof(p.seq.get(), *osize).unwrap();
                ParentProof { checkpoint: Some(onote.clone()), inclusion }
            }
        })
        .collect()
}

/// The checkpoint `orders` issued at `size`.
fn checkpoint_at(ledger: &Ledger, size: u64) -> SignedNote {
    ledger.checkpoints().iter().find(|(s, _)| *s == size).expect("checkpoint issued").1.clone()
}

/// A bundle from parts: `record` of `origin` under `note`, with `inclusion`.
fn assemble(
    origin: &Origin,
    record: &Record,
    note: &SignedNote,
    inclusion: &[annal_chain::Hash32],
    parents: &[ParentProof],
) -> Vec<u8> {
    let mut out = Vec::new();
    write_bundle(&mut out, origin, record, note, inclusion, parents);
    out
}

fn text(bundle: &[u8]) -> String {
    String::from_utf8(bundle.to_vec()).unwrap()
}

/// The note as it appears inside a bundle's JSON string.
fn json_note(note: &SignedNote) -> String {
    note.to_string().replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The signature lines of a note (everything after the blank line).
fn signature_lines(note: &SignedNote) -> String {
    let s = note.to_string();
    s[s.find("\n\n").unwrap() + 2..].to_owned()
}

/// Splits a bundle into (everything before the top-level parent objects,
/// the parent objects, the closing `]}` and newline).
fn parent_objects(bundle: &[u8]) -> (String, Vec<String>, String) {
    let t = text(bundle);
    let open = t.rfind(r#","parents":["#).unwrap() + r#","parents":["#.len();
    let close = t.len() - "]}\n".len();
    let inner = &t[open..close];
    let objects = if inner.is_empty() {
        vec![]
    } else {
        inner[1..inner.len() - 1].split("},{").map(|o| format!("{{{o}}}")).collect()
    };
    (t[..open].to_owned(), objects, t[close..].to_owned())
}

fn with_parent_objects(head: &str, objects: &[String], tail: &str) -> Vec<u8> {
    format!("{head}{}{tail}", objects.join(",")).into_bytes()
}

/// Flips one hex digit (the first one after `marker`) to another hex digit.
fn flip_hex_after(s: &str, marker: &str) -> String {
    let at = s.find(marker).unwrap_or_else(|| panic!("{marker}")) + marker.len();
    let mut b = s.as_bytes().to_vec();
    b[at] = if b[at] == b'0' { b'1' } else { b'0' };
    String::from_utf8(b).unwrap()
}

#[test]
fn every_record_bundle_verifies() {
    let fx = Fixture::build();
    let trusted = trusted();
    for seq in 0..RECORDS {
        let bundle = fx.orders.bundle(seq, &[&fx.invoices]);
        let s = verify_bundle(&bundle, &trusted, Some(fx.orders.origin()))
            .unwrap_or_else(|f| panic!("{seq}: {f}"));
        assert_eq!(s.seq.get(), seq);
        assert_eq!(s.hash, fx.orders.record(seq).hash());
        assert_eq!(
            (s.checkpoint_size, s.checkpoint_root),
            (RECORDS, fx.orders.tree().root(RECORDS).unwrap())
        );
        assert_eq!(s.parents, fx.orders.record(seq).parents().len() as u64);
        assert_eq!(s.origin, *fx.orders.origin());
    }
    // Under a C2SP vkey and under a bare ed25519 key alike.
    let bundle = fx.orders.bundle(RICH_SEQ, &[&fx.invoices]);
    check(
        Case::new("vkey", bundle.clone()).trusting(vec![TrustedKey::parse(&signer().vkey()).unwrap()]),
        Ok(RICH_SEQ),
    );
    let bare = TrustedKey::parse(&signer().trusted_key().to_ed25519_string()).unwrap();
    check(Case::new("ed25519 key", bundle.clone()).trusting(vec![bare]), Ok(RICH_SEQ));
    // An earlier checkpoint with proofs into its own tree is just as good.
    let seq = 20;
    let note = checkpoint_at(&fx.orders, 32);
    let inclusion = fx.orders.tree().inclusion_proof(seq, 32).unwrap();
    let parents = parent_proofs(&fx.orders, &[&fx.invoices], seq, 32);
    check(
        Case::new(
            "older checkpoint",
            assemble(fx.orders.origin(), fx.orders.record(seq), &note, &inclusion, &parents),
        ),
        Ok(seq),
    );
    // A same-ledger parent may name its checkpoint explicitly instead of null.
    let seq = 40;
    let mut parents = parent_proofs(&fx.orders, &[], seq, RECORDS);
    parents[0].checkpoint = Some(checkpoint_at(&fx.orders, RECORDS));
    let inclusion = fx.orders.tree().inclusion_proof(seq, RECORDS).unwrap();
    let own = checkpoint_at(&fx.orders, RECORDS);
    check(
        Case::new(
            "explicit own checkpoint",
            assemble(fx.orders.origin(), fx.orders.record(seq), &own, &inclusion, &parents),
        ),
        Ok(seq),
    );
}

#[test]
fn re_signed_and_forged_checkpoints_are_refused() {
    let fx = Fixture::build();
    let (real, evil) = (signer(), attacker());
    let seq = 10;
    let genuine = fx.orders.bundle(seq, &[&fx.invoices]);
    let own = checkpoint_at(&fx.orders, RECORDS);
    let inclusion = fx.orders.tree().inclusion_proof(seq, RECORDS).unwrap();
    let parents = parent_proofs(&fx.orders, &[&fx.invoices], seq, RECORDS);

    // The genuine checkpoint body, signed by the attacker instead.
    let body = SignedNote::parse(&own.to_string()).unwrap().text().to_owned();
    let re_signed = evil.sign_text(&body);
    let b = assemble(fx.orders.origin(), fx.orders.record(seq), &re_signed, &inclusion, &parents);
    check(Case::new("re-signed by attacker", b.clone()), Err((Reason::UnknownSigner, seq)));
    check(Case::new("re-signed, attacker trusted", b).trusting(vec![evil.trusted_key()]), Ok(seq));

    // A whole forged history: record 10 rewritten, every later hash and root
    // recomputed, checkpoints signed by the attacker. The proof folds to the
    // forged root, so only the signer can give it away.
    let forged = Fixture::build_forged(&evil, Some(seq));
    assert_ne!(forged.orders.record(seq).hash(), fx.orders.record(seq).hash());
    let fb = forged.orders.bundle(seq, &[&fx.invoices]);
    check(Case::new("forged ledger, real key trusted", fb.clone()), Err((Reason::UnknownSigner, seq)));
    check(
        Case::new("forged ledger, both keys trusted", fb.clone())
            .trusting(vec![real.trusted_key(), evil.trusted_key()]),
        Ok(seq),
    );
    // The forged checkpoint wearing the real key's signature line.
    let forged_note = checkpoint_at(&forged.orders, RECORDS);
    let forged_body = forged_note.text();
    let mixed = SignedNote::parse(&format!("{forged_body}\n{}", signature_lines(&own))).unwrap();
    let forged_inclusion = forged.orders.tree().inclusion_proof(seq, RECORDS).unwrap();
    let forged_parents = parent_proofs(&forged.orders, &[&fx.invoices], seq, RECORDS);
    let b = assemble(
        forged.orders.origin(),
        forged.orders.record(seq),
        &mixed,
        &forged_inclusion,
        &forged_parents,
    );
    check(Case::new("forged checkpoint, real signature copied", b.clone()), Err((Reason::BadSignature, seq)));
    // Adding the attacker's own signature does not help: a line that claims
    // the trusted key and fails is fatal, whatever else is there.
    let mut both = mixed.clone();
    evil.cosign(&mut both);
    let b2 = assemble(
        forged.orders.origin(),
        forged.orders.record(seq),
        &both,
        &forged_inclusion,
        &forged_parents,
    );
    check(
        Case::new("forged, copied + attacker signature, both trusted", b2)
            .trusting(vec![real.trusted_key(), evil.trusted_key()]),
        Err((Reason::BadSignature, seq)),
    );
    // A genuine later record cannot ride on the forged history, even with
    // the attacker trusted: its prev is the genuine record 10.
    let next = seq + 1;
    let next_proof = forged.orders.tree().inclusion_proof(next, RECORDS).unwrap();
    let b = assemble(fx.orders.origin(), fx.orders.record(next), &forged_note, &next_proof, &[]);
    check(
        Case::new("genuine record, forged anchor", b).trusting(vec![evil.trusted_key()]),
        Err((Reason::AnchorMismatch, next)),
    );
    // Sanity: the genuine bundle is fine.
    check(Case::new("genuine", genuine), Ok(seq));

    // A key the auditor trusts by name does not vouch for another name.
    let renamed = NoteSigner::new("annal.other", &[1; 32]).unwrap();
    let b =
        assemble(fx.orders.origin(), fx.orders.record(seq), &renamed.sign_text(&body), &inclusion, &parents);
    check(
        Case::new("same key, other name, vkey trusted", b.clone())
            .trusting(vec![TrustedKey::parse(&real.vkey()).unwrap()]),
        Err((Reason::UnknownSigner, seq)),
    );
    // ...but a bare ed25519 key is trusted under any name (FORMAT.md).
    let bare = TrustedKey::parse(&real.trusted_key().to_ed25519_string()).unwrap();
    check(Case::new("same key, other name, bare key trusted", b).trusting(vec![bare]), Ok(seq));
}

#[test]
fn splices_across_tenants_are_refused() {
    let fx = Fixture::build();
    let s = signer();
    // Tenant globex runs a ledger with the same name and shape, signed by the
    // same daemon key: the worst case for a splice.
    let mut globex = Ledger::new(LOG, "globex", "orders");
    for i in 0..RECORDS {
        globex.append(
            1_700_000_000_000 + i * 1_000,
            "application/json",
            format!("{{\"g\":{i}}}").as_bytes(),
            vec![],
        );
    }
    globex.checkpoint(&[&s]);
    let seq = 12;
    let a_origin = fx.orders.origin();
    let b_origin = globex.origin();
    let a_record = fx.orders.record(seq);
    let a_note = checkpoint_at(&fx.orders, RECORDS);
    let b_note = checkpoint_at(&globex, RECORDS);
    let a_proof = fx.orders.tree().inclusion_proof(seq, RECORDS).unwrap();
    let b_proof = globex.tree().inclusion_proof(seq, RECORDS).unwrap();
    check(Case::new("globex bundle verifies", globex.bundle(seq, &[])), Ok(seq));

    // A's record and origin, B's checkpoint and proof.
    let b = assemble(a_origin, a_record, &b_note, &b_proof, &[]);
    check(Case::new("A record + B anchor", b), Err((Reason::OriginMismatch, seq)));
    // A's record relabelled as B's: the hash covers the tenant.
    let relabelled = text(&assemble(a_origin, a_record, &b_note, &b_proof, &[])).replacen(
        &format!("\"origin\":\"{a_origin}\""),
        &format!("\"origin\":\"{b_origin}\""),
        1,
    );
    check(
        Case::new("A record relabelled B", relabelled.into_bytes()),
        Err((Reason::RecordHashMismatch, seq)),
    );
    // A's record content rebuilt as a genuine-looking B record (consistent
    // hash): B's tree does not contain it.
    let fields = a_record.clone().into_fields();
    let as_b = Record::new(RecordFields {
        tenant: b_origin.tenant().clone(),
        prev: globex.record(seq - 1).hash(),
        ..fields
    })
    .unwrap();
    check(
        Case::new("A content as B record", assemble(b_origin, &as_b, &b_note, &b_proof, &[])),
        Err((Reason::AnchorMismatch, seq)),
    );
    // B's genuine record with A's proof.
    check(
        Case::new("B record, A proof", assemble(b_origin, globex.record(seq), &b_note, &a_proof, &[])),
        Err((Reason::AnchorMismatch, seq)),
    );
    // A's record and checkpoint with B's proof.
    check(
        Case::new("A record, B proof", assemble(a_origin, a_record, &a_note, &b_proof, &[])),
        Err((Reason::AnchorMismatch, seq)),
    );
    // The expected origin binds the auditor's question to the bundle.
    let genuine = fx.orders.bundle(seq, &[]);
    for other in [
        b_origin.clone(),
        Origin::parse("annal.other/acme/orders").unwrap(),
        Origin::parse("annal.test/acme/invoices").unwrap(),
    ] {
        check(
            Case::new("expect another origin", genuine.clone()).expecting(&other),
            Err((Reason::OriginMismatch, seq)),
        );
    }
    check(Case::new("expect own origin", genuine).expecting(a_origin), Ok(seq));
    // A bundle whose origin differs from its checkpoint's log name.
    let other_log =
        text(&fx.orders.bundle(seq, &[])).replacen("\"origin\":\"annal.test/", "\"origin\":\"annal.tesu/", 1);
    check(Case::new("origin log rewritten", other_log.into_bytes()), Err((Reason::OriginMismatch, seq)));
}

#[test]
fn lineage_cannot_be_redirected() {
    let fx = Fixture::build();
    let s = signer();
    let others = [&fx.invoices];
    let genuine = fx.orders.bundle(RICH_SEQ, &others);
    check(Case::new("genuine", genuine.clone()), Ok(RICH_SEQ));
    let (head, objects, tail) = parent_objects(&genuine);
    assert_eq!(objects.len(), 3, "{objects:?}");
    let lineage = Err((Reason::LineageMismatch, RICH_SEQ));

    // Parent hash altered in the proof list only, and in the record too.
    let mut o = objects.clone();
    o[0] = flip_hex_after(&o[0], r#""hash":""#);
    check(Case::new("parent hash altered", with_parent_objects(&head, &o, &tail)), lineage);
    let both = text(&genuine).replace(
        &objects[0][objects[0].find(r#""hash":""#).unwrap()..][..72],
        &o[0][o[0].find(r#""hash":""#).unwrap()..][..72],
    );
    check(
        Case::new("parent hash altered everywhere", both.into_bytes()),
        Err((Reason::RecordHashMismatch, RICH_SEQ)),
    );
    // Parent seq altered in the proof list.
    let o2: Vec<String> = objects
        .iter()
        .enumerate()
        .map(|(i, x)| if i == 2 { x.replacen(r#""seq":5,"#, r#""seq":6,"#, 1) } else { x.clone() })
        .collect();
    check(Case::new("parent seq altered", with_parent_objects(&head, &o2, &tail)), lineage);
    // Parent proofs altered: a digit, or another parent's proof.
    for i in 0..3 {
        let mut o = objects.clone();
        o[i] = flip_hex_after(&o[i], r#""inclusion":[""#);
        check(Case::new("parent proof altered", with_parent_objects(&head, &o, &tail)), lineage);
    }
    let mut swapped = objects.clone();
    let proof_of = |x: &str| x[x.find(r#""inclusion":"#).unwrap()..].to_owned();
    swapped[0] = objects[0].replace(&proof_of(&objects[0]), &proof_of(&objects[2]));
    check(Case::new("another parent's proof", with_parent_objects(&head, &swapped, &tail)), lineage);
    // Reordered, truncated, emptied, extended.
    let reordered = [objects[2].clone(), objects[1].clone(), objects[0].clone()];
    check(Case::new("parents reordered", with_parent_objects(&head, &reordered, &tail)), lineage);
    check(Case::new("last parent dropped", with_parent_objects(&head, &objects[..2], &tail)), lineage);
    check(Case::new("first parent dropped", with_parent_objects(&head, &objects[1..], &tail)), lineage);
    check(Case::new("no parents", with_parent_objects(&head, &[], &tail)), lineage);
    let extended = [objects.clone(), vec![objects[0].clone()]].concat();
    check(
        Case::new("parent repeated", with_parent_objects(&head, &extended, &tail)),
        Err((Reason::Malformed, 0)),
    );
    // The cross-ledger parent without its checkpoint, or with another one.
    let mut o = objects.clone();
    let cp = |x: &str| {
        let from = x.find(r#""checkpoint":"#).unwrap();
        let to = x.find(r#","inclusion":"#).unwrap();
        x[from..to].to_owned()
    };
    o[1] = objects[1].replace(&cp(&objects[1]), r#""checkpoint":null"#);
    check(
        Case::new("cross-ledger parent without checkpoint", with_parent_objects(&head, &o, &tail)),
        lineage,
    );
    let mut o = objects.clone();
    o[1] = objects[1].replace(
        &cp(&objects[1]),
        &format!("\"checkpoint\":\"{}\"", json_note(&checkpoint_at(&fx.orders, RECORDS))),
    );
    check(
        Case::new("cross-ledger parent, own ledger's checkpoint", with_parent_objects(&head, &o, &tail)),
        lineage,
    );
    let mut o = objects.clone();
    let evil_note = attacker().sign_text(fx.invoices.checkpoints()[0].1.text());
    o[1] = objects[1].replace(&cp(&objects[1]), &format!("\"checkpoint\":\"{}\"", json_note(&evil_note)));
    check(
        Case::new("cross-ledger parent re-signed", with_parent_objects(&head, &o, &tail)),
        Err((Reason::UnknownSigner, RICH_SEQ)),
    );
    // A same-ledger parent proven in another ledger's checkpoint.
    let mut o = objects.clone();
    o[0] = objects[0].replace(
        &cp(&objects[0]),
        &format!("\"checkpoint\":\"{}\"", json_note(&fx.invoices.checkpoints()[0].1)),
    );
    check(
        Case::new("same-ledger parent, other ledger's checkpoint", with_parent_objects(&head, &o, &tail)),
        lineage,
    );

    // A parent in ANOTHER tenant's ledger of the same name: its checkpoint's
    // origin is globex/invoices, not acme/invoices.
    let mut globex_invoices = Ledger::new(LOG, "globex", "invoices");
    for i in 0..3u64 {
        globex_invoices.append(10 + i, "text/plain", b"g", vec![]);
    }
    globex_invoices.checkpoint(&[&s]);
    let mut audit = Ledger::new(LOG, "acme", "audit");
    audit.append(1, "text/plain", b"root", vec![]);
    audit.append(2, "text/plain", b"cross-tenant", vec![globex_invoices.link(1)]);
    audit.checkpoint(&[&s]);
    check(
        Case::new("parent in another tenant", audit.bundle(1, &[&globex_invoices])),
        Err((Reason::LineageMismatch, 1)),
    );
    // The same in another log.
    let mut other_log = Ledger::new("annal.other", "acme", "invoices");
    other_log.append(1, "text/plain", b"o", vec![]);
    other_log.append(2, "text/plain", b"o", vec![]);
    other_log.checkpoint(&[&s]);
    let mut audit2 = Ledger::new(LOG, "acme", "audit");
    audit2.append(1, "text/plain", b"x", vec![other_log.link(1)]);
    audit2.checkpoint(&[&s]);
    check(
        Case::new("parent in another log", audit2.bundle(0, &[&other_log])),
        Err((Reason::LineageMismatch, 0)),
    );
}

#[test]
fn proofs_must_reach_the_signed_root() {
    let fx = Fixture::build();
    let seq = 17;
    let record = fx.orders.record(seq);
    let origin = fx.orders.origin();
    let at = |size| fx.orders.tree().inclusion_proof(seq, size).unwrap();
    let anchor = Err((Reason::AnchorMismatch, seq));
    // Rekor #1092: a valid signature on a checkpoint whose root this proof
    // does not compute proves nothing.
    check(
        Case::new(
            "proof for 64, checkpoint 32",
            assemble(origin, record, &checkpoint_at(&fx.orders, 32), &at(RECORDS), &[]),
        ),
        anchor,
    );
    check(
        Case::new(
            "proof for 32, checkpoint 64",
            assemble(origin, record, &checkpoint_at(&fx.orders, RECORDS), &at(32), &[]),
        ),
        anchor,
    );
    check(
        Case::new(
            "proof for 32, checkpoint 32",
            assemble(origin, record, &checkpoint_at(&fx.orders, 32), &at(32), &[]),
        ),
        Ok(seq),
    );
    // A checkpoint that does not yet contain the record.
    let early = checkpoint_at(&fx.orders, 16);
    check(
        Case::new("checkpoint before the record", assemble(origin, record, &early, &at(RECORDS), &[])),
        anchor,
    );
    // The inclusion proof of another record, of the right length.
    let other = fx.orders.tree().inclusion_proof(seq + 1, RECORDS).unwrap();
    check(
        Case::new(
            "proof of another record",
            assemble(origin, record, &checkpoint_at(&fx.orders, RECORDS), &other, &[]),
        ),
        anchor,
    );
    // Proofs with an element dropped, added, or empty.
    let full = at(RECORDS);
    let note = checkpoint_at(&fx.orders, RECORDS);
    check(Case::new("proof element dropped", assemble(origin, record, &note, &full[1..], &[])), anchor);
    let longer = [full.clone(), vec![full[0]]].concat();
    check(Case::new("proof element added", assemble(origin, record, &note, &longer, &[])), anchor);
    check(Case::new("empty proof", assemble(origin, record, &note, &[], &[])), anchor);
    // The record's stated hash swapped for its neighbour's, with the
    // neighbour's proof: the recomputed hash gives it away first.
    let neighbour = fx.orders.record(seq + 1).hash();
    let b = text(&assemble(origin, record, &note, &other, &[])).replacen(
        &record.hash().to_hex(),
        &neighbour.to_hex(),
        1,
    );
    check(Case::new("stated hash of the neighbour", b.into_bytes()), Err((Reason::RecordHashMismatch, seq)));
}

/// Flips every byte of a bundle with xor 0x01 and xor 0x20; all must be
/// rejected. Indexes: `malformed` is 0 or the record's seq (FORMAT.md),
/// `unsupported_version` 0, everything else the seq the bundle states (a
/// mutated seq digit moves it).
fn sweep(bundle: &[u8], seq: u64, tally: &mut BTreeMap<&'static str, u64>) -> u64 {
    let trusted = trusted();
    let mut bytes = bundle.to_vec();
    let mut tried = 0;
    let mut problems = Vec::new();
    for at in 0..bytes.len() {
        for mask in [0x01u8, 0x20] {
            bytes[at] ^= mask;
            tried += 1;
            let stated_seq = std::str::from_utf8(&bytes).ok().and_then(|t| {
                let from = t.find(r#""record":{"seq":"#)? + r#""record":{"seq":"#.len();
                t[from..from + t[from..].find(',')?].parse::<u64>().ok()
            });
            match verify_bundle(&bytes, &trusted, None) {
                Ok(_) => problems.push(format!("byte {at} xor {mask:#04x}: ACCEPTED")),
                Err(f) => {
                    *tally.entry(f.reason.as_str()).or_default() += 1;
                    let ok = match f.reason {
                        Reason::Malformed => f.index == 0 || Some(f.index) == stated_seq,
                        Reason::UnsupportedVersion => f.index == 0,
                        _ => Some(f.index) == stated_seq && (stated_seq != Some(seq) || f.index == seq),
                    };
                    if !ok {
                        problems.push(format!("byte {at} xor {mask:#04x}: {f:?}, stated seq {stated_seq:?}"));
                    }
                }
            }
            bytes[at] ^= mask;
        }
    }
    assert!(problems.is_empty(), "{} problems: {:#?}", problems.len(), &problems[..problems.len().min(30)]);
    tried
}

#[test]
fn every_byte_flip_of_a_bundle_is_rejected() {
    let fx = Fixture::build();
    let mut tally = BTreeMap::new();
    let mut tried = 0;
    for seq in [RICH_SEQ, 0, 63] {
        tried += sweep(&fx.orders.bundle(seq, &[&fx.invoices]), seq, &mut tally);
    }
    println!("bundle byte flips: {tried} tried, {tried} rejected");
    for (reason, n) in &tally {
        println!("  {reason:>22}: {n}");
    }
    assert_eq!(tally.values().sum::<u64>(), tried);
}
