//! The HTTP surface: request ids, routing, and the conversion of warp
//! rejections into problem+json. Routes live in submodules.

mod error;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http::header::{CACHE_CONTROL, HeaderName, HeaderValue};
use tower_service::Service as _;
use warp::Filter as _;

pub use error::{ApiError, problem};

use crate::limits::REQUEST_ID_BYTES_MAX;
use crate::state::State;

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
/// the id on the response, whatever produced it.
pub async fn with_request_id<B>(
    mut req: http::Request<B>,
    timeout: Duration,
    app: &(dyn Fn(http::Request<B>) -> BoxFuture + Send + Sync),
) -> Response {
    let id = request_id_of(&req);
    let value = HeaderValue::from_str(&id).expect("sane or generated id is a valid header");
    req.headers_mut().insert(X_REQUEST_ID, value.clone());
    let handled = app(req);
    let mut resp = REQUEST_ID
        .scope(id, async move {
            match tokio::time::timeout(timeout, handled).await {
                Ok(resp) => resp,
                Err(_) => problem(&ApiError::Timeout),
            }
        })
        .await;
    resp.headers_mut().insert(X_REQUEST_ID, value);
    resp
}

/// Builds the application: warp routes hosted as a plain async function.
pub fn app(
    state: Arc<State>,
) -> impl Fn(http::Request<hyper::body::Incoming>) -> BoxFuture + Send + Sync + 'static {
    let routes = health(state.clone()).or(ready(state)).recover(rejection);
    let service = warp::service(routes);
    move |req| {
        let mut service = service.clone();
        Box::pin(async move {
            match service.call(req).await {
                Ok(resp) => resp,
                Err(never) => match never {},
            }
        })
    }
}

fn json_reply(status: http::StatusCode, body: &serde_json::Value) -> Response {
    let mut resp = Response::new(serde_json::to_vec(body).expect("json").into());
    *resp.status_mut() = status;
    resp.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn health(
    state: Arc<State>,
) -> impl warp::Filter<Extract = (Response,), Error = warp::Rejection> + Clone + Send + Sync + 'static {
    warp::path!("health").and(warp::get()).map(move || {
        json_reply(http::StatusCode::OK, &serde_json::json!({"status": "ok", "version": state.version()}))
    })
}

fn ready(
    state: Arc<State>,
) -> impl warp::Filter<Extract = (Response,), Error = warp::Rejection> + Clone + Send + Sync + 'static {
    warp::path!("ready").and(warp::get()).map(move || {
        let report = state.readiness();
        let status = if report.ready { http::StatusCode::OK } else { http::StatusCode::SERVICE_UNAVAILABLE };
        json_reply(status, &report.to_json())
    })
}

async fn rejection(r: warp::Rejection) -> Result<Response, Infallible> {
    let err = if r.is_not_found() {
        ApiError::NotFound
    } else if r.find::<warp::reject::MethodNotAllowed>().is_some() {
        ApiError::MethodNotAllowed
    } else if r.find::<warp::reject::PayloadTooLarge>().is_some() {
        ApiError::TooLarge
    } else if r.find::<warp::reject::LengthRequired>().is_some() {
        ApiError::LengthRequired
    } else if r.find::<warp::reject::UnsupportedMediaType>().is_some() {
        ApiError::UnsupportedMediaType
    } else if r.find::<warp::reject::InvalidHeader>().is_some()
        || r.find::<warp::reject::InvalidQuery>().is_some()
        || r.find::<warp::reject::MissingHeader>().is_some()
    {
        ApiError::BadRequest { detail: "invalid header or query" }
    } else {
        log::error!("unhandled rejection: {r:?}");
        ApiError::Internal
    };
    Ok(problem(&err))
}
