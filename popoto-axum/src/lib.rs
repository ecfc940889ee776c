//! popoto for web services: each request becomes a tenant [`popoto_core::Session`].
//!
//! A [`Tenancy`] lists where a request's tenant comes from, in order: credentials that prove
//! who the caller is (a JWT bearer token, an API key) and selections that only pick among the
//! tenants that caller may use (a header, the host under a base domain, a path segment). Its
//! [`Tenancy::layer`] resolves each request before the handler runs, and the [`Tenant`]
//! extractor hands the handler a tenant session, never an admin handle.
//!
//! It fails closed: no credential and no open tenant is 401, a request that selects no tenant
//! is refused unless a default tenant is configured, and skip paths are the only requests
//! served without a tenant. A caller that is not a member of a tenant gets one answer whether
//! the tenant exists or not. Errors become JSON bodies with fixed messages ([`ApiError`]); the
//! detail goes to `tracing` with the request id.
//!
//! Background work keeps its tenant explicitly: [`JobQueue`] and [`Worker`] carry the tenant id
//! in each job of a Redis Stream (redelivered to another worker if one crashes), and
//! [`spawn_in_tenant`] hands a spawned task the request's session.
//!
//! [`live`] serves live sync over WebSocket: a connection per tenant gets snapshots and the
//! change events of its private models and of the shared instances it is subscribed to, and
//! writes back (`docs/shared-models.md`).
//!
//! The guide is `docs/web.md`.

mod auth;
mod cache;
mod error;
mod extract;
mod jobs;
mod keys;
mod layer;
pub mod live;
mod resolve;
mod select;
mod tenancy;

pub use auth::{BoxError, BoxFuture, Credential, JwtConfig, Principal};
pub use cache::CacheTtl;
pub use error::ApiError;
pub use extract::{Json, Tenant};
pub use jobs::{spawn_in_tenant, Job, JobQueue, WorkReport, Worker};
pub use jsonwebtoken;
pub use keys::{api_key_digest, catalog_api_keys, new_api_key, API_KEY_PREFIX};
pub use layer::{request_id, TenancyLayer, TenancyService};
pub use tenancy::{Authorizer, StatusHook, Tenancy, TenancyBuilder, TenantStatus};

/// `docs/web.md`, whose code compiles as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../../docs/web.md")]
mod web_guide {}
