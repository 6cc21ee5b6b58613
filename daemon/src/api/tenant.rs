//! Tenant routes: `/v1/...`. Every handler authenticates first; a ledger
//! name is resolved inside the caller's tenant, so another tenant's ledger is
//! exactly as missing as one that does not exist.

use std::sync::Arc;

use annal_chain::limits::PARENTS_COUNT_MAX;
use annal_chain::{
    Hash32, LedgerName, Outcome, Parent, ParentProof, RecordError, Seq, TenantId, verify_bundle, write_bundle,
};
use annal_store::{AppendRefusal, AppendRequest, Position, RecordEntry};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use warp::Filter as _;

use super::{
    ApiError, Req, Response, Routes, json, no_store, read_error, with_app, with_rate_headers, write_error,
};
use crate::app::{App, now_ms};
use crate::limits::{APPEND_BODY_BYTES_MAX, PAGE_LIMIT_DEFAULT, PAGE_LIMIT_MAX, VERIFY_BODY_BYTES_MAX};

pub fn routes(app: Arc<App>) -> Routes {
    let a = || with_app(app.clone());
    let append = warp::path!("v1" / "ledgers" / String / "records")
        .and(warp::post())
        .and(warp::header::headers_cloned())
        .and(warp::body::content_length_limit(APPEND_BODY_BYTES_MAX))
        .and(warp::body::bytes())
        .and(a())
        .then(append);
    let list = warp::path!("v1" / "ledgers" / String / "records")
        .and(warp::get())
        .and(warp::header::headers_cloned())
        .and(warp::query::<Page>())
        .and(a())
        .then(list);
    let get = warp::path!("v1" / "ledgers" / String / "records" / u64)
        .and(warp::get())
        .and(warp::header::headers_cloned())
        .and(a())
        .then(get_record);
    let proof = warp::path!("v1" / "ledgers" / String / "records" / u64 / "proof")
        .and(warp::get())
        .and(warp::header::headers_cloned())
        .and(warp::query::<SizeQuery>())
        .and(a())
        .then(proof);
    let checkpoint = warp::path!("v1" / "ledgers" / String / "checkpoint")
        .and(warp::get())
        .and(warp::header::headers_cloned())
        .and(warp::query::<SizeQuery>())
        .and(a())
        .then(checkpoint);
    let consistency = warp::path!("v1" / "ledgers" / String / "consistency")
        .and(warp::get())
        .and(warp::header::headers_cloned())
        .and(warp::query::<RangeQuery>())
        .and(a())
        .then(consistency);
    let export = warp::path!("v1" / "ledgers" / String / "export")
        .and(warp::get())
        .and(warp::header::headers_cloned())
        .and(a())
        .then(export);
    let verify = warp::path!("v1" / "verify")
        .and(warp::post())
        .and(warp::header::headers_cloned())
        .and(warp::body::content_length_limit(VERIFY_BODY_BYTES_MAX))
        .and(warp::body::bytes())
        .and(a())
        .then(verify);
    let history_write = warp::path("v1")
        .and(warp::path("ledgers"))
        .and(warp::method())
        .and_then(|method: http::Method| async move {
            match method {
                http::Method::PUT | http::Method::PATCH | http::Method::DELETE => Ok(method),
                _ => Err(warp::reject::not_found()),
            }
        })
        .and(warp::header::headers_cloned())
        .and(a())
        .then(append_only);
    append
        .or(list)
        .unify()
        .or(get)
        .unify()
        .or(proof)
        .unify()
        .or(checkpoint)
        .unify()
        .or(consistency)
        .unify()
        .or(export)
        .unify()
        .or(verify)
        .unify()
        .or(history_write)
        .unify()
        .boxed()
}

fn req(method: &'static str, route: &'static str, headers: HeaderMap) -> Req {
    Req { method, route, headers, tenant: None, key_id: None }
}

