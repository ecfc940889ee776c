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

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use redis::{RedisResult, Value as RValue};
use serde::Serialize;
use tracing::Instrument;

use crate::backend::{Backend, APPLY};

/// Entries per `lua/migrate_page.lua` call: the script unpacks them into one command's
/// arguments, which Lua bounds at a few thousand.
const PAGE_CALL: usize = 1000;

/// The script that moves one scanned page of a legacy index (partitions from member keys).
static MIGRATE_PAGE: std::sync::LazyLock<crate::backend::Script> =
    std::sync::LazyLock::new(|| crate::backend::Script::new(include_str!("lua/migrate_page.lua")));
use crate::admin::Admin;
use crate::error::{Error, Result};
use crate::keys::{self, IndexKind};
use crate::model::{ConfidenceField, FieldKind, Key, Model, ModelMeta, SortedField};
use crate::plan::{movable_partition_fields, Check, Instance, Outcome, Plan, Write};

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

// ------------------------------------------------------------------------------- reports

/// Where a migration stands, passed to the progress callback after each batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Progress {
    /// Entries moved so far (always 0 in a dry run).
    pub moved: u64,
    /// Entries returned by the scan so far (a scan may return an entry twice).
    pub scanned: u64,
    /// Distinct entries left in place because of an error.
    pub errors: u64,
    /// Entries in the unpartitioned key when the migration started.
    pub total: u64,
}

/// One entry a migration left in place, and why (popoto's report shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MigrationError {
    /// The instance key (the member of the hash or zset).
    pub member_key: String,
    /// Why it was not moved; [`INSTANCE_NOT_FOUND`] when the instance hash is missing.
    pub error: String,
}

/// What a partition migration did (popoto's `migrate_to_partitioned` report, plus `kept_existing`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MigrationReport {
    /// Entries in the unpartitioned key at the start (`HLEN`/`ZCARD`).
    pub total: u64,
    /// Entries taken out of the unpartitioned key by this run (0 in a dry run).
    pub migrated: u64,
    /// Entries left in the unpartitioned key, each once.
    pub errors: Vec<MigrationError>,
    /// Entries per partition label (the text after the unpartitioned key and `:`: for a
    /// confidence field what follows `:data:`), counted in dry runs too.
    pub partitions: BTreeMap<String, u64>,
    /// Entries whose partition already held an entry for the instance: the partition's entry
    /// was kept and the older unpartitioned one dropped (counted in `migrated` too).
    pub kept_existing: u64,
}

/// What kind of defect an index check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum FindingKind {
    /// (a) An index entry whose instance hash is missing.
    Orphan,
    /// (b) An instance missing from an index it belongs to (or in its zset with another score).
    Missing,
    /// (c) An index entry in a partition (or value set) other than the one its instance's own
    /// values select: a tenant-isolation defect.
    Misplaced,
    /// (d) An instance whose key disagrees with its stored key values (e.g. the tenant field
    /// says `globex` but the key says `acme`): a tenant-isolation defect, never repaired.
    KeyMismatch,
    /// An instance hash that cannot be decoded or indexed; never repaired.
    Unreadable,
}

impl FindingKind {
    /// Whether the defect can expose one tenant's data to another (misplaced, key mismatch).
    pub fn is_isolation(self) -> bool {
        matches!(self, FindingKind::Misplaced | FindingKind::KeyMismatch)
    }

    fn label(self) -> &'static str {
        match self {
            FindingKind::Orphan => "orphan index entry",
            FindingKind::Missing => "missing index entry",
            FindingKind::Misplaced => "entry outside its partition",
            FindingKind::KeyMismatch => "key disagrees with stored values",
            FindingKind::Unreadable => "unreadable instance",
        }
    }
}

/// One defect found by an index check.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// What is wrong.
    pub kind: FindingKind,
    /// The index key holding (or that should hold) the entry; the instance key itself for
    /// [`FindingKind::KeyMismatch`] and [`FindingKind::Unreadable`].
    pub index: String,
    /// The instance key concerned.
    pub member: String,
    /// The field whose index (or key segment) is concerned; `None` for `$Class`.
    pub field: Option<&'static str>,
    /// The tenant named by the instance key, for models with a tenant field.
    pub tenant: Option<String>,
    /// Details: where the entry belongs, the expected score, the disagreeing values...
    pub detail: String,
    /// Whether `rebuild_indexes` repaired it.
    pub repaired: bool,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} in {}",
            self.kind.label(),
            self.member,
            self.index
        )?;
        if let Some(field) = self.field {
            write!(f, " (field {field})")?;
        }
        if let Some(t) = &self.tenant {
            write!(f, " [tenant {t:?}]")?;
        }
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        if self.repaired {
            f.write_str(" [repaired]")?;
        }
        Ok(())
    }
}

/// What an index check (or rebuild, or tenant-isolation audit) of one model found.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct IndexReport {
    /// The model's class name.
    pub model: &'static str,
    /// Whether this report comes from `rebuild_indexes` (repairs were attempted).
    pub rebuilt: bool,
    /// Instance hashes examined.
    pub instances: u64,
    /// Index keys examined (`$Class`, value sets, zsets, companion hashes).
    pub index_keys: u64,
    /// Index entries examined.
    pub index_entries: u64,
    /// Every defect found, each once.
    pub findings: Vec<Finding>,
}

impl IndexReport {
    /// Whether nothing was found.
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty()
    }

    /// Findings of one kind.
    pub fn of_kind(&self, kind: FindingKind) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(move |f| f.kind == kind)
    }

    /// Number of findings of one kind.
    pub fn count(&self, kind: FindingKind) -> usize {
        self.of_kind(kind).count()
    }

    /// Findings that can expose one tenant's data to another (misplaced entries, key mismatches).
    pub fn isolation_violations(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.kind.is_isolation())
    }

    /// Findings left as they were (all of them for a check).
    pub fn unrepaired(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| !f.repaired)
    }

    /// Number of findings `rebuild_indexes` repaired.
    pub fn repaired(&self) -> usize {
        self.findings.iter().filter(|f| f.repaired).count()
    }

    /// Tenants named by the findings' instance keys.
    pub fn tenants(&self) -> BTreeSet<&str> {
        self.findings
            .iter()
            .filter_map(|f| f.tenant.as_deref())
            .collect()
    }
}

