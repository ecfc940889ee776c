//! Index checks and rebuilds, phase 1: every index key of a model, member by member (orphan
//! and misplaced entries); the entry points on [`Admin`].

use std::collections::HashSet;
use std::marker::PhantomData;
use std::sync::Arc;

use tracing::Instrument;

use super::*;
use crate::admin::Admin;
use crate::backend::KeyScan;
use crate::keys::IndexKind;
use crate::keyspaces;
use crate::model::FieldKind;
use crate::plan::entries::{self, remove_orphan};
use crate::plan::Outcome;
use crate::script::apply::{self, APPLY};

/// An instance whose index entries are being verified: the writes `save` would make, and the
/// stored bytes of the fields that decide them.
pub(super) struct Expected {
    pub(super) key: String,
    pub(super) plan: Plan,
    pub(super) raw: Vec<Option<Vec<u8>>>,
}

/// The findings about one entry or instance, with the one script call that repairs them.
pub(super) struct Pending<T> {
    /// What to examine again if the repair finds the instance changed (entry or instance key).
    pub(super) token: T,
    pub(super) findings: Vec<Finding>,
    pub(super) plan: Option<Plan>,
}

/// One member of one index key.
#[derive(Debug, Clone, PartialEq)]
struct Entry {
    index: Arc<str>,
    kind: IndexKind,
    member: String,
}

pub(super) struct IndexScan<M> {
    pub(super) backend: Backend,
    pub(super) repair: bool,
    pub(super) batch: usize,
    pub(super) report: IndexReport,
    seen: HashSet<(FindingKind, String, String, Option<String>)>,
    /// Unique value sets holding more than one member, with the field: examined for owners
    /// sharing the value once every index key has been read.
    pub(super) shared_values: Vec<(Arc<str>, usize)>,
    /// The tenant whose keyspace is being checked, on a layout that gives each its own (the
    /// cluster layout); `None`: the model's whole keyspace.
    pub(super) keyspace: Option<String>,
    _m: PhantomData<fn() -> M>,
}

impl<M: Model> IndexScan<M> {
    pub(super) const OP: &'static str = "check indexes";

