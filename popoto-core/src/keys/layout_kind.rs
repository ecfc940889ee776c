//! Which layout a `Db` uses, as a plain value: the enum alone, so errors and reports can name it
//! without reaching the key builders (`layout.rs` gives it its keys).

use serde::{Deserialize, Serialize};

/// How a `Db` lays its keys out in Redis.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// Popoto 1.10's layout, byte for byte, so Python services share the data (the default).
    #[default]
    Popoto,
    /// Popoto's keys, each prefixed with the hash tag of its keyspace (a tenant, or the model
    /// for a model without a tenant field): for Redis Cluster.
    Cluster,
}
