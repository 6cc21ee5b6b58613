//! Validated newtypes for every identifier and hash that is persisted or hashed.

use core::fmt;

use crate::limits::{LEDGER_NAME_BYTES_MAX, LOG_NAME_BYTES_MAX, TENANT_ID_BYTES_MAX};

/// A record's position in its ledger, counted from 0. It is also the record's
/// leaf index in the ledger's Merkle tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Seq(u64);

impl Seq {
    pub const ZERO: Seq = Seq(0);

    pub const fn new(value: u64) -> Seq {
        Seq(value)
    }

    pub const fn get(self) -> u64 {
        self.0
    }

    /// The next sequence number; `None` at `u64::MAX`, which no ledger reaches.
    pub const fn next(self) -> Option<Seq> {
        match self.0.checked_add(1) {
            Some(v) => Some(Seq(v)),
            None => None,
        }
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A 32-byte blake3 digest: a record hash, a Merkle node or a tree root.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Hash32([u8; 32]);

/// The hash of one record; it is also the record's Merkle leaf hash.
pub type RecordHash = Hash32;

impl Hash32 {
    /// The all-zero hash: the `prev` of a ledger's first record.
    pub const ZERO: Hash32 = Hash32([0; 32]);

    pub const fn from_bytes(bytes: [u8; 32]) -> Hash32 {
        Hash32(bytes)
    }

    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lowercase hex, the form used in JSON.
    pub fn to_hex(&self) -> String {
        let mut out = String::with_capacity(64);
        crate::hex::encode_into(&self.0, &mut out);
        out
    }

    /// Parses exactly 64 lowercase hex digits; anything else is refused, so one
    /// hash has exactly one spelling.
    pub fn from_hex(text: &str) -> Option<Hash32> {
        let mut out = [0u8; 32];
        crate::hex::decode_exact(text.as_bytes(), &mut out).then_some(Hash32(out))
    }
}

impl fmt::Debug for Hash32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash32({})", self.to_hex())
    }
}

impl fmt::Display for Hash32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Why a name was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameError {
    Empty,
    TooLong,
    /// A byte outside the allowed set, or a disallowed first byte.
    BadCharacter,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameError::Empty => "empty",
            NameError::TooLong => "too long",
            NameError::BadCharacter => "bad character",
        })
    }
}

impl std::error::Error for NameError {}

/// Checks a name: `[a-z0-9]` first, then `[a-z0-9._-]`, at most `max` bytes.
/// Lowercase only so that a name has one spelling; no `/` so that it can sit in
/// an origin line and a URL path segment unescaped.
fn check_name(text: &str, max: usize) -> Result<(), NameError> {
    let bytes = text.as_bytes();
    let Some(&first) = bytes.first() else {
        return Err(NameError::Empty);
    };
    if bytes.len() > max {
        return Err(NameError::TooLong);
    }
    if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
        return Err(NameError::BadCharacter);
    }
    let ok = bytes
        .iter()
        .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'));
    if ok { Ok(()) } else { Err(NameError::BadCharacter) }
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $max:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            pub fn new(text: &str) -> Result<$name, NameError> {
                check_name(text, $max)?;
                Ok($name(text.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl core::str::FromStr for $name {
            type Err = NameError;
            fn from_str(text: &str) -> Result<$name, NameError> {
                $name::new(text)
            }
        }
    };
}

name_type!(
    /// A tenant's id: `[a-z0-9][a-z0-9._-]*`, 1 to 64 bytes.
    TenantId,
    TENANT_ID_BYTES_MAX
);
name_type!(
    /// A ledger's name within its tenant: `[a-z0-9][a-z0-9._-]*`, 1 to 128 bytes.
    LedgerName,
    LEDGER_NAME_BYTES_MAX
);
name_type!(
    /// The log's name, the first part of every checkpoint origin
    /// (`<log name>/<tenant>/<ledger>`), e.g. `annal.example.org`.
    LogName,
    LOG_NAME_BYTES_MAX
);

/// The 4-byte key id of a C2SP signed-note Ed25519 key:
/// `SHA-256(key name || 0x0A || 0x01 || public key)[..4]`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId([u8; 4]);

impl KeyId {
    pub const fn from_bytes(bytes: [u8; 4]) -> KeyId {
        KeyId(bytes)
    }

    pub const fn as_bytes(&self) -> &[u8; 4] {
        &self.0
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::with_capacity(8);
        crate::hex::encode_into(&self.0, &mut out);
        f.write_str(&out)
    }
}

/// Identifies which ledger a record, checkpoint or bundle belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Origin {
    log: LogName,
    tenant: TenantId,
    ledger: LedgerName,
}

impl Origin {
    pub fn new(log: LogName, tenant: TenantId, ledger: LedgerName) -> Origin {
        Origin { log, tenant, ledger }
    }

    /// Parses `<log>/<tenant>/<ledger>`.
    pub fn parse(text: &str) -> Option<Origin> {
        let mut parts = text.split('/');
        let log = LogName::new(parts.next()?).ok()?;
        let tenant = TenantId::new(parts.next()?).ok()?;
        let ledger = LedgerName::new(parts.next()?).ok()?;
        if parts.next().is_some() {
            return None;
        }
        Some(Origin { log, tenant, ledger })
    }

    pub fn log(&self) -> &LogName {
        &self.log
    }

    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    pub fn ledger(&self) -> &LedgerName {
        &self.ledger
    }

    /// The same log and tenant, another ledger: where a cross-ledger parent lives.
    pub fn with_ledger(&self, ledger: LedgerName) -> Origin {
        Origin { log: self.log.clone(), tenant: self.tenant.clone(), ledger }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.log, self.tenant, self.ledger)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let check = |text: &str, expected: Result<(), NameError>| {
            assert_eq!(LedgerName::new(text).map(|_| ()), expected, "{text:?}");
        };
        check("orders", Ok(()));
        check("0rders.v2_x-y", Ok(()));
        check("", Err(NameError::Empty));
        check("Orders", Err(NameError::BadCharacter));
        check("-orders", Err(NameError::BadCharacter));
        check(".hidden", Err(NameError::BadCharacter));
        check("a/b", Err(NameError::BadCharacter));
        check("a b", Err(NameError::BadCharacter));
        check("é", Err(NameError::BadCharacter));
        check(&"a".repeat(128), Ok(()));
        check(&"a".repeat(129), Err(NameError::TooLong));
        assert_eq!(TenantId::new(&"a".repeat(65)).unwrap_err(), NameError::TooLong);
    }

    #[test]
    fn origin_round_trip() {
        let o = Origin::parse("annal.example/acme/orders").unwrap();
        assert_eq!(o.to_string(), "annal.example/acme/orders");
        for bad in ["annal/acme", "annal/acme/orders/x", "annal//orders", "Annal/acme/orders", ""] {
            assert!(Origin::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn hex_is_strict() {
        let h = Hash32::from_bytes([0xab; 32]);
        assert_eq!(Hash32::from_hex(&h.to_hex()), Some(h));
        assert_eq!(Hash32::from_hex(&h.to_hex().to_uppercase()), None);
        assert_eq!(Hash32::from_hex(&h.to_hex()[1..]), None);
        assert_eq!(Hash32::from_hex(&format!("{}0", h.to_hex())), None);
    }
}
