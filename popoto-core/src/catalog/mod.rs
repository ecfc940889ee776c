//! The tenant catalog: which tenants exist, where each lives and in what state, stored in Redis
//! on the shared (control) backend so that every process of an application sees the same one.
//!
//! One hash per tenant (`keys::catalog_entry_key`), a zset of every id and one per status (for
//! listing by status, paged by id), and a change counter (`keys::catalog_version_key`) that every
//! change increments: registries built on the catalog poll it to drop what they cached. Every
//! change is one compare-and-set script call on the entry's version, so concurrent writers never
//! lose an update and the status sets always agree with the entries. Every entry read is
//! validated ([`Error::CorruptCatalog`] names the key) before anything trusts it.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::tenant::TenantId;

mod store;
pub(crate) mod view;
#[cfg(any(test, feature = "testing"))]
pub(crate) use store::CAS;

pub use store::{Catalog, CatalogPage, ListQuery, TenantUpdate};

/// Format version written in every entry (`fmt` field); entries of another format are refused.
const FORMAT: &str = "1";
/// Most metadata entries per tenant.
pub const MAX_METADATA: usize = 64;
/// Longest metadata name, in bytes.
const MAX_META_NAME: usize = 128;
/// Longest metadata value, in bytes.
const MAX_META_VALUE: usize = 4096;
/// Longest tier name, in bytes.
const MAX_TIER: usize = 64;

/// Lifecycle state of a catalog tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TenantStatus {
    /// Served.
    Active,
    /// Refused with [`Error::TenantSuspended`] until resumed; its data is kept.
    Suspended,
    /// A tombstone: refused with [`Error::TenantDestroyed`]; `create` may start it afresh.
    Destroyed,
}

impl TenantStatus {
    /// Every status, in the order of the status keys.
    pub const ALL: [TenantStatus; 3] = [
        TenantStatus::Active,
        TenantStatus::Suspended,
        TenantStatus::Destroyed,
    ];

    /// The stored name (`active`, `suspended`, `destroyed`).
    pub fn as_str(self) -> &'static str {
        match self {
            TenantStatus::Active => "active",
            TenantStatus::Suspended => "suspended",
            TenantStatus::Destroyed => "destroyed",
        }
    }

    fn index(self) -> usize {
        match self {
            TenantStatus::Active => 0,
            TenantStatus::Suspended => 1,
            TenantStatus::Destroyed => 2,
        }
    }
}

impl fmt::Display for TenantStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TenantStatus {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        TenantStatus::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| Error::Config(format!("unknown tenant status {s:?}")))
    }
}

/// A server URL kept in the catalog: its `Debug`, `Display` and serialized forms hide the user
/// and password, so entries can be logged and reports written without leaking them.
#[derive(Clone, PartialEq, Eq)]
pub struct ServerUrl(String);

impl ServerUrl {
    /// Validates a Redis URL (`redis://`, `rediss://`, `unix://`...).
    pub fn new(url: impl Into<String>) -> Result<Self> {
        let url = url.into();
        if redis::parse_redis_url(&url).is_none() {
            return Err(Error::Config("a server placement needs a redis URL".into()));
        }
        Ok(ServerUrl(url))
    }

    /// The URL with its credentials: to connect, never to print.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with user and password shown as `***`.
    pub fn redacted(&self) -> String {
        crate::redis_url::redacted(&self.0)
    }
}

impl fmt::Debug for ServerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.redacted(), f)
    }
}

impl fmt::Display for ServerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl Serialize for ServerUrl {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.redacted())
    }
}

impl<'de> Deserialize<'de> for ServerUrl {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        ServerUrl::new(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// Where the catalog places a tenant.
///
/// Text form (stored, and parsed from the command line): `shared`, `db:<n>`, `server:<url>`,
/// `tier:<name>` (resolved by `TenantRegistry::set_tier`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum CatalogPlacement {
    /// The shared keyspace.
    Shared,
    /// Its own logical database on the shared server.
    Database(u8),
    /// Its own Redis server.
    Server(ServerUrl),
    /// A tier the application maps to a placement.
    Tier(String),
}

impl CatalogPlacement {
    /// The stored form (with the server URL's credentials: never print it).
    fn to_stored(&self) -> String {
        match self {
            CatalogPlacement::Shared => "shared".into(),
            CatalogPlacement::Database(n) => format!("db:{n}"),
            CatalogPlacement::Server(url) => format!("server:{}", url.expose()),
            CatalogPlacement::Tier(t) => format!("tier:{t}"),
        }
    }

    /// The tier name if valid.
    fn tier(name: &str) -> Result<Self> {
        if name.is_empty() || name.len() > MAX_TIER || name.chars().any(char::is_control) {
            return Err(Error::Config(format!(
                "invalid tier name {:?}: 1 to {MAX_TIER} bytes, no control characters",
                name.chars().take(MAX_TIER).collect::<String>()
            )));
        }
        Ok(CatalogPlacement::Tier(name.into()))
    }
}

impl fmt::Display for CatalogPlacement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CatalogPlacement::Server(url) => write!(f, "server:{url}"),
            other => f.write_str(&other.to_stored()),
        }
    }
}

