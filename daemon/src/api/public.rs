//! Public routes that need no key: the signing identity.

use std::sync::Arc;

use http::StatusCode;
use warp::Filter as _;

use super::{Req, Response, Routes, read_error, with_app};
use crate::app::App;

pub fn routes(app: Arc<App>) -> Routes {
    warp::path!("v1" / "identity")
        .and(warp::get())
        .and(warp::header::headers_cloned())
        .and(with_app(app))
        .then(identity)
        .boxed()
}

/// The identity log, exactly as `annal-verify --identity-log` reads it; the
/// last entry is the current key.
async fn identity(headers: http::HeaderMap, app: Arc<App>) -> Response {
    let r = Req { method: "GET", route: "GET /v1/identity", headers, tenant: None, key_id: None };
    match crate::app::identity_log_json(&app.store).map_err(read_error) {
        Ok(body) => {
            let mut resp = super::full(body);
            *resp.status_mut() = StatusCode::OK;
            resp.headers_mut()
                .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
            resp
        }
        Err(e) => app.fail(&r, e),
    }
}
