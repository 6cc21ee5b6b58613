//! The control plane: tenants and their API keys. Unlike ledgers these rows
//! change (a tenant is suspended, a key revoked), but a key row keeps its
//! digest and creation time forever; only `revoked_ms` is ever set, once.
//! Keys are stored as digests only; the secret never reaches the store.

use annal_chain::TenantId;
use redb::{Durability, ReadableTable};

use crate::codec::{self, StoredKey, StoredTenant};
use crate::error::{Corruption, ReadError, WriteError};
use crate::schema::{API_KEYS, TENANTS};
use crate::store::Store;

/// Whether a tenant's keys may be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TenantStatus {
    Active,
    Suspended,
}

impl TenantStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TenantStatus::Active => "active",
            TenantStatus::Suspended => "suspended",
        }
    }
}

/// A tenant row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tenant {
    pub id: TenantId,
    pub status: TenantStatus,
    pub created_ms: u64,
    pub updated_ms: u64,
}

/// An API key row: the digest of the secret, never the secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKey {
    pub key_id: String,
    pub tenant: TenantId,
    pub digest: [u8; 32],
    pub created_ms: u64,
    pub revoked_ms: Option<u64>,
}

/// Why a control-plane write was refused (nothing was written).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegistryRefusal {
    TenantExists,
    NoTenant,
    KeyExists,
    NoKey,
    AlreadyRevoked,
}

fn corrupt(what: &'static str, key: &str) -> Corruption {
    Corruption { tenant: key.to_owned(), ledger: "registry".into(), seq: None, what }
}

fn tenant_row(id: &str, bytes: &[u8]) -> Result<Tenant, ReadError> {
    let s: StoredTenant = codec::decode(bytes).map_err(|_| ReadError::Corrupt(corrupt("tenant row", id)))?;
    let id = TenantId::new(id).map_err(|_| ReadError::Corrupt(corrupt("tenant id", id)))?;
    let status = if s.suspended { TenantStatus::Suspended } else { TenantStatus::Active };
    Ok(Tenant { id, status, created_ms: s.created_ms, updated_ms: s.updated_ms })
}

fn key_row(key_id: &[u8], bytes: &[u8]) -> Result<ApiKey, ReadError> {
    let shown = String::from_utf8_lossy(key_id).into_owned();
    let s: StoredKey = codec::decode(bytes).map_err(|_| ReadError::Corrupt(corrupt("key row", &shown)))?;
    let tenant = TenantId::new(&s.tenant).map_err(|_| ReadError::Corrupt(corrupt("key tenant", &shown)))?;
    Ok(ApiKey { key_id: shown, tenant, digest: s.digest, created_ms: s.created_ms, revoked_ms: s.revoked_ms })
}

type Txn = redb::WriteTransaction;

impl Store {
    /// Runs one durable control-plane write transaction. Any storage error
    /// fails the store, as for appends: nothing is acknowledged after it.
    fn control_write<T>(
        &self,
        body: impl FnOnce(&Txn) -> Result<Result<T, RegistryRefusal>, redb::Error>,
    ) -> Result<Result<T, RegistryRefusal>, WriteError> {
        if let Some(reason) = self.failure() {
            return Err(WriteError::Failed(reason));
        }
        let fail = |e: redb::Error| {
            let msg = e.to_string();
            self.shared.fail(msg.clone());
            WriteError::Failed(msg)
        };
        let mut txn = self.shared.db.begin_write().map_err(|e| fail(e.into()))?;
        txn.set_durability(Durability::Immediate).map_err(|e| fail(e.into()))?;
        match body(&txn).map_err(fail)? {
            Ok(value) => {
                txn.commit().map_err(|e| fail(e.into()))?;
                Ok(Ok(value))
            }
            Err(refusal) => {
                txn.abort().map_err(|e| fail(e.into()))?;
                Ok(Err(refusal))
            }
        }
    }

