//! `GET /v1/ledgers/{ledger}/records/{seq}/lineage`: a record's ancestors
//! (from the records themselves, in redb) and descendants (from the derived
//! sled index), each walked a bounded number of generations and nodes. The
//! answer carries the index watermark and whether the index covered every
//! ledger of the tenant, because descendants appended after the last
//! indexing pass are not listed yet. Ledgers resolve inside the caller's
//! tenant, so another tenant's ledger answers exactly like a missing one.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;

use annal_chain::{LedgerName, Seq, TenantId};
use annal_store::{Index, IndexError, RecordEntry, Store};
use http::{HeaderMap, StatusCode};
use warp::Filter as _;

use super::{ApiError, Req, Response, Routes, json, read_error, with_app, with_rate_headers};
use crate::app::App;
use crate::limits::{LINEAGE_DEPTH_MAX, LINEAGE_NODES_MAX};

pub fn routes(app: Arc<App>) -> Routes {
    warp::path!("v1" / "ledgers" / String / "records" / u64 / "lineage")
        .and(warp::get())
        .and(warp::header::headers_cloned())
        .and(with_app(app))
        .then(lineage)
        .boxed()
}

const ROUTE: &str = "GET /v1/ledgers/{ledger}/records/{seq}/lineage";

/// Children of one record read from the index: one more than the walk can
/// list, so a walk cut short knows it was.
const CHILDREN_PAGE: u64 = LINEAGE_NODES_MAX as u64 + 1;

async fn lineage(ledger: String, seq: u64, headers: HeaderMap, app: Arc<App>) -> Response {
    index_call(app, ROUTE, headers, move |store, index, tenant| {
        // An invalid name cannot exist: answer as for a missing ledger.
        let ledger = LedgerName::new(&ledger).map_err(|_| ApiError::LedgerNotFound)?;
        let body = answer(store, index, tenant, &ledger, Seq::new(seq))?;
        Ok(json(StatusCode::OK, &body))
    })
    .await
}

/// Serves a tenant route answered from the sled index: authenticates as
/// every tenant route does (`App::tenant_auth`), runs `answer` on the
/// blocking pool (it reads redb and sled), sends a refusal down the one
/// error path, and adds the rate headers.
pub(super) async fn index_call<F>(
    app: Arc<App>,
    route: &'static str,
    headers: HeaderMap,
    answer: F,
) -> Response
where
    F: FnOnce(&Store, Option<&Index>, &TenantId) -> Result<Response, ApiError> + Send + 'static,
{
    let mut r = Req { method: "GET", route, headers, tenant: None, key_id: None };
    let (tenant, decision) = match app.tenant_auth(&mut r) {
        Ok(v) => v,
        Err(e) => return app.fail(&r, e),
    };
    r.headers = HeaderMap::new();
    let (store, index) = (app.store.clone(), app.index.clone());
    let result = tokio::task::spawn_blocking(move || answer(&store, index.as_deref(), &tenant))
        .await
        .unwrap_or_else(|e| {
            log::error!("{route} task failed: {e}");
            Err(ApiError::Internal)
        });
    let resp = result.unwrap_or_else(|e| app.fail(&r, e));
    with_rate_headers(resp, &app, decision)
}

pub(super) fn index_error(e: IndexError) -> ApiError {
    match e {
        IndexError::Read(e) => read_error(e),
        IndexError::Sled(reason) => {
            log::error!("index unavailable: {reason}");
            ApiError::IndexUnavailable
        }
    }
}

/// Whether the index has caught up with every ledger of `tenant` as it
/// stands now: at once when it caught up with the whole store since the
/// last commit, else by reading that tenant's ledgers only.
pub(super) fn index_complete(store: &Store, index: &Index, tenant: &TenantId) -> Result<bool, ApiError> {
    if index.caught_up_with(store) {
        return Ok(true);
    }
    for (l, size) in store.tenant_ledgers(tenant).map_err(read_error)? {
        if index.watermark(tenant, &l).map_err(index_error)? < size {
            return Ok(false);
        }
    }
    Ok(true)
}

fn node(entry: &RecordEntry, depth: u32) -> serde_json::Value {
    let r = &entry.record;
    serde_json::json!({
        "ledger": r.ledger().as_str(),
        "seq": r.seq().get(),
        "hash": entry.hash.to_hex(),
        "depth": depth,
    })
}

