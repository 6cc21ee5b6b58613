//! The one module that knows the storage-value codec (bincode 2.0.1).
//!
//! Nothing hashed or signed passes through here: record hashes come from
//! `annal-chain`'s canonical encoding and are re-derived on every read. To swap
//! the codec, change this file and add a migration step.

use bincode::config::{Configuration, Limit, LittleEndian, Varint};
use bincode::{Decode, Encode};

use crate::limits::CODEC_VALUE_BYTES_MAX;

type Config = Configuration<LittleEndian, Varint, Limit<CODEC_VALUE_BYTES_MAX>>;
const CONFIG: Config = bincode::config::standard().with_limit::<CODEC_VALUE_BYTES_MAX>();

/// A stored value did not decode: the bytes are not what the store wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Undecodable;

pub(crate) fn encode<T: Encode>(value: &T) -> Vec<u8> {
    bincode::encode_to_vec(value, CONFIG).expect("storage values are below the codec limit")
}

pub(crate) fn decode<T: Decode<()>>(bytes: &[u8]) -> Result<T, Undecodable> {
    match bincode::decode_from_slice(bytes, CONFIG) {
        Ok((value, used)) if used == bytes.len() => Ok(value),
        _ => Err(Undecodable),
    }
}

/// One record as stored under `(ledger id, seq)`. Tenant, ledger and seq come
/// from the key and the ledger row; `prev` is the stored hash of `seq - 1`, so
/// it is not stored again, and a record only verifies when its predecessor's
/// stored hash is right too (the chain link is checked by construction).
/// `hash` is first so that Merkle code can read the leaf hash without
/// decoding the payload ([`peek_hash`]).
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub(crate) struct StoredRecord {
    pub hash: [u8; 32],
    pub timestamp_ms: u64,
    pub content_type: String,
    pub payload: Vec<u8>,
    pub parents: Vec<StoredParent>,
}

#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub(crate) struct StoredParent {
    pub ledger: String,
    pub seq: u64,
    pub hash: [u8; 32],
}

/// [`StoredRecord`]'s encoding from borrowed fields, byte for byte the same
/// (a test checks it), so the committer needs no copy of the payload.
#[derive(Encode)]
struct StoredRecordRef<'a> {
    hash: [u8; 32],
    timestamp_ms: u64,
    content_type: &'a str,
    payload: &'a [u8],
    parents: &'a [StoredParentRef<'a>],
}

#[derive(Encode)]
struct StoredParentRef<'a> {
    ledger: &'a str,
    seq: u64,
    hash: [u8; 32],
}

/// Encodes a record value with a zero hash; the committer writes the hash
/// into the first 32 bytes ([`set_hash`]) once it knows seq and prev.
pub(crate) fn encode_record_unhashed(
    timestamp_ms: u64,
    content_type: &str,
    payload: &[u8],
    parents: &[annal_chain::Parent],
) -> Vec<u8> {
    let parents: Vec<StoredParentRef<'_>> = parents
        .iter()
        .map(|p| StoredParentRef { ledger: p.ledger.as_str(), seq: p.seq.get(), hash: *p.hash.as_bytes() })
        .collect();
    let value = StoredRecordRef { hash: [0; 32], timestamp_ms, content_type, payload, parents: &parents };
    let mut out = Vec::with_capacity(64 + content_type.len() + payload.len() + parents.len() * 64);
    bincode::encode_into_std_write(&value, &mut out, CONFIG)
        .expect("storage values are below the codec limit");
    out
}

/// Writes the record hash into a value from [`encode_record_unhashed`].
pub(crate) fn set_hash(value: &mut [u8], hash: &[u8; 32]) {
    value[..32].copy_from_slice(hash);
}

/// The stored hash of an encoded [`StoredRecord`] (its first 32 bytes).
pub(crate) fn peek_hash(value: &[u8]) -> Option<[u8; 32]> {
    value.get(..32)?.try_into().ok()
}

/// A ledger's head: everything an append needs, O(1) to read.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub(crate) struct StoredHead {
    pub id: u64,
    pub tenant: String,
    pub ledger: String,
    pub next_seq: u64,
    pub head_hash: [u8; 32],
    /// The compact range of the tree of `next_seq` leaves, largest first.
    pub peaks: Vec<[u8; 32]>,
    pub checkpoint_size: u64,
}

impl StoredHead {
    /// The head of a ledger with no records yet.
    pub(crate) fn empty(id: u64, tenant: &str, ledger: &str) -> StoredHead {
        StoredHead {
            id,
            tenant: tenant.to_owned(),
            ledger: ledger.to_owned(),
            next_seq: 0,
            head_hash: [0; 32],
            peaks: Vec::new(),
            checkpoint_size: 0,
        }
    }
}