impl FromStr for CatalogPlacement {
    type Err = Error;

    /// Parses the text form; errors never contain a server URL.
    fn from_str(s: &str) -> Result<Self> {
        let bad = |why: &str| Error::Config(format!("invalid placement: {why}"));
        if s == "shared" {
            return Ok(CatalogPlacement::Shared);
        }
        match s.split_once(':') {
            Some(("db", n)) => n
                .parse::<u8>()
                .map(CatalogPlacement::Database)
                .map_err(|_| bad("db:<n> needs a database number 0..=255")),
            Some(("server", url)) => Ok(CatalogPlacement::Server(ServerUrl::new(url)?)),
            Some(("tier", name)) => CatalogPlacement::tier(name),
            _ => Err(bad(
                "expected shared, db:<n>, server:<redis url> or tier:<name>",
            )),
        }
    }
}

/// One tenant of the catalog, as validated from Redis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TenantEntry {
    /// The tenant.
    pub id: TenantId,
    /// Where its data lives.
    pub placement: CatalogPlacement,
    /// Active, suspended or destroyed.
    pub status: TenantStatus,
    /// When it was created (Unix milliseconds).
    pub created_ms: i64,
    /// When it last changed (Unix milliseconds).
    pub updated_ms: i64,
    /// The entry's version: 1 when created, +1 per change (optimistic concurrency).
    pub version: u64,
    /// Free-form metadata (plan tier, owner...), name → value.
    pub metadata: BTreeMap<String, String>,
}

impl TenantEntry {
    /// The hash fields of the entry, as stored.
    fn to_fields(&self) -> Vec<(String, String)> {
        let mut out = vec![
            ("fmt".to_string(), FORMAT.to_string()),
            ("id".to_string(), self.id.to_string()),
            ("placement".to_string(), self.placement.to_stored()),
            ("status".to_string(), self.status.as_str().to_string()),
            ("created".to_string(), self.created_ms.to_string()),
            ("updated".to_string(), self.updated_ms.to_string()),
            ("version".to_string(), self.version.to_string()),
        ];
        out.extend(
            self.metadata
                .iter()
                .map(|(k, v)| (format!("m:{k}"), v.clone())),
        );
        out
    }

    /// Validates the hash read at `key` as the entry of tenant `id`.
    fn from_fields(key: &str, id: &TenantId, pairs: Vec<(Vec<u8>, Vec<u8>)>) -> Result<Self> {
        let corrupt = |reason: String| Error::CorruptCatalog {
            key: key.to_owned(),
            reason,
        };
        let mut fields: BTreeMap<String, String> = BTreeMap::new();
        let mut metadata = BTreeMap::new();
        for (f, v) in pairs {
            let f = String::from_utf8(f).map_err(|_| corrupt("a non-UTF-8 field name".into()))?;
            let v =
                String::from_utf8(v).map_err(|_| corrupt(format!("field {f:?} is not UTF-8")))?;
            if let Some(name) = f.strip_prefix("m:") {
                check_metadata_entry(name, &v).map_err(corrupt)?;
                metadata.insert(name.to_owned(), v);
            } else if matches!(
                f.as_str(),
                "fmt" | "id" | "placement" | "status" | "created" | "updated" | "version"
            ) {
                fields.insert(f, v);
            } else {
                return Err(corrupt(format!("unknown field {f:?}")));
            }
        }
        if metadata.len() > MAX_METADATA {
            return Err(corrupt(format!(
                "{} metadata entries (at most {MAX_METADATA})",
                metadata.len()
            )));
        }
        let mut take = |name: &str| {
            fields
                .remove(name)
                .ok_or_else(|| corrupt(format!("missing field {name:?}")))
        };
        let format = take("fmt")?;
        if format != FORMAT {
            return Err(corrupt(format!("format {format:?}, expected {FORMAT:?}")));
        }
        let stored_id = take("id")?;
        if stored_id != id.as_str() {
            return Err(corrupt("its id field names another tenant".into()));
        }
        let placement = take("placement")?;
        let placement = CatalogPlacement::from_str(&placement).map_err(|e| match e {
            Error::Config(why) => corrupt(why),
            other => corrupt(other.to_string()),
        })?;
        let status = take("status")?;
        let status = TenantStatus::ALL
            .into_iter()
            .find(|s| s.as_str() == status)
            .ok_or_else(|| corrupt(format!("unknown status {status:?}")))?;
        let int = |name: &str, v: String| {
            v.parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| corrupt(format!("{name} {v:?} is not a non-negative integer")))
        };
        let created_ms = int("created", take("created")?)?;
        let updated_ms = int("updated", take("updated")?)?;
        let version = take("version")?;
        let version = version
            .parse::<u64>()
            .ok()
            .filter(|v| *v > 0)
            .ok_or_else(|| corrupt(format!("version {version:?} is not a positive integer")))?;
        Ok(TenantEntry {
            id: id.clone(),
            placement,
            status,
            created_ms,
            updated_ms,
            version,
            metadata,
        })
    }
}