    pub(super) fn finding(
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
            field: field.map(str::to_owned),
            tenant: tenant_of::<M>(member),
            detail,
            repaired: false,
        }
    }

    pub(super) fn record(&mut self, finding: Finding) {
        let id = (
            finding.kind,
            finding.index.clone(),
            finding.member.clone(),
            finding.field.clone(),
        );
        if self.seen.insert(id) {
            self.report.findings.push(finding);
        }
    }

    pub(super) fn field_of(kind: IndexKind) -> Option<&'static str> {
        match kind {
            IndexKind::Class | IndexKind::Expiry => None,
            IndexKind::ValueSet(i) | IndexKind::Sorted(i) | IndexKind::Confidence(i) => {
                Some(M::META.fields[i].name)
            }
        }
    }

    async fn run(mut self) -> Result<IndexReport> {
        // The cluster layout gives each tenant a keyspace (one slot): checked one by one.
        let keyspaces = match keyspaces::per_keyspace(self.backend.layout(), M::META) {
            true => keyspaces::tenants(&self.backend, M::META, Self::OP)
                .await?
                .into_iter()
                .map(|t| Some(t.as_str().to_owned()))
                .collect(),
            false => vec![None],
        };
        for keyspace in keyspaces {
            self.keyspace = keyspace;
            self.index_phase().await?;
            self.instance_phase().await?;
            self.unique_phase().await?;
            self.shared_values.clear();
        }
        Ok(self.report)
    }

    /// Whether `member` is a key of the keyspace being checked (always, in popoto's layout).
    fn in_keyspace(&self, member: &str) -> bool {
        self.backend
            .layout()
            .in_keyspace(M::META, self.keyspace.as_deref(), member)
    }

    /// Applies the repairs of `pending` (one script call each, pipelined) and records the
    /// findings; returns the members to examine again (their instance changed meanwhile).
    pub(super) async fn settle<T: PartialEq>(
        &mut self,
        pending: Vec<Pending<T>>,
    ) -> Result<Vec<T>> {
        let meta = M::META;
        let mut retry = Vec::new();
        let mut calls = Vec::new();
        let mut with_plan = Vec::new();
        for p in pending {
            match &p.plan {
                Some(plan) if self.repair => {
                    calls.push(apply::call(plan));
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
                .and_then(|v| apply::outcome(meta, Self::OP, v).map_err(|e| e.to_string()));
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
        let layout = self.backend.layout();
        let class = layout.class_key(meta, self.keyspace.as_deref());
        let ty: String = self
            .backend
            .query(Self::OP, meta.name, redis::cmd("TYPE").arg(&class))
            .await?;
        if ty == "set" {
            self.index_keys(vec![(class, IndexKind::Class)]).await?;
        }
        // The expiry set of an untenanted model is the one index key `index_pattern` misses.
        if meta.expires() && meta.tenant.is_none() {
            let expiry = layout.expiry_key(meta, None);
            let ty: String = self
                .backend
                .query(Self::OP, meta.name, redis::cmd("TYPE").arg(&expiry))
                .await?;
            if ty == "zset" {
                self.index_keys(vec![(expiry, IndexKind::Expiry)]).await?;
            }
        }
        let pattern = layout.index_pattern(meta, self.keyspace.as_deref());
        let mut done: HashSet<String> = HashSet::new();
        let mut scan = KeyScan::new(pattern, self.batch);
        while let Some(keys) = scan.next(&self.backend, Self::OP, meta.name).await? {
            let found: Vec<(String, IndexKind)> = keys
                .into_iter()
                .filter_map(|k| layout.parse_index_key(meta, &k).map(|kind| (k, kind)))
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
                        IndexKind::Sorted(_) | IndexKind::Expiry => "zset",
                        IndexKind::Confidence(_) => "hash",
                    };
                    // A key of another type is not one of ours: skipped.
                    if reply_text(ty).as_deref() == Some(expected) && done.insert(key.clone()) {
                        typed.push((key, kind));
                    }
                }
                self.index_keys(typed).await?;
            }
        }
        Ok(())
    }

    fn scan_command(kind: IndexKind) -> &'static str {
        match kind {
            IndexKind::Class | IndexKind::ValueSet(_) => "SSCAN",
            IndexKind::Sorted(_) | IndexKind::Expiry => "ZSCAN",
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
            if let IndexKind::ValueSet(i) = kind {
                if meta.fields[i].kind == FieldKind::UniqueKey && (next != 0 || flat.len() > 1) {
                    self.shared_values.push((index.clone(), i));
                }
            }
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

    /// Members naming a key of another keyspace (cluster layout, where an index holds its own
    /// keyspace's instances only): misplaced whatever they name, and not read (their keys are
    /// in another slot); a rebuild removes them from this index, and the other keyspace's check
    /// adds its instances' missing entries.
    async fn foreign(&mut self, found: Vec<Entry>) -> Result<()> {
        let pending = found
            .into_iter()
            .map(|e| Pending {
                findings: vec![Self::finding(
                    FindingKind::Misplaced,
                    &e.index,
                    &e.member,
                    Self::field_of(e.kind),
                    "names a key of another keyspace".into(),
                )],
                plan: self
                    .repair
                    .then(|| entries::remove_member(&e.index, &e.member, e.kind)),
                token: e,
            })
            .collect();
        // Unconditional removals: nothing to examine again.
        self.settle(pending).await?;
        Ok(())
    }

    /// Checks (and in a rebuild repairs) one batch of index entries: (a) and (c).
    async fn entries(&mut self, todo: Vec<Entry>) -> Result<()> {
        let meta = M::META;
        let (mut todo, foreign): (Vec<Entry>, Vec<Entry>) =
            todo.into_iter().partition(|e| self.in_keyspace(&e.member));
        self.foreign(foreign).await?;
        let stored_of = |kind: IndexKind| match kind {
            IndexKind::Sorted(i) | IndexKind::Confidence(i) => stored_partition_fields(meta, i),
            IndexKind::Class | IndexKind::ValueSet(_) | IndexKind::Expiry => Vec::new(),
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
                    let plan = self.repair.then(|| remove_orphan(index, member, kind));
                    pending.push(Pending {
                        token: entry,
                        findings: vec![finding],
                        plan,
                    });
                    continue;
                }
                // A member that is not an instance key of this model cannot be placed: skipped.
                let layout = self.backend.layout();
                let Ok(key) = Key::<M>::parse_in(layout, member) else {
                    continue;
                };
                let tenant = key.tenant();
                let expected = match kind {
                    IndexKind::Class => None,
                    // The expiry set of the member's tenant.
                    IndexKind::Expiry => Some(layout.expiry_key(meta, tenant)),
                    IndexKind::ValueSet(i) => key_position(meta, i)
                        .and_then(|pos| key.segments().get(pos))
                        .map(|seg| layout.value_set_key(meta, tenant, i, seg)),
                    IndexKind::Sorted(i) | IndexKind::Confidence(i) => {
                        partition_segments(&key, member, i, &stored, &raw)
                            .ok()
                            .and_then(|parts| {
                                let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
                                match kind {
                                    IndexKind::Sorted(_) => {
                                        Some(layout.sorted_key(meta, tenant, i, &parts))
                                    }
                                    _ => layout.confidence_key(meta, tenant, i, &parts).ok(),
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
                    entries::misplaced(meta, kind, (member, index, &expected), &stored, &raw)
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
                model: M::META.name.to_owned(),
                rebuilt: repair,
                ..Default::default()
            },
            seen: HashSet::new(),
            shared_values: Vec::new(),
            keyspace: None,
            _m: PhantomData,
        };
        scan.run().await
    }
}
