//! Webhook routes. Tenants manage their own endpoints: an endpoint follows
//! one of the tenant's ledgers and receives every record appended after it
//! was created. Its secret is shown once, when it is made (and once per new
//! version); secrets are derived from the webhook key, never stored.
//! Another tenant's endpoint answers exactly like a missing one. An admin
//! can list a tenant's endpoints and disable one (incident response).

use std::sync::Arc;
use std::time::Duration;

use annal_store::{WebhookEndpoint, WebhookRefusal};
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use warp::Filter as _;

use super::admin::{admin_call, tenant_id};
use super::tenant::tenant_call;
use super::{ApiError, Req, Response, Routes, json, no_store, read_error, with_app, write_error};
use crate::app::{App, now_ms};
use annal_store::limits::WEBHOOK_URL_BYTES_MAX;

use crate::limits::SMALL_BODY_BYTES_MAX;
use crate::webhook::{Webhooks, target};

pub fn routes(app: Arc<App>) -> Routes {
    let a = || with_app(app.clone());
    let create = warp::path!("v1" / "ledgers" / String / "webhooks")
        .and(warp::post())
        .and(warp::header::headers_cloned())
        .and(warp::body::content_length_limit(SMALL_BODY_BYTES_MAX))
        .and(warp::body::bytes())
        .and(a())
        .then(create);
    let list = warp::path!("v1" / "webhooks")
        .and(warp::get())
        .and(warp::header::headers_cloned())
        .and(a())
        .then(list);
    let get = warp::path!("v1" / "webhooks" / String)
        .and(warp::get())
        .and(warp::header::headers_cloned())
        .and(a())
        .then(get);
    let add_secret = warp::path!("v1" / "webhooks" / String / "secrets")
        .and(warp::post())
        .and(warp::header::headers_cloned())
        .and(a())
        .then(add_secret);
    let revoke = warp::path!("v1" / "webhooks" / String / "secrets" / u32 / "revoke")
        .and(warp::post())
        .and(warp::header::headers_cloned())
        .and(a())
        .then(revoke_secret);
    let disable = warp::path!("v1" / "webhooks" / String / "disable")
        .and(warp::post())
        .and(warp::header::headers_cloned())
        .and(a())
        .then(disable);
    let admin_list = warp::path!("admin" / "v1" / "tenants" / String / "webhooks")
        .and(warp::get())
        .and(warp::header::headers_cloned())
        .and(a())
        .then(admin_list);
    let admin_disable = warp::path!("admin" / "v1" / "tenants" / String / "webhooks" / String / "disable")
        .and(warp::post())
        .and(warp::header::headers_cloned())
        .and(a())
        .then(admin_disable);
    create
        .or(list)
        .unify()
        .or(get)
        .unify()
        .or(add_secret)
        .unify()
        .or(revoke)
        .unify()
        .or(disable)
        .unify()
        .or(admin_list)
        .unify()
        .or(admin_disable)
        .unify()
        .boxed()
}

fn req(method: &'static str, route: &'static str, headers: HeaderMap) -> Req {
    Req { method, route, headers, tenant: None, key_id: None }
}

fn hooks(app: &App) -> Result<Arc<Webhooks>, ApiError> {
    app.webhooks.clone().ok_or(ApiError::WebhooksNotConfigured)
}

/// A store refusal as the API answers it.
fn refusal(r: WebhookRefusal) -> ApiError {
    match r {
        WebhookRefusal::NoEndpoint | WebhookRefusal::NoTenant | WebhookRefusal::NoDelivery => {
            ApiError::WebhookNotFound
        }
        WebhookRefusal::Disabled => ApiError::WebhookDisabled,
        WebhookRefusal::NoSecret => ApiError::WebhookSecretNotFound,
        WebhookRefusal::AlreadyRevoked => ApiError::WebhookSecretAlreadyRevoked,
        WebhookRefusal::LastActiveSecret => ApiError::WebhookLastSecret,
        WebhookRefusal::TooManyEndpoints => {
            ApiError::WebhookLimit { detail: "the tenant has its limit of webhook endpoints".into() }
        }
        WebhookRefusal::TooManySecrets => ApiError::WebhookLimit {
            detail: "the endpoint has its limit of active secrets: revoke one first".into(),
        },
        // Ids are fresh UUIDv7s and URLs are checked first: these are bugs,
        // not the caller's doing.
        WebhookRefusal::EndpointExists | WebhookRefusal::BadId | WebhookRefusal::UrlTooLong => {
            ApiError::Internal
        }
    }
}

