//! The record, its canonical encoding and its hash (docs/FORMAT.md, "Record").

use crate::limits::{CONTENT_TYPE_BYTES_MAX, PARENTS_COUNT_MAX, PAYLOAD_BYTES_MAX};
use crate::types::{Hash32, LedgerName, RecordHash, Seq, TenantId};

/// Domain tag that opens every canonical record encoding.
pub const RECORD_TAG: &[u8; 12] = b"annal.record";
/// The record format version written after the tag.
pub const RECORD_VERSION: u8 = 1;
/// RFC 9162 leaf prefix; the record hash is the Merkle leaf hash.
pub const LEAF_PREFIX: u8 = 0x00;

/// A lineage link: an earlier record of the same tenant, named by ledger, seq
/// and the hash it had, so the link cannot be redirected later.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Parent {
    pub ledger: LedgerName,
    pub seq: Seq,
    pub hash: RecordHash,
}

/// Why a record could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordError {
    PayloadTooLarge,
    /// Empty, too long, or a byte outside printable ASCII.
    BadContentType,
    TooManyParents,
    /// A same-ledger parent whose seq is not below the record's.
    ParentNotEarlier,
    DuplicateParent,
    /// The first record of a ledger must have the zero `prev`; no other may.
    BadPrev,
}

impl core::fmt::Display for RecordError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            RecordError::PayloadTooLarge => "payload too large",
            RecordError::BadContentType => "bad content type",
            RecordError::TooManyParents => "too many lineage parents",
            RecordError::ParentNotEarlier => "a same-ledger parent must be an earlier record",
            RecordError::DuplicateParent => "duplicate lineage parent",
            RecordError::BadPrev => "prev must be zero exactly for seq 0",
        })
    }
}

impl std::error::Error for RecordError {}

/// A borrowed view of a record: what the hash covers, without owning it.
#[derive(Clone, Copy, Debug)]
pub struct RecordView<'a> {
    pub tenant: &'a str,
    pub ledger: &'a str,
    pub seq: Seq,
    pub timestamp_ms: u64,
    pub prev: RecordHash,
    pub content_type: &'a str,
    pub payload: &'a [u8],
    pub parents: &'a [Parent],
}

impl RecordView<'_> {
    /// Checks everything about a record that does not need its neighbours.
    /// Names are already valid by type or by the caller's parse.
    pub fn check(&self) -> Result<(), RecordError> {
        if self.payload.len() > PAYLOAD_BYTES_MAX {
            return Err(RecordError::PayloadTooLarge);
        }
        if !valid_content_type(self.content_type) {
            return Err(RecordError::BadContentType);
        }
        if self.parents.len() > PARENTS_COUNT_MAX {
            return Err(RecordError::TooManyParents);
        }
        if (self.seq == Seq::ZERO) != (self.prev == Hash32::ZERO) {
            return Err(RecordError::BadPrev);
        }
        for (i, p) in self.parents.iter().enumerate() {
            if p.ledger.as_str() == self.ledger && p.seq >= self.seq {
                return Err(RecordError::ParentNotEarlier);
            }
            if self.parents[..i].iter().any(|q| q.ledger == p.ledger && q.seq == p.seq) {
                return Err(RecordError::DuplicateParent);
            }
        }
        Ok(())
    }

    /// `blake3(0x00 || canonical(record))`.
    pub fn hash(&self) -> RecordHash {
        let mut hasher = blake3::Hasher::new();
        hasher.update(&[LEAF_PREFIX]);
        self.encode(&mut |bytes: &[u8]| {
            hasher.update(bytes);
        });
        Hash32::from_bytes(*hasher.finalize().as_bytes())
    }

    /// The same hash, computed over one contiguous buffer that the caller
    /// reuses: one blake3 call instead of one update per field, which is
    /// what the streaming verifier's hot loop wants.
    pub fn hash_with(&self, buf: &mut Vec<u8>) -> RecordHash {
        buf.clear();
        buf.push(LEAF_PREFIX);
        self.encode(&mut |bytes: &[u8]| buf.extend_from_slice(bytes));
        Hash32::from_bytes(*blake3::hash(buf).as_bytes())
    }

    /// The canonical encoding, as bytes (for vectors and for debugging).
    pub fn canonical(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128 + self.payload.len());
        self.encode(&mut |bytes: &[u8]| out.extend_from_slice(bytes));
        out
    }

    fn encode(&self, sink: &mut dyn FnMut(&[u8])) {
        sink(RECORD_TAG);
        sink(&[RECORD_VERSION]);
        put_bytes(sink, self.tenant.as_bytes());
        put_bytes(sink, self.ledger.as_bytes());
        sink(&self.seq.get().to_le_bytes());
        sink(&self.timestamp_ms.to_le_bytes());
        sink(self.prev.as_bytes());
        put_bytes(sink, self.content_type.as_bytes());
        put_bytes(sink, self.payload);
        sink(&len_u32(self.parents.len()).to_le_bytes());
        for p in self.parents {
            put_bytes(sink, p.ledger.as_str().as_bytes());
            sink(&p.seq.get().to_le_bytes());
            sink(p.hash.as_bytes());
        }
    }
}

