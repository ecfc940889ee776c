//! Models as popoto stored them before `partition_by` was added to a field (shared by the
//! maintenance and fleet tests): the same class names as the current models of `support`, so
//! their writes are the legacy data that migrations and index checks meet.
#![allow(dead_code)]

use popoto::Model;

/// `Memory` as it was before `partition_by` was added: one companion hash for everyone.
#[derive(Model, Debug, Clone, PartialEq, Default)]
#[popoto(name = "Memory")]
pub struct LegacyMemory {
    #[popoto(key, tenant)]
    pub project: String,
    #[popoto(unique_key)]
    pub key: String,
    pub content: String,
    #[popoto(confidence(initial = 0.5, evidence_cap = 20))]
    pub certainty: f64,
}

/// `Claim` (partitioned by the plain field `topic`) before `partition_by` was added.
#[derive(Model, Debug, Clone, PartialEq, Default)]
#[popoto(name = "Claim")]
pub struct LegacyClaim {
    #[popoto(key, tenant)]
    pub project: String,
    #[popoto(key)]
    pub id: String,
    pub topic: String,
    #[popoto(confidence)]
    pub belief: f64,
}

/// `Episode` before `score` was partitioned by project.
#[derive(Model, Debug, Clone, PartialEq, Default)]
#[popoto(name = "Episode")]
pub struct LegacyEpisode {
    #[popoto(key, tenant)]
    pub project_id: String,
    #[popoto(auto_key)]
    pub episode_id: String,
    pub title: String,
    #[popoto(sorted)]
    pub score: f64,
    #[popoto(sorted)]
    pub rank: i64,
}

/// `Item` before `level` was partitioned by tenant and the plain field `region`.
#[derive(Model, Debug, Clone, PartialEq, Default)]
#[popoto(name = "Item")]
pub struct LegacyItem {
    #[popoto(key, tenant)]
    pub tenant: String,
    #[popoto(unique_key)]
    pub sku: String,
    pub region: String,
    #[popoto(sorted)]
    pub level: i64,
    pub note: Option<String>,
}
