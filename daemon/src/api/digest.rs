//! `GET /v1/payloads/{digest}/records`: the caller's records whose payload
//! has this blake3 digest ("where did we record this document?"), from the
//! derived sled index. Each entry is read back from redb and its payload
//! hashed again before it is listed, so the index can only ever leave a
//! record out (when it lags), never name a wrong one. The answer says
//! whether the index covered every ledger of the tenant. Only the caller's
//! tenant is searched: another tenant's records answer exactly like a
//! digest nobody recorded.

use std::sync::Arc;

use annal_chain::{Hash32, LedgerName, Seq, TenantId};
use annal_store::{Index, Store};
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use warp::Filter as _;

use super::lineage::{index_call, index_complete, index_error};
use super::{ApiError, Response, Routes, json, read_error, with_app};
use crate::app::App;
use crate::limits::{PAGE_LIMIT_DEFAULT, PAGE_LIMIT_MAX};

pub fn routes(app: Arc<App>) -> Routes {
    warp::path!("v1" / "payloads" / String / "records")
        .and(warp::get())
        .and(warp::header::headers_cloned())
        .and(warp::query::<DigestPage>())
        .and(with_app(app))
        .then(by_digest)
        .boxed()
}

const ROUTE: &str = "GET /v1/payloads/{digest}/records";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DigestPage {
    /// `ledger:seq` of the last record of the previous page.
    after: Option<String>,
    limit: Option<u64>,
}

async fn by_digest(digest: String, headers: HeaderMap, page: DigestPage, app: Arc<App>) -> Response {
    index_call(app, ROUTE, headers, move |store, index, tenant| {
        let (digest, after, limit) = parse(&digest, &page)?;
        let (body, next) = answer(store, index, tenant, digest, after, limit)?;
        let mut resp = json(StatusCode::OK, &body);
        if let Some(next) = next
            && let Ok(v) = format!("<{next}>; rel=\"next\"").parse()
        {
            resp.headers_mut().insert(http::header::LINK, v);
        }
        Ok(resp)
    })
    .await
}

type Cursor = Option<(LedgerName, Seq)>;

fn parse(digest: &str, page: &DigestPage) -> Result<(Hash32, Cursor, u64), ApiError> {
    let bad = |detail: &str| ApiError::BadRequest { detail: detail.to_owned() };
    let digest = Hash32::from_hex(digest).ok_or_else(|| bad("digest must be 64 lowercase hex (blake3)"))?;
    let limit = page.limit.unwrap_or(PAGE_LIMIT_DEFAULT);
    if limit == 0 || limit > PAGE_LIMIT_MAX {
        return Err(ApiError::OutOfRange { detail: format!("limit must be 1..={PAGE_LIMIT_MAX}") });
    }
    let after = match &page.after {
        None => None,
        Some(cursor) => {
            let bad_cursor = || bad("after must be ledger:seq");
            let (ledger, seq) = cursor.split_once(':').ok_or_else(bad_cursor)?;
            let ledger = LedgerName::new(ledger).map_err(|_| bad_cursor())?;
            Some((ledger, Seq::new(seq.parse().map_err(|_| bad_cursor())?)))
        }
    };
    Ok((digest, after, limit))
}

fn answer(
    store: &Store,
    index: Option<&Index>,
    tenant: &TenantId,
    digest: Hash32,
    after: Cursor,
    limit: u64,
) -> Result<(serde_json::Value, Option<String>), ApiError> {
    let index = index.ok_or(ApiError::IndexUnavailable)?;
    // Read before the lookup: every record appended before this point is
    // listed when `index_complete` is true.
    let complete = index_complete(store, index, tenant)?;
    let found =
        index.by_payload_digest(tenant, digest.as_bytes(), after.as_ref(), limit).map_err(index_error)?;
    let mut records = Vec::with_capacity(found.len());
    for (ledger, seq) in &found {
        let entry = store.record(tenant, ledger, *seq).map_err(read_error)?.ok_or_else(|| {
            log::error!("payload index names {tenant}/{ledger} seq {seq}, which is not stored");
            ApiError::Internal
        })?;
        if blake3::hash(entry.record.payload()).as_bytes() != digest.as_bytes() {
            log::error!("payload index names {tenant}/{ledger} seq {seq} for a payload it does not hold");
            return Err(ApiError::IndexUnavailable);
        }
        let url = format!("/v1/ledgers/{ledger}/records/{seq}");
        records.push(serde_json::json!({
            "ledger": ledger.as_str(),
            "seq": seq.get(),
            "hash": entry.hash.to_hex(),
            "record_url": url,
            "proof_url": format!("{url}/proof"),
        }));
    }
    let next = (found.len() as u64 == limit).then(|| {
        let (ledger, seq) = found.last().expect("a full page is not empty");
        format!("/v1/payloads/{}/records?after={ledger}:{seq}&limit={limit}", digest.to_hex())
    });
    let body = serde_json::json!({
        "payload_digest": digest.to_hex(),
        "records": records,
        "next": next,
        "index_complete": complete,
    });
    Ok((body, next))
}
