//! `GET /openapi.json`: the API description kept in `docs/openapi.json`,
//! embedded at build time so the served document is exactly the reviewed one.

use http::header::{CONTENT_TYPE, HeaderValue};
use warp::Filter as _;

use super::{Response, Routes, full};

/// The document; `tests/tests/openapi.rs` checks it against the real routes.
pub(super) const DOCUMENT: &str = include_str!("../../../docs/openapi.json");

pub fn routes() -> Routes {
    warp::path!("openapi.json")
        .and(warp::get())
        .map(|| {
            let mut resp: Response = full(DOCUMENT.as_bytes().to_vec());
            resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            resp
        })
        .boxed()
}
