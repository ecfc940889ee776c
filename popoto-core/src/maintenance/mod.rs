//! Maintenance through the admin handle: moving confidence and sorted entries into their
//! partitions, checking and rebuilding a model's indexes, auditing tenant isolation.
//!
//! Everything streams: keys and entries are read with `SCAN`/`HSCAN`/`ZSCAN`/`SSCAN` in batches.
//! Migrations move one script call per page when the partitions come from the member keys (the
//! next page is scanned while the server runs it), else a pipelined read of the stored
//! partition values and one checked plan per entry.
//! Each script re-checks on the server what the client read (the instance exists, its
//! partition values did not change), so a concurrent writer never sees half a move, and an
//! interrupted run can simply be run again.

mod index_check;
mod index_instances;
mod keys_check;
mod migrate;
mod report;
mod unique;
#[cfg(any(test, feature = "testing"))]
pub(crate) use migrate::MIGRATE_PAGE;

pub use report::{Finding, FindingKind, IndexReport, MigrationError, MigrationReport, Progress};

use std::fmt;

use redis::{RedisResult, Value as RValue};

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::keys::Layout;
use crate::model::{Key, Model, ModelMeta};
use crate::plan::Plan;

/// Entries (or keys) asked per `SCAN`-family call, and so per pipeline, by default.
pub const DEFAULT_BATCH: usize = 1000;

/// popoto's error text for a legacy entry whose instance hash is missing.
pub const INSTANCE_NOT_FOUND: &str = "Instance not found in Redis";

/// How often one entry is retried when its instance changed between the read and the script.
const MAX_ATTEMPTS: u32 = 8;

// ------------------------------------------------------------------------------- options

/// Whether a migration writes (`No`) or only reports what it would do (`Yes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DryRun {
    /// Move the entries.
    #[default]
    No,
    /// Write nothing; report what a real run would do, with `migrated = 0`.
    Yes,
}

/// Settings of a partition migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MigrationOptions {
    dry_run: DryRun,
    batch: usize,
}

impl MigrationOptions {
    /// A real run or a dry run, with [`DEFAULT_BATCH`] entries per batch.
    pub fn new(dry_run: DryRun) -> Self {
        MigrationOptions {
            dry_run,
            batch: DEFAULT_BATCH,
        }
    }

    /// Entries asked per `HSCAN`/`ZSCAN` call (a hint to Redis; at least 1).
    pub fn batch(mut self, entries: usize) -> Self {
        self.batch = entries.max(1);
        self
    }
}

impl Default for MigrationOptions {
    fn default() -> Self {
        MigrationOptions::new(DryRun::No)
    }
}

impl From<DryRun> for MigrationOptions {
    fn from(dry_run: DryRun) -> Self {
        MigrationOptions::new(dry_run)
    }
}

/// Settings of an index check or rebuild.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexOptions {
    batch: usize,
}

impl IndexOptions {
    /// Keys or members asked per `SCAN`-family call (a hint to Redis; at least 1).
    pub fn batch(mut self, n: usize) -> Self {
        self.batch = n.max(1);
        self
    }
}

impl Default for IndexOptions {
    fn default() -> Self {
        IndexOptions {
            batch: DEFAULT_BATCH,
        }
    }
}

// ------------------------------------------------------------------------------- helpers

fn span<M: Model>(op: &'static str) -> tracing::Span {
    tracing::debug_span!(
        "popoto",
        op,
        model = M::META.name,
        tenant = "*",
        commands = tracing::field::Empty
    )
}

fn protocol(op: &'static str, meta: &ModelMeta, detail: impl fmt::Display) -> Error {
    Error::Protocol {
        op,
        model: meta.name,
        detail: detail.to_string(),
    }
}

/// Runs a pipeline whose commands may fail one by one (WRONGTYPE): one result per command.
async fn pipeline_results(
    backend: &Backend,
    op: &'static str,
    meta: &ModelMeta,
    pipe: &mut redis::Pipeline,
) -> Result<Vec<RedisResult<RValue>>> {
    pipe.ignore_errors();
    let replies: Vec<RedisResult<RValue>> = backend.pipeline(op, meta.name, pipe).await?;
    Ok(replies)
}

/// One page of a `SCAN`-family command: the next cursor and the elements (flat).
async fn scan_page(
    backend: &Backend,
    op: &'static str,
    meta: &ModelMeta,
    cmd: &redis::Cmd,
) -> Result<(u64, Vec<Vec<u8>>)> {
    backend.query(op, meta.name, cmd).await
}

/// Takes the next result of a pipeline.
fn next_reply(
    it: &mut impl Iterator<Item = RedisResult<RValue>>,
    op: &'static str,
    meta: &ModelMeta,
) -> Result<RedisResult<RValue>> {
    it.next()
        .ok_or_else(|| protocol(op, meta, "a pipeline returned fewer replies than commands"))
}

fn reply_text(v: RedisResult<RValue>) -> Option<String> {
    v.ok()
        .and_then(|v| redis::from_redis_value::<String>(v).ok())
}

fn reply_int(v: RedisResult<RValue>) -> Option<i64> {
    v.ok().and_then(|v| redis::from_redis_value::<i64>(v).ok())
}

fn reply_optional_bytes_list(v: RedisResult<RValue>) -> Option<Vec<Option<Vec<u8>>>> {
    v.ok()
        .and_then(|v| redis::from_redis_value::<Vec<Option<Vec<u8>>>>(v).ok())
}

/// The tenant named by an instance key of `M` in popoto's layout (maintenance runs there).
fn tenant_of<M: Model>(member: &str) -> Option<String> {
    Key::<M>::parse_in(Layout::of_instance_key(member), member)
        .ok()
        .and_then(|k| k.tenant().map(str::to_owned))
}

/// Position of field `i` in the instance key.
fn key_position(meta: &ModelMeta, i: usize) -> Option<usize> {
    meta.key_fields.iter().position(|&k| k == i)
}

/// Partition fields of field `i` that are not key fields: their values live in the hash only.
fn stored_partition_fields(meta: &ModelMeta, i: usize) -> Vec<usize> {
    meta.fields[i]
        .partition_by
        .iter()
        .copied()
        .filter(|&p| !meta.fields[p].kind.is_key())
        .collect()
}

/// Partition segments of field `i` for the instance at `key`: key-field values from the key,
/// the others decoded from the raw bytes read from the hash (`stored` order).
fn partition_segments<M: Model>(
    key: &Key<M>,
    member: &str,
    field: usize,
    stored: &[usize],
    raw: &[Option<Vec<u8>>],
) -> std::result::Result<Vec<String>, String> {
    let meta = M::META;
    let mut parts = Vec::with_capacity(meta.fields[field].partition_by.len());
    for &p in meta.fields[field].partition_by {
        if let Some(pos) = key_position(meta, p) {
            parts.push(key.segments().get(pos).cloned().unwrap_or_default());
            continue;
        }
        let bytes = stored
            .iter()
            .position(|&s| s == p)
            .and_then(|j| raw.get(j))
            .and_then(|r| r.as_ref())
            .ok_or_else(|| {
                format!(
                    "partition field {} is missing from the instance hash",
                    meta.fields[p].name
                )
            })?;
        parts.push(M::segment_from_stored(member, p, bytes).map_err(|e| e.to_string())?);
    }
    Ok(parts)
}
