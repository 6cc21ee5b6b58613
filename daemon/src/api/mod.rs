//! The HTTP surface: request ids, the request timeout, routing,
//! authentication, and the conversion of warp rejections into problem+json.
//! Handlers live in `tenant` and `admin`; every error goes through
//! `error::problem`.

mod admin;
pub mod auth_cache;
mod digest;
mod error;
mod lineage;
mod openapi;
mod ops;
mod public;
mod tenant;
mod webhooks;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderName, HeaderValue};
use http::{HeaderMap, StatusCode};
use tower_service::Service as _;
use warp::Filter as _;

pub use error::{ApiError, problem};
pub(crate) use tenant::record_json;

use crate::app::{App, now_ms};
use crate::auth;
use crate::events::{Event, Kind};
use crate::limits::REQUEST_ID_BYTES_MAX;
use crate::ratelimit::{Bucket, Decision};

pub type Response = warp::reply::Response;
pub type BoxFuture = Pin<Box<dyn Future<Output = Response> + Send>>;

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

tokio::task_local! {
    static REQUEST_ID: Arc<str>;
}

/// The id of the request being served (empty outside a request).
pub fn current_request_id() -> Arc<str> {
    REQUEST_ID.try_with(Arc::clone).unwrap_or_else(|_| Arc::from(""))
}

/// A client's id is kept when it is a sane token; otherwise a UUIDv7 is made.
fn request_id_of<B>(req: &http::Request<B>) -> Arc<str> {
    let sane = |v: &&HeaderValue| {
        let b = v.as_bytes();
        !b.is_empty()
            && b.len() <= REQUEST_ID_BYTES_MAX
            && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b':'))
    };
    match req.headers().get(X_REQUEST_ID).filter(sane).and_then(|v| v.to_str().ok()) {
        Some(id) => Arc::from(id),
        None => Arc::from(uuid::Uuid::now_v7().to_string()),
    }
}

/// Wraps one request: assigns its id (visible to handlers as the header and to
/// error rendering as a task-local), applies the request timeout, and stamps
/// the id on the response, whatever produced it. A request that runs out of
/// time takes the one error path, `App::fail`, so it is recorded as a failure
/// like every other 5xx.
async fn with_request_id<B, F>(
    mut req: http::Request<B>,
    timeout: Duration,
    app: &App,
    handle: impl FnOnce(http::Request<B>) -> F,
) -> Response
where
    F: Future<Output = Response>,
{
    let id = request_id_of(&req);
    let value = HeaderValue::from_str(&id).expect("sane or generated id is a valid header");
    req.headers_mut().insert(X_REQUEST_ID, value.clone());
    // Cheap clones (an enum and a shared buffer), kept only to name the route of a timeout.
    let (method, uri) = (req.method().clone(), req.uri().clone());
    let handled = handle(req);
    let mut resp = REQUEST_ID
        .scope(id, async move {
            match tokio::time::timeout(timeout, handled).await {
                Ok(resp) => resp,
                Err(_) => {
                    let (method, route) = route_of(&method, uri.path()).unwrap_or(("-", "-"));
                    let req = Req { method, route, headers: HeaderMap::new(), tenant: None, key_id: None };
                    app.fail(&req, ApiError::Timeout)
                }
            }
        })
        .await;
    resp.headers_mut().insert(X_REQUEST_ID, value);
    resp
}

/// The documented route a request addressed, as (method, route template),
/// e.g. ("POST", "POST /v1/ledgers/{ledger}/records"): what events name when
/// no handler did (a timeout). `None` when no documented route matches.
fn route_of(method: &http::Method, path: &str) -> Option<(&'static str, &'static str)> {
    static ROUTES: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let routes = ROUTES.get_or_init(|| {
        const METHODS: [&str; 7] = ["get", "put", "post", "delete", "options", "head", "patch"];
        let doc: serde_json::Value = serde_json::from_str(openapi::DOCUMENT).unwrap_or_default();
        let mut routes = Vec::new();
        for (template, item) in doc["paths"].as_object().into_iter().flatten() {
            for m in METHODS.iter().filter(|m| item.get(**m).is_some()) {
                routes.push(format!("{} {template}", m.to_ascii_uppercase()));
            }
        }
        routes
    });
    routes.iter().find_map(|route| {
        let (m, template) = route.split_once(' ')?;
        let same_shape = template.split('/').count() == path.split('/').count()
            && template.split('/').zip(path.split('/')).all(|(t, p)| t == p || t.starts_with('{'));
        (m == method.as_str() && same_shape).then_some((m, route.as_str()))
    })
}

