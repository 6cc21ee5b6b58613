//! Admin routes: `/admin/v1/...` and `/metrics`, behind the admin key. Every
//! change is recorded in the system event ledger.

use std::sync::Arc;

use annal_chain::{LedgerName, Seq, TenantId};
use annal_store::{ApiKey, Index, RegistryRefusal, Store, TenantStatus};
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use warp::Filter as _;

use super::{ApiError, Req, Response, Routes, json, no_store, read_error, with_app, write_error};
use crate::app::{App, now_ms};
use crate::auth;
use crate::events::{SYSTEM_TENANT, events_ledger, system_tenant};
use crate::limits::{
    EVENT_SCAN_RECORDS_MAX, EXPORT_CHANNEL_CHUNKS_MAX, PAGE_LIMIT_DEFAULT, PAGE_LIMIT_MAX,
    SMALL_BODY_BYTES_MAX,
};

pub fn routes(app: Arc<App>) -> Routes {
    let a = || with_app(app.clone());
    let h = warp::header::headers_cloned;
    let small_body = || warp::body::content_length_limit(SMALL_BODY_BYTES_MAX).and(warp::body::bytes());
    let create_tenant = warp::path!("admin" / "v1" / "tenants")
        .and(warp::post())
        .and(h())
        .and(small_body())
        .and(a())
        .then(create_tenant);
    let list_tenants =
        warp::path!("admin" / "v1" / "tenants").and(warp::get()).and(h()).and(a()).then(list_tenants);
    let get_tenant = warp::path!("admin" / "v1" / "tenants" / String)
        .and(warp::get())
        .and(warp::query::<LedgerPage>())
        .and(h())
        .and(a())
        .then(get_tenant);
    let suspend = warp::path!("admin" / "v1" / "tenants" / String / "suspend")
        .and(warp::post())
        .and(h())
        .and(a())
        .then(|t, h, a| set_status(t, h, a, TenantStatus::Suspended));
    let resume = warp::path!("admin" / "v1" / "tenants" / String / "resume")
        .and(warp::post())
        .and(h())
        .and(a())
        .then(|t, h, a| set_status(t, h, a, TenantStatus::Active));
    let issue_key = warp::path!("admin" / "v1" / "tenants" / String / "keys")
        .and(warp::post())
        .and(h())
        .and(a())
        .then(issue_key);
    let list_keys = warp::path!("admin" / "v1" / "tenants" / String / "keys")
        .and(warp::get())
        .and(h())
        .and(a())
        .then(list_keys);
    let revoke = warp::path!("admin" / "v1" / "tenants" / String / "keys" / String / "revoke")
        .and(warp::post())
        .and(h())
        .and(a())
        .then(revoke_key);
    let events = warp::path!("admin" / "v1" / "events")
        .and(warp::get())
        .and(h())
        .and(warp::query::<EventQuery>())
        .and(a())
        .then(list_events);
    let events_export = warp::path!("admin" / "v1" / "events" / "export")
        .and(warp::get())
        .and(h())
        .and(a())
        .then(export_events);
    let ledger_export = warp::path!("admin" / "v1" / "ledgers" / String / String / "export")
        .and(warp::get())
        .and(h())
        .and(a())
        .then(export_any);
    let anchor =
        warp::path!("admin" / "v1" / "checkpoints").and(warp::post()).and(h()).and(a()).then(anchor_now);
    let metrics = warp::path!("metrics").and(warp::get()).and(h()).and(a()).then(metrics);
    create_tenant
        .or(list_tenants)
        .unify()
        .or(get_tenant)
        .unify()
        .or(suspend)
        .unify()
        .or(resume)
        .unify()
        .or(issue_key)
        .unify()
        .or(list_keys)
        .unify()
        .or(revoke)
        .unify()
        .or(events)
        .unify()
        .or(events_export)
        .unify()
        .or(ledger_export)
        .unify()
        .or(anchor)
        .unify()
        .or(metrics)
        .unify()
        .boxed()
}