impl fmt::Display for IndexReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} of {}: {} instances, {} index keys, {} index entries; {} findings ({} isolation, {} repaired)",
            if self.rebuilt { "index rebuild" } else { "index check" },
            self.model,
            self.instances,
            self.index_keys,
            self.index_entries,
            self.findings.len(),
            self.isolation_violations().count(),
            self.repaired(),
        )?;
        // Isolation defects first: they are what an audit is about.
        for finding in self
            .isolation_violations()
            .chain(self.findings.iter().filter(|x| !x.kind.is_isolation()))
        {
            writeln!(f, "  {finding}")?;
        }
        Ok(())
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

/// The tenant named by an instance key of `M`.
fn tenant_of<M: Model>(member: &str) -> Option<String> {
    Key::<M>::parse(member)
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

/// Checks that the stored partition values read earlier are still there.
fn field_checks(
    plan: &mut Plan,
    meta: &ModelMeta,
    member: usize,
    stored: &[usize],
    raw: &[Option<Vec<u8>>],
) {
    for (j, &p) in stored.iter().enumerate() {
        plan.checks.push(Check::Field {
            key: member,
            field: meta.fields[p].name.to_owned(),
            value: raw.get(j).cloned().flatten(),
        });
    }
}

// ------------------------------------------------------------------------------- migrations

/// Which kind of unpartitioned index a migration empties.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Confidence,
    Sorted,
}

/// An entry whose partition is known.
struct Move {
    member: String,
    dest: String,
    label: String,
    raw: Vec<Option<Vec<u8>>>,
}

/// One `lua/migrate_page.lua` call: its command, the members it sends with the index of their
/// destination, and each destination's partition label.
struct PageCall {
    cmd: redis::Cmd,
    sent: Vec<(String, usize)>,
    labels: Vec<String>,
}

/// Runs the calls of one page in order; owns what it needs, so it can run while the next
/// page is prepared.
async fn send_page(
    backend: Backend,
    meta: &'static ModelMeta,
    calls: Vec<PageCall>,
) -> Result<Vec<(PageCall, RValue)>> {
    let mut out = Vec::with_capacity(calls.len());
    for call in calls {
        let reply = backend
            .eval_cmd("migrate to partitions", meta.name, &MIGRATE_PAGE, &call.cmd)
            .await?;
        out.push((call, reply));
    }
    Ok(out)
}

struct Migration<M, P> {
    backend: Backend,
    field: usize,
    target: Target,
    source: String,
    dry_run: bool,
    batch: usize,
    stored: Vec<usize>,
    report: MigrationReport,
    errored: HashSet<String>,
    scanned: u64,
    progress: P,
    _m: PhantomData<fn() -> M>,
}

impl<M: Model, P: FnMut(Progress)> Migration<M, P> {
    const OP: &'static str = "migrate to partitions";

    fn fail(&mut self, member: String, error: String) {
        if self.errored.insert(member.clone()) {
            self.report.errors.push(MigrationError {
                member_key: member,
                error,
            });
        }
    }

    fn dest_key(&self, parts: &[String]) -> Result<String> {
        let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
        match self.target {
            Target::Confidence => keys::confidence_key(M::META, self.field, &parts),
            Target::Sorted => Ok(keys::sorted_key(M::META, self.field, &parts)),
        }
    }

    async fn run(mut self) -> Result<MigrationReport> {
        let meta = M::META;
        let len_cmd = match self.target {
            Target::Confidence => "HLEN",
            Target::Sorted => "ZCARD",
        };
        self.report.total = self
            .backend
            .query(Self::OP, meta.name, redis::cmd(len_cmd).arg(&self.source))
            .await?;
        if self.report.total == 0 {
            return Ok(self.report);
        }
        let scan_cmd = match self.target {
            Target::Confidence => "HSCAN",
            Target::Sorted => "ZSCAN",
        };
        let (source, batch) = (self.source.clone(), self.batch);
        let scan = move |cursor: u64| {
            redis::cmd(scan_cmd)
                .arg(&source)
                .arg(cursor)
                .arg("COUNT")
                .arg(batch)
                .clone()
        };
        // Pages whose partitions come from the member keys go to `lua/migrate_page.lua`; the
        // script calls of one page run on the server while the next page is scanned and
        // prepared here, so neither side waits for the other.
        let paged = self.stored.is_empty() && !self.dry_run;
        let mut in_flight: Option<Vec<PageCall>> = None;
        let mut cursor = 0u64;
        loop {
            let cmd = scan(cursor);
            if !paged {
                let (next, flat) = scan_page(&self.backend, Self::OP, meta, &cmd).await?;
                let members = self.members_of(flat);
                self.batch_of(members).await?;
                self.report_progress();
                if next == 0 {
                    return Ok(self.report);
                }
                cursor = next;
                continue;
            }
            let backend = self.backend.clone();
            let previous = in_flight.take();
            let sent = async move {
                match previous {
                    Some(calls) => send_page(backend, meta, calls).await.map(Some),
                    None => Ok(None),
                }
            };
            let this = &mut self;
            let page = async {
                let (next, flat) = scan_page(&this.backend, Self::OP, meta, &cmd).await?;
                let members = this.members_of(flat);
                Ok::<_, Error>((next, this.prepare_page(members)))
            };
            let (page, sent) = tokio::join!(page, sent);
            if let Some(sent) = sent? {
                self.finish_page(sent)?;
                self.report_progress();
            }
            let (next, calls) = page?;
            if next == 0 {
                let sent = send_page(self.backend.clone(), meta, calls).await?;
                self.finish_page(sent)?;
                self.report_progress();
                return Ok(self.report);
            }
            in_flight = Some(calls);
            cursor = next;
        }
    }

    /// The members of a scanned page of (member, value or score) pairs, minus those already
    /// reported; only the members matter, the scripts move the bytes.
    fn members_of(&mut self, flat: Vec<Vec<u8>>) -> Vec<String> {
        let mut members = Vec::with_capacity(flat.len() / 2);
        for raw in flat.into_iter().step_by(2) {
            self.scanned += 1;
            match String::from_utf8(raw) {
                Ok(m) if !self.errored.contains(&m) => members.push(m),
                Ok(_) => {}
                Err(e) => {
                    let lossy = String::from_utf8_lossy(e.as_bytes()).into_owned();
                    self.fail(lossy, "the member is not UTF-8: not an instance key".into());
                }
            }
        }
        members
    }

    fn report_progress(&mut self) {
        (self.progress)(Progress {
            moved: self.report.migrated,
            scanned: self.scanned,
            errors: self.report.errors.len() as u64,
            total: self.report.total,
        });
    }

