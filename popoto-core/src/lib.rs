//! Runtime of popoto: a Redis ORM partitioned per tenant, on the layout of Python Popoto 1.10.1.
//!
//! Users depend on the `popoto` facade crate; this crate's API is re-exported there and only
//! that crate follows semantic versioning.

pub mod acl;
mod admin;
pub mod backend;
mod bulk;
pub mod catalog;
pub mod codec;
pub mod confidence;
pub mod db;
pub mod error;
pub mod expiry;
pub mod feed;
pub mod fleet;
pub mod keys;
mod keyspaces;
pub mod lifecycle;
pub mod maintenance;
pub mod model;
mod plan;
pub mod query;
pub mod record;
mod redis_url;
pub mod registry;
pub(crate) mod script;
pub mod shared;
pub mod tenant;
#[cfg(feature = "testing")]
pub mod testing;
mod verify;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

pub use acl::TenantUser;
pub use admin::Admin;
pub use backend::{Backend, BackendConfig};
pub use catalog::{Catalog, CatalogPlacement, TenantEntry, TenantStatus};
pub use codec::Dynamic;
pub use confidence::{Confidence, ConfidenceScan, ConfidenceState};
pub use db::{Db, Session};
pub use error::{BulkError, Error, Result};
pub use expiry::SweepReport;
pub use fleet::{Fleet, FleetOptions, FleetReport};
pub use lifecycle::{
    DestroyReport, ExportRecord, LayoutProgress, LayoutReport, LayoutRun, ModelSet, Sweep,
};
pub use maintenance::{
    DryRun, Finding, FindingKind, IndexOptions, IndexReport, MigrationError, MigrationOptions,
    MigrationReport, Progress,
};
pub use model::{
    ConfidenceField, Field, FieldHandle, FieldKind, FieldMeta, Key, KeyField, Model, ModelMeta,
    Record, SortedField,
};
pub use query::{Cursor, Filter, Page, Query, Rows};
pub use record::{CommandLog, RecordedCommand};
pub use registry::{Health, HealthPolicy, Placement, TenantRegistry};
pub use tenant::{Scope, TenantId};