/// An idempotency key's outcome, under `(ledger id || key)`.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub(crate) struct StoredIdempotency {
    pub seq: u64,
    pub hash: [u8; 32],
    pub content: [u8; 32],
}

/// One applied migration step.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub(crate) struct StoredMigration {
    pub name: String,
    pub checksum: [u8; 32],
}

/// One entry of the signing-identity log.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub(crate) struct StoredIdentity {
    pub key_name: String,
    pub public: [u8; 32],
    pub timestamp_ms: u64,
    pub statement: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_the_first_32_bytes() {
        let r = StoredRecord {
            hash: [7; 32],
            timestamp_ms: 1 << 40,
            content_type: "text/plain".into(),
            payload: vec![1, 2, 3],
            parents: vec![StoredParent { ledger: "x".into(), seq: 3, hash: [9; 32] }],
        };
        let bytes = encode(&r);
        assert_eq!(peek_hash(&bytes), Some([7; 32]));
        assert_eq!(decode::<StoredRecord>(&bytes), Ok(r));
        assert_eq!(decode::<StoredRecord>(&bytes[..bytes.len() - 1]), Err(Undecodable));
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(decode::<StoredRecord>(&longer), Err(Undecodable));
    }

    #[test]
    fn unhashed_encoding_is_the_stored_record_encoding() {
        use annal_chain::{Hash32, LedgerName, Parent, Seq};
        let parents = [
            Parent {
                ledger: LedgerName::new("x").unwrap(),
                seq: Seq::new(3),
                hash: Hash32::from_bytes([9; 32]),
            },
            Parent {
                ledger: LedgerName::new("y").unwrap(),
                seq: Seq::new(1 << 33),
                hash: Hash32::from_bytes([1; 32]),
            },
        ];
        for (payload, parents) in [(vec![], &parents[..0]), (vec![5u8; 300], &parents[..])] {
            let owned = StoredRecord {
                hash: [7; 32],
                timestamp_ms: 1 << 40,
                content_type: "text/plain".into(),
                payload: payload.clone(),
                parents: parents
                    .iter()
                    .map(|p| StoredParent {
                        ledger: p.ledger.as_str().into(),
                        seq: p.seq.get(),
                        hash: *p.hash.as_bytes(),
                    })
                    .collect(),
            };
            let mut bytes = encode_record_unhashed(1 << 40, "text/plain", &payload, parents);
            set_hash(&mut bytes, &[7; 32]);
            assert_eq!(bytes, encode(&owned));
        }
    }

    #[test]
    fn huge_length_prefix_is_refused_not_allocated() {
        let mut bytes = vec![0u8; 64];
        bytes.extend_from_slice(&[0]); // timestamp
        bytes.extend_from_slice(&[0xfd, 0xff, 0xff, 0xff, 0x7f]); // content type length 2^31-ish
        assert_eq!(decode::<StoredRecord>(&bytes), Err(Undecodable));
    }
}

/// A tenant row (the control plane; `registry.rs`).
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub(crate) struct StoredTenant {
    pub suspended: bool,
    pub created_ms: u64,
    pub updated_ms: u64,
}

/// An API key row: the secret's digest, never the secret.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub(crate) struct StoredKey {
    pub tenant: String,
    pub digest: [u8; 32],
    pub created_ms: u64,
    pub revoked_ms: Option<u64>,
}

/// A webhook endpoint row under its id (`webhooks.rs`). Tenant and ledger
/// are checked names when read back.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub(crate) struct StoredWebhook {
    pub tenant: String,
    pub ledger: String,
    pub url: String,
    pub created_ms: u64,
    pub disabled_ms: Option<u64>,
    /// Versions 1, 2, ... in order; at least one not revoked.
    pub secrets: Vec<StoredWebhookSecret>,
    /// The next seq of `ledger` to enqueue.
    pub next_seq: u64,
    /// Its rows in the outbox, kept by every outbox write so counting them
    /// needs no scan.
    pub pending: u64,
}

/// One secret version of an endpoint: metadata only, never key material.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub(crate) struct StoredWebhookSecret {
    pub version: u32,
    pub created_ms: u64,
    pub revoked_ms: Option<u64>,
}

/// One pending delivery under its outbox id.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub(crate) struct StoredDelivery {
    pub endpoint: String,
    pub tenant: String,
    pub ledger: String,
    pub seq: u64,
    pub attempts: u32,
    pub next_attempt_ms: u64,
    pub created_ms: u64,
    pub last_error: Option<String>,
}