    /// Finds the partition of each member: its type, and the stored partition values if needed.
    async fn resolve(&mut self, members: Vec<String>) -> Result<Vec<Move>> {
        let meta = M::META;
        let mut pipe = redis::pipe();
        let names: Vec<&str> = self.stored.iter().map(|&p| meta.fields[p].name).collect();
        for m in &members {
            pipe.cmd("TYPE").arg(m);
            if !names.is_empty() {
                pipe.cmd("HMGET").arg(m).arg(&names);
            }
        }
        let replies = pipeline_results(&self.backend, Self::OP, meta, &mut pipe).await?;
        let mut it = replies.into_iter();
        let mut moves = Vec::with_capacity(members.len());
        for member in members {
            let ty = reply_text(next_reply(&mut it, Self::OP, meta)?);
            let raw = if names.is_empty() {
                Vec::new()
            } else {
                reply_optional_bytes_list(next_reply(&mut it, Self::OP, meta)?).unwrap_or_default()
            };
            match ty.as_deref() {
                Some("hash") => {}
                Some("none") => {
                    self.fail(member, INSTANCE_NOT_FOUND.into());
                    continue;
                }
                other => {
                    let found = other.unwrap_or("?").to_owned();
                    self.fail(
                        member,
                        format!("the instance key holds a {found}, not a hash"),
                    );
                    continue;
                }
            }
            let key = match Key::<M>::parse(&member) {
                Ok(k) => k,
                Err(e) => {
                    self.fail(member, e.to_string());
                    continue;
                }
            };
            let parts = match partition_segments(&key, &member, self.field, &self.stored, &raw) {
                Ok(p) => p,
                Err(e) => {
                    self.fail(member, e);
                    continue;
                }
            };
            let dest = match self.dest_key(&parts) {
                Ok(d) => d,
                Err(e) => {
                    self.fail(member, e.to_string());
                    continue;
                }
            };
            let label = keys::partition_label(&self.source, &dest);
            moves.push(Move {
                member,
                dest,
                label,
                raw,
            });
        }
        Ok(moves)
    }

    fn count(&mut self, label: String, kept: bool) {
        *self.report.partitions.entry(label).or_default() += 1;
        if kept {
            self.report.kept_existing += 1;
        }
    }

    /// The `lua/migrate_page.lua` calls of one page whose partitions all come from the member
    /// keys, [`PAGE_CALL`] entries per call; members whose key cannot be parsed are reported.
    fn prepare_page(&mut self, mut members: Vec<String>) -> Vec<PageCall> {
        // A scan may return a member twice; the script takes each once.
        let mut seen = HashSet::with_capacity(members.len());
        members.retain(|m| seen.insert(m.clone()));
        let mut calls = Vec::with_capacity(members.len().div_ceil(PAGE_CALL));
        while !members.is_empty() {
            let rest = members.split_off(members.len().min(PAGE_CALL));
            if let Some(call) = self.page_call(members) {
                calls.push(call);
            }
            members = rest;
        }
        calls
    }

    /// One call for at most [`PAGE_CALL`] members, or `None` if none of them can be moved.
    fn page_call(&mut self, members: Vec<String>) -> Option<PageCall> {
        // KEYS: the source, then each destination once; `dests` maps partition segments to
        // their KEYS index, `labels` holds each destination's report label.
        let mut keys = vec![self.source.clone()];
        let mut labels: Vec<String> = Vec::new();
        let mut dests: HashMap<Vec<String>, usize> = HashMap::new();
        let mut args: Vec<Vec<u8>> = Vec::with_capacity(1 + 2 * members.len());
        args.push(match self.target {
            Target::Confidence => b"H".to_vec(),
            Target::Sorted => b"Z".to_vec(),
        });
        let mut sent = Vec::with_capacity(members.len());
        for member in members {
            let parts = Key::<M>::parse(&member)
                .map_err(|e| e.to_string())
                .and_then(|key| partition_segments(&key, &member, self.field, &[], &[]));
            let dest = match parts {
                Ok(parts) => match dests.get(&parts) {
                    Some(&k) => Ok(k),
                    None => self
                        .dest_key(&parts)
                        .map_err(|e| e.to_string())
                        .map(|dest| {
                            labels.push(keys::partition_label(&self.source, &dest));
                            keys.push(dest);
                            dests.insert(parts, keys.len() - 1);
                            keys.len() - 1
                        }),
                },
                Err(e) => Err(e),
            };
            match dest {
                Ok(k) => {
                    args.push(member.as_bytes().to_vec());
                    args.push((k + 1).to_string().into_bytes());
                    sent.push((member, k - 1));
                }
                Err(e) => self.fail(member, e),
            }
        }
        (!sent.is_empty()).then(|| PageCall {
            cmd: crate::backend::evalsha(&MIGRATE_PAGE, &keys, &args),
            sent,
            labels,
        })
    }

    /// Records the statuses the page script answered.
    fn finish_page(&mut self, sent: Vec<(PageCall, RValue)>) -> Result<()> {
        let meta = M::META;
        for (call, reply) in sent {
            let RValue::Array(statuses) = reply else {
                return Err(protocol(Self::OP, meta, "one status per entry expected"));
            };
            if statuses.len() != call.sent.len() {
                return Err(protocol(Self::OP, meta, "one status per entry expected"));
            }
            // Entries moved or kept, per destination.
            let mut moved = vec![0u64; call.labels.len()];
            for ((member, dest), status) in call.sent.into_iter().zip(statuses) {
                let status = match status {
                    RValue::BulkString(b) => b,
                    RValue::SimpleString(s) => s.into_bytes(),
                    other => return Err(protocol(Self::OP, meta, format!("{other:?}"))),
                };
                match status.as_slice() {
                    b"moved" => moved[dest] += 1,
                    b"kept" => {
                        moved[dest] += 1;
                        self.report.kept_existing += 1;
                    }
                    // Already gone: moved by a concurrent run, or returned twice by the scan.
                    b"gone" => {}
                    b"missing" => self.fail(member, INSTANCE_NOT_FOUND.into()),
                    other => {
                        let other = String::from_utf8_lossy(other);
                        let found = other.strip_prefix("wrongtype:").unwrap_or(&other);
                        self.fail(
                            member,
                            format!(
                                "the partition key holds a {found}, not what popoto stores there"
                            ),
                        );
                    }
                }
            }
            for (label, n) in call.labels.into_iter().zip(moved) {
                if n > 0 {
                    self.report.migrated += n;
                    *self.report.partitions.entry(label).or_default() += n;
                }
            }
        }
        Ok(())
    }