/// One record of the tenant that an index entry or a parent link names; it
/// exists because both are only ever written for stored records.
fn linked(store: &Store, tenant: &TenantId, ledger: &LedgerName, seq: Seq) -> Result<RecordEntry, ApiError> {
    store.record(tenant, ledger, seq).map_err(read_error)?.ok_or_else(|| {
        log::error!("lineage names {tenant}/{ledger} seq {seq}, which is not stored");
        ApiError::Internal
    })
}

fn answer(
    store: &Store,
    index: Option<&Index>,
    tenant: &TenantId,
    ledger: &LedgerName,
    seq: Seq,
) -> Result<serde_json::Value, ApiError> {
    let Some(state) = store.ledger_state(tenant, ledger).map_err(read_error)? else {
        return Err(ApiError::LedgerNotFound);
    };
    let Some(entry) = store.record(tenant, ledger, seq).map_err(read_error)? else {
        return Err(ApiError::RecordNotFound);
    };
    let index = index.ok_or(ApiError::IndexUnavailable)?;
    // Read before the walk: every child appended before this point is in
    // the index when `index_complete` is true.
    let watermark = index.watermark(tenant, ledger).map_err(index_error)?;
    let index_complete = index_complete(store, index, tenant)?;

    // Ancestors: parent links, breadth first.
    let mut ancestors = Vec::new();
    let mut ancestors_truncated = false;
    let mut seen = BTreeSet::new();
    let mut queue: VecDeque<(RecordEntry, u32)> = VecDeque::from([(entry.clone(), 0)]);
    'up: while let Some((child, depth)) = queue.pop_front() {
        for p in child.record.parents() {
            if !seen.insert((p.ledger.clone(), p.seq)) {
                continue;
            }
            if depth == LINEAGE_DEPTH_MAX || ancestors.len() == LINEAGE_NODES_MAX {
                ancestors_truncated = true;
                break 'up;
            }
            let parent = linked(store, tenant, &p.ledger, p.seq)?;
            ancestors.push(node(&parent, depth + 1));
            queue.push_back((parent, depth + 1));
        }
    }

    // Descendants: the index's child entries, each read back from redb and
    // checked to name its parent, breadth first.
    let mut descendants = Vec::new();
    let mut descendants_truncated = false;
    let mut seen = BTreeSet::new();
    let mut queue: VecDeque<(LedgerName, Seq, u32)> = VecDeque::from([(ledger.clone(), seq, 0)]);
    // A record can have any number of children; one read of
    // `CHILDREN_PAGE` of them is enough. `seen` holds only the descendants
    // listed so far (at most `LINEAGE_NODES_MAX`), so a full page holds a
    // child not seen yet, and that child is either listed or ends the walk
    // as truncated: a second page could never be reached.
    'down: while let Some((l, s, depth)) = queue.pop_front() {
        for (cl, cs) in index.children(tenant, &l, s, None, CHILDREN_PAGE).map_err(index_error)? {
            if !seen.insert((cl.clone(), cs)) {
                continue;
            }
            if depth == LINEAGE_DEPTH_MAX || descendants.len() == LINEAGE_NODES_MAX {
                descendants_truncated = true;
                break 'down;
            }
            let child = linked(store, tenant, &cl, cs)?;
            if !child.record.parents().iter().any(|p| p.ledger == l && p.seq == s) {
                log::error!(
                    "index names {tenant}/{cl} seq {cs} as a child of {l} seq {s}; the record disagrees"
                );
                return Err(ApiError::IndexUnavailable);
            }
            descendants.push(node(&child, depth + 1));
            queue.push_back((cl, cs, depth + 1));
        }
    }

    Ok(serde_json::json!({
        "ledger": ledger.as_str(),
        "seq": seq.get(),
        "hash": entry.hash.to_hex(),
        "ancestors": ancestors,
        "ancestors_truncated": ancestors_truncated,
        "descendants": descendants,
        "descendants_truncated": descendants_truncated,
        "index_watermark": watermark,
        "ledger_size": state.size,
        "index_complete": index_complete,
    }))
}
