//! `Tenancy`: the configured resolution of a request to a tenant, and its builder.

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;

use axum::http::HeaderName;
use popoto_core::{Db, Error, TenantId};

use crate::auth::{ApiKeyResolver, AuthSource, BoxError, BoxFuture, JwtConfig, Principal};
use crate::cache::{CacheTtl, TtlCache};
use crate::select::Selector;

/// What the application's status hook says about a tenant (e.g. from its catalog).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum TenantStatus {
    /// Serve it.
    Active,
    /// It exists but is suspended: members get 403, everyone else the uniform 404.
    Suspended,
    /// No such tenant: 404.
    Unknown,
}

/// Decides whether a principal (`None`: anonymous) may use a tenant.
pub type Authorizer = Arc<dyn Fn(Option<Principal>, TenantId) -> BoxFuture<bool> + Send + Sync>;

/// Looks up a tenant's status.
pub type StatusHook =
    Arc<dyn Fn(TenantId) -> BoxFuture<Result<TenantStatus, BoxError>> + Send + Sync>;

impl Inner {
    /// Whether anything is cached (an API key source or a status hook).
    pub(crate) fn keys_or_statuses_cached(&self) -> bool {
        self.status.is_some()
            || self
                .auth
                .iter()
                .any(|a| matches!(a, AuthSource::ApiKey { .. }))
    }
}

pub(crate) struct Inner {
    pub(crate) db: Db,
    pub(crate) auth: Vec<AuthSource>,
    pub(crate) select: Vec<Selector>,
    pub(crate) authorizer: Option<Authorizer>,
    pub(crate) status: Option<StatusHook>,
    pub(crate) skip: Vec<String>,
    pub(crate) trusted_proxies: Vec<IpAddr>,
    pub(crate) default_tenant: Option<TenantId>,
    pub(crate) ttl: CacheTtl,
    pub(crate) keys: TtlCache<String, Option<Principal>>,
    pub(crate) statuses: TtlCache<TenantId, TenantStatus>,
}

/// How requests become tenants: the configured sources, the authorizer, skip paths, trusted
/// proxies and caches. Cheap to clone; [`Tenancy::layer`] makes the tower layer.
#[derive(Clone)]
pub struct Tenancy {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Tenancy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tenancy")
            .field("selectors", &self.inner.select)
            .field("skip", &self.inner.skip)
            .field("trusted_proxies", &self.inner.trusted_proxies)
            .field("default_tenant", &self.inner.default_tenant)
            .finish_non_exhaustive()
    }
}

impl Tenancy {
    /// A builder for tenants of `db` (through its registry, if it has one).
    pub fn builder(db: Db) -> TenancyBuilder {
        TenancyBuilder {
            db,
            auth: Vec::new(),
            select: Vec::new(),
            authorizer: None,
            status: None,
            skip: Vec::new(),
            trusted_proxies: Vec::new(),
            default_tenant: None,
            ttl: CacheTtl::default(),
            errors: Vec::new(),
        }
    }

    /// The root handle.
    pub fn db(&self) -> &Db {
        &self.inner.db
    }

    /// Forgets the cached status of `tenant` now. Not needed for changes of the `Db`'s tenant
    /// catalog, which make every answer cached before them stale; for a status hook or API
    /// keys read from elsewhere.
    pub fn invalidate_tenant(&self, tenant: &TenantId) {
        self.inner.statuses.remove(tenant);
    }

    /// Forgets the cached principal of an API key (call it when the key is revoked).
    pub fn invalidate_api_key(&self, key: &str) {
        self.inner.keys.remove(&key.to_owned());
    }

    /// Forgets every cached answer.
    pub fn clear_cache(&self) {
        self.inner.keys.clear();
        self.inner.statuses.clear();
    }

    /// Whether `path` is a skip path (served without a tenant).
    pub fn is_skipped(&self, path: &str) -> bool {
        self.inner.skip.iter().any(|p| {
            path == p
                || path
                    .strip_prefix(p.as_str())
                    .is_some_and(|r| r.starts_with('/'))
        })
    }
}

/// Configures a [`Tenancy`]. Sources are tried in the order they are added: the first
/// credential present authenticates (a bad one is refused, not skipped), the first selection
/// present selects.
pub struct TenancyBuilder {
    db: Db,
    auth: Vec<AuthSource>,
    select: Vec<Selector>,
    authorizer: Option<Authorizer>,
    status: Option<StatusHook>,
    skip: Vec<String>,
    trusted_proxies: Vec<IpAddr>,
    default_tenant: Option<TenantId>,
    ttl: CacheTtl,
    errors: Vec<String>,
}

impl TenancyBuilder {
    /// Authenticates `Authorization: Bearer <jwt>`; its tenant claim names the tenants the
    /// principal is a member of.
    pub fn jwt(mut self, config: JwtConfig) -> Self {
        self.auth.push(AuthSource::Jwt(Arc::new(config)));
        self
    }

