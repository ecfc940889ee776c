//! API keys kept in the tenant catalog: a key is `<tenant>.<secret>`, and the tenant's catalog
//! entry holds the SHA-256 of each of its secrets in its metadata, under `api_key:<name>`.
//! Nothing that could authenticate is stored; revoking a key is removing its metadata entry (a
//! catalog change, so every process stops accepting it at once: see `docs/web.md`).

use std::collections::BTreeMap;

use popoto_core::{Catalog, TenantId, TenantStatus};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::auth::{BoxError, Principal};

/// Prefix of the metadata names holding API key digests.
pub const API_KEY_PREFIX: &str = "api_key:";

/// The SHA-256 of a secret, as stored in the catalog (lower-case hex).
pub fn api_key_digest(secret: &str) -> String {
    Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A new API key of `tenant` named `name`: the key to hand out (`<tenant>.<secret>`, 244 random
/// bits) and the metadata entry to store in the tenant's catalog entry
/// (`Catalog::update` with `set`).
pub fn new_api_key(tenant: &TenantId, name: &str) -> (String, BTreeMap<String, String>) {
    let secret = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let key = format!("{tenant}.{secret}");
    let entry = BTreeMap::from([(format!("{API_KEY_PREFIX}{name}"), api_key_digest(&secret))]);
    (key, entry)
}

/// An API key resolver (for [`crate::TenancyBuilder::api_key`]) that looks keys up in the
/// tenant catalog: the principal is the key's tenant (subject `api_key:<name>@<tenant>`) when
/// the digest of its secret is one of the tenant's and the tenant is not destroyed; unknown
/// otherwise. Whether the tenant may be served (suspended...) is checked afterwards, as for
/// every request.
pub fn catalog_api_keys(
    catalog: Catalog,
) -> impl Fn(String) -> crate::BoxFuture<Result<Option<Principal>, BoxError>>
       + Clone
       + Send
       + Sync
       + 'static {
    move |key: String| {
        let catalog = catalog.clone();
        Box::pin(async move { lookup(&catalog, &key).await })
    }
}

async fn lookup(catalog: &Catalog, key: &str) -> Result<Option<Principal>, BoxError> {
    // Secrets have no dot; tenant ids may.
    let Some((tenant, secret)) = key.rsplit_once('.') else {
        return Ok(None);
    };
    let Ok(tenant) = TenantId::new(tenant) else {
        return Ok(None);
    };
    if secret.is_empty() {
        return Ok(None);
    }
    let Some(entry) = catalog.get(&tenant).await? else {
        return Ok(None);
    };
    if entry.status == TenantStatus::Destroyed {
        return Ok(None);
    }
    let digest = api_key_digest(secret);
    let found = entry.metadata.iter().find_map(|(name, stored)| {
        let name = name.strip_prefix(API_KEY_PREFIX)?;
        bool::from(stored.as_bytes().ct_eq(digest.as_bytes())).then_some(name)
    });
    Ok(found
        .map(|name| Principal::new(format!("{API_KEY_PREFIX}{name}@{tenant}"), [tenant.clone()])))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_sha256_hex_and_keys_carry_their_tenant() {
        assert_eq!(
            api_key_digest("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let t = TenantId::new("acme.eu").unwrap_or_else(|e| panic!("{e}"));
        let (key, entry) = new_api_key(&t, "ci");
        let (tenant, secret) = key.rsplit_once('.').unwrap_or_else(|| panic!("{key}"));
        assert_eq!(tenant, "acme.eu");
        assert_eq!(secret.len(), 64);
        assert_eq!(entry.get("api_key:ci"), Some(&api_key_digest(secret)));
    }
}