/// Authenticates the admin, runs `body`, renders errors.
pub(super) async fn admin_call<F, Fut>(app: Arc<App>, r: Req, body: F) -> Response
where
    F: FnOnce(Arc<App>, Req) -> Fut,
    Fut: std::future::Future<Output = Result<Response, ApiError>>,
{
    if let Err(e) = app.admin_auth(&r) {
        return app.fail(&r, e);
    }
    match body(app.clone(), r.clone()).await {
        Ok(resp) => resp,
        Err(e) => app.fail(&r, e),
    }
}

fn req(method: &'static str, route: &'static str, headers: HeaderMap) -> Req {
    Req { method, route, headers, tenant: None, key_id: None }
}

pub(super) fn tenant_id(text: &str) -> Result<TenantId, ApiError> {
    TenantId::new(text).map_err(|_| ApiError::TenantNotFound)
}

fn tenant_json(t: &annal_store::Tenant) -> serde_json::Value {
    serde_json::json!({
        "id": t.id.as_str(),
        "status": t.status.as_str(),
        "created_ms": t.created_ms,
        "updated_ms": t.updated_ms,
    })
}

fn key_json(k: &ApiKey) -> serde_json::Value {
    serde_json::json!({
        "key_id": k.key_id,
        "tenant": k.tenant.as_str(),
        "created_ms": k.created_ms,
        "revoked_ms": k.revoked_ms,
        "status": if k.revoked_ms.is_some() { "revoked" } else { "active" },
    })
}