    /// Authenticates an API key sent in `header` through `resolver` (`Ok(None)`: no such key).
    /// Answers are cached (see [`TenancyBuilder::cache_ttl`]).
    pub fn api_key<F, Fut>(mut self, header: &str, resolver: F) -> Self
    where
        F: Fn(String) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Option<Principal>, BoxError>> + Send + 'static,
    {
        match HeaderName::from_bytes(header.as_bytes()) {
            Ok(header) => {
                let resolver: ApiKeyResolver = Arc::new(move |k| Box::pin(resolver(k)));
                self.auth.push(AuthSource::ApiKey { header, resolver });
            }
            Err(e) => self.errors.push(format!("API key header {header:?}: {e}")),
        }
        self
    }

    /// Authenticates API keys sent in `header` through the tenant catalog of the `Db`'s
    /// registry ([`crate::catalog_api_keys`]: a key is `<tenant>.<secret>`, the catalog keeps
    /// the SHA-256 of each secret in the tenant's metadata). Revoking a key in the catalog is
    /// obeyed at the next request. [`Error::Config`] at build time when the `Db` has no catalog.
    pub fn catalog_api_key(mut self, header: &str) -> Self {
        match self.db.registry().and_then(|r| r.catalog()) {
            Some(catalog) => self.api_key(header, crate::catalog_api_keys(catalog)),
            None => {
                self.errors
                    .push("catalog_api_key needs a Db whose registry has a tenant catalog".into());
                self
            }
        }
    }

    /// Selects the tenant named by a header (e.g. `X-Tenant`).
    pub fn header(mut self, name: &str) -> Self {
        match HeaderName::from_bytes(name.as_bytes()) {
            Ok(h) => self.select.push(Selector::Header(h)),
            Err(e) => self.errors.push(format!("tenant header {name:?}: {e}")),
        }
        self
    }

    /// Selects the tenant named by the one DNS label left of `base_domain` in the host
    /// (`acme.example.com` → `acme`; `foo.bar.example.com` is refused). `Forwarded` and
    /// `X-Forwarded-Host` are believed only from [trusted proxies](Self::trusted_proxies).
    pub fn host(mut self, base_domain: &str) -> Self {
        let base = base_domain.trim().trim_matches('.').to_ascii_lowercase();
        if base.is_empty() || base.contains(['/', ':', ' ']) {
            self.errors.push(format!("base domain {base_domain:?}"));
        } else {
            self.select.push(Selector::Host { base });
        }
        self
    }

    /// Selects the tenant named by the path segment after `prefix` (`/t` → `/t/acme/...`).
    pub fn path_prefix(mut self, prefix: &str) -> Self {
        let prefix = format!("/{}", prefix.trim_matches('/'));
        self.select.push(Selector::Path { prefix });
        self
    }

    /// Replaces the authorization rule. The default allows a principal the tenants its
    /// credential names ([`Principal::is_member`]) and denies everything else, anonymous
    /// callers included.
    pub fn authorize<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(Option<Principal>, TenantId) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = bool> + Send + 'static,
    {
        self.authorizer = Some(Arc::new(move |p, t| Box::pin(f(p, t))));
        self
    }

    /// Asks `f` for a tenant's status (suspended, unknown) after authorization; answers are
    /// cached. The registry of the `Db`, if any, is asked too, on every request.
    pub fn status<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(TenantId) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<TenantStatus, BoxError>> + Send + 'static,
    {
        self.status = Some(Arc::new(move |t| Box::pin(f(t))));
        self
    }

    /// Serves `path` and everything under it without a tenant (health, metrics).
    pub fn skip_path(mut self, path: &str) -> Self {
        self.skip.push(format!("/{}", path.trim_matches('/')));
        self
    }

    /// Believes `Forwarded` and `X-Forwarded-Host` from these peers (needs
    /// `into_make_service_with_connect_info::<SocketAddr>()`); ignored from anyone else.
    pub fn trusted_proxies(mut self, proxies: impl IntoIterator<Item = IpAddr>) -> Self {
        self.trusted_proxies
            .extend(proxies.into_iter().map(|p| p.to_canonical()));
        self
    }

    /// The tenant of requests that select none (still authorized like a selection). Without
    /// it such requests are refused.
    pub fn default_tenant(mut self, tenant: TenantId) -> Self {
        self.default_tenant = Some(tenant);
        self
    }

    /// How long API key and status answers are cached ([`CacheTtl::OFF`] disables it).
    pub fn cache_ttl(mut self, ttl: CacheTtl) -> Self {
        self.ttl = ttl;
        self
    }

    /// The configured tenancy; a bad header name or base domain is [`Error::Config`].
    pub fn build(self) -> Result<Tenancy, Error> {
        if !self.errors.is_empty() {
            return Err(Error::Config(self.errors.join("; ")));
        }
        if self.auth.is_empty() && self.select.is_empty() && self.default_tenant.is_none() {
            return Err(Error::Config(
                "a tenancy needs at least one source (jwt, api_key, header, host, path_prefix) or a default tenant".into(),
            ));
        }
        Ok(Tenancy {
            inner: Arc::new(Inner {
                db: self.db,
                auth: self.auth,
                select: self.select,
                authorizer: self.authorizer,
                status: self.status,
                skip: self.skip,
                trusted_proxies: self.trusted_proxies,
                default_tenant: self.default_tenant,
                ttl: self.ttl,
                keys: TtlCache::new(),
                statuses: TtlCache::new(),
            }),
        })
    }
}
