//! Shared models: instances that several tenants read or edit together (a price list, a
//! roadmap, a document two organisations co-edit), outside every tenant's keys.
//!
//! A model marked `#[popoto(shared)]` ([`Shareable`]) can be shared by the host (the admin
//! handle's [`SharedHost`]): `share` stores an instance under `$Shared` with a merge strategy
//! and returns its id; `subscribe` grants a tenant [`Access::Read`] or [`Access::Write`]. A
//! tenant handle reads and writes the instances it is subscribed to ([`SharedAccess`]). Every
//! read and write is one script call that checks the grant itself, so a revoke that returned
//! is seen by every later call, and a refused call writes nothing. Every write appends its
//! change event to the instance's stream in the same call (`crate::feed`).
//!
//! Guide: `docs/shared-models.md`.

mod access;
mod audit;
mod clock;
mod grants;
mod host;
pub(crate) mod merge;
mod patch;
mod relayout;
mod repair;
mod wire;
#[cfg(any(test, feature = "testing"))]
pub(crate) use grants::{FEED_GRANTS, GRANTS};
#[cfg(any(test, feature = "testing"))]
pub(crate) use relayout::RELAYOUT;
#[cfg(any(test, feature = "testing"))]
pub(crate) use wire::{READ, WRITE};

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

pub use access::{SharedAccess, Subscription};
pub use clock::{wins, LwwMap, Replica, Tag, MAX_REPLICA_LEN};
pub use host::SharedHost;
pub use merge::Merge;
pub use patch::{MergeStrategy, Overwrite, Patch};
pub use relayout::{SharedLayoutProgress, SharedLayoutReport, SharedLayoutRun, SharedLayoutStep};

pub(crate) use grants::{check_grants, purge_tenant, read_grants, Grant};

use crate::error::{Error, Result};
use crate::model::Model;

/// A model whose instances may be shared across tenants: `#[popoto(shared)]` implements it.
/// Such a model has no tenant field.
pub trait Shareable: Model {}

/// Longest shared id accepted, in bytes.
pub const MAX_SHARED_ID_LEN: usize = 256;

/// The id of a shared instance: not empty or blank, at most 256 bytes, no control characters.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SharedId(Arc<str>);

impl SharedId {
    /// Validates an id.
    ///
    /// ```
    /// use popoto_core::shared::SharedId;
    /// assert!(SharedId::new("roadmap:2025").is_ok());
    /// assert!(SharedId::new(" ").is_err());
    /// ```
    pub fn new(id: impl AsRef<str>) -> Result<SharedId> {
        let id = id.as_ref();
        let reason = if id.trim().is_empty() {
            "empty or blank"
        } else if id.len() > MAX_SHARED_ID_LEN {
            "longer than 256 bytes"
        } else if id.chars().any(char::is_control) {
            "contains a control character"
        } else {
            return Ok(SharedId(id.into()));
        };
        Err(Error::InvalidValue {
            model: "shared",
            field: "id",
            reason: format!(
                "shared id {:?} is {reason}",
                id.chars().take(64).collect::<String>()
            ),
        })
    }

    /// A fresh random id (uuid4 hex).
    pub fn random() -> SharedId {
        SharedId(uuid::Uuid::new_v4().simple().to_string().into())
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SharedId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for SharedId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl serde::Serialize for SharedId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for SharedId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        SharedId::new(s).map_err(serde::de::Error::custom)
    }
}

/// What a subscribed tenant may do with a shared instance.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum Access {
    /// Read it and receive its change events.
    Read,
    /// Also write (patch) it.
    Write,
}

impl Access {
    /// The stored form (`r`, `w`).
    pub(crate) fn code(self) -> &'static str {
        match self {
            Access::Read => "r",
            Access::Write => "w",
        }
    }

    /// Parses the stored form.
    pub(crate) fn parse(code: &str) -> Option<Access> {
        match code {
            "r" => Some(Access::Read),
            "w" => Some(Access::Write),
            _ => None,
        }
    }
}

/// A shared instance as read: the value, its version (one more per applied write) and the
/// per-field tags of an LWW map.
#[derive(Debug, Clone)]
pub struct Shared<M> {
    /// Its id.
    pub id: SharedId,
    /// The authoritative value.
    pub value: M,
    /// Applied writes so far (1 after `share`).
    pub version: u64,
    /// How writes are merged.
    pub merge: Merge,
    /// The reader's access; `None` when read by the host.
    pub access: Option<Access>,
    /// Field -> tag of the write it holds (`LwwMapCrdt` only).
    pub tags: BTreeMap<String, Tag>,
}

/// What a write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// The instance's version after the write.
    pub version: u64,
    /// The id of the change event appended with it; `None` when nothing was written (an LWW
    /// map write none of whose fields won: a repeated or older write).
    pub entry: Option<String>,
    /// Fields written.
    pub applied: usize,
}
