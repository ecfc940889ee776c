//! What the confidence interop tests share: popoto's partitioned `Memory` of `confidence.py`.
#![allow(dead_code)]

use popoto::Model;

/// popoto's `Memory` of `confidence.py`, with `ConfidenceField(partition_by="project")`.
#[derive(Model, Debug, Clone, PartialEq, Default)]
#[popoto(name = "Memory")]
pub struct PartitionedMemory {
    #[popoto(key, tenant)]
    pub project: String,
    #[popoto(unique_key)]
    pub key: String,
    pub content: String,
    #[popoto(confidence, partition_by = "project")]
    pub certainty: f64,
}