/// Why a metadata name or value is refused, if it is.
fn check_metadata_entry(name: &str, value: &str) -> std::result::Result<(), String> {
    if name.is_empty() || name.len() > MAX_META_NAME || name.chars().any(char::is_control) {
        return Err(format!(
            "metadata name {:?}: 1 to {MAX_META_NAME} bytes, no control characters",
            name.chars().take(MAX_META_NAME).collect::<String>()
        ));
    }
    if value.len() > MAX_META_VALUE {
        return Err(format!(
            "metadata {name:?}: value longer than {MAX_META_VALUE} bytes"
        ));
    }
    Ok(())
}

/// Refuses metadata the catalog would not read back.
fn check_metadata(metadata: &BTreeMap<String, String>) -> Result<()> {
    let invalid = |reason: String| Error::InvalidValue {
        model: "tenant catalog",
        field: "metadata",
        reason,
    };
    if metadata.len() > MAX_METADATA {
        return Err(invalid(format!(
            "{} entries (at most {MAX_METADATA})",
            metadata.len()
        )));
    }
    for (k, v) in metadata {
        check_metadata_entry(k, v).map_err(invalid)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tid(s: &str) -> TenantId {
        TenantId::new(s).unwrap_or_else(|e| panic!("{e}"))
    }

    fn entry() -> TenantEntry {
        TenantEntry {
            id: tid("acme"),
            placement: CatalogPlacement::Server(
                ServerUrl::new("redis://admin:s3cret@10.0.0.1:6380/2")
                    .unwrap_or_else(|e| panic!("{e}")),
            ),
            status: TenantStatus::Suspended,
            created_ms: 1,
            updated_ms: 2,
            version: 3,
            metadata: BTreeMap::from([("plan".to_string(), "gold".to_string())]),
        }
    }

    fn bytes(fields: Vec<(String, String)>) -> Vec<(Vec<u8>, Vec<u8>)> {
        fields
            .into_iter()
            .map(|(k, v)| (k.into_bytes(), v.into_bytes()))
            .collect()
    }

    #[test]
    fn entries_round_trip_through_their_fields() {
        let e = entry();
        let back = TenantEntry::from_fields("k", &e.id, bytes(e.to_fields()))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, e);
    }

    #[test]
    fn credentials_never_show_in_debug_display_or_json() {
        let e = entry();
        let shown = [
            format!("{e:?}"),
            e.placement.to_string(),
            serde_json::to_string(&e).unwrap_or_else(|e| panic!("{e}")),
        ];
        for s in shown {
            assert!(!s.contains("s3cret"), "{s}");
            assert!(!s.contains("admin"), "{s}");
            assert!(s.contains("10.0.0.1"), "{s}");
        }
        let err = CatalogPlacement::from_str("server:not a url with s3cret")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_else(|| panic!("a bad URL was accepted"));
        assert!(!err.contains("s3cret"), "{err}");
    }

    #[test]
    fn corrupt_entries_are_typed_errors_naming_the_key() {
        let good = entry().to_fields();
        let with = |name: &str, value: &str| {
            let mut f: Vec<(String, String)> =
                good.iter().filter(|(k, _)| k != name).cloned().collect();
            if !value.is_empty() {
                f.push((name.to_string(), value.to_string()));
            }
            bytes(f)
        };
        let cases = [
            ("missing status", with("status", "")),
            ("unknown status", with("status", "paused")),
            ("bad version", with("version", "x")),
            ("zero version", with("version", "0")),
            ("negative time", with("created", "-5")),
            ("bad placement", with("placement", "db:300")),
            ("other tenant", with("id", "globex")),
            ("unknown field", with("colour", "blue")),
            ("other format", with("fmt", "9")),
            ("empty metadata name", with("m:", "x")),
        ];
        for (what, fields) in cases {
            match TenantEntry::from_fields("$PopotoCatalog:entry:acme", &tid("acme"), fields) {
                Err(Error::CorruptCatalog { key, .. }) => {
                    assert_eq!(key, "$PopotoCatalog:entry:acme", "{what}")
                }
                other => panic!("{what}: expected CorruptCatalog, got {other:?}"),
            }
        }
        let not_utf8 = vec![(b"status".to_vec(), vec![0xff, 0xfe])];
        assert!(matches!(
            TenantEntry::from_fields("k", &tid("acme"), not_utf8),
            Err(Error::CorruptCatalog { .. })
        ));
    }

    #[test]
    fn placements_parse_from_their_text_form() {
        assert_eq!(
            "shared".parse::<CatalogPlacement>().ok(),
            Some(CatalogPlacement::Shared)
        );
        assert_eq!(
            "db:7".parse::<CatalogPlacement>().ok(),
            Some(CatalogPlacement::Database(7))
        );
        assert_eq!(
            "tier:gold".parse::<CatalogPlacement>().ok(),
            Some(CatalogPlacement::Tier("gold".into()))
        );
        for bad in ["", "db:", "db:256", "tier:", "moon", "server:"] {
            assert!(bad.parse::<CatalogPlacement>().is_err(), "{bad}");
        }
    }
}
