//! The one place internal errors become HTTP: RFC 9457 problem+json bodies
//! with a stable dotted `code` and the request id. No handler builds an error
//! body itself.

use http::StatusCode;
use http::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};

use super::{Response, current_request_id, full};

/// Every error the API can answer with. The `code` strings are a contract
/// (docs/API.md lists them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApiError {
    NotFound,
    MethodNotAllowed,
    /// No `Authorization: Bearer` header.
    AuthRequired,
    /// Unknown, revoked or malformed key: one answer for all three.
    InvalidKey,
    TenantSuspended,
    TenantNotFound,
    TenantExists,
    TenantReserved,
    KeyNotFound,
    KeyAlreadyRevoked,
    LedgerNotFound,
    RecordNotFound,
    CheckpointNotFound,
    /// PUT/PATCH/DELETE on records or ledgers: history is append-only.
    AppendOnly,
    BadRequest {
        detail: String,
    },
    RecordInvalid {
        detail: String,
    },
    /// Appending would create a ledger past the tenant's limit.
    LedgerLimit {
        detail: String,
    },
    ParentNotFound,
    ParentHashMismatch,
    IdempotencyKeyReused,
    IdempotencyKeyInvalid,
    OutOfRange {
        detail: String,
    },
    LengthRequired,
    TooLarge,
    UnsupportedMediaType,
    /// Refused by the bucket `name` ("default": the key's, "tenant": the
    /// tenant's); `policy` is that bucket's `RateLimit-Policy` value.
    RateLimited {
        retry_after_s: u64,
        policy: String,
        name: &'static str,
    },
    Timeout,
    /// A bounded queue is full; try again shortly.
    Overloaded,
    Draining,
    DbUnavailable,
    /// The signing key is not the current identity: nothing may be signed.
    SigningUnavailable,
    /// The derived sled index cannot answer (not opened, or failing);
    /// writes and redb reads are unaffected.
    IndexUnavailable,
    /// Online backup needs `storage.backup_dir`.
    BackupNotConfigured,
    /// An online backup is already being written.
    BackupInProgress,
    WebhookNotFound,
    WebhookDisabled,
    WebhookSecretNotFound,
    WebhookSecretAlreadyRevoked,
    /// Revoking it would leave the endpoint with no secret to sign with.
    WebhookLastSecret,
    /// Too many endpoints for the tenant, or unrevoked secrets for the endpoint.
    WebhookLimit {
        detail: String,
    },
    WebhookUrlInvalid {
        detail: String,
    },
    /// The URL's host resolves to an address deliveries may not go to.
    WebhookUrlForbidden {
        detail: String,
    },
    /// No webhook key is configured: webhooks are off.
    WebhooksNotConfigured,
    Internal,
}

