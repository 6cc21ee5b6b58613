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
    // Every record line holds two or more hashes: decode the common spelling
    // in place; anything else (escapes, wrong length) takes the general path.
    if let Some(hash) = p.fixed_string(64, decode_hash_hex) {
        return Ok(hash);
    }
    let text = p.string()?;
    Hash32::from_hex(&text).ok_or(Malformed)
}

/// Exactly what `Hash32::from_hex` accepts (64 lowercase hex digits); this
/// was the parser's second hot spot. Written as branch-free loops over
/// fixed-size arrays, which the compiler turns into vector code (SSE2 on
/// x86-64), 16 digits per vector instruction. Tests check it agrees with
/// `from_hex`.
fn decode_hash_hex(text: &[u8]) -> Option<Hash32> {
    let text: &[u8; 64] = text.try_into().ok()?;
    let mut nibbles = [0u8; 64];
    let mut valid = true;
    for (nibble, &c) in nibbles.iter_mut().zip(text) {
        // Out-of-range bytes wrap around to large values, so one unsigned
        // compare per range.
        let digit = c.wrapping_sub(b'0');
        let letter = c.wrapping_sub(b'a');
        valid &= (digit < 10) | (letter < 6);
        *nibble = if digit < 10 { digit } else { letter.wrapping_add(10) };
    }
    if !valid {
        return None;
    }
    let mut out = [0u8; 32];
    for (byte, [hi, lo]) in out.iter_mut().zip(nibbles.as_chunks::<2>().0) {
        *byte = (hi << 4) | lo;
    }
    Some(Hash32::from_bytes(out))
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
    let payload_text_max = PAYLOAD_BYTES_MAX.div_ceil(3) * 4;
    // Base64 text has no escapes, so decode it where it lies; on any failure
    // the general path below decides, with the same checks as always.
    let decoded = p.plain_string(|rest| {
        let len = crate::b64::decode_quoted(rest, &mut scratch.payload)?;
        (len <= payload_text_max).then_some((len, ()))
    });
    if decoded.is_none() {
        let payload = p.string()?;
        if payload.len() > payload_text_max {
            return Err(Malformed);
        }
        if !crate::b64::decode_into(payload.as_bytes(), &mut scratch.payload) {
            return Err(Malformed);
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_hex_agrees_with_from_hex() {
        let good = Hash32::from_bytes(core::array::from_fn(|i| (i * 37 + 5) as u8)).to_hex();
        assert_eq!(decode_hash_hex(good.as_bytes()), Hash32::from_hex(&good));
        assert!(decode_hash_hex(good.as_bytes()).is_some());
        for at in 0..64 {
            for byte in 0u8..=255 {
                let mut text = good.clone().into_bytes();
                text[at] = byte;
                let expected = std::str::from_utf8(&text).ok().and_then(Hash32::from_hex);
                assert_eq!(decode_hash_hex(&text), expected, "byte {byte:#x} at {at}");
            }
        }
        for len in [0, 2, 62, 63, 65, 66] {
            let text = "a".repeat(len);
            assert_eq!(decode_hash_hex(text.as_bytes()), None, "{len}");
        }
    }

    proptest::proptest! {
        /// Several bytes changed at once, near the digit ranges' edges and
        /// above 0x7f.
        #[test]
        fn fast_hex_agrees_with_from_hex_after_many_changes(
            seed in proptest::array::uniform32(proptest::prelude::any::<u8>()),
            changes in proptest::collection::vec(
                (0..64usize, proptest::sample::select(b"/09:`afgAF\0\x7f\x80\xb0\xe1\xff".to_vec())),
                0..6,
            ),
        ) {
            let mut text = Hash32::from_bytes(seed).to_hex().into_bytes();
            for (at, byte) in changes {
                text[at] = byte;
            }
            let expected = std::str::from_utf8(&text).ok().and_then(Hash32::from_hex);
            proptest::prop_assert_eq!(decode_hash_hex(&text), expected);
        }
    }

    #[test]
    fn payload_shortcut_and_general_path_agree() {
        let read = |payload: &str| {
            let zero = Hash32::ZERO.to_hex();
            let json = format!(
                "{{\"seq\":0,\"timestamp_ms\":1,\"prev\":\"{zero}\",\"content_type\":\"a/b\",\
                 \"payload\":{payload},\"parents\":[],\"hash\":\"{zero}\"}}"
            );
            let mut p = Parser::new(&json);
            let mut scratch = Scratch::default();
            p.begin_object().ok()?;
            read_fields(&mut p, &mut scratch).ok()?;
            p.end_object().and_then(|()| p.end()).ok()?;
            Some(scratch.payload)
        };
        assert_eq!(read(r#""aGk=""#), Some(b"hi".to_vec()));
        assert_eq!(read(r#""""#), Some(vec![]));
        // Escaped base64 is the same string, so the same payload.
        assert_eq!(read(r#""aG\u006b=""#), Some(b"hi".to_vec()));
        assert_eq!(read(r#""aG\/A""#), read(r#""aG/A""#));
        assert!(read(r#""aG/A""#).is_some());
        let too_long = format!("\"{}\"", "A".repeat(PAYLOAD_BYTES_MAX.div_ceil(3) * 4 + 4));
        for bad in [r#""aGk""#, r#""aGk==""#, r#""aGl=""#, r#""aG k=""#, r#""aGk="#, "\"aG\u{1}k=\"", "null"]
        {
            assert_eq!(read(bad), None, "{bad}");
        }
        assert_eq!(read(&too_long), None);
    }

    #[test]
    fn hash_shortcut_and_general_path_agree() {
        let hex = Hash32::from_bytes([0xab; 32]).to_hex();
        let read = |json: &str| {
            let mut p = Parser::new(json);
            read_hash(&mut p).and_then(|h| p.end().map(|()| h)).ok()
        };
        let expected = Some(Hash32::from_bytes([0xab; 32]));
        assert_eq!(read(&format!("\"{hex}\"")), expected);
        assert_eq!(read(&format!(" \"{hex}\" ")), expected);
        // An escaped digit is still the same string, so still the same hash.
        assert_eq!(read(&format!("\"\\u0061{}\"", &hex[1..])), expected);
        assert_eq!(read(&format!("\"{}\"", hex.to_uppercase())), None);
        assert_eq!(read(&format!("\"{}\"", &hex[1..])), None);
        assert_eq!(read(&format!("\"{hex}")), None);
    }
}