pub(crate) fn endpoint_json(e: &WebhookEndpoint, pending: u64) -> serde_json::Value {
    let secrets: Vec<_> = e
        .secrets
        .iter()
        .map(|s| {
            serde_json::json!({
                "version": s.version,
                "created_ms": s.created_ms,
                "revoked_ms": s.revoked_ms,
                "status": if s.revoked_ms.is_some() { "revoked" } else { "active" },
            })
        })
        .collect();
    serde_json::json!({
        "id": e.id,
        "ledger": e.ledger.as_str(),
        "url": e.url,
        "status": if e.disabled_ms.is_some() { "disabled" } else { "active" },
        "created_ms": e.created_ms,
        "disabled_ms": e.disabled_ms,
        "next_seq": e.next_seq,
        "pending": pending,
        "secrets": secrets,
    })
}

/// The caller's endpoint `id`; another tenant's, like a missing one, is
/// `webhook.not_found`.
fn owned(app: &App, tenant: &annal_chain::TenantId, id: &str) -> Result<WebhookEndpoint, ApiError> {
    match app.store.webhook(id).map_err(read_error)? {
        Some(e) if e.tenant == *tenant => Ok(e),
        _ => Err(ApiError::WebhookNotFound),
    }
}

fn answer(app: &App, e: &WebhookEndpoint) -> Result<serde_json::Value, ApiError> {
    let pending = app.store.pending_deliveries(&e.id).map_err(read_error)?;
    Ok(endpoint_json(e, pending))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    url: String,
}

/// How long checking a new endpoint's host may take.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Checks an endpoint URL as the worker will before every delivery: its
/// shape (`webhook.url_invalid`), then every address its host resolves to
/// (`webhook.url_forbidden`).
async fn check_url(hooks: &Webhooks, url: &str) -> Result<(), ApiError> {
    if url.len() > WEBHOOK_URL_BYTES_MAX {
        return Err(ApiError::WebhookUrlInvalid {
            detail: format!("longer than {WEBHOOK_URL_BYTES_MAX} bytes"),
        });
    }
    let parsed = target::parse(url).map_err(|e| ApiError::WebhookUrlInvalid { detail: e.to_string() })?;
    // One answer whether the host does not resolve or resolves somewhere
    // forbidden, and never which address: otherwise a tenant could map
    // which internal names exist and where they point.
    target::resolve(&parsed, &hooks.policy, RESOLVE_TIMEOUT).await.map(drop).map_err(|e| {
        log::info!("webhook url refused: {e}");
        ApiError::WebhookUrlForbidden {
            detail: "the host does not resolve to allowed (public) addresses".into(),
        }
    })
}

async fn create(ledger: String, headers: HeaderMap, body: Bytes, app: Arc<App>) -> Response {
    let r = req("POST", "POST /v1/ledgers/{ledger}/webhooks", headers);
    tenant_call(app, r, Some(&ledger), |app, tenant, ledger, r| async move {
        let hooks = hooks(&app)?;
        let ledger = ledger.expect("route has a ledger");
        let body: CreateBody = serde_json::from_slice(&body)
            .map_err(|e| ApiError::BadRequest { detail: format!("body: {e}") })?;
        check_url(&hooks, &body.url).await?;
        // Records appended from now on are delivered, not the ledger's past.
        let next_seq = app.store.ledger_state(&tenant, &ledger).map_err(read_error)?.map_or(0, |s| s.size);
        let endpoint = WebhookEndpoint {
            id: format!("wh_{}", uuid::Uuid::now_v7().simple()),
            tenant,
            ledger,
            url: body.url,
            created_ms: now_ms(),
            disabled_ms: None,
            secrets: Vec::new(),
            next_seq,
        };
        let created = app.store.create_webhook(&endpoint).map_err(write_error)?.map_err(refusal)?;
        let mut body = endpoint_json(&created, 0);
        // The secret, this once: it is derived again for every delivery, never stored.
        body["secret"] = hooks.key.endpoint_secret(&created.id, 1).to_whsec().into();
        body["secret_version"] = 1.into();
        let detail = format!("webhook {} created for ledger {}", created.id, created.ledger);
        Ok(app.audit(&r, detail, no_store(json(StatusCode::CREATED, &body))))
    })
    .await
}