fn refusal(r: RegistryRefusal) -> ApiError {
    match r {
        RegistryRefusal::TenantExists => ApiError::TenantExists,
        RegistryRefusal::NoTenant => ApiError::TenantNotFound,
        RegistryRefusal::NoKey => ApiError::KeyNotFound,
        RegistryRefusal::AlreadyRevoked => ApiError::KeyAlreadyRevoked,
        RegistryRefusal::KeyExists => ApiError::Internal,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateTenant {
    id: String,
}

async fn create_tenant(headers: HeaderMap, body: Bytes, app: Arc<App>) -> Response {
    let r = req("POST", "POST /admin/v1/tenants", headers);
    admin_call(app, r, |app, r| async move {
        let body: CreateTenant = serde_json::from_slice(&body)
            .map_err(|e| ApiError::BadRequest { detail: format!("body: {e}") })?;
        let id = TenantId::new(&body.id)
            .map_err(|e| ApiError::BadRequest { detail: format!("tenant id: {e}") })?;
        if id.as_str() == SYSTEM_TENANT {
            return Err(ApiError::TenantReserved);
        }
        let created = app.store.create_tenant(&id, now_ms());
        app.auth_changed();
        let tenant = created.map_err(write_error)?.map_err(refusal)?;
        Ok(app.audit(&r, format!("tenant {id} created"), json(StatusCode::CREATED, &tenant_json(&tenant))))
    })
    .await
}

async fn list_tenants(headers: HeaderMap, app: Arc<App>) -> Response {
    let r = req("GET", "GET /admin/v1/tenants", headers);
    admin_call(app, r, |app, _r| async move {
        let tenants = app.store.tenants().map_err(read_error)?;
        Ok(json(
            StatusCode::OK,
            &serde_json::json!({"tenants": tenants.iter().map(tenant_json).collect::<Vec<_>>()}),
        ))
    })
    .await
}

/// A page of a tenant's ledgers: after this ledger name, at most `limit`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LedgerPage {
    after: Option<String>,
    limit: Option<u64>,
}

/// One tenant with a page of its ledgers (a tenant can make any number, so
/// they come `limit` at a time, `ledgers_next` naming the next page).
async fn get_tenant(tenant: String, page: LedgerPage, headers: HeaderMap, app: Arc<App>) -> Response {
    let r = req("GET", "GET /admin/v1/tenants/{tenant}", headers);
    admin_call(app, r, |app, _r| async move {
        let id = tenant_id(&tenant)?;
        let limit = page.limit.unwrap_or(PAGE_LIMIT_DEFAULT);
        if limit == 0 || limit > PAGE_LIMIT_MAX {
            return Err(ApiError::OutOfRange { detail: format!("limit must be 1..={PAGE_LIMIT_MAX}") });
        }
        let after = match page.after {
            None => None,
            Some(name) => Some(
                LedgerName::new(&name)
                    .map_err(|_| ApiError::BadRequest { detail: "after must be a ledger name".into() })?,
            ),
        };
        let t = app.store.tenant(&id).map_err(read_error)?.ok_or(ApiError::TenantNotFound)?;
        let limit = limit as usize;
        let mut ledgers =
            app.store.tenant_ledgers_page(&id, after.as_ref(), limit + 1).map_err(read_error)?;
        let next = (ledgers.len() > limit).then(|| {
            ledgers.truncate(limit);
            let last = &ledgers.last().expect("a full page").0;
            format!("/admin/v1/tenants/{id}?after={last}&limit={limit}")
        });
        let ledgers: Vec<_> = ledgers
            .into_iter()
            .map(|(l, size)| serde_json::json!({"ledger": l.as_str(), "size": size}))
            .collect();
        let mut body = tenant_json(&t);
        body["ledgers"] = serde_json::Value::from(ledgers);
        body["ledgers_next"] = serde_json::Value::from(next);
        Ok(json(StatusCode::OK, &body))
    })
    .await
}

async fn set_status(tenant: String, headers: HeaderMap, app: Arc<App>, status: TenantStatus) -> Response {
    let route = match status {
        TenantStatus::Suspended => "POST /admin/v1/tenants/{tenant}/suspend",
        TenantStatus::Active => "POST /admin/v1/tenants/{tenant}/resume",
    };
    let r = req("POST", route, headers);
    admin_call(app, r, |app, mut r| async move {
        let id = tenant_id(&tenant)?;
        r.tenant = Some(id.as_str().to_owned());
        let set = app.store.set_tenant_status(&id, status, now_ms());
        app.auth_changed();
        let t = set.map_err(write_error)?.map_err(refusal)?;
        Ok(app.audit(&r, format!("tenant {id} {}", status.as_str()), json(StatusCode::OK, &tenant_json(&t))))
    })
    .await
}

async fn issue_key(tenant: String, headers: HeaderMap, app: Arc<App>) -> Response {
    let r = req("POST", "POST /admin/v1/tenants/{tenant}/keys", headers);
    admin_call(app, r, |app, mut r| async move {
        let id = tenant_id(&tenant)?;
        r.tenant = Some(id.as_str().to_owned());
        let issued = auth::issue_api_key().map_err(|e| {
            log::error!("no randomness for a key: {e}");
            ApiError::Internal
        })?;
        let row = ApiKey {
            key_id: issued.key_id.clone(),
            tenant: id.clone(),
            digest: *issued.digest.as_bytes(),
            created_ms: now_ms(),
            revoked_ms: None,
        };
        let added = app.store.add_api_key(&row);
        app.auth_changed();
        added.map_err(write_error)?.map_err(refusal)?;
        r.key_id = Some(issued.key_id.clone());
        let mut body = key_json(&row);
        // The secret, this once; it is not stored and cannot be shown again.
        body["key"] = serde_json::Value::from(issued.token);
        let detail = format!("key {} issued for tenant {id}", issued.key_id);
        Ok(app.audit(&r, detail, no_store(json(StatusCode::CREATED, &body))))
    })
    .await
}

async fn list_keys(tenant: String, headers: HeaderMap, app: Arc<App>) -> Response {
    let r = req("GET", "GET /admin/v1/tenants/{tenant}/keys", headers);
    admin_call(app, r, |app, _r| async move {
        let id = tenant_id(&tenant)?;
        app.store.tenant(&id).map_err(read_error)?.ok_or(ApiError::TenantNotFound)?;
        let keys = app.store.api_keys(&id).map_err(read_error)?;
        Ok(json(StatusCode::OK, &serde_json::json!({"keys": keys.iter().map(key_json).collect::<Vec<_>>()})))
    })
    .await
}

async fn revoke_key(tenant: String, key_id: String, headers: HeaderMap, app: Arc<App>) -> Response {
    let r = req("POST", "POST /admin/v1/tenants/{tenant}/keys/{key_id}/revoke", headers);
    admin_call(app, r, |app, mut r| async move {
        let id = tenant_id(&tenant)?;
        r.tenant = Some(id.as_str().to_owned());
        r.key_id = Some(key_id.clone());
        let revoked = app.store.revoke_api_key(&id, &key_id, now_ms());
        app.auth_changed();
        let key = revoked.map_err(write_error)?.map_err(refusal)?;
        Ok(app.audit(
            &r,
            format!("key {key_id} revoked for tenant {id}"),
            json(StatusCode::OK, &key_json(&key)),
        ))
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventQuery {
    after: Option<u64>,
    limit: Option<u64>,
    tenant: Option<String>,
    code: Option<String>,
    request_id: Option<String>,
    since_ms: Option<u64>,
    until_ms: Option<u64>,
}

/// Lists system events oldest first, filtered: through the sled index when
/// a request id, tenant or code is given, else by a bounded scan.
async fn list_events(headers: HeaderMap, q: EventQuery, app: Arc<App>) -> Response {
    let r = req("GET", "GET /admin/v1/events", headers);
    admin_call(app, r, |app, _r| async move {
        let limit = q.limit.unwrap_or(PAGE_LIMIT_DEFAULT);
        if limit == 0 || limit > PAGE_LIMIT_MAX {
            return Err(ApiError::OutOfRange { detail: format!("limit must be 1..={PAGE_LIMIT_MAX}") });
        }
        let page = tokio::task::spawn_blocking(move || match app.index.as_deref() {
            Some(index) if indexed_field(&q).is_some() => {
                match indexed_events(&app.store, index, &q, limit) {
                    Err(annal_store::IndexError::Sled(e)) => {
                        // The index is derived; redb still answers, more slowly.
                        log::warn!("event index unavailable, scanning instead: {e}");
                        scan_events(&app.store, &q, limit)
                    }
                    other => other.map_err(|e| match e {
                        annal_store::IndexError::Read(e) => read_error(e),
                        annal_store::IndexError::Sled(_) => unreachable!("handled above"),
                    }),
                }
            }
            _ => scan_events(&app.store, &q, limit),
        })
        .await
        .map_err(|e| {
            log::error!("events query task failed: {e}");
            ApiError::Internal
        })??;
        let next = page.last_seen.map(|s| format!("/admin/v1/events?after={s}&limit={limit}"));
        Ok(json(
            StatusCode::OK,
            &serde_json::json!({"events": page.events, "next": next, "scanned": page.scanned}),
        ))
    })
    .await
}

/// One page of events, and how far the query looked.
struct EventPage {
    events: Vec<serde_json::Value>,
    scanned: u64,
    last_seen: Option<u64>,
}

impl EventPage {
    /// Looks at one event record; returns true when the page is full.
    fn consider(&mut self, entry: &annal_store::RecordEntry, q: &EventQuery, limit: u64) -> bool {
        let seq = entry.record.seq().get();
        self.scanned += 1;
        self.last_seen = Some(seq);
        let Ok(mut ev) = serde_json::from_slice::<serde_json::Value>(entry.record.payload()) else {
            return false;
        };
        let field = |name: &str| ev.get(name).and_then(|v| v.as_str()).map(str::to_owned);
        let time = ev.get("time_ms").and_then(serde_json::Value::as_u64).unwrap_or(0);
        let keep = q.tenant.as_ref().is_none_or(|t| field("tenant").as_ref() == Some(t))
            && q.code.as_ref().is_none_or(|c| field("code").as_ref() == Some(c))
            && q.request_id.as_ref().is_none_or(|id| field("request_id").as_ref() == Some(id))
            && q.since_ms.is_none_or(|s| time >= s)
            && q.until_ms.is_none_or(|u| time <= u);
        if keep {
            ev["seq"] = serde_json::Value::from(seq);
            ev["hash"] = serde_json::Value::from(entry.hash.to_hex());
            self.events.push(ev);
        }
        self.events.len() as u64 == limit
    }
}

/// An index lookup: value, after, limit → event seqs.
type EventLookup = fn(&Index, &str, Option<Seq>, u64) -> Result<Vec<Seq>, annal_store::IndexError>;

/// The most selective indexed filter given: request id, then code, then tenant.
fn indexed_field(q: &EventQuery) -> Option<(EventLookup, &str)> {
    let by_request_id: EventLookup = Index::events_by_request_id;
    let by_code: EventLookup = Index::events_by_code;
    let by_tenant: EventLookup = Index::events_by_tenant;
    (q.request_id.as_deref().map(|v| (by_request_id, v)))
        .or_else(|| q.code.as_deref().map(|v| (by_code, v)))
        .or_else(|| q.tenant.as_deref().map(|v| (by_tenant, v)))
}

/// Events below the event ledger's watermark come from the index (each read
/// back from redb, where every filter, including time, is applied again);
/// events past it, not indexed yet, are scanned, so the answer is complete.
fn indexed_events(
    store: &Store,
    index: &Index,
    q: &EventQuery,
    limit: u64,
) -> Result<EventPage, annal_store::IndexError> {
    let (tenant, ledger) = (system_tenant(), events_ledger());
    let (lookup, value) = indexed_field(q).expect("called with an indexed filter");
    // Read first: index entries at or past it are left to the scan below.
    let watermark = index.watermark(&tenant, &ledger)?;
    let mut page = EventPage { events: Vec::new(), scanned: 0, last_seen: None };
    let mut after = q.after.map(Seq::new);
    'index: while page.scanned < EVENT_SCAN_RECORDS_MAX {
        let seqs = lookup(index, value, after, PAGE_LIMIT_MAX)?;
        let Some(last) = seqs.last() else { break };
        after = Some(*last);
        for seq in seqs {
            if seq.get() >= watermark {
                break 'index;
            }
            // Indexed events exist: the index is built from stored records only.
            let Some(entry) = store.record(&tenant, &ledger, seq)? else {
                return Err(annal_store::IndexError::Sled(format!("indexed event {seq} is not stored")));
            };
            if page.consider(&entry, q, limit) {
                return Ok(page);
            }
        }
    }
    let from = q.after.map_or(0, |a| a.saturating_add(1)).max(watermark);
    scan_into(store, from.checked_sub(1).map(Seq::new), &mut page, q, limit)?;
    Ok(page)
}

/// Every event record after `after`, in order, within a bounded window.
fn scan_events(store: &Store, q: &EventQuery, limit: u64) -> Result<EventPage, ApiError> {
    let mut page = EventPage { events: Vec::new(), scanned: 0, last_seen: None };
    scan_into(store, q.after.map(Seq::new), &mut page, q, limit).map_err(read_error)?;
    Ok(page)
}

/// Adds the event records after `after` to `page`, in order, until it is
/// full or the scan window is spent.
fn scan_into(
    store: &Store,
    mut after: Option<Seq>,
    page: &mut EventPage,
    q: &EventQuery,
    limit: u64,
) -> Result<(), annal_store::ReadError> {
    let (tenant, ledger) = (system_tenant(), events_ledger());
    while page.scanned < EVENT_SCAN_RECORDS_MAX {
        let batch = store.records(&tenant, &ledger, after, PAGE_LIMIT_MAX)?;
        let Some(last) = batch.last() else { break };
        after = Some(last.record.seq());
        for entry in &batch {
            if page.consider(entry, q, limit) {
                return Ok(());
            }
        }
    }
    Ok(())
}

async fn export_events(headers: HeaderMap, app: Arc<App>) -> Response {
    let r = req("GET", "GET /admin/v1/events/export", headers);
    admin_call(app, r, |app, _r| async move {
        let (tenant, ledger) = (system_tenant(), events_ledger());
        // The ledger is created by the first event; before that the system
        // ledger exists but is empty, so it exports as empty (a header and
        // an end line, which `annal-verify` accepts as 0 records), not 404.
        if app.store.ledger_state(&tenant, &ledger).map_err(read_error)?.is_none() {
            let mut body = Vec::new();
            annal_chain::write_header(
                &mut body,
                &app.origin(&tenant, &ledger),
                &app.vkeys().map_err(read_error)?,
            );
            annal_chain::write_end(&mut body, 0, 0);
            return Ok(export_response(super::full(body)));
        }
        stream_export(&app, &tenant, &ledger)
    })
    .await
}

async fn export_any(tenant: String, ledger: String, headers: HeaderMap, app: Arc<App>) -> Response {
    let r = req("GET", "GET /admin/v1/ledgers/{tenant}/{ledger}/export", headers);
    admin_call(app, r, |app, _r| async move {
        let tenant = tenant_id(&tenant)?;
        let ledger = LedgerName::new(&ledger).map_err(|_| ApiError::LedgerNotFound)?;
        stream_export(&app, &tenant, &ledger)
    })
    .await
}

/// Streams a ledger's export from one snapshot: a blocking reader thread
/// writes chunks into a bounded channel that the response body drains, so
/// memory stays bounded whatever the ledger's size and a client that stops
/// reading stops the reader. At most `EXPORTS_CONCURRENT_MAX` stream at
/// once, and one whose client takes no chunk for the request timeout is
/// cut, so stalled clients cannot hold the blocking pool or old snapshots.
pub fn stream_export(app: &Arc<App>, tenant: &TenantId, ledger: &LedgerName) -> Result<Response, ApiError> {
    if app.store.ledger_state(tenant, ledger).map_err(read_error)?.is_none() {
        return Err(ApiError::LedgerNotFound);
    }
    let permit = app.exports.clone().try_acquire_owned().map_err(|_| ApiError::Overloaded)?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(EXPORT_CHANNEL_CHUNKS_MAX);
    let origin = app.origin(tenant, ledger);
    let vkeys = app.vkeys().map_err(read_error)?;
    let store = app.store.clone();
    let mut writer = ChannelWriter { tx, rt: tokio::runtime::Handle::current(), stall: app.export_stall };
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        if let Err(e) = store.export(&origin, &vkeys, &mut writer) {
            log::warn!("export of {origin} stopped: {e:?}");
            // The body ends with an error, so the client sees a cut, not an
            // end line (if there is room: a stalled client gets no more).
            let _ = writer.tx.try_send(Err(std::io::Error::other("export failed")));
        }
    });
    let stream =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
    Ok(export_response(warp::reply::Reply::into_response(warp::reply::stream(stream))))
}

/// An export's body as a response: JSON Lines, never cached.
fn export_response(mut resp: Response) -> Response {
    resp.headers_mut()
        .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/jsonl"));
    no_store(resp)
}

/// The export's end of the body channel, written from the blocking reader.
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
    rt: tokio::runtime::Handle,
    stall: std::time::Duration,
}