    /// Moves one batch: one script call per entry, pipelined; entries whose instance changed
    /// meanwhile are resolved again.
    async fn batch_of(&mut self, mut pending: Vec<String>) -> Result<()> {
        let meta = M::META;
        for _ in 0..MAX_ATTEMPTS {
            if pending.is_empty() {
                return Ok(());
            }
            let moves = self.resolve(std::mem::take(&mut pending)).await?;
            if moves.is_empty() {
                return Ok(());
            }
            if self.dry_run {
                let mut pipe = redis::pipe();
                for mv in &moves {
                    match self.target {
                        Target::Confidence => pipe.cmd("HEXISTS").arg(&mv.dest).arg(&mv.member),
                        Target::Sorted => pipe.cmd("ZSCORE").arg(&mv.dest).arg(&mv.member),
                    };
                }
                let replies = pipeline_results(&self.backend, Self::OP, meta, &mut pipe).await?;
                for (mv, reply) in moves.into_iter().zip(replies) {
                    let present = match reply {
                        Ok(RValue::Nil) | Ok(RValue::Int(0)) => false,
                        Ok(_) => true,
                        Err(e) => {
                            self.fail(mv.member, e.to_string());
                            continue;
                        }
                    };
                    self.count(mv.label, present);
                }
                return Ok(());
            }
            let mut calls = Vec::with_capacity(moves.len());
            for mv in &moves {
                let mut plan = Plan::default();
                let m = plan.key(mv.member.clone());
                let from = plan.key(self.source.clone());
                let to = plan.key(mv.dest.clone());
                plan.checks.push(Check::Present(m));
                field_checks(&mut plan, meta, m, &self.stored, &mv.raw);
                plan.writes.push(match self.target {
                    Target::Confidence => Write::HMoveNx {
                        from,
                        from_field: mv.member.clone(),
                        to,
                        to_field: mv.member.clone(),
                    },
                    Target::Sorted => Write::ZMoveNx {
                        from,
                        to,
                        member: mv.member.clone(),
                    },
                });
                plan.add_type_checks();
                calls.push((plan.keys.clone(), plan.args()));
            }
            let replies = self
                .backend
                .eval_many(Self::OP, meta.name, &APPLY, &calls)
                .await?;
            for (mv, reply) in moves.into_iter().zip(replies) {
                let outcome = reply
                    .map_err(|e| e.to_string())
                    .and_then(|v| Plan::outcome(meta, Self::OP, v).map_err(|e| e.to_string()));
                match outcome {
                    Ok(Outcome::Applied(1)) => {
                        self.report.migrated += 1;
                        self.count(mv.label, false);
                    }
                    Ok(Outcome::Applied(2)) => {
                        self.report.migrated += 1;
                        self.count(mv.label, true);
                    }
                    // Already gone: moved by a concurrent run, or returned twice by the scan.
                    Ok(Outcome::Applied(_)) => {}
                    Ok(Outcome::Missing(_)) => self.fail(mv.member, INSTANCE_NOT_FOUND.into()),
                    Ok(Outcome::Changed) => pending.push(mv.member),
                    Ok(Outcome::WrongType { key, found }) => self.fail(
                        mv.member,
                        format!("{key} holds a {found}, not what popoto stores there"),
                    ),
                    Ok(other) => self.fail(mv.member, format!("unexpected outcome {other:?}")),
                    Err(e) => self.fail(mv.member, e),
                }
            }
        }
        for member in pending {
            self.fail(
                member,
                "the instance kept changing during the migration; run it again".into(),
            );
        }
        Ok(())
    }
}

impl Admin {
    /// Moves a confidence field's legacy unpartitioned companion hash into its partition hashes
    /// (popoto's `migrate_to_partitioned`, made safe to interrupt and re-run).
    ///
    /// Streams `$ConfidencF:<M>:<f>:data` with `HSCAN` in batches of [`DEFAULT_BATCH`], then
    /// moves each entry atomically (one script call per page, or per entry when a partition
    /// value is stored outside the key): the instance must
    /// exist (else the entry is reported as [`INSTANCE_NOT_FOUND`] and **kept**), the entry is
    /// written into its partition hash only if the partition holds none for that instance (the
    /// partition's entry wins over older legacy data; see `kept_existing`), and is then removed
    /// from the legacy hash, which therefore disappears exactly when every entry has moved.
    /// `progress` is called after each batch. Admin handle only.
    pub async fn migrate_to_partitioned<M: Model>(
        &self,
        field: ConfidenceField<M, f64>,
        dry_run: DryRun,
        progress: impl FnMut(Progress),
    ) -> Result<MigrationReport> {
        self.migrate_to_partitioned_with(field, MigrationOptions::new(dry_run), progress)
            .await
    }

    /// [`Admin::migrate_to_partitioned`] with explicit options (batch size).
    pub async fn migrate_to_partitioned_with<M: Model>(
        &self,
        field: ConfidenceField<M, f64>,
        options: MigrationOptions,
        progress: impl FnMut(Progress),
    ) -> Result<MigrationReport> {
        self.migrate::<M, _>(field.index(), Target::Confidence, options, progress)
            .instrument(span::<M>("migrate_to_partitioned"))
            .await
    }

    /// Moves the members of a sorted field's unpartitioned zset `$SortF:<M>:<f>` into its
    /// partition zsets, after `partition_by` was added to the field.
    ///
    /// Same streaming (`ZSCAN`), guarantees and report as [`Admin::migrate_to_partitioned`]:
    /// each member is moved atomically: it is added with its score to its partition only if absent
    /// there, then removes it from the unpartitioned zset; members whose instance is missing
    /// are reported and kept. Admin handle only.
    pub async fn migrate_sorted_to_partitioned<M: Model, T>(
        &self,
        field: SortedField<M, T>,
        dry_run: DryRun,
        progress: impl FnMut(Progress),
    ) -> Result<MigrationReport> {
        self.migrate_sorted_to_partitioned_with(field, MigrationOptions::new(dry_run), progress)
            .await
    }

    /// [`Admin::migrate_sorted_to_partitioned`] with explicit options (batch size).
    pub async fn migrate_sorted_to_partitioned_with<M: Model, T>(
        &self,
        field: SortedField<M, T>,
        options: MigrationOptions,
        progress: impl FnMut(Progress),
    ) -> Result<MigrationReport> {
        self.migrate::<M, _>(field.index(), Target::Sorted, options, progress)
            .instrument(span::<M>("migrate_sorted_to_partitioned"))
            .await
    }

