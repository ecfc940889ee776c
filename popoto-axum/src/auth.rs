//! Authentication: who the caller is, proven by a JWT bearer token or an API key.
//!
//! Only these sources carry authority. A header, host or path only selects among the tenants the
//! authenticated principal may use (see [`crate::TenancyBuilder::authorize`]).

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::http::{header, HeaderMap, HeaderName};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use popoto_core::TenantId;
use serde_json::Value;

/// A boxed, sendable future (what the hooks return).
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// A boxed error from a user-supplied hook.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How a principal proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Credential {
    /// A JWT bearer token.
    Jwt,
    /// An API key, through the application's resolver.
    ApiKey,
}

/// An authenticated caller: a subject and the tenants its credential names. Cheap to clone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    subject: Arc<str>,
    tenants: Arc<[TenantId]>,
    via: Credential,
}

impl Principal {
    /// A principal (what an API key resolver returns): `subject` for logs and authorization,
    /// `tenants` the tenants its credential makes it a member of.
    pub fn new(subject: impl AsRef<str>, tenants: impl IntoIterator<Item = TenantId>) -> Self {
        Principal {
            subject: subject.as_ref().into(),
            tenants: tenants.into_iter().collect(),
            via: Credential::ApiKey,
        }
    }

    /// The subject (the token's `sub`, or what the API key resolver named).
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The tenants the credential names.
    pub fn tenants(&self) -> &[TenantId] {
        &self.tenants
    }

    /// Whether the credential names `tenant` (the default authorization rule).
    pub fn is_member(&self, tenant: &TenantId) -> bool {
        self.tenants.contains(tenant)
    }

    /// How it was authenticated.
    pub fn via(&self) -> Credential {
        self.via
    }
}

/// How JWT bearer tokens are verified: algorithm, key, the claim naming the tenant(s), leeway,
/// issuer and audience.
///
/// Expired tokens, tokens not valid yet (`nbf`), tokens without `exp`, tokens signed with
/// another algorithm or key are refused.
#[derive(Clone)]
pub struct JwtConfig {
    key: DecodingKey,
    validation: Validation,
    claim: String,
}

impl std::fmt::Debug for JwtConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtConfig")
            .field("algorithms", &self.validation.algorithms)
            .field("claim", &self.claim)
            .finish_non_exhaustive()
    }
}

impl JwtConfig {
    /// Tokens signed with `algorithm` under `key`; the tenant claim is `tenant` (a string or
    /// an array of strings); `exp` is required and `nbf` checked, with 30 s leeway.
    pub fn new(algorithm: Algorithm, key: DecodingKey) -> JwtConfig {
        let mut validation = Validation::new(algorithm);
        validation.validate_nbf = true;
        validation.validate_aud = false;
        validation.leeway = 30;
        JwtConfig {
            key,
            validation,
            claim: "tenant".into(),
        }
    }

    /// HS256 tokens under a shared secret (an empty secret is refused).
    pub fn hs256(secret: &[u8]) -> Result<JwtConfig, popoto_core::Error> {
        let key = DecodingKey::from_secret(secret)
            .map_err(|e| popoto_core::Error::Config(format!("JWT secret: {e}")))?;
        Ok(JwtConfig::new(Algorithm::HS256, key))
    }

    /// The claim that names the tenant (a string) or tenants (an array of strings).
    pub fn tenant_claim(mut self, claim: impl Into<String>) -> Self {
        self.claim = claim.into();
        self
    }

    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    pub fn leeway(mut self, seconds: u64) -> Self {
        self.validation.leeway = seconds;
        self
    }

    /// Accepted issuers (`iss` is then required).
    pub fn issuers(mut self, issuers: &[&str]) -> Self {
        self.validation.set_issuer(issuers);
        self.validation.required_spec_claims.insert("iss".into());
        self
    }

    /// Accepted audiences (`aud` is then required and checked).
    pub fn audiences(mut self, audiences: &[&str]) -> Self {
        self.validation.set_audience(audiences);
        self.validation.validate_aud = true;
        self.validation.required_spec_claims.insert("aud".into());
        self
    }

    /// Verifies `token` and returns its principal.
    pub(crate) fn verify(&self, token: &str) -> Result<Principal, String> {
        let data = jsonwebtoken::decode::<serde_json::Map<String, Value>>(
            token,
            &self.key,
            &self.validation,
        )
        .map_err(|e| format!("JWT refused: {e}"))?;
        let claims = data.claims;
        let subject = match claims.get("sub") {
            Some(Value::String(s)) => s.clone(),
            _ => String::new(),
        };
        let tenants = match claims.get(&self.claim) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(s)) => vec![tenant_claim(s)?],
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    Value::String(s) => tenant_claim(s),
                    _ => Err(format!("JWT claim {:?} holds a non-string", self.claim)),
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(format!("JWT claim {:?} is not a string", self.claim)),
        };
        let mut seen = HashSet::new();
        let tenants: Vec<TenantId> = tenants
            .into_iter()
            .filter(|t| seen.insert(t.clone()))
            .collect();
        Ok(Principal {
            subject: subject.into(),
            tenants: tenants.into(),
            via: Credential::Jwt,
        })
    }
}

fn tenant_claim(s: &str) -> Result<TenantId, String> {
    TenantId::new(s).map_err(|e| format!("JWT tenant claim: {e}"))
}

/// Resolves an API key to its principal (`None`: no such key).
pub type ApiKeyResolver =
    Arc<dyn Fn(String) -> BoxFuture<Result<Option<Principal>, BoxError>> + Send + Sync>;

/// A configured authentication source.
#[derive(Clone)]
pub(crate) enum AuthSource {
    /// `Authorization: Bearer <jwt>`.
    Jwt(Arc<JwtConfig>),
    /// An API key in a header, resolved by the application.
    ApiKey {
        header: HeaderName,
        resolver: ApiKeyResolver,
    },
}

/// What a request presents to one source.
pub(crate) enum Presented<'a> {
    /// Nothing for this source.
    Absent,
    /// A bearer token.
    Bearer(&'a str),
    /// An API key.
    Key(&'a str),
    /// Something unusable (not UTF-8, empty, several values).
    Malformed(&'static str),
}

impl AuthSource {
    /// The credential `headers` present to this source.
    pub(crate) fn presented<'a>(&self, headers: &'a HeaderMap) -> Presented<'a> {
        match self {
            AuthSource::Jwt(_) => {
                let mut values = headers.get_all(header::AUTHORIZATION).iter();
                let Some(value) = values.next() else {
                    return Presented::Absent;
                };
                if values.next().is_some() {
                    return Presented::Malformed("several Authorization headers");
                }
                let Ok(value) = value.to_str() else {
                    return Presented::Malformed("Authorization is not ASCII");
                };
                let Some((scheme, token)) = value.split_once(' ') else {
                    return Presented::Absent;
                };
                if !scheme.eq_ignore_ascii_case("bearer") {
                    return Presented::Absent;
                }
                let token = token.trim();
                if token.is_empty() {
                    return Presented::Malformed("empty bearer token");
                }
                Presented::Bearer(token)
            }
            AuthSource::ApiKey { header, .. } => {
                let mut values = headers.get_all(header).iter();
                let Some(value) = values.next() else {
                    return Presented::Absent;
                };
                if values.next().is_some() {
                    return Presented::Malformed("several API key headers");
                }
                match value.to_str().map(str::trim) {
                    Ok("") => Presented::Malformed("empty API key"),
                    Ok(key) => Presented::Key(key),
                    Err(_) => Presented::Malformed("API key is not ASCII"),
                }
            }
        }
    }
}
