//! The `Tenant` extractor: the tenant `Session` the layer resolved for this request.

use std::ops::Deref;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use popoto_core::{Session, TenantId};

use crate::auth::Principal;
use crate::error::ApiError;

/// The request's tenant: its id, a tenant [`Session`] (never an admin handle) and the
/// principal that was authorized for it. Derefs to the session.
///
/// Extracting it in a handler of a skip path, or without [`crate::TenancyLayer`], is a server
/// fault (500), never a request served without a tenant.
#[derive(Clone, Debug)]
pub struct Tenant {
    id: TenantId,
    session: Session,
    principal: Option<Principal>,
}

impl Tenant {
    pub(crate) fn new(id: TenantId, session: Session, principal: Option<Principal>) -> Tenant {
        Tenant {
            id,
            session,
            principal,
        }
    }

    /// The tenant id.
    pub fn id(&self) -> &TenantId {
        &self.id
    }

    /// The tenant session.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The authenticated principal (`None` when the authorizer admitted an anonymous caller).
    pub fn principal(&self) -> Option<&Principal> {
        self.principal.as_ref()
    }
}

impl Deref for Tenant {
    type Target = Session;

    fn deref(&self) -> &Session {
        &self.session
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Tenant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Tenant>().cloned().ok_or_else(|| {
            ApiError::internal(format!(
                "no tenant was resolved for {}: the handler is on a skip path or the TenancyLayer is missing",
                parts.uri.path()
            ))
        })
    }
}

/// `axum::Json` whose rejection is an [`ApiError`] with a fixed message: axum's own rejection
/// quotes the parser's message, which can echo the request body.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> axum::extract::FromRequest<S> for Json<T>
where
    axum::Json<T>:
        axum::extract::FromRequest<S, Rejection = axum::extract::rejection::JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        use axum::extract::rejection::JsonRejection as R;
        use axum::http::StatusCode;
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Json(v)),
            Err(e) => {
                let (status, code, message) = match &e {
                    R::MissingJsonContentType(_) => (
                        StatusCode::UNSUPPORTED_MEDIA_TYPE,
                        "unsupported_media_type",
                        "the body must be application/json",
                    ),
                    R::JsonDataError(_) => (
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "invalid_body",
                        "the body does not have the expected fields and types",
                    ),
                    _ => (
                        StatusCode::BAD_REQUEST,
                        "bad_request",
                        "the body is not valid JSON",
                    ),
                };
                Err(ApiError::new(status, code, message, e.body_text()))
            }
        }
    }
}

impl<T: serde::Serialize> axum::response::IntoResponse for Json<T> {
    fn into_response(self) -> axum::response::Response {
        axum::Json(self.0).into_response()
    }
}