/// Authenticates, resolves the ledger name, runs `body`, and adds rate headers.
pub(super) async fn tenant_call<F, Fut>(app: Arc<App>, mut r: Req, ledger: Option<&str>, body: F) -> Response
where
    F: FnOnce(Arc<App>, TenantId, Option<LedgerName>, Req) -> Fut,
    Fut: std::future::Future<Output = Result<Response, ApiError>>,
{
    let (tenant, decision) = match app.tenant_auth(&mut r) {
        Ok(v) => v,
        Err(e) => return app.fail(&r, e),
    };
    let ledger = match ledger.map(LedgerName::new).transpose() {
        Ok(l) => l,
        // An invalid name cannot exist: answer as for a missing ledger.
        Err(_) => return with_rate_headers(app.fail(&r, ApiError::LedgerNotFound), &app, decision),
    };
    // The handler gets the headers; `r` keeps the rest for errors and
    // events, which never read headers, so nothing is cloned twice.
    let inner = Req { headers: std::mem::take(&mut r.headers), ..r.clone() };
    let resp = match body(app.clone(), tenant, ledger, inner).await {
        Ok(resp) => resp,
        Err(e) => app.fail(&r, e),
    };
    with_rate_headers(resp, &app, decision)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AppendBody<'a> {
    #[serde(borrow, default)]
    payload: Option<&'a serde_json::value::RawValue>,
    #[serde(default)]
    payload_base64: Option<String>,
    #[serde(default)]
    content_type: Option<String>,
    #[serde(default)]
    parents: Vec<ParentRef>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ParentRef {
    #[serde(default)]
    ledger: Option<String>,
    seq: u64,
    #[serde(default)]
    hash: Option<String>,
}

fn bad(detail: impl Into<String>) -> ApiError {
    ApiError::BadRequest { detail: detail.into() }
}

async fn append(ledger: String, headers: HeaderMap, body: Bytes, app: Arc<App>) -> Response {
    let r = req("POST", "POST /v1/ledgers/{ledger}/records", headers);
    tenant_call(app, r, Some(&ledger), |app, tenant, ledger, r| async move {
        let ledger = ledger.expect("route has a ledger");
        let parsed: AppendBody<'_> = serde_json::from_slice(&body).map_err(|e| bad(format!("body: {e}")))?;
        let (payload, default_type) = match (parsed.payload, parsed.payload_base64) {
            (Some(raw), None) => (raw.get().as_bytes().to_vec(), "application/json"),
            (None, Some(b64)) => (
                STANDARD.decode(b64).map_err(|_| bad("payload_base64 is not base64"))?,
                "application/octet-stream",
            ),
            _ => return Err(bad("give exactly one of payload and payload_base64")),
        };
        let content_type = parsed.content_type.unwrap_or_else(|| default_type.to_owned());
        // Checked here as well as by the committer: each parent named
        // without a hash costs a record read, and a body may name thousands.
        if parsed.parents.len() > PARENTS_COUNT_MAX {
            return Err(ApiError::RecordInvalid { detail: RecordError::TooManyParents.to_string() });
        }
        let idempotency_key = match r.headers.get("idempotency-key") {
            None => None,
            Some(v) => Some(v.to_str().map_err(|_| ApiError::IdempotencyKeyInvalid)?.to_owned()),
        };
        let parents = if parsed.parents.iter().all(|p| p.hash.is_some()) {
            parents(&app, &tenant, &ledger, parsed.parents)?
        } else {
            // Reading a parent reads and hashes a record of up to 1 MiB:
            // off the async workers.
            let (app, tenant, ledger) = (app.clone(), tenant.clone(), ledger.clone());
            tokio::task::spawn_blocking(move || parents(&app, &tenant, &ledger, parsed.parents))
                .await
                .map_err(|e| {
                    log::error!("parent lookup task failed: {e}");
                    ApiError::Internal
                })??
        };
        let request = AppendRequest {
            tenant,
            ledger: ledger.clone(),
            position: Position::Next,
            timestamp_ms: now_ms(),
            content_type,
            payload,
            parents,
            idempotency_key,
        };
        let appended = match app.store.append(request).await.map_err(write_error)? {
            Ok(a) => a,
            Err(refusal) => return Err(append_refusal(refusal)),
        };
        let seq = appended.seq.get();
        let location = format!("/v1/ledgers/{ledger}/records/{seq}");
        // Serialized straight from a struct: the hottest response skips
        // building a `serde_json::Value` map. Keys stay in sorted order, as
        // `json!` wrote them.
        let created = Created {
            hash: &appended.hash.to_hex(),
            ledger: ledger.as_str(),
            proof_url: &format!("{location}/proof"),
            record_url: &location,
            replayed: appended.replayed,
            seq,
            tree_size: seq + 1,
        };
        let mut resp = super::full(serde_json::to_vec(&created).expect("json"));
        *resp.status_mut() = StatusCode::CREATED;
        resp.headers_mut()
            .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
        if let Ok(v) = location.parse() {
            resp.headers_mut().insert(http::header::LOCATION, v);
        }
        if appended.replayed {
            resp.headers_mut().insert("idempotent-replayed", http::HeaderValue::from_static("true"));
        }
        Ok(resp)
    })
    .await
}

/// The parents an append names, each with its hash: the one given, or the
/// stored record's (records never change, so the hash read now is the hash
/// forever).
fn parents(
    app: &App,
    tenant: &TenantId,
    ledger: &LedgerName,
    refs: Vec<ParentRef>,
) -> Result<Vec<Parent>, ApiError> {
    let mut parents = Vec::with_capacity(refs.len());
    for p in refs {
        let parent_ledger = match &p.ledger {
            Some(name) => LedgerName::new(name).map_err(|_| ApiError::ParentNotFound)?,
            None => ledger.clone(),
        };
        let hash = match p.hash {
            Some(hex) => Hash32::from_hex(&hex).ok_or_else(|| bad("parent hash must be 64 lowercase hex"))?,
            None => {
                app.store
                    .record(tenant, &parent_ledger, Seq::new(p.seq))
                    .map_err(read_error)?
                    .ok_or(ApiError::ParentNotFound)?
                    .hash
            }
        };
        parents.push(Parent { ledger: parent_ledger, seq: Seq::new(p.seq), hash });
    }
    Ok(parents)
}

/// The body of a 201 from append.
#[derive(serde::Serialize)]
struct Created<'a> {
    hash: &'a str,
    ledger: &'a str,
    proof_url: &'a str,
    record_url: &'a str,
    replayed: bool,
    seq: u64,
    tree_size: u64,
}