impl std::io::Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let sent =
            self.rt.block_on(tokio::time::timeout(self.stall, self.tx.send(Ok(Bytes::copy_from_slice(buf)))));
        match sent {
            Ok(Ok(())) => Ok(buf.len()),
            Ok(Err(_)) => Err(std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client went away")),
            Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "client took no chunk in time")),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn anchor_now(headers: HeaderMap, app: Arc<App>) -> Response {
    let r = req("POST", "POST /admin/v1/checkpoints", headers);
    admin_call(app, r, |app, r| async move {
        if !app.signing_ok {
            return Err(ApiError::SigningUnavailable);
        }
        let pass = crate::anchor::anchor_all(&app.store, &app.signer, &app.log).await;
        if pass.failed > 0 {
            // Answered (and recorded) as a failure; the counts go to the log.
            log::warn!("anchor now: {} signed, {} failed", pass.signed, pass.failed);
            return Err(ApiError::DbUnavailable);
        }
        let resp = json(StatusCode::OK, &serde_json::json!({"signed": pass.signed}));
        Ok(app.audit(&r, format!("anchor now: {} signed", pass.signed), resp))
    })
    .await
}

async fn metrics(headers: HeaderMap, app: Arc<App>) -> Response {
    let r = req("GET", "GET /metrics", headers);
    admin_call(app, r, |app, _r| async move {
        let mut resp = super::full(crate::metrics::render(&app).into_bytes());
        resp.headers_mut()
            .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain; version=0.0.4"));
        Ok(resp)
    })
    .await
}