    async fn migrate<M: Model, P: FnMut(Progress)>(
        &self,
        field: usize,
        target: Target,
        options: MigrationOptions,
        progress: P,
    ) -> Result<MigrationReport> {
        let meta = M::META;
        let op = match target {
            Target::Confidence => "migrate_to_partitioned",
            Target::Sorted => "migrate_sorted_to_partitioned",
        };
        let f = meta
            .fields
            .get(field)
            .ok_or_else(|| protocol(op, meta, format!("no field at index {field}")))?;
        let (right_kind, expected) = match target {
            Target::Confidence => (matches!(f.kind, FieldKind::Confidence { .. }), "confidence"),
            Target::Sorted => (f.kind == FieldKind::Sorted, "sorted"),
        };
        if !right_kind {
            return Err(Error::WrongFieldKind {
                model: meta.name,
                field: f.name,
                expected,
            });
        }
        if f.partition_by.is_empty() {
            return Err(Error::NotPartitioned {
                model: meta.name,
                field: f.name,
            });
        }
        let source = match target {
            Target::Confidence => keys::confidence_key(meta, field, &[])?,
            Target::Sorted => keys::sorted_key(meta, field, &[]),
        };
        let migration: Migration<M, P> = Migration {
            backend: self.backend().await?,
            field,
            target,
            source,
            dry_run: options.dry_run == DryRun::Yes,
            batch: options.batch,
            stored: stored_partition_fields(meta, field),
            report: MigrationReport::default(),
            errored: HashSet::new(),
            scanned: 0,
            progress,
            _m: PhantomData,
        };
        migration.run().await
    }
}

// ------------------------------------------------------------------------------- index checks

/// An instance whose index entries are being verified: the writes `save` would make, and the
/// stored bytes of the fields that decide them.
struct Expected {
    key: String,
    plan: Plan,
    raw: Vec<Option<Vec<u8>>>,
}

/// The findings about one entry or instance, with the one script call that repairs them.
struct Pending<T> {
    /// What to examine again if the repair finds the instance changed (entry or instance key).
    token: T,
    findings: Vec<Finding>,
    plan: Option<Plan>,
}

/// One member of one index key.
#[derive(Debug, Clone, PartialEq)]
struct Entry {
    index: Arc<str>,
    kind: IndexKind,
    member: String,
}

struct IndexScan<M> {
    backend: Backend,
    repair: bool,
    batch: usize,
    report: IndexReport,
    seen: HashSet<(FindingKind, String, String, Option<&'static str>)>,
    _m: PhantomData<fn() -> M>,
}

impl<M: Model> IndexScan<M> {
    const OP: &'static str = "check indexes";

    fn finding(
        kind: FindingKind,
        index: &str,
        member: &str,
        field: Option<&'static str>,
        detail: String,
    ) -> Finding {
        Finding {
            kind,
            index: index.to_owned(),
            member: member.to_owned(),
            field,
            tenant: tenant_of::<M>(member),
            detail,
            repaired: false,
        }
    }

    fn record(&mut self, finding: Finding) {
        let id = (
            finding.kind,
            finding.index.clone(),
            finding.member.clone(),
            finding.field,
        );
        if self.seen.insert(id) {
            self.report.findings.push(finding);
        }
    }

    fn field_of(kind: IndexKind) -> Option<&'static str> {
        match kind {
            IndexKind::Class => None,
            IndexKind::ValueSet(i) | IndexKind::Sorted(i) | IndexKind::Confidence(i) => {
                Some(M::META.fields[i].name)
            }
        }
    }

    async fn run(mut self) -> Result<IndexReport> {
        self.index_phase().await?;
        self.instance_phase().await?;
        Ok(self.report)
    }

    /// Applies the repairs of `pending` (one script call each, pipelined) and records the
    /// findings; returns the members to examine again (their instance changed meanwhile).
    async fn settle<T: PartialEq>(&mut self, pending: Vec<Pending<T>>) -> Result<Vec<T>> {
        let meta = M::META;
        let mut retry = Vec::new();
        let mut calls = Vec::new();
        let mut with_plan = Vec::new();
        for p in pending {
            match &p.plan {
                Some(plan) if self.repair => {
                    calls.push((plan.keys.clone(), plan.args()));
                    with_plan.push(p);
                }
                _ => p.findings.into_iter().for_each(|f| self.record(f)),
            }
        }
        if calls.is_empty() {
            return Ok(retry);
        }
        let replies = self
            .backend
            .eval_many("rebuild indexes", meta.name, &APPLY, &calls)
            .await?;
        for (p, reply) in with_plan.into_iter().zip(replies) {
            let outcome = reply
                .map_err(|e| e.to_string())
                .and_then(|v| Plan::outcome(meta, Self::OP, v).map_err(|e| e.to_string()));
            let note = match outcome {
                Ok(Outcome::Applied(_)) => None,
                // The instance appeared, vanished or changed since it was read: look again.
                Ok(Outcome::Exists(_)) | Ok(Outcome::Missing(_)) | Ok(Outcome::Changed) => {
                    if !retry.contains(&p.token) {
                        retry.push(p.token);
                    }
                    continue;
                }
                Ok(other) => Some(format!("; not repaired: {other:?}")),
                Err(e) => Some(format!("; not repaired: {e}")),
            };
            for mut f in p.findings {
                match &note {
                    None => f.repaired = true,
                    Some(n) => f.detail += n,
                }
                self.record(f);
            }
        }
        Ok(retry)
    }

    // ---- phase 1: every index key of the model, member by member: (a) and (c)