fn append_refusal(refusal: AppendRefusal) -> ApiError {
    match refusal {
        AppendRefusal::Invalid(e) => ApiError::RecordInvalid { detail: e.to_string() },
        AppendRefusal::IdempotencyKeyInvalid => ApiError::IdempotencyKeyInvalid,
        AppendRefusal::IdempotencyConflict { .. } => ApiError::IdempotencyKeyReused,
        AppendRefusal::ParentNotFound { .. } => ApiError::ParentNotFound,
        AppendRefusal::ParentHashMismatch { .. } => ApiError::ParentHashMismatch,
        AppendRefusal::LedgerLimit { max } => ApiError::LedgerLimit {
            detail: format!(
                "a tenant may have {max} ledgers (storage.ledgers_per_tenant_max); append to an existing one"
            ),
        },
        // Position::Next never asks for a seq, so these mean a store bug.
        other => {
            log::error!("unexpected append refusal: {other:?}");
            ApiError::Internal
        }
    }
}

pub(crate) fn record_json(entry: &RecordEntry) -> serde_json::Value {
    let r = &entry.record;
    let mut v = serde_json::json!({
        "ledger": r.ledger().as_str(),
        "seq": r.seq().get(),
        "hash": entry.hash.to_hex(),
        "prev": r.prev().to_hex(),
        "timestamp_ms": r.timestamp_ms(),
        "content_type": r.content_type(),
        "payload_base64": STANDARD.encode(r.payload()),
        "parents": r.parents().iter().map(|p| serde_json::json!({
            "ledger": p.ledger.as_str(), "seq": p.seq.get(), "hash": p.hash.to_hex(),
        })).collect::<Vec<_>>(),
    });
    if r.content_type().starts_with("application/json")
        && let Ok(value) = serde_json::from_slice::<serde_json::Value>(r.payload())
    {
        v["payload"] = value;
    }
    v
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Page {
    after: Option<u64>,
    limit: Option<u64>,
}

async fn list(ledger: String, headers: HeaderMap, page: Page, app: Arc<App>) -> Response {
    let r = req("GET", "GET /v1/ledgers/{ledger}/records", headers);
    tenant_call(app, r, Some(&ledger), |app, tenant, ledger, _r| async move {
        let ledger = ledger.expect("route has a ledger");
        let limit = page.limit.unwrap_or(PAGE_LIMIT_DEFAULT);
        if limit == 0 || limit > PAGE_LIMIT_MAX {
            return Err(ApiError::OutOfRange { detail: format!("limit must be 1..={PAGE_LIMIT_MAX}") });
        }
        let Some(state) = app.store.ledger_state(&tenant, &ledger).map_err(read_error)? else {
            return Err(ApiError::LedgerNotFound);
        };
        // A page ends at `limit` records or about 4 MiB of payload, whichever
        // comes first; `next` is there while the ledger (as it stood) goes on.
        let records =
            app.store.records(&tenant, &ledger, page.after.map(Seq::new), limit).map_err(read_error)?;
        let next = records
            .last()
            .map(|e| e.record.seq().get())
            .filter(|last| last + 1 < state.size)
            .map(|last| format!("/v1/ledgers/{ledger}/records?after={last}&limit={limit}"));
        let items: Vec<_> = records.iter().map(record_json).collect();
        let mut resp = json(StatusCode::OK, &serde_json::json!({"records": items, "next": next}));
        if let Some(next) = next
            && let Ok(v) = format!("<{next}>; rel=\"next\"").parse()
        {
            resp.headers_mut().insert(http::header::LINK, v);
        }
        Ok(resp)
    })
    .await
}

async fn get_record(ledger: String, seq: u64, headers: HeaderMap, app: Arc<App>) -> Response {
    let r = req("GET", "GET /v1/ledgers/{ledger}/records/{seq}", headers);
    tenant_call(app, r, Some(&ledger), |app, tenant, ledger, _r| async move {
        let ledger = ledger.expect("route has a ledger");
        let entry = app.store.record(&tenant, &ledger, Seq::new(seq)).map_err(read_error)?;
        match entry {
            Some(e) => Ok(json(StatusCode::OK, &record_json(&e))),
            None if app.store.ledger_state(&tenant, &ledger).map_err(read_error)?.is_none() => {
                Err(ApiError::LedgerNotFound)
            }
            None => Err(ApiError::RecordNotFound),
        }
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SizeQuery {
    size: Option<u64>,
}

/// The checkpoint to prove against: the one at `size`, or the latest.
fn pick_checkpoint(
    app: &App,
    tenant: &TenantId,
    ledger: &LedgerName,
    size: Option<u64>,
) -> Result<annal_chain::SignedNote, ApiError> {
    let note = match size {
        Some(size) => app.store.checkpoint_at(tenant, ledger, size),
        None => app.store.latest_checkpoint(tenant, ledger),
    };
    match note.map_err(read_error)? {
        Some(note) => Ok(note),
        None if app.store.ledger_state(tenant, ledger).map_err(read_error)?.is_none() => {
            Err(ApiError::LedgerNotFound)
        }
        None => Err(ApiError::CheckpointNotFound),
    }
}

fn checkpoint_size(note: &annal_chain::SignedNote) -> Result<u64, ApiError> {
    annal_chain::Checkpoint::parse_body(note.text()).map(|c| c.size).map_err(|_| ApiError::Internal)
}

async fn proof(ledger: String, seq: u64, headers: HeaderMap, q: SizeQuery, app: Arc<App>) -> Response {
    let r = req("GET", "GET /v1/ledgers/{ledger}/records/{seq}/proof", headers);
    tenant_call(app, r, Some(&ledger), |app, tenant, ledger, _r| async move {
        let ledger = ledger.expect("route has a ledger");
        // The record first: a record that does not exist is `record.not_found`
        // (or `ledger.not_found`) whether or not a checkpoint exists yet.
        let Some(entry) = app.store.record(&tenant, &ledger, Seq::new(seq)).map_err(read_error)? else {
            return Err(if app.store.ledger_state(&tenant, &ledger).map_err(read_error)?.is_none() {
                ApiError::LedgerNotFound
            } else {
                ApiError::RecordNotFound
            });
        };
        let note = pick_checkpoint(&app, &tenant, &ledger, q.size)?;
        let size = checkpoint_size(&note)?;
        if seq >= size {
            return Err(ApiError::CheckpointNotFound);
        }
        let inclusion =
            app.store.inclusion_proof(&tenant, &ledger, Seq::new(seq), size).map_err(read_error)?;
        let mut parents = Vec::new();
        for p in entry.record.parents() {
            if p.ledger == ledger {
                let inclusion =
                    app.store.inclusion_proof(&tenant, &ledger, p.seq, size).map_err(read_error)?;
                parents.push(ParentProof { checkpoint: None, inclusion });
            } else {
                let pnote = pick_checkpoint(&app, &tenant, &p.ledger, None)?;
                let psize = checkpoint_size(&pnote)?;
                if p.seq.get() >= psize {
                    return Err(ApiError::CheckpointNotFound);
                }
                let inclusion =
                    app.store.inclusion_proof(&tenant, &p.ledger, p.seq, psize).map_err(read_error)?;
                parents.push(ParentProof { checkpoint: Some(pnote), inclusion });
            }
        }
        let mut out = Vec::new();
        let origin = app.origin(&tenant, &ledger);
        write_bundle(&mut out, &origin, &entry.record, &note, &inclusion, &parents);
        let mut resp = super::full(out);
        resp.headers_mut()
            .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
        Ok(no_store(resp))
    })
    .await
}

async fn checkpoint(ledger: String, headers: HeaderMap, q: SizeQuery, app: Arc<App>) -> Response {
    let r = req("GET", "GET /v1/ledgers/{ledger}/checkpoint", headers);
    tenant_call(app, r, Some(&ledger), |app, tenant, ledger, _r| async move {
        let note = pick_checkpoint(&app, &tenant, &ledger.expect("route has a ledger"), q.size)?;
        let mut resp = super::full(note.to_string().into_bytes());
        resp.headers_mut()
            .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain; charset=utf-8"));
        Ok(no_store(resp))
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RangeQuery {
    from: u64,
    to: u64,
}

async fn consistency(ledger: String, headers: HeaderMap, q: RangeQuery, app: Arc<App>) -> Response {
    let r = req("GET", "GET /v1/ledgers/{ledger}/consistency", headers);
    tenant_call(app, r, Some(&ledger), |app, tenant, ledger, _r| async move {
        let ledger = ledger.expect("route has a ledger");
        if q.from == 0 || q.from > q.to {
            return Err(ApiError::OutOfRange { detail: "need 0 < from <= to".into() });
        }
        let proof = app.store.consistency_proof(&tenant, &ledger, q.from, q.to).map_err(read_error)?;
        let old_root = app.store.root_at(&tenant, &ledger, q.from).map_err(read_error)?;
        let new_root = app.store.root_at(&tenant, &ledger, q.to).map_err(read_error)?;
        Ok(no_store(json(
            StatusCode::OK,
            &serde_json::json!({
                "from": q.from,
                "to": q.to,
                "from_root": old_root.to_hex(),
                "to_root": new_root.to_hex(),
                "proof": proof.iter().map(Hash32::to_hex).collect::<Vec<_>>(),
            }),
        )))
    })
    .await
}

async fn export(ledger: String, headers: HeaderMap, app: Arc<App>) -> Response {
    let r = req("GET", "GET /v1/ledgers/{ledger}/export", headers);
    tenant_call(app, r, Some(&ledger), |app, tenant, ledger, _r| async move {
        let ledger = ledger.expect("route has a ledger");
        super::admin::stream_export(&app, &tenant, &ledger)
    })
    .await
}

async fn verify(headers: HeaderMap, body: Bytes, app: Arc<App>) -> Response {
    let r = req("POST", "POST /v1/verify", headers);
    tenant_call(app, r, None, |app, _tenant, _ledger, _r| async move {
        // Every key of the identity log, as an auditor would pass them to
        // `annal-verify --trust-key`; an unreadable log fails closed rather
        // than verifying against no key.
        let trusted = crate::app::identity_keys(&app.store).map_err(read_error)?;
        let outcome = Outcome::Bundle(verify_bundle(&body, &trusted, None));
        if let Some(f) = outcome.failure() {
            crate::metrics::verify_failed(f.reason);
        }
        // The bytes `annal-verify bundle FILE --json` prints: one writer.
        let mut resp = super::full(outcome.json().into_bytes());
        resp.headers_mut()
            .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
        Ok(resp)
    })
    .await
}

async fn append_only(method: http::Method, headers: HeaderMap, app: Arc<App>) -> Response {
    let mut r = req("WRITE", "PUT|PATCH|DELETE /v1/ledgers/...", headers);
    r.method = match method {
        http::Method::PUT => "PUT",
        http::Method::PATCH => "PATCH",
        _ => "DELETE",
    };
    // Attribute the attempt when the key is valid; refuse it either way.
    let _ = app.tenant_auth(&mut r);
    app.fail(&r, ApiError::AppendOnly)
}
