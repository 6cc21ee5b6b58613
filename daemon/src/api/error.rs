//! The one place internal errors become HTTP: RFC 9457 problem+json bodies
//! with a stable dotted `code` and the request id. No handler builds an error
//! body itself.

use http::StatusCode;
use http::header::{CONTENT_TYPE, HeaderValue};

use super::{Response, current_request_id};

/// Every error the API can answer with. The `code` strings are a contract.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApiError {
    NotFound,
    MethodNotAllowed,
    BadRequest {
        detail: &'static str,
    },
    LengthRequired,
    TooLarge,
    UnsupportedMediaType,
    /// The request took longer than the configured request timeout.
    Timeout,
    Internal,
}

impl ApiError {
    /// (status, code, title): the mapping, in one table.
    pub fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            ApiError::NotFound => (StatusCode::NOT_FOUND, "route.not_found", "No such route"),
            ApiError::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "route.method_not_allowed",
                "Method not allowed on this route",
            ),
            ApiError::BadRequest { .. } => (StatusCode::BAD_REQUEST, "request.invalid", "Invalid request"),
            ApiError::LengthRequired => {
                (StatusCode::LENGTH_REQUIRED, "request.length_required", "Content-Length is required")
            }
            ApiError::TooLarge => {
                (StatusCode::PAYLOAD_TOO_LARGE, "request.too_large", "Request body too large")
            }
            ApiError::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "request.unsupported_media_type",
                "Unsupported media type",
            ),
            ApiError::Timeout => (StatusCode::SERVICE_UNAVAILABLE, "request.timeout", "Request timed out"),
            ApiError::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal", "Internal error"),
        }
    }
}

/// Renders an error as `application/problem+json`.
pub fn problem(err: &ApiError) -> Response {
    let (status, code, title) = err.parts();
    let request_id = current_request_id();
    let mut body = serde_json::json!({
        "type": format!("https://annal.dev/problems/{code}"),
        "title": title,
        "status": status.as_u16(),
        "code": code,
        "request_id": &*request_id,
    });
    if let ApiError::BadRequest { detail } = err {
        body["detail"] = serde_json::Value::from(*detail);
    }
    let mut resp = Response::new(serde_json::to_vec(&body).expect("json").into());
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
    resp
}