    async fn index_phase(&mut self) -> Result<()> {
        let meta = M::META;
        let class = keys::class_key(meta);
        let ty: String = self
            .backend
            .query(Self::OP, meta.name, redis::cmd("TYPE").arg(&class))
            .await?;
        if ty == "set" {
            self.index_keys(vec![(class, IndexKind::Class)]).await?;
        }
        let pattern = keys::index_pattern(meta);
        let mut done: HashSet<String> = HashSet::new();
        let mut cursor = 0u64;
        loop {
            let cmd = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(self.batch)
                .clone();
            let (next, raw) = scan_page(&self.backend, Self::OP, meta, &cmd).await?;
            let found: Vec<(String, IndexKind)> = raw
                .into_iter()
                .filter_map(|k| String::from_utf8(k).ok())
                .filter_map(|k| keys::parse_index_key(meta, &k).map(|kind| (k, kind)))
                .filter(|(k, kind)| *kind != IndexKind::Class && !done.contains(k))
                .collect();
            if !found.is_empty() {
                let mut pipe = redis::pipe();
                for (k, _) in &found {
                    pipe.cmd("TYPE").arg(k);
                }
                let types = pipeline_results(&self.backend, Self::OP, meta, &mut pipe).await?;
                let mut typed = Vec::with_capacity(found.len());
                for ((key, kind), ty) in found.into_iter().zip(types) {
                    let expected = match kind {
                        IndexKind::Class | IndexKind::ValueSet(_) => "set",
                        IndexKind::Sorted(_) => "zset",
                        IndexKind::Confidence(_) => "hash",
                    };
                    // A key of another type is not one of ours: skipped.
                    if reply_text(ty).as_deref() == Some(expected) && done.insert(key.clone()) {
                        typed.push((key, kind));
                    }
                }
                self.index_keys(typed).await?;
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }

    fn scan_command(kind: IndexKind) -> &'static str {
        match kind {
            IndexKind::Class | IndexKind::ValueSet(_) => "SSCAN",
            IndexKind::Sorted(_) => "ZSCAN",
            IndexKind::Confidence(_) => "HSCAN",
        }
    }

    /// Adds the members of one `SCAN`-family page (flat reply) to `entries`.
    fn push_members(
        &mut self,
        entries: &mut Vec<Entry>,
        index: &Arc<str>,
        kind: IndexKind,
        flat: Vec<Vec<u8>>,
    ) {
        let pairs = !matches!(kind, IndexKind::Class | IndexKind::ValueSet(_));
        for m in flat.into_iter().step_by(if pairs { 2 } else { 1 }) {
            self.report.index_entries += 1;
            if let Ok(member) = String::from_utf8(m) {
                entries.push(Entry {
                    index: index.clone(),
                    kind,
                    member,
                });
            }
        }
    }

    /// Checks every member of a batch of index keys: the first page of each in one pipeline
    /// (most value sets hold one member), further pages key by key; members are checked in
    /// batches whatever key they come from.
    async fn index_keys(&mut self, keys: Vec<(String, IndexKind)>) -> Result<()> {
        let meta = M::META;
        if keys.is_empty() {
            return Ok(());
        }
        self.report.index_keys += keys.len() as u64;
        let mut pipe = redis::pipe();
        for (key, kind) in &keys {
            pipe.cmd(Self::scan_command(*kind))
                .arg(key)
                .arg(0)
                .arg("COUNT")
                .arg(self.batch);
        }
        let replies = pipeline_results(&self.backend, Self::OP, meta, &mut pipe).await?;
        let mut entries = Vec::new();
        let mut more = Vec::new();
        for ((key, kind), reply) in keys.into_iter().zip(replies) {
            // Gone or retyped since the TYPE check: nothing to examine.
            let Some((next, flat)) = reply
                .ok()
                .and_then(|v| redis::from_redis_value::<(u64, Vec<Vec<u8>>)>(v).ok())
            else {
                continue;
            };
            let index: Arc<str> = key.into();
            self.push_members(&mut entries, &index, kind, flat);
            if next != 0 {
                more.push((index, kind, next));
            }
            if entries.len() >= self.batch {
                self.entries(std::mem::take(&mut entries)).await?;
            }
        }
        self.entries(entries).await?;
        for (index, kind, mut cursor) in more {
            loop {
                let cmd = redis::cmd(Self::scan_command(kind))
                    .arg(&*index)
                    .arg(cursor)
                    .arg("COUNT")
                    .arg(self.batch)
                    .clone();
                let (next, flat) = scan_page(&self.backend, Self::OP, meta, &cmd).await?;
                let mut entries = Vec::new();
                self.push_members(&mut entries, &index, kind, flat);
                self.entries(entries).await?;
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok(())
    }

    /// Checks (and in a rebuild repairs) one batch of index entries: (a) and (c).
    async fn entries(&mut self, mut todo: Vec<Entry>) -> Result<()> {
        let meta = M::META;
        let stored_of = |kind: IndexKind| match kind {
            IndexKind::Sorted(i) | IndexKind::Confidence(i) => stored_partition_fields(meta, i),
            IndexKind::Class | IndexKind::ValueSet(_) => Vec::new(),
        };
        for attempt in 1..=MAX_ATTEMPTS {
            if todo.is_empty() {
                return Ok(());
            }
            let mut pipe = redis::pipe();
            for e in &todo {
                pipe.cmd("EXISTS").arg(&e.member);
                let stored = stored_of(e.kind);
                if !stored.is_empty() {
                    let names: Vec<&str> = stored.iter().map(|&p| meta.fields[p].name).collect();
                    pipe.cmd("HMGET").arg(&e.member).arg(names);
                }
            }
            let replies = pipeline_results(&self.backend, Self::OP, meta, &mut pipe).await?;
            let mut it = replies.into_iter();
            let mut pending = Vec::new();
            for entry in std::mem::take(&mut todo) {
                let (index, kind, member) = (&*entry.index, entry.kind, entry.member.as_str());
                let field = Self::field_of(kind);
                let stored = stored_of(kind);
                let exists = reply_int(next_reply(&mut it, Self::OP, meta)?) == Some(1);
                let raw = if stored.is_empty() {
                    Vec::new()
                } else {
                    reply_optional_bytes_list(next_reply(&mut it, Self::OP, meta)?)
                        .unwrap_or_default()
                };
                if !exists {
                    let finding = Self::finding(
                        FindingKind::Orphan,
                        index,
                        member,
                        field,
                        "the instance hash is missing".into(),
                    );
                    let plan = self.repair.then(|| {
                        let mut plan = Plan::default();
                        let m = plan.key(member.to_owned());
                        let k = plan.key(index.to_owned());
                        plan.checks.push(Check::Absent(m));
                        plan.writes.push(match kind {
                            IndexKind::Class | IndexKind::ValueSet(_) => Write::SRem {
                                key: k,
                                member: member.to_owned(),
                            },
                            IndexKind::Sorted(_) => Write::ZRem {
                                key: k,
                                member: member.to_owned(),
                            },
                            IndexKind::Confidence(_) => Write::HDel {
                                key: k,
                                field: member.to_owned(),
                            },
                        });
                        plan.add_type_checks();
                        plan
                    });
                    pending.push(Pending {
                        token: entry,
                        findings: vec![finding],
                        plan,
                    });
                    continue;
                }
                // A member that is not an instance key of this model cannot be placed: skipped.
                let Ok(key) = Key::<M>::parse(member) else {
                    continue;
                };
                let expected = match kind {
                    IndexKind::Class => None,
                    IndexKind::ValueSet(i) => key_position(meta, i)
                        .and_then(|pos| key.segments().get(pos))
                        .map(|seg| keys::value_set_key(meta, i, seg)),
                    IndexKind::Sorted(i) | IndexKind::Confidence(i) => {
                        partition_segments(&key, member, i, &stored, &raw)
                            .ok()
                            .and_then(|parts| {
                                let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
                                match kind {
                                    IndexKind::Sorted(_) => Some(keys::sorted_key(meta, i, &parts)),
                                    _ => keys::confidence_key(meta, i, &parts).ok(),
                                }
                            })
                    }
                };
                let Some(expected) = expected else { continue };
                if expected == index {
                    continue;
                }
                let finding = Self::finding(
                    FindingKind::Misplaced,
                    index,
                    member,
                    field,
                    format!("belongs in {expected}"),
                );
                let plan = self.repair.then(|| {
                    let mut plan = Plan::default();
                    let m = plan.key(member.to_owned());
                    let k = plan.key(index.to_owned());
                    // Only a confidence entry moves; other misplaced entries are dropped here
                    // and re-added where they belong by the instance phase.
                    let to = match kind {
                        IndexKind::Confidence(_) => plan.key(expected.clone()),
                        _ => k,
                    };
                    plan.checks.push(Check::Present(m));
                    field_checks(&mut plan, meta, m, &stored, &raw);
                    plan.writes.push(match kind {
                        IndexKind::Class | IndexKind::ValueSet(_) => Write::SRem {
                            key: k,
                            member: member.to_owned(),
                        },
                        IndexKind::Sorted(_) => Write::ZRem {
                            key: k,
                            member: member.to_owned(),
                        },
                        // Confidence data is moved, not dropped, unless its partition has an entry.
                        IndexKind::Confidence(_) => Write::HMoveNx {
                            from: k,
                            from_field: member.to_owned(),
                            to,
                            to_field: member.to_owned(),
                        },
                    });
                    plan.add_type_checks();
                    plan
                });
                pending.push(Pending {
                    token: entry,
                    findings: vec![finding],
                    plan,
                });
            }
            todo = self.settle(pending).await?;
            if attempt == MAX_ATTEMPTS {
                for e in &todo {
                    let f = Self::finding(
                        FindingKind::Orphan,
                        &e.index,
                        &e.member,
                        Self::field_of(e.kind),
                        "kept changing during the rebuild; not repaired".into(),
                    );
                    self.record(f);
                }
            }
        }
        Ok(())
    }

    // ---- phase 2: every instance hash of the model: (b) and (d)

    async fn instance_phase(&mut self) -> Result<()> {
        let meta = M::META;
        let pattern = keys::instance_pattern(meta);
        let mut cursor = 0u64;
        loop {
            let cmd = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(self.batch)
                .clone();
            let (next, raw) = scan_page(&self.backend, Self::OP, meta, &cmd).await?;
            let found: Vec<String> = raw
                .into_iter()
                .filter_map(|k| String::from_utf8(k).ok())
                .filter(|k| Key::<M>::parse(k).is_ok())
                .collect();
            self.instances(found).await?;
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }

    /// Checks one batch of instance keys.
    async fn instances(&mut self, mut todo: Vec<String>) -> Result<()> {
        let meta = M::META;
        // Fields whose stored bytes decide an index entry: a repair re-checks them on the server.
        let mut guarded = movable_partition_fields(meta);
        for (i, f) in meta.fields.iter().enumerate() {
            if f.kind == FieldKind::Sorted && !guarded.contains(&i) {
                guarded.push(i);
            }
        }
        for attempt in 1..=MAX_ATTEMPTS {
            if todo.is_empty() {
                return Ok(());
            }
            let mut pipe = redis::pipe();
            for k in &todo {
                pipe.cmd("HGETALL").arg(k);
            }
            let replies = pipeline_results(&self.backend, Self::OP, meta, &mut pipe).await?;
            // Instances to verify, with their expected index writes.
            let mut expected: Vec<Expected> = Vec::new();
            for (key_str, reply) in std::mem::take(&mut todo).into_iter().zip(replies) {
                // Not a hash (a capped list, a foreign key): not an instance.
                let Ok(value) = reply else { continue };
                let Ok(fields) = redis::from_redis_value::<Vec<(Vec<u8>, Vec<u8>)>>(value) else {
                    continue;
                };
                if fields.is_empty() {
                    continue;
                }
                if attempt == 1 {
                    self.report.instances += 1;
                }
                let Ok(key) = Key::<M>::parse(&key_str) else {
                    continue;
                };
                let raw: Vec<Option<Vec<u8>>> = guarded
                    .iter()
                    .map(|&g| {
                        let name = meta.fields[g].name.as_bytes();
                        fields
                            .iter()
                            .find(|(n, _)| n.as_slice() == name)
                            .map(|(_, v)| v.clone())
                    })
                    .collect();
                let unreadable = |detail: String| {
                    Self::finding(FindingKind::Unreadable, &key_str, &key_str, None, detail)
                };
                let record = match M::from_hash(&key_str, fields).and_then(|v| v.to_record()) {
                    Ok(r) => r,
                    Err(e) => {
                        self.record(unreadable(e.to_string()));
                        continue;
                    }
                };
                let mut mismatch = false;
                for (pos, &i) in meta.key_fields.iter().enumerate() {
                    if meta.fields[i].hidden {
                        continue;
                    }
                    let stored = record
                        .segments
                        .get(i)
                        .cloned()
                        .flatten()
                        .unwrap_or_default();
                    let in_key = key.segments().get(pos).cloned().unwrap_or_default();
                    if stored != in_key {
                        mismatch = true;
                        let f = Self::finding(
                            FindingKind::KeyMismatch,
                            &key_str,
                            &key_str,
                            Some(meta.fields[i].name),
                            format!("the key says {in_key:?}, the stored value is {stored:?}"),
                        );
                        self.record(f);
                    }
                }
                // Which indexes such an instance belongs to is ambiguous: reported, not repaired.
                if mismatch {
                    continue;
                }
                let hidden = if meta.has_hidden_key() {
                    key.segments().last().map(String::as_str)
                } else {
                    None
                };
                let inst = Instance {
                    meta,
                    key: key_str.clone(),
                    record: &record,
                    hidden_key: hidden,
                };
                let mut plan = Plan::default();
                if let Err(e) = inst.add_indexes(&mut plan) {
                    self.record(unreadable(e.to_string()));
                    continue;
                }
                expected.push(Expected {
                    key: key_str,
                    plan,
                    raw,
                });
            }
            if expected.is_empty() {
                return Ok(());
            }
            let mut pipe = redis::pipe();
            for Expected { plan, .. } in &expected {
                for w in &plan.writes {
                    match w {
                        Write::SAdd { key, member } => {
                            pipe.cmd("SISMEMBER").arg(&plan.keys[*key]).arg(member)
                        }
                        Write::ZAdd { key, member, .. } => {
                            pipe.cmd("ZSCORE").arg(&plan.keys[*key]).arg(member)
                        }
                        Write::HSetNx { key, field, .. } => {
                            pipe.cmd("HEXISTS").arg(&plan.keys[*key]).arg(field)
                        }
                        // add_indexes writes nothing else; keep replies aligned anyway.
                        _ => pipe.cmd("PING"),
                    };
                }
            }
            let replies = pipeline_results(&self.backend, Self::OP, meta, &mut pipe).await?;
            let mut it = replies.into_iter();
            let mut pending = Vec::new();
            for Expected {
                key: key_str,
                plan,
                raw,
            } in expected
            {
                let mut missing: Vec<(Write, String)> = Vec::new();
                for w in &plan.writes {
                    let reply = next_reply(&mut it, Self::OP, meta)?;
                    let detail = match w {
                        Write::SAdd { .. } | Write::HSetNx { .. } => {
                            (reply_int(reply) != Some(1)).then(|| "not in the index".to_owned())
                        }
                        Write::ZAdd { score, .. } => {
                            let found = reply_text(reply).and_then(|s| s.parse::<f64>().ok());
                            match found {
                                Some(f) if f == *score => None,
                                Some(f) => Some(format!(
                                    "score {} in the index, {} from the stored value",
                                    crate::plan::score_arg(f),
                                    crate::plan::score_arg(*score)
                                )),
                                None => Some("not in the index".to_owned()),
                            }
                        }
                        _ => None,
                    };
                    if let Some(d) = detail {
                        missing.push((w.clone(), d));
                    }
                }
                if missing.is_empty() {
                    continue;
                }
                // One repair per instance, in one script call: only the missing writes.
                let mut repair = Plan::default();
                if self.repair {
                    let k = repair.key(key_str.clone());
                    repair.checks.push(Check::Present(k));
                    field_checks(&mut repair, meta, k, &guarded, &raw);
                    for (w, _) in &missing {
                        let w = match w.clone() {
                            Write::SAdd { key, member } => Write::SAdd {
                                key: repair.key(plan.keys[key].clone()),
                                member,
                            },
                            Write::ZAdd { key, score, member } => Write::ZAdd {
                                key: repair.key(plan.keys[key].clone()),
                                score,
                                member,
                            },
                            Write::HSetNx { key, field, value } => Write::HSetNx {
                                key: repair.key(plan.keys[key].clone()),
                                field,
                                value,
                            },
                            other => other,
                        };
                        repair.writes.push(w);
                    }
                    repair.add_type_checks();
                }
                let findings = missing
                    .into_iter()
                    .map(|(w, detail)| {
                        let index = match &w {
                            Write::SAdd { key, .. }
                            | Write::ZAdd { key, .. }
                            | Write::HSetNx { key, .. } => plan.keys[*key].clone(),
                            _ => String::new(),
                        };
                        let field = keys::parse_index_key(meta, &index).and_then(Self::field_of);
                        Self::finding(FindingKind::Missing, &index, &key_str, field, detail)
                    })
                    .collect();
                pending.push(Pending {
                    token: key_str,
                    findings,
                    plan: self.repair.then_some(repair),
                });
            }
            todo = self.settle(pending).await?;
            if attempt == MAX_ATTEMPTS {
                for member in &todo {
                    let f = Self::finding(
                        FindingKind::Missing,
                        member,
                        member,
                        None,
                        "kept changing during the rebuild; not repaired".into(),
                    );
                    self.record(f);
                }
            }
        }
        Ok(())
    }
}

impl Admin {
    /// Checks model `M`'s indexes against its instances without writing anything.
    ///
    /// Scans every index key of the model (`$Class`, value sets, sorted zsets and companion
    /// hashes, every partition) and every instance hash, in batches, and reports orphan entries
    /// (a), instances missing from an index or with a wrong score (b), entries outside the
    /// partition their instance's values select (c) and instances whose key disagrees with
    /// their stored values (d). Admin handle only.
    pub async fn check_indexes<M: Model>(&self) -> Result<IndexReport> {
        self.check_indexes_with::<M>(IndexOptions::default()).await
    }

    /// [`Admin::check_indexes`] with explicit options (batch size).
    pub async fn check_indexes_with<M: Model>(&self, options: IndexOptions) -> Result<IndexReport> {
        self.index_scan::<M>(false, options)
            .instrument(span::<M>("check_indexes"))
            .await
    }

    /// Checks model `M`'s indexes and repairs what can be repaired: removes orphan (a) and
    /// misplaced (c) entries (a misplaced confidence entry is moved into its partition unless
    /// that already holds one) and adds missing entries (b) with idempotent writes
    /// (`SADD`/`ZADD`/`HSETNX`, so confidence data survives), one atomic script per entry or
    /// instance that re-checks what was read. Key mismatches (d) are reported only.
    pub async fn rebuild_indexes<M: Model>(&self) -> Result<IndexReport> {
        self.rebuild_indexes_with::<M>(IndexOptions::default())
            .await
    }

    /// [`Admin::rebuild_indexes`] with explicit options (batch size).
    pub async fn rebuild_indexes_with<M: Model>(
        &self,
        options: IndexOptions,
    ) -> Result<IndexReport> {
        self.index_scan::<M>(true, options)
            .instrument(span::<M>("rebuild_indexes"))
            .await
    }

    /// A tenant-isolation audit of model `M`: [`Admin::check_indexes`], whose report lists
    /// misplaced entries (c) and key mismatches (d) first ([`IndexReport::isolation_violations`]).
    pub async fn audit<M: Model>(&self) -> Result<IndexReport> {
        self.index_scan::<M>(false, IndexOptions::default())
            .instrument(span::<M>("audit"))
            .await
    }

    async fn index_scan<M: Model>(
        &self,
        repair: bool,
        options: IndexOptions,
    ) -> Result<IndexReport> {
        let scan: IndexScan<M> = IndexScan {
            backend: self.backend().await?,
            repair,
            batch: options.batch,
            report: IndexReport {
                model: M::META.name,
                rebuilt: repair,
                ..Default::default()
            },
            seen: HashSet::new(),
            _m: PhantomData,
        };
        scan.run().await
    }
}