async fn list(headers: HeaderMap, app: Arc<App>) -> Response {
    let r = req("GET", "GET /v1/webhooks", headers);
    tenant_call(app, r, None, |app, tenant, _ledger, _r| async move {
        let endpoints = app.store.webhooks(Some(&tenant)).map_err(read_error)?;
        let items = endpoints.iter().map(|e| answer(&app, e)).collect::<Result<Vec<_>, _>>()?;
        Ok(json(StatusCode::OK, &serde_json::json!({"webhooks": items})))
    })
    .await
}

async fn get(id: String, headers: HeaderMap, app: Arc<App>) -> Response {
    let r = req("GET", "GET /v1/webhooks/{id}", headers);
    tenant_call(app, r, None, |app, tenant, _ledger, _r| async move {
        let endpoint = owned(&app, &tenant, &id)?;
        Ok(json(StatusCode::OK, &answer(&app, &endpoint)?))
    })
    .await
}

async fn add_secret(id: String, headers: HeaderMap, app: Arc<App>) -> Response {
    let r = req("POST", "POST /v1/webhooks/{id}/secrets", headers);
    tenant_call(app, r, None, |app, tenant, _ledger, r| async move {
        let hooks = hooks(&app)?;
        owned(&app, &tenant, &id)?;
        let endpoint = app.store.add_webhook_secret(&id, now_ms()).map_err(write_error)?.map_err(refusal)?;
        let version = endpoint.secrets.last().map_or(1, |s| s.version);
        let mut body = answer(&app, &endpoint)?;
        body["secret"] = hooks.key.endpoint_secret(&id, version).to_whsec().into();
        body["secret_version"] = version.into();
        let detail = format!("webhook {id} secret version {version} issued");
        Ok(app.audit(&r, detail, no_store(json(StatusCode::CREATED, &body))))
    })
    .await
}

async fn revoke_secret(id: String, version: u32, headers: HeaderMap, app: Arc<App>) -> Response {
    let r = req("POST", "POST /v1/webhooks/{id}/secrets/{version}/revoke", headers);
    tenant_call(app, r, None, |app, tenant, _ledger, r| async move {
        owned(&app, &tenant, &id)?;
        let endpoint =
            app.store.revoke_webhook_secret(&id, version, now_ms()).map_err(write_error)?.map_err(refusal)?;
        let detail = format!("webhook {id} secret version {version} revoked");
        Ok(app.audit(&r, detail, json(StatusCode::OK, &answer(&app, &endpoint)?)))
    })
    .await
}

async fn disable(id: String, headers: HeaderMap, app: Arc<App>) -> Response {
    let r = req("POST", "POST /v1/webhooks/{id}/disable", headers);
    tenant_call(app, r, None, |app, tenant, _ledger, r| async move {
        owned(&app, &tenant, &id)?;
        let endpoint = app.store.disable_webhook(&id, now_ms()).map_err(write_error)?.map_err(refusal)?;
        let detail = format!("webhook {id} disabled");
        Ok(app.audit(&r, detail, json(StatusCode::OK, &answer(&app, &endpoint)?)))
    })
    .await
}

async fn admin_list(tenant: String, headers: HeaderMap, app: Arc<App>) -> Response {
    let r = req("GET", "GET /admin/v1/tenants/{tenant}/webhooks", headers);
    admin_call(app, r, |app, _r| async move {
        let id = tenant_id(&tenant)?;
        app.store.tenant(&id).map_err(read_error)?.ok_or(ApiError::TenantNotFound)?;
        let endpoints = app.store.webhooks(Some(&id)).map_err(read_error)?;
        let items = endpoints.iter().map(|e| answer(&app, e)).collect::<Result<Vec<_>, _>>()?;
        Ok(json(StatusCode::OK, &serde_json::json!({"webhooks": items})))
    })
    .await
}

async fn admin_disable(tenant: String, hook: String, headers: HeaderMap, app: Arc<App>) -> Response {
    let r = req("POST", "POST /admin/v1/tenants/{tenant}/webhooks/{id}/disable", headers);
    admin_call(app, r, |app, mut r| async move {
        let id = tenant_id(&tenant)?;
        r.tenant = Some(id.as_str().to_owned());
        app.store.tenant(&id).map_err(read_error)?.ok_or(ApiError::TenantNotFound)?;
        owned(&app, &id, &hook)?;
        let endpoint = app.store.disable_webhook(&hook, now_ms()).map_err(write_error)?.map_err(refusal)?;
        let detail = format!("webhook {hook} of tenant {id} disabled by the admin");
        Ok(app.audit(&r, detail, json(StatusCode::OK, &answer(&app, &endpoint)?)))
    })
    .await
}
