//! The tower layer: resolves every request (but skip paths) to a tenant before the handler runs.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::http::{HeaderValue, Request};
use axum::response::{IntoResponse, Response};
use tower::{Layer, Service};

use crate::tenancy::Tenancy;

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The id of the request being served (inside [`TenancyLayer`]): sent as `x-request-id` and in
/// error bodies, and logged with every refusal and error.
pub fn request_id() -> Option<String> {
    REQUEST_ID.try_with(String::clone).ok()
}

impl Tenancy {
    /// The tower layer that resolves each request's tenant (see [`crate::Tenant`]).
    pub fn layer(&self) -> TenancyLayer {
        TenancyLayer {
            tenancy: self.clone(),
        }
    }
}

/// Resolves each request to a [`crate::Tenant`] before the inner service, or answers with the
/// refusal; skip paths pass through without a tenant. Adds `x-request-id` to every response.
#[derive(Clone, Debug)]
pub struct TenancyLayer {
    tenancy: Tenancy,
}

impl<S> Layer<S> for TenancyLayer {
    type Service = TenancyService<S>;

    fn layer(&self, inner: S) -> TenancyService<S> {
        TenancyService {
            inner,
            tenancy: self.tenancy.clone(),
        }
    }
}

/// The service made by [`TenancyLayer`].
#[derive(Clone, Debug)]
pub struct TenancyService<S> {
    inner: S,
    tenancy: Tenancy,
}

impl<S, B> Service<Request<B>> for TenancyService<S>
where
    S: Service<Request<B>, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // The clone is not ready; the one that was polled ready serves this request.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let tenancy = self.tenancy.clone();
        let id = uuid::Uuid::new_v4().simple().to_string();
        let header = HeaderValue::from_str(&id).ok();
        let serve = async move {
            let (mut parts, body) = req.into_parts();
            if !tenancy.is_skipped(parts.uri.path()) {
                match tenancy.resolve(&parts).await {
                    Ok(tenant) => {
                        parts.extensions.insert(tenant);
                    }
                    Err(refusal) => return Ok(refusal.into_response()),
                }
            }
            inner.call(Request::from_parts(parts, body)).await
        };
        Box::pin(async move {
            let mut response = REQUEST_ID.scope(id, serve).await?;
            if let Some(h) = header {
                response.headers_mut().insert("x-request-id", h);
            }
            Ok(response)
        })
    }
}
