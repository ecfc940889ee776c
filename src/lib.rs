//! popoto: a Redis ORM whose keys and indexes are partitioned per tenant, byte-compatible with
//! the Python ORM Popoto 1.10.1 so Rust and Python services can share one Redis.
#![doc = include_str!("../README.md")]

pub use popoto_core::*;

#[cfg(feature = "derive")]
pub use popoto_derive::Model;

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