fn len_u32(len: usize) -> u32 {
    // Every length is bounded by a limit far below u32::MAX (checked in limits.rs).
    u32::try_from(len).expect("length within limits")
}

fn put_bytes(sink: &mut dyn FnMut(&[u8]), bytes: &[u8]) {
    sink(&len_u32(bytes.len()).to_le_bytes());
    sink(bytes);
}

/// A content type is 1 to 128 bytes of printable ASCII (space included).
pub fn valid_content_type(text: &str) -> bool {
    !text.is_empty() && text.len() <= CONTENT_TYPE_BYTES_MAX && printable_ascii(text.as_bytes())
}

/// Whether every byte is in `0x20..0x7f`. A fold without early exit (the
/// verifier checks a content type per record): the compiler turns it into
/// vector code, where `all` would test byte by byte.
fn printable_ascii(bytes: &[u8]) -> bool {
    bytes.iter().fold(true, |ok, &b| ok & (0x20..0x7f).contains(&b))
}

/// One record of one ledger, owned. Fields are private so that a `Record`
/// always satisfies [`RecordView::check`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    tenant: TenantId,
    ledger: LedgerName,
    seq: Seq,
    timestamp_ms: u64,
    prev: RecordHash,
    content_type: String,
    payload: Vec<u8>,
    parents: Vec<Parent>,
}

/// The fields of a record, for [`Record::new`].
#[derive(Clone, Debug)]
pub struct RecordFields {
    pub tenant: TenantId,
    pub ledger: LedgerName,
    pub seq: Seq,
    pub timestamp_ms: u64,
    pub prev: RecordHash,
    pub content_type: String,
    pub payload: Vec<u8>,
    pub parents: Vec<Parent>,
}

impl Record {
    pub fn new(fields: RecordFields) -> Result<Record, RecordError> {
        let record = Record {
            tenant: fields.tenant,
            ledger: fields.ledger,
            seq: fields.seq,
            timestamp_ms: fields.timestamp_ms,
            prev: fields.prev,
            content_type: fields.content_type,
            payload: fields.payload,
            parents: fields.parents,
        };
        record.view().check()?;
        Ok(record)
    }