/// A response with a fixed body.
pub fn full(body: Vec<u8>) -> Response {
    Response::new(body.into())
}

/// A JSON response.
pub fn json(status: http::StatusCode, body: &serde_json::Value) -> Response {
    let mut resp = full(serde_json::to_vec(body).expect("json"));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// Marks a response as never to be cached (proofs, exports, secrets).
pub fn no_store(mut resp: Response) -> Response {
    resp.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// What a handler knows about the request, for errors and events.
#[derive(Clone, Debug)]
pub struct Req {
    pub method: &'static str,
    /// The route template, e.g. `POST /v1/ledgers/{ledger}/records`.
    pub route: &'static str,
    pub headers: HeaderMap,
    pub tenant: Option<String>,
    pub key_id: Option<String>,
}

impl Req {
    /// An event for this request: refused with `Err(error)`, or answered
    /// `Ok(status)` (a success; its code is `ok`).
    fn event(&self, kind: Kind, outcome: Result<StatusCode, &ApiError>, detail: Option<String>) -> Event {
        let (status, code) = match outcome {
            Ok(status) => (status.as_u16(), "ok"),
            Err(e) => (e.status().as_u16(), e.code()),
        };
        Event {
            kind,
            code,
            status,
            request_id: current_request_id().to_string(),
            tenant: self.tenant.clone(),
            key_id: self.key_id.clone(),
            method: self.method.to_owned(),
            route: self.route.to_owned(),
            time_ms: now_ms(),
            detail,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Which errors are recorded in the system event ledger, and as what.
fn event_kind(err: &ApiError) -> Option<Kind> {
    match err {
        ApiError::AuthRequired
        | ApiError::InvalidKey
        | ApiError::TenantSuspended
        | ApiError::RateLimited { .. }
        | ApiError::LedgerNotFound => Some(Kind::Denial),
        ApiError::AppendOnly => Some(Kind::AppendOnlyViolation),
        e if e.status().is_server_error() => Some(Kind::Failure),
        _ => None,
    }
}

impl App {
    /// Renders an error and records it when it is a denial, a violation or a
    /// failure. The one path every handler error takes.
    pub fn fail(&self, req: &Req, err: ApiError) -> Response {
        if let Some(kind) = event_kind(&err) {
            self.events.record(req.event(kind, Err(&err), None));
        }
        problem(&err)
    }

    /// Records an administrator's action.
    /// Records an administrator's action that succeeded, with the status of
    /// `resp`, the response it answers, and passes the response on.
    pub fn audit(&self, req: &Req, detail: String, resp: Response) -> Response {
        self.events.record(req.event(Kind::Admin, Ok(resp.status()), Some(detail)));
        resp
    }

    /// Authenticates a tenant request: key, tenant status, rate limit.
    /// Unknown, revoked and malformed keys are one indistinguishable 401.
    pub fn tenant_auth(&self, req: &mut Req) -> Result<(annal_chain::TenantId, Decision), ApiError> {
        if self.state.is_draining() {
            return Err(ApiError::Draining);
        }
        let token = auth::bearer(req.header("authorization")).ok_or(
            if req.headers.contains_key("authorization") {
                ApiError::InvalidKey
            } else {
                ApiError::AuthRequired
            },
        )?;
        let presented = auth::parse_api_key(token).ok_or(ApiError::InvalidKey)?;
        req.key_id = Some(presented.key_id.clone());
        // A failed store fails closed even for cached keys.
        if self.store.failure().is_none()
            && let Some(hit) = self.auth_cache.get(&presented.key_id)
            && presented.digest.matches(&auth::SecretDigest::from_bytes(hit.digest))
        {
            req.tenant = Some(hit.tenant.as_str().to_owned());
            return self.rate_check(hit.tenant, &presented.key_id);
        }
        // Read before the store, so a revoke racing this read voids what we cache.
        let generation = self.auth_cache.generation();
        let row = self.store.api_key(&presented.key_id).map_err(read_error)?;
        let row = match row {
            Some(row) => {
                // A known key id is attributed to its tenant even when refused,
                // so attempts with a revoked or guessed key show up in its events.
                req.tenant = Some(row.tenant.as_str().to_owned());
                let good = row.revoked_ms.is_none()
                    && presented.digest.matches(&auth::SecretDigest::from_bytes(row.digest));
                if !good {
                    return Err(ApiError::InvalidKey);
                }
                row
            }
            None => return Err(ApiError::InvalidKey),
        };
        let tenant = self.store.tenant(&row.tenant).map_err(read_error)?.ok_or(ApiError::InvalidKey)?;
        if tenant.status != annal_store::TenantStatus::Active {
            return Err(ApiError::TenantSuspended);
        }
        self.auth_cache.put(&row.key_id, row.digest, row.tenant.clone(), generation);
        self.rate_check(row.tenant, &row.key_id)
    }

    /// Takes a token for an authenticated key, or refuses with 429.
    fn rate_check(
        &self,
        tenant: annal_chain::TenantId,
        key_id: &str,
    ) -> Result<(annal_chain::TenantId, Decision), ApiError> {
        match self.limiter.check(tenant.as_str(), key_id) {
            Decision::Denied { retry_after_s, bucket } => {
                let (name, policy) = match bucket {
                    Bucket::Key => ("default", self.limiter.key_policy_header()),
                    Bucket::Tenant => ("tenant", self.limiter.tenant_policy_header()),
                };
                Err(ApiError::RateLimited { retry_after_s, policy: policy.to_owned(), name })
            }
            allowed => Ok((tenant, allowed)),
        }
    }

    /// Voids every cached tenant authentication; admin handlers call it after
    /// any write to tenants or keys, before they answer.
    pub fn auth_changed(&self) {
        self.auth_cache.invalidate();
    }

    /// Authenticates an admin request.
    pub fn admin_auth(&self, req: &Req) -> Result<(), ApiError> {
        match auth::bearer(req.header("authorization")) {
            Some(token) if auth::is_admin(token, &self.admin) => Ok(()),
            Some(_) => Err(ApiError::InvalidKey),
            None if req.headers.contains_key("authorization") => Err(ApiError::InvalidKey),
            None => Err(ApiError::AuthRequired),
        }
    }
}

/// Adds the IETF RateLimit headers of an allowed request.
pub fn with_rate_headers(mut resp: Response, app: &App, decision: Decision) -> Response {
    if let Decision::Allowed { remaining, reset_s } = decision {
        let h = resp.headers_mut();
        if let Ok(v) = HeaderValue::from_str(app.limiter.key_policy_header()) {
            h.insert("ratelimit-policy", v);
        }
        if let Ok(v) = HeaderValue::from_str(&format!("\"default\";r={remaining};t={reset_s}")) {
            h.insert("ratelimit", v);
        }
    }
    resp
}

/// Maps a store read error: a failed store is unavailable, never a fallback.
pub fn read_error(e: annal_store::ReadError) -> ApiError {
    match e {
        annal_store::ReadError::NoLedger => ApiError::LedgerNotFound,
        annal_store::ReadError::OutOfRange { size } => {
            ApiError::OutOfRange { detail: format!("the ledger has {size} records") }
        }
        annal_store::ReadError::Failed(reason) => {
            log::error!("store unavailable: {reason}");
            ApiError::DbUnavailable
        }
        annal_store::ReadError::Corrupt(c) => {
            // A record that does not re-verify is never served as valid.
            log::error!("CORRUPTION detected on read: {c:?}");
            ApiError::Internal
        }
    }
}

/// Maps a store write error: nothing was acknowledged.
pub fn write_error(e: annal_store::WriteError) -> ApiError {
    match e {
        annal_store::WriteError::Overloaded => ApiError::Overloaded,
        annal_store::WriteError::Closed => ApiError::Draining,
        annal_store::WriteError::Failed(reason) => {
            log::error!("store failed: {reason}");
            ApiError::DbUnavailable
        }
        annal_store::WriteError::Corrupt(c) => {
            log::error!("CORRUPTION detected on write: {c:?}");
            ApiError::Internal
        }
    }
}

type Routes = warp::filters::BoxedFilter<(Response,)>;

/// A filter that passes the shared app along.
fn with_app(app: Arc<App>) -> impl warp::Filter<Extract = (Arc<App>,), Error = Infallible> + Clone {
    warp::any().map(move || app.clone())
}

/// Builds the application: warp routes hosted as a plain async function
/// that gives every request its id and at most `request_timeout`.
pub fn build(
    app: Arc<App>,
    request_timeout: Duration,
) -> impl Fn(http::Request<hyper::body::Incoming>) -> BoxFuture + Send + Sync + 'static {
    let routes = health(app.clone())
        .or(ready(app.clone()))
        .unify()
        .or(tenant::routes(app.clone()))
        .unify()
        .or(lineage::routes(app.clone()))
        .unify()
        .or(digest::routes(app.clone()))
        .unify()
        .or(webhooks::routes(app.clone()))
        .unify()
        .or(admin::routes(app.clone()))
        .unify()
        .or(public::routes(app.clone()))
        .unify()
        .or(ops::routes(app.clone()))
        .unify()
        .or(openapi::routes())
        .unify()
        .boxed();
    let recover_app = app.clone();
    let routes = routes.recover(move |r| rejection(recover_app.clone(), r)).unify();
    let service = warp::service(routes);
    move |req| {
        let mut service = service.clone();
        let app = app.clone();
        Box::pin(async move {
            let handle = |req| async move {
                match service.call(req).await {
                    Ok(resp) => resp,
                    Err(never) => match never {},
                }
            };
            with_request_id(req, request_timeout, &app, handle).await
        })
    }
}

fn health(app: Arc<App>) -> Routes {
    warp::path!("health")
        .and(warp::get())
        .and(with_app(app))
        .map(|app: Arc<App>| {
            json(http::StatusCode::OK, &serde_json::json!({"status": "ok", "version": app.state.version()}))
        })
        .boxed()
}

fn ready(app: Arc<App>) -> Routes {
    warp::path!("ready")
        .and(warp::get())
        .and(with_app(app))
        .map(|app: Arc<App>| {
            let report = crate::state::readiness(&app);
            let status =
                if report.ready { http::StatusCode::OK } else { http::StatusCode::SERVICE_UNAVAILABLE };
            no_store(json(status, &report.to_json()))
        })
        .boxed()
}

async fn rejection(app: Arc<App>, r: warp::Rejection) -> Result<Response, Infallible> {
    // Specific rejections first: warp merges the rejections of every route
    // tried, so a too-large body on a path served by two methods would
    // otherwise read as a wrong method.
    let err = if r.find::<warp::reject::PayloadTooLarge>().is_some() {
        ApiError::TooLarge
    } else if r.find::<warp::reject::LengthRequired>().is_some() {
        ApiError::LengthRequired
    } else if r.find::<warp::reject::UnsupportedMediaType>().is_some() {
        ApiError::UnsupportedMediaType
    } else if r.find::<warp::reject::InvalidQuery>().is_some() {
        ApiError::BadRequest { detail: "invalid query string".into() }
    } else if r.find::<warp::reject::InvalidHeader>().is_some()
        || r.find::<warp::reject::MissingHeader>().is_some()
    {
        ApiError::BadRequest { detail: "invalid or missing header".into() }
    } else if r.is_not_found() {
        ApiError::NotFound
    } else if r.find::<warp::reject::MethodNotAllowed>().is_some() {
        ApiError::MethodNotAllowed
    } else {
        log::error!("unhandled rejection: {r:?}");
        ApiError::Internal
    };
    let req = Req { method: "-", route: "-", headers: HeaderMap::new(), tenant: None, key_id: None };
    Ok(app.fail(&req, err))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A timeout is recorded under the documented route the request addressed.
    #[test]
    fn requests_map_to_their_documented_route() {
        let check = |method: http::Method, path: &str, expected: Option<&str>| {
            let got = route_of(&method, path);
            assert_eq!(got.map(|(_, route)| route), expected, "{method} {path}");
            if let Some((m, _)) = got {
                assert_eq!(m, method.as_str());
            }
        };
        check(http::Method::POST, "/v1/ledgers/orders/records", Some("POST /v1/ledgers/{ledger}/records"));
        check(http::Method::GET, "/v1/ledgers/orders/records", Some("GET /v1/ledgers/{ledger}/records"));
        check(
            http::Method::GET,
            "/v1/ledgers/orders/records/7/proof",
            Some("GET /v1/ledgers/{ledger}/records/{seq}/proof"),
        );
        check(
            http::Method::POST,
            "/admin/v1/tenants/acme/suspend",
            Some("POST /admin/v1/tenants/{tenant}/suspend"),
        );
        check(http::Method::GET, "/health", Some("GET /health"));
        check(http::Method::DELETE, "/health", None);
        check(http::Method::GET, "/v1/ledgers/orders/records/7/proof/extra", None);
        check(http::Method::GET, "/nope", None);
    }
}
