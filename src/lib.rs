//! popoto: a Redis ORM whose keys and indexes are partitioned per tenant, byte-compatible with
//! the Python ORM Popoto 1.10.1 so Rust and Python services can share one Redis.
#![doc = include_str!("../README.md")]

// The public API, re-exported item by item from `popoto-core`. The layout's key helpers, the
// scripts and the plan builders stay inside `popoto-core`: code that needs them (popoto-axum,
// popoto-cli, this workspace's tests) depends on `popoto_core` directly.

// Models: the contract `#[derive(Model)]` implements, keys and typed field handles.
pub use popoto_core::{
    ConfidenceField, Field, FieldHandle, FieldKind, FieldMeta, Key, KeyField, Model, ModelMeta,
    Record, SortedField,
};
// Handles: the root, a tenant's (or unscoped) session, the admin; the connections under them
// and how they lay keys out (popoto's layout, or the cluster layout: `docs/cluster.md`).
pub use popoto_core::db::OTHER_TENANT;
pub use popoto_core::keys::Layout;
pub use popoto_core::{Admin, Backend, BackendConfig, Db, Session};
// Errors.
pub use popoto_core::{BulkError, Error, Result};
// Queries.
pub use popoto_core::{Cursor, Filter, Page, Query, Rows};
// Tenants: ids, scopes, placements, the registry and the catalog.
pub use popoto_core::{
    Catalog, CatalogPlacement, Health, HealthPolicy, Placement, Scope, TenantEntry, TenantId,
    TenantRegistry, TenantStatus,
};
// Values no struct declares, confidence fields, expiry.
pub use popoto_core::{Confidence, ConfidenceScan, ConfidenceState, Dynamic, SweepReport};
// Tenant lifecycle, fleet operations, maintenance and dry runs.
pub use popoto_core::{
    CommandLog, DestroyReport, DryRun, ExportRecord, Finding, FindingKind, Fleet, FleetOptions,
    FleetReport, IndexOptions, IndexReport, LayoutProgress, LayoutReport, LayoutRun,
    MigrationError, MigrationOptions, MigrationReport, ModelSet, Progress, RecordedCommand, Sweep,
    TenantUser,
};

// Modules whose every public item is API (each has its own documentation).
pub use popoto_core::{
    acl, catalog, confidence, error, feed, fleet, maintenance, query, registry, shared, tenant,
};

#[cfg(feature = "testing")]
pub use popoto_core::testing;

/// Values as Popoto stores them: the traits a field type implements to be stored
/// ([`Value`](codec::Value)), to be part of a key ([`KeySegment`](codec::KeySegment)) or to be
/// a score ([`Score`](codec::Score)); the types a tenant, version or `expire_at` field may have
/// (the traits their compile errors name); the serde fallback encoding, and the Python values
/// Rust has no type for.
pub mod codec {
    pub use popoto_core::codec::{
        decode_serde, encode_serde, Dynamic, ExpiryValue, KeySegment, PyDecimal, Score,
        TenantValue, Value, VersionValue, MAX_SERDE_DEPTH,
    };
}

#[cfg(feature = "derive")]
pub use popoto_derive::Model;

/// What the code `#[derive(Model)]` generates reaches. Not a public API: may change in any
/// release.
#[doc(hidden)]
pub use popoto_core::__private;

/// Guides, whose code compiles as doc tests.
pub mod guide {
    /// Multi-tenancy: tenant fields, scopes, placements, registry, lifecycle, audit.
    #[doc = include_str!("../docs/multi-tenancy.md")]
    pub mod multi_tenancy {}

    /// The isolation audit and the assertion applications call from their own tests.
    #[doc = include_str!("../docs/isolation-audit.md")]
    pub mod isolation_audit {}

    /// Operations: the tenant catalog, reactive health, fleet maintenance, the `popoto` tool.
    #[doc = include_str!("../docs/operations.md")]
    pub mod operations {}

    /// Queries: filters, OR / NOT, key lookups, ordering, projections, cursor pages, streams, costs.
    #[doc = include_str!("../docs/queries.md")]
    pub mod queries {}

    /// Models: unique keys within a tenant, versions, expiry, type changes, keys and updates,
    /// the `testing` feature, `Dynamic` values.
    #[doc = include_str!("../docs/models.md")]
    pub mod models {}

    /// Shared models across tenants: grants, merge strategies, the change feed.
    #[doc = include_str!("../docs/shared-models.md")]
    pub mod shared_models {}

    /// Confidence fields: layout, the capped formula, scans, key helpers, migrations, index checks.
    #[doc = include_str!("../docs/confidence.md")]
    pub mod confidence {}

    /// Redis Cluster: connecting, what runs there today, the test harness.
    #[doc = include_str!("../docs/cluster.md")]
    pub mod cluster {}
}