    pub fn create_tenant(
        &self,
        id: &TenantId,
        now_ms: u64,
    ) -> Result<Result<Tenant, RegistryRefusal>, WriteError> {
        self.control_write(|txn| {
            let mut table = txn.open_table(TENANTS)?;
            if table.get(id.as_str())?.is_some() {
                return Ok(Err(RegistryRefusal::TenantExists));
            }
            let row = StoredTenant { suspended: false, created_ms: now_ms, updated_ms: now_ms };
            table.insert(id.as_str(), codec::encode(&row).as_slice())?;
            Ok(Ok(Tenant {
                id: id.clone(),
                status: TenantStatus::Active,
                created_ms: now_ms,
                updated_ms: now_ms,
            }))
        })
    }

    pub fn set_tenant_status(
        &self,
        id: &TenantId,
        status: TenantStatus,
        now_ms: u64,
    ) -> Result<Result<Tenant, RegistryRefusal>, WriteError> {
        self.control_write(|txn| {
            let mut table = txn.open_table(TENANTS)?;
            let Some(old) = table.get(id.as_str())?.map(|v| v.value().to_vec()) else {
                return Ok(Err(RegistryRefusal::NoTenant));
            };
            let Ok(mut row) = codec::decode::<StoredTenant>(&old) else {
                return Err(redb::Error::Corrupted(format!("tenant row {id} does not decode")));
            };
            row.suspended = status == TenantStatus::Suspended;
            row.updated_ms = now_ms;
            table.insert(id.as_str(), codec::encode(&row).as_slice())?;
            Ok(Ok(Tenant { id: id.clone(), status, created_ms: row.created_ms, updated_ms: now_ms }))
        })
    }

    pub fn tenant(&self, id: &TenantId) -> Result<Option<Tenant>, ReadError> {
        let snap = self.snapshot()?;
        let table = snap.txn.open_table(TENANTS).map_err(|e| self.storage(e))?;
        let row = table.get(id.as_str()).map_err(|e| self.storage(e))?;
        row.map(|v| tenant_row(id.as_str(), v.value())).transpose()
    }

    /// Every tenant, in id order.
    pub fn tenants(&self) -> Result<Vec<Tenant>, ReadError> {
        let snap = self.snapshot()?;
        let table = snap.txn.open_table(TENANTS).map_err(|e| self.storage(e))?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(|e| self.storage(e))? {
            let (k, v) = entry.map_err(|e| self.storage(e))?;
            out.push(tenant_row(k.value(), v.value())?);
        }
        Ok(out)
    }

    /// Stores a new key row for an existing tenant.
    pub fn add_api_key(&self, key: &ApiKey) -> Result<Result<(), RegistryRefusal>, WriteError> {
        self.control_write(|txn| {
            if txn.open_table(TENANTS)?.get(key.tenant.as_str())?.is_none() {
                return Ok(Err(RegistryRefusal::NoTenant));
            }
            let mut table = txn.open_table(API_KEYS)?;
            if table.get(key.key_id.as_bytes())?.is_some() {
                return Ok(Err(RegistryRefusal::KeyExists));
            }
            let row = StoredKey {
                tenant: key.tenant.as_str().to_owned(),
                digest: key.digest,
                created_ms: key.created_ms,
                revoked_ms: None,
            };
            table.insert(key.key_id.as_bytes(), codec::encode(&row).as_slice())?;
            Ok(Ok(()))
        })
    }

    /// Revokes a key of `tenant`; a key of another tenant is `NoKey`.
    pub fn revoke_api_key(
        &self,
        tenant: &TenantId,
        key_id: &str,
        now_ms: u64,
    ) -> Result<Result<ApiKey, RegistryRefusal>, WriteError> {
        self.control_write(|txn| {
            let mut table = txn.open_table(API_KEYS)?;
            let Some(old) = table.get(key_id.as_bytes())?.map(|v| v.value().to_vec()) else {
                return Ok(Err(RegistryRefusal::NoKey));
            };
            let Ok(mut row) = codec::decode::<StoredKey>(&old) else {
                return Err(redb::Error::Corrupted(format!("key row {key_id} does not decode")));
            };
            if row.tenant != tenant.as_str() {
                return Ok(Err(RegistryRefusal::NoKey));
            }
            if row.revoked_ms.is_some() {
                return Ok(Err(RegistryRefusal::AlreadyRevoked));
            }
            row.revoked_ms = Some(now_ms);
            table.insert(key_id.as_bytes(), codec::encode(&row).as_slice())?;
            Ok(Ok(ApiKey {
                key_id: key_id.to_owned(),
                tenant: tenant.clone(),
                digest: row.digest,
                created_ms: row.created_ms,
                revoked_ms: row.revoked_ms,
            }))
        })
    }

