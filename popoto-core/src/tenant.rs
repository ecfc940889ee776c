//! Tenant ids and scopes.

use std::fmt;
use std::sync::Arc;

use crate::error::{Error, Result};

/// Longest tenant id accepted, in bytes.
pub const MAX_TENANT_LEN: usize = 256;

/// A validated tenant id: not empty or blank (Unicode whitespace only), at most
/// [`MAX_TENANT_LEN`] bytes, no control characters.
///
/// It serializes as a plain string, so a job payload can carry it into another task or process.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(Arc<str>);

impl TenantId {
    /// Validates an id.
    ///
    /// ```
    /// use popoto_core::TenantId;
    /// assert!(TenantId::new("umbrella:eu-1").is_ok());
    /// assert!(TenantId::new("").is_err());
    /// assert!(TenantId::new("a\nb").is_err());
    /// assert!(TenantId::new("\u{3000}").is_err());
    /// ```
    pub fn new(id: impl AsRef<str>) -> Result<Self> {
        let id = id.as_ref();
        let reason = if id.is_empty() {
            Some("empty")
        } else if id.chars().all(char::is_whitespace) {
            Some("blank (whitespace only)")
        } else if id.len() > MAX_TENANT_LEN {
            Some("longer than 256 bytes")
        } else if id.chars().any(char::is_control) {
            Some("contains a control character")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(Error::InvalidTenant {
                tenant: id.chars().take(64).collect(),
                reason,
            }),
            None => Ok(TenantId(id.into())),
        }
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl serde::Serialize for TenantId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for TenantId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        TenantId::new(s).map_err(serde::de::Error::custom)
    }
}

/// Whose data a handle may touch.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Scope {
    /// No tenant: only models without a tenant field.
    Unscoped,
    /// One tenant: tenant models are confined to it; other models are shared.
    Tenant(TenantId),
    /// Everything, across tenants (maintenance and audits).
    Admin,
}

impl Scope {
    /// The tenant, for a tenant scope.
    pub fn tenant(&self) -> Option<&TenantId> {
        match self {
            Scope::Tenant(t) => Some(t),
            _ => None,
        }
    }

    /// A label for logs: the tenant id, `-` unscoped, `*` admin.
    pub(crate) fn label(&self) -> &str {
        match self {
            Scope::Unscoped => "-",
            Scope::Tenant(t) => t.as_str(),
            Scope::Admin => "*",
        }
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn the_ambient_tenant_is_task_local() {
        assert_eq!(super::current_tenant(), None);
        let t = TenantId::new("acme").unwrap_or_else(|e| panic!("{e}"));
        let seen = super::with_tenant(t.clone(), async {
            let inner = tokio::spawn(async { super::current_tenant() })
                .await
                .ok()
                .flatten();
            (super::current_tenant(), inner)
        })
        .await;
        assert_eq!(seen, (Some(t), None), "spawned tasks do not inherit it");
    }

    use super::*;

    #[test]
    fn tenant_ids_are_validated() {
        assert!(TenantId::new("acme").is_ok());
        assert!(TenantId::new("umbrella:eu-1").is_ok());
        assert!(matches!(
            TenantId::new(""),
            Err(Error::InvalidTenant { .. })
        ));
        assert!(matches!(
            TenantId::new("a\nb"),
            Err(Error::InvalidTenant { .. })
        ));
        assert!(matches!(
            TenantId::new("x".repeat(257)),
            Err(Error::InvalidTenant { .. })
        ));
        assert!(TenantId::new("x".repeat(256)).is_ok());
        for blank in [" ", "\u{a0}", "\u{2003}", "\u{3000}", " \u{3000} "] {
            assert!(
                matches!(TenantId::new(blank), Err(Error::InvalidTenant { .. })),
                "{blank:?}"
            );
        }
        assert!(TenantId::new(" a ").is_ok());
    }

    #[test]
    fn tenant_ids_serialize_as_strings() {
        let t = TenantId::new("a*b").unwrap_or_else(|e| panic!("{e}"));
        let json = serde_json::to_string(&t).unwrap_or_default();
        assert_eq!(json, "\"a*b\"");
        let back: TenantId = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, t);
        assert!(serde_json::from_str::<TenantId>("\"\"").is_err());
    }
}

tokio::task_local! {
    static AMBIENT: TenantId;
}

/// Runs `fut` with `tenant` as the ambient tenant of the current task (see [`current_tenant`]).
///
/// `tokio::spawn` does not inherit it: carry the [`TenantId`] into the spawned task (or a job
/// payload, it serializes) and enter the scope again there.
pub async fn with_tenant<F: std::future::Future>(tenant: TenantId, fut: F) -> F::Output {
    AMBIENT.scope(tenant, fut).await
}

/// The ambient tenant of the current task, if inside [`with_tenant`].
pub fn current_tenant() -> Option<TenantId> {
    AMBIENT.try_with(TenantId::clone).ok()
}