    pub fn view(&self) -> RecordView<'_> {
        RecordView {
            tenant: self.tenant.as_str(),
            ledger: self.ledger.as_str(),
            seq: self.seq,
            timestamp_ms: self.timestamp_ms,
            prev: self.prev,
            content_type: &self.content_type,
            payload: &self.payload,
            parents: &self.parents,
        }
    }

    pub fn hash(&self) -> RecordHash {
        self.view().hash()
    }

    pub fn canonical(&self) -> Vec<u8> {
        self.view().canonical()
    }

    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }
    pub fn ledger(&self) -> &LedgerName {
        &self.ledger
    }
    pub fn seq(&self) -> Seq {
        self.seq
    }
    pub fn timestamp_ms(&self) -> u64 {
        self.timestamp_ms
    }
    pub fn prev(&self) -> RecordHash {
        self.prev
    }
    pub fn content_type(&self) -> &str {
        &self.content_type
    }
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }
    pub fn parents(&self) -> &[Parent] {
        &self.parents
    }

    /// Gives the fields back, e.g. to move the payload out.
    pub fn into_fields(self) -> RecordFields {
        RecordFields {
            tenant: self.tenant,
            ledger: self.ledger,
            seq: self.seq,
            timestamp_ms: self.timestamp_ms,
            prev: self.prev,
            content_type: self.content_type,
            payload: self.payload,
            parents: self.parents,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_ascii_checks_every_byte() {
        for len in 1..=20 {
            for at in 0..len {
                for byte in 0u8..=255 {
                    let mut text = vec![b'a'; len];
                    text[at] = byte;
                    let expected = text.iter().all(|b| (0x20..0x7f).contains(b));
                    assert_eq!(printable_ascii(&text), expected, "byte {byte:#x} at {at} of {len}");
                }
            }
        }
    }

    proptest::proptest! {
        /// Several edge bytes at once, so that borrows and carries between
        /// bytes of a word get exercised.
        #[test]
        fn printable_ascii_agrees_with_the_plain_check(
            text in proptest::collection::vec(
                proptest::sample::select(b"\0\x1f\x20\x21a~\x7f\x80\xff".to_vec()),
                0..40,
            ),
        ) {
            let expected = text.iter().all(|b| (0x20..0x7f).contains(b));
            proptest::prop_assert_eq!(printable_ascii(&text), expected);
        }
    }

    fn fields(seq: u64) -> RecordFields {
        RecordFields {
            tenant: TenantId::new("acme").unwrap(),
            ledger: LedgerName::new("orders").unwrap(),
            seq: Seq::new(seq),
            timestamp_ms: 1_700_000_000_000,
            prev: if seq == 0 { Hash32::ZERO } else { Hash32::from_bytes([7; 32]) },
            content_type: "application/json".into(),
            payload: b"{}".to_vec(),
            parents: vec![],
        }
    }

    #[test]
    fn construction_rules() {
        let check = |f: RecordFields, expected: Result<(), RecordError>| {
            assert_eq!(Record::new(f.clone()).map(|_| ()), expected, "{f:?}");
        };
        check(fields(0), Ok(()));
        check(fields(5), Ok(()));
        check(RecordFields { prev: Hash32::ZERO, ..fields(5) }, Err(RecordError::BadPrev));
        check(RecordFields { prev: Hash32::from_bytes([1; 32]), ..fields(0) }, Err(RecordError::BadPrev));
        check(RecordFields { content_type: String::new(), ..fields(1) }, Err(RecordError::BadContentType));
        check(RecordFields { content_type: "a\nb".into(), ..fields(1) }, Err(RecordError::BadContentType));
        check(
            RecordFields { payload: vec![0; PAYLOAD_BYTES_MAX + 1], ..fields(1) },
            Err(RecordError::PayloadTooLarge),
        );
        let parent = |ledger: &str, seq: u64| Parent {
            ledger: LedgerName::new(ledger).unwrap(),
            seq: Seq::new(seq),
            hash: Hash32::from_bytes([9; 32]),
        };
        check(RecordFields { parents: vec![parent("orders", 4)], ..fields(5) }, Ok(()));
        check(
            RecordFields { parents: vec![parent("orders", 5)], ..fields(5) },
            Err(RecordError::ParentNotEarlier),
        );
        check(RecordFields { parents: vec![parent("other", 99)], ..fields(5) }, Ok(()));
        check(
            RecordFields { parents: vec![parent("other", 1), parent("other", 1)], ..fields(5) },
            Err(RecordError::DuplicateParent),
        );
        check(
            RecordFields { parents: (0..17).map(|i| parent("other", i)).collect(), ..fields(5) },
            Err(RecordError::TooManyParents),
        );
    }

    #[test]
    fn hash_is_leaf_prefixed_canonical() {
        let r = Record::new(fields(3)).unwrap();
        let mut pre = vec![LEAF_PREFIX];
        pre.extend(r.canonical());
        assert_eq!(r.hash().as_bytes(), blake3::hash(&pre).as_bytes());
        let mut buf = vec![9; 3];
        assert_eq!(r.view().hash_with(&mut buf), r.hash());
    }
}
