//! HTTP errors: the crate's rejections and the mapping of popoto's [`Error`] to statuses.
//!
//! A body is JSON `{"error": code, "message": text, "request_id": id}`: the code and message
//! are fixed strings chosen here, never built from the request or from the popoto error, so a
//! body cannot carry a Redis key, a URL, a credential, the caller's input or another tenant's
//! id. The detail goes to `tracing` with the same request id.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use popoto_core::Error;

use crate::layer::request_id;

/// An HTTP error response: a status, a fixed code and message, and a detail that only goes to
/// the log. Its `Display` shows the detail (for logs and reports), never send it to a client.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: &'static str,
    detail: String,
}

impl ApiError {
    /// An error with a status, a fixed machine-readable code and a fixed message; `detail` is
    /// logged, never sent.
    pub fn new(
        status: StatusCode,
        code: &'static str,
        message: &'static str,
        detail: impl Into<String>,
    ) -> ApiError {
        ApiError {
            status,
            code,
            message,
            detail: detail.into(),
        }
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The machine-readable code sent in the body.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The fixed message sent in the body.
    pub fn message(&self) -> &'static str {
        self.message
    }

    /// 404 `not_found`: the resource does not exist (for this tenant).
    pub fn not_found(detail: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such resource",
            detail,
        )
    }

    /// 400 `bad_request`: the request is malformed.
    pub fn bad_request(detail: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "the request is malformed",
            detail,
        )
    }

    /// 500 `internal`: a server-side fault; nothing about it is sent.
    pub fn internal(detail: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
            detail,
        )
    }

    /// 401 `unauthenticated`: no credential, and the tenant is not open to anonymous callers.
    /// The same for every tenant, existing or not.
    pub(crate) fn unauthenticated(detail: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "credentials are required",
            detail,
        )
    }

    /// 401 `invalid_credentials`: a presented token or API key was refused (forged, expired,
    /// not yet valid, unknown), whatever the tenant.
    pub(crate) fn invalid_credentials(detail: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
            "the credentials were refused",
            detail,
        )
    }

    /// 404 `tenant_not_found`: the one response for unknown, invalid and not-allowed tenants
    /// (and, for a caller that is not a member, suspended and destroyed ones).
    pub(crate) fn tenant_not_found(detail: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "tenant_not_found",
            "no such tenant, or not accessible with these credentials",
            detail,
        )
    }

    /// 400 `tenant_required`: nothing in the request selects a tenant.
    pub(crate) fn tenant_required(detail: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "tenant_required",
            "the request does not select a tenant",
            detail,
        )
    }

    /// 403 `tenant_suspended`, for members only.
    pub(crate) fn tenant_suspended(detail: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "tenant_suspended",
            "this tenant is suspended",
            detail,
        )
    }

    /// 410 `tenant_destroyed`, for members only.
    pub(crate) fn tenant_destroyed(detail: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::GONE,
            "tenant_destroyed",
            "this tenant was destroyed",
            detail,
        )
    }

    /// 503 `tenant_unavailable`, for members only: the tenant's backend is disabled or
    /// unreachable.
    pub(crate) fn tenant_unavailable(detail: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "tenant_unavailable",
            "this tenant's storage is unavailable; retry later",
            detail,
        )
    }

    /// 503 `unavailable`: a dependency (credential store, Redis) failed.
    pub(crate) fn unavailable(detail: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "a dependency is unavailable; retry later",
            detail,
        )
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.detail)
    }
}

impl std::error::Error for ApiError {}

/// Maps popoto's errors to statuses. The detail (which names keys and tenants) is logged only.
impl From<Error> for ApiError {
    fn from(e: Error) -> ApiError {
        let (status, code, message) = classify(&e);
        ApiError::new(status, code, message, e.to_string())
    }
}

/// The status, code and message of a popoto error.
fn classify(e: &Error) -> (StatusCode, &'static str, &'static str) {
    use StatusCode as S;
    match e {
        Error::NotFound { .. } | Error::NotInScope { .. } => {
            (S::NOT_FOUND, "not_found", "no such resource")
        }
        Error::AlreadyExists { .. } => (S::CONFLICT, "already_exists", "it already exists"),
        Error::UniqueViolation { .. } => (
            S::CONFLICT,
            "unique_violation",
            "a unique value is already taken",
        ),
        Error::Contention { .. } => (
            S::CONFLICT,
            "contention",
            "it kept changing concurrently; retry",
        ),
        Error::InvalidValue { .. } => (
            S::UNPROCESSABLE_ENTITY,
            "invalid_value",
            "a value cannot be stored",
        ),
        Error::NotSubscribed { .. } | Error::SharedNotFound { .. } => (
            S::NOT_FOUND,
            "not_subscribed",
            "no such shared resource, or not shared with this tenant",
        ),
        Error::ReadOnly { .. } => (
            S::FORBIDDEN,
            "read_only",
            "this tenant may read this shared resource, not write it",
        ),
        Error::SharedMerge { .. } => (
            S::CONFLICT,
            "merge_mismatch",
            "this shared resource is not written this way",
        ),
        Error::TenantMismatch { .. } => (
            S::FORBIDDEN,
            "tenant_mismatch",
            "the value or key belongs to another tenant",
        ),
        Error::InvalidTenant { .. } => (S::BAD_REQUEST, "invalid_tenant", "invalid tenant id"),
        Error::UnknownTenant { .. } => (
            S::NOT_FOUND,
            "tenant_not_found",
            "no such tenant, or not accessible with these credentials",
        ),
        Error::TenantDestroyed { .. } => (S::GONE, "tenant_destroyed", "this tenant was destroyed"),
        Error::TenantSuspended { .. } => {
            (S::FORBIDDEN, "tenant_suspended", "this tenant is suspended")
        }
        Error::TenantDisabled { .. } | Error::TenantUnregistered { .. } => (
            S::SERVICE_UNAVAILABLE,
            "tenant_unavailable",
            "this tenant's storage is unavailable; retry later",
        ),
        // The status of the first failure; the count is in the log.
        Error::Bulk { failed, .. } => {
            let status = failed
                .first()
                .map(|(_, e)| classify(e).0)
                .unwrap_or(S::INTERNAL_SERVER_ERROR);
            (status, "bulk_failed", "some items of the batch failed")
        }
        Error::FeedOverflow { .. } => (
            S::SERVICE_UNAVAILABLE,
            "too_slow",
            "this connection fell behind; reconnect from its last position",
        ),
        e if e.is_connection_error() => (
            S::SERVICE_UNAVAILABLE,
            "unavailable",
            "a dependency is unavailable; retry later",
        ),
        _ => (S::INTERNAL_SERVER_ERROR, "internal", "internal error"),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let rid = request_id();
        let rid_str = rid.as_deref().unwrap_or("-");
        if self.status.is_server_error() {
            tracing::error!(request_id = rid_str, status = self.status.as_u16(), code = self.code, detail = %self.detail, "request failed");
        } else {
            tracing::info!(request_id = rid_str, status = self.status.as_u16(), code = self.code, detail = %self.detail, "request refused");
        }
        let body = serde_json::json!({
            "error": self.code,
            "message": self.message,
            "request_id": rid,
        });
        let mut response = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