impl ApiError {
    /// (status, code, title): the mapping, in one table.
    pub fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        use ApiError as E;
        use StatusCode as S;
        match self {
            E::NotFound => (S::NOT_FOUND, "route.not_found", "No such route"),
            E::MethodNotAllowed => (S::METHOD_NOT_ALLOWED, "route.method_not_allowed", "Method not allowed"),
            E::AuthRequired => (S::UNAUTHORIZED, "auth.required", "Authorization required"),
            E::InvalidKey => (S::UNAUTHORIZED, "auth.invalid_key", "Invalid credentials"),
            E::TenantSuspended => (S::FORBIDDEN, "tenant.suspended", "Tenant is suspended"),
            E::TenantNotFound => (S::NOT_FOUND, "tenant.not_found", "No such tenant"),
            E::TenantExists => (S::CONFLICT, "tenant.exists", "Tenant already exists"),
            E::TenantReserved => (S::UNPROCESSABLE_ENTITY, "tenant.reserved", "Tenant id is reserved"),
            E::KeyNotFound => (S::NOT_FOUND, "key.not_found", "No such key"),
            E::KeyAlreadyRevoked => (S::CONFLICT, "key.already_revoked", "Key already revoked"),
            E::LedgerNotFound => (S::NOT_FOUND, "ledger.not_found", "No such ledger"),
            E::RecordNotFound => (S::NOT_FOUND, "record.not_found", "No such record"),
            E::CheckpointNotFound => (S::NOT_FOUND, "checkpoint.not_found", "No such checkpoint"),
            E::AppendOnly => (S::METHOD_NOT_ALLOWED, "ledger.append_only", "Ledgers are append-only"),
            E::BadRequest { .. } => (S::BAD_REQUEST, "request.invalid", "Invalid request"),
            E::RecordInvalid { .. } => (S::UNPROCESSABLE_ENTITY, "record.invalid", "Invalid record"),
            E::LedgerLimit { .. } => {
                (S::CONFLICT, "ledger.limit_reached", "The tenant has its limit of ledgers")
            }
            E::ParentNotFound => {
                (S::UNPROCESSABLE_ENTITY, "lineage.parent_not_found", "Lineage parent not found")
            }
            E::ParentHashMismatch => {
                (S::UNPROCESSABLE_ENTITY, "lineage.parent_hash_mismatch", "Lineage parent hash differs")
            }
            E::IdempotencyKeyReused => (
                S::UNPROCESSABLE_ENTITY,
                "idempotency.key_reused",
                "Idempotency key reused with other content",
            ),
            E::IdempotencyKeyInvalid => {
                (S::BAD_REQUEST, "idempotency.key_invalid", "Invalid Idempotency-Key")
            }
            E::OutOfRange { .. } => (S::UNPROCESSABLE_ENTITY, "request.out_of_range", "Out of range"),
            E::LengthRequired => (S::LENGTH_REQUIRED, "request.length_required", "Content-Length required"),
            E::TooLarge => (S::PAYLOAD_TOO_LARGE, "request.too_large", "Request body too large"),
            E::UnsupportedMediaType => {
                (S::UNSUPPORTED_MEDIA_TYPE, "request.unsupported_media_type", "Unsupported media type")
            }
            E::RateLimited { .. } => (S::TOO_MANY_REQUESTS, "rate.limited", "Rate limit exceeded"),
            E::Timeout => (S::SERVICE_UNAVAILABLE, "request.timeout", "Request timed out"),
            E::Overloaded => (S::SERVICE_UNAVAILABLE, "overloaded", "Server overloaded"),
            E::Draining => (S::SERVICE_UNAVAILABLE, "server.draining", "Server is shutting down"),
            E::DbUnavailable => (S::SERVICE_UNAVAILABLE, "db.unavailable", "Database unavailable"),
            E::SigningUnavailable => {
                (S::SERVICE_UNAVAILABLE, "signing.unavailable", "Signing key is not the current identity")
            }
            E::IndexUnavailable => (S::SERVICE_UNAVAILABLE, "index.unavailable", "Index unavailable"),
            E::BackupNotConfigured => {
                (S::CONFLICT, "backup.not_configured", "storage.backup_dir is not configured")
            }
            E::BackupInProgress => (S::CONFLICT, "backup.in_progress", "A backup is already being written"),
            E::WebhookNotFound => (S::NOT_FOUND, "webhook.not_found", "No such webhook endpoint"),
            E::WebhookDisabled => (S::CONFLICT, "webhook.disabled", "Webhook endpoint is disabled"),
            E::WebhookSecretNotFound => {
                (S::NOT_FOUND, "webhook.secret_not_found", "No such webhook secret version")
            }
            E::WebhookSecretAlreadyRevoked => {
                (S::CONFLICT, "webhook.secret_already_revoked", "Webhook secret already revoked")
            }
            E::WebhookLastSecret => {
                (S::CONFLICT, "webhook.last_secret", "The endpoint's last active secret cannot be revoked")
            }
            E::WebhookLimit { .. } => (S::CONFLICT, "webhook.limit_reached", "Webhook limit reached"),
            E::WebhookUrlInvalid { .. } => {
                (S::UNPROCESSABLE_ENTITY, "webhook.url_invalid", "Invalid webhook URL")
            }
            E::WebhookUrlForbidden { .. } => (
                S::UNPROCESSABLE_ENTITY,
                "webhook.url_forbidden",
                "Webhook URL points at a forbidden address",
            ),
            E::WebhooksNotConfigured => (
                S::CONFLICT,
                "webhook.not_configured",
                "Webhooks need secrets.webhook_key_file or the annal-webhook-key credential",
            ),
            E::Internal => (S::INTERNAL_SERVER_ERROR, "internal", "Internal error"),
        }
    }

    pub fn code(&self) -> &'static str {
        self.parts().1
    }

    pub fn status(&self) -> StatusCode {
        self.parts().0
    }

    fn detail(&self) -> Option<&str> {
        match self {
            ApiError::BadRequest { detail }
            | ApiError::RecordInvalid { detail }
            | ApiError::LedgerLimit { detail }
            | ApiError::OutOfRange { detail }
            | ApiError::WebhookLimit { detail }
            | ApiError::WebhookUrlInvalid { detail }
            | ApiError::WebhookUrlForbidden { detail } => Some(detail),
            _ => None,
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
    if let Some(detail) = err.detail() {
        body["detail"] = serde_json::Value::from(detail);
    }
    let mut resp = full(serde_json::to_vec(&body).expect("json"));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
    match err {
        ApiError::RateLimited { retry_after_s, policy, name } => {
            headers.insert(RETRY_AFTER, HeaderValue::from(*retry_after_s));
            if let Ok(v) = HeaderValue::from_str(policy) {
                headers.insert("ratelimit-policy", v);
            }
            if let Ok(v) = HeaderValue::from_str(&format!("\"{name}\";r=0;t={retry_after_s}")) {
                headers.insert("ratelimit", v);
            }
        }
        ApiError::Overloaded | ApiError::Draining | ApiError::DbUnavailable | ApiError::IndexUnavailable => {
            headers.insert(RETRY_AFTER, HeaderValue::from(1u32));
        }
        _ => {}
    }
    resp
}
