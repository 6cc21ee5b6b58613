//! The JSON form of a record, shared by export lines and bundles.
//!
//! Members, in this order: `seq`, `timestamp_ms`, `prev` (hex), `content_type`,
//! `payload` (base64), `parents` (`[{"ledger","seq","hash"}]`), `hash` (hex).
//! Tenant and ledger are not repeated per record: they come from the origin.

use std::borrow::Cow;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::json::{Malformed, Parsed, Parser, write_string, write_u64};
use crate::limits::{PARENTS_COUNT_MAX, PAYLOAD_BYTES_MAX};
use crate::record::{Parent, RecordView};
use crate::types::{Hash32, LedgerName, RecordHash, Seq};

/// Buffers a reader reuses across records, so that verifying a long export
/// allocates nothing per record.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    pub payload: Vec<u8>,
    pub parents: Vec<Parent>,
}

/// A record as read from JSON: payload and parents live in the `Scratch`.
#[derive(Debug)]
pub(crate) struct ReadRecord<'a> {
    pub seq: Seq,
    pub timestamp_ms: u64,
    pub prev: RecordHash,
    pub content_type: Cow<'a, str>,
    pub stated_hash: RecordHash,
}

impl<'a> ReadRecord<'a> {
    pub fn view<'b>(&'b self, tenant: &'b str, ledger: &'b str, scratch: &'b Scratch) -> RecordView<'b> {
        RecordView {
            tenant,
            ledger,
            seq: self.seq,
            timestamp_ms: self.timestamp_ms,
            prev: self.prev,
            content_type: &self.content_type,
            payload: &scratch.payload,
            parents: &scratch.parents,
        }
    }
}

pub(crate) fn read_hash(p: &mut Parser<'_>) -> Parsed<Hash32> {
    let text = p.string()?;
    Hash32::from_hex(&text).ok_or(Malformed)
}

pub(crate) fn read_hash_list(p: &mut Parser<'_>, out: &mut Vec<Hash32>) -> Parsed<()> {
    out.clear();
    p.begin_array()?;
    while p.next_element()? {
        if out.len() == crate::limits::PROOF_HASHES_MAX {
            return Err(Malformed);
        }
        out.push(read_hash(p)?);
    }
    Ok(())
}

/// Reads the record members (not the braces around them).
pub(crate) fn read_fields<'a>(p: &mut Parser<'a>, scratch: &mut Scratch) -> Parsed<ReadRecord<'a>> {
    p.key("seq")?;
    let seq = Seq::new(p.u64()?);
    p.key("timestamp_ms")?;
    let timestamp_ms = p.u64()?;
    p.key("prev")?;
    let prev = read_hash(p)?;
    p.key("content_type")?;
    let content_type = p.string()?;
    p.key("payload")?;
    let payload = p.string()?;
    if payload.len() > PAYLOAD_BYTES_MAX.div_ceil(3) * 4 {
        return Err(Malformed);
    }
    scratch.payload.clear();
    STANDARD.decode_vec(payload.as_bytes(), &mut scratch.payload).map_err(|_| Malformed)?;
    p.key("parents")?;
    scratch.parents.clear();
    p.begin_array()?;
    while p.next_element()? {
        if scratch.parents.len() == PARENTS_COUNT_MAX {
            return Err(Malformed);
        }
        p.begin_object()?;
        p.key("ledger")?;
        let ledger = LedgerName::new(&p.string()?).map_err(|_| Malformed)?;
        p.key("seq")?;
        let seq = Seq::new(p.u64()?);
        p.key("hash")?;
        let hash = read_hash(p)?;
        p.end_object()?;
        scratch.parents.push(Parent { ledger, seq, hash });
    }
    p.key("hash")?;
    let stated_hash = read_hash(p)?;
    Ok(ReadRecord { seq, timestamp_ms, prev, content_type, stated_hash })
}

pub(crate) fn write_hash(out: &mut Vec<u8>, hash: &Hash32) {
    out.push(b'"');
    out.extend_from_slice(hash.to_hex().as_bytes());
    out.push(b'"');
}

pub(crate) fn write_hash_list(out: &mut Vec<u8>, hashes: &[Hash32]) {
    out.push(b'[');
    for (i, h) in hashes.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_hash(out, h);
    }
    out.push(b']');
}

/// Writes the record members (not the braces around them).
pub(crate) fn write_fields(out: &mut Vec<u8>, record: &RecordView<'_>, hash: &RecordHash) {
    out.extend_from_slice(b"\"seq\":");
    write_u64(out, record.seq.get());
    out.extend_from_slice(b",\"timestamp_ms\":");
    write_u64(out, record.timestamp_ms);
    out.extend_from_slice(b",\"prev\":");
    write_hash(out, &record.prev);
    out.extend_from_slice(b",\"content_type\":");
    write_string(out, record.content_type);
    out.extend_from_slice(b",\"payload\":\"");
    let at = out.len();
    out.resize(at + record.payload.len().div_ceil(3) * 4, 0);
    let written = STANDARD.encode_slice(record.payload, &mut out[at..]).expect("sized exactly");
    out.truncate(at + written);
    out.extend_from_slice(b"\",\"parents\":[");
    for (i, parent) in record.parents.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"ledger\":");
        write_string(out, parent.ledger.as_str());
        out.extend_from_slice(b",\"seq\":");
        write_u64(out, parent.seq.get());
        out.extend_from_slice(b",\"hash\":");
        write_hash(out, &parent.hash);
        out.push(b'}');
    }
    out.extend_from_slice(b"],\"hash\":");
    write_hash(out, hash);
}