    pub fn api_key(&self, key_id: &str) -> Result<Option<ApiKey>, ReadError> {
        let snap = self.snapshot()?;
        let table = snap.txn.open_table(API_KEYS).map_err(|e| self.storage(e))?;
        let row = table.get(key_id.as_bytes()).map_err(|e| self.storage(e))?;
        row.map(|v| key_row(key_id.as_bytes(), v.value())).transpose()
    }

    /// The keys of one tenant, in key-id order.
    pub fn api_keys(&self, tenant: &TenantId) -> Result<Vec<ApiKey>, ReadError> {
        let snap = self.snapshot()?;
        let table = snap.txn.open_table(API_KEYS).map_err(|e| self.storage(e))?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(|e| self.storage(e))? {
            let (k, v) = entry.map_err(|e| self.storage(e))?;
            let key = key_row(k.value(), v.value())?;
            if key.tenant == *tenant {
                out.push(key);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::OpenOptions;

    #[test]
    fn tenants_and_keys() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), OpenOptions::default()).unwrap();
        let acme = TenantId::new("acme").unwrap();
        assert_eq!(store.tenant(&acme).unwrap(), None);
        let t = store.create_tenant(&acme, 5).unwrap().unwrap();
        assert_eq!(t.status, TenantStatus::Active);
        assert_eq!(store.create_tenant(&acme, 6).unwrap(), Err(RegistryRefusal::TenantExists));
        let t = store.set_tenant_status(&acme, TenantStatus::Suspended, 7).unwrap().unwrap();
        assert_eq!((t.status, t.created_ms, t.updated_ms), (TenantStatus::Suspended, 5, 7));
        let other = TenantId::new("other").unwrap();
        assert_eq!(
            store.set_tenant_status(&other, TenantStatus::Active, 8).unwrap(),
            Err(RegistryRefusal::NoTenant)
        );

        let key = ApiKey {
            key_id: "k1".into(),
            tenant: acme.clone(),
            digest: [9; 32],
            created_ms: 10,
            revoked_ms: None,
        };
        assert_eq!(store.add_api_key(&key).unwrap(), Ok(()));
        assert_eq!(store.add_api_key(&key).unwrap(), Err(RegistryRefusal::KeyExists));
        let orphan = ApiKey { tenant: other.clone(), key_id: "k2".into(), ..key.clone() };
        assert_eq!(store.add_api_key(&orphan).unwrap(), Err(RegistryRefusal::NoTenant));
        assert_eq!(store.api_key("k1").unwrap(), Some(key.clone()));
        assert_eq!(store.api_keys(&acme).unwrap(), vec![key.clone()]);
        assert_eq!(store.revoke_api_key(&other, "k1", 11).unwrap(), Err(RegistryRefusal::NoKey));
        let revoked = store.revoke_api_key(&acme, "k1", 11).unwrap().unwrap();
        assert_eq!(revoked.revoked_ms, Some(11));
        assert_eq!(store.revoke_api_key(&acme, "k1", 12).unwrap(), Err(RegistryRefusal::AlreadyRevoked));
        drop(store);

        let store = Store::open(dir.path(), OpenOptions::default()).unwrap();
        assert_eq!(store.api_key("k1").unwrap().unwrap().revoked_ms, Some(11));
        assert_eq!(store.tenants().unwrap().len(), 1);
    }
}
