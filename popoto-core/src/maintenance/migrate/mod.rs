//! Partition migrations: moving legacy unpartitioned confidence and sorted entries into their
//! partitions, one script call per scanned page (or one checked plan per entry).

use std::collections::HashSet;
use std::marker::PhantomData;

use redis::Value as RValue;
use tracing::Instrument;

use super::*;
use crate::admin::Admin;
use crate::backend::Backend;
use crate::keys::{self, Layout};
use crate::model::{ConfidenceField, FieldKind, SortedField};
use crate::plan::entries::{move_entry, Moved as Target};
use crate::plan::Outcome;
use crate::script::apply::{self, APPLY};

mod page;
#[cfg(any(test, feature = "testing"))]
pub(crate) use page::MIGRATE_PAGE;

use page::{send_page, PageCall};

/// An entry whose partition is known.
struct Move {
    member: String,
    dest: String,
    label: String,
    raw: Vec<Option<Vec<u8>>>,
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
        let layout = self.backend.layout();
        match self.target {
            Target::Confidence => layout.confidence_key(M::META, None, self.field, &parts),
            Target::Sorted => Ok(layout.sorted_key(M::META, None, self.field, &parts)),
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
                if self.dry_run && self.stored.is_empty() && self.backend.is_recording() {
                    // A dry run that records: the page calls a real run sends for this page.
                    for call in self.prepare_page(members.clone()) {
                        self.backend.record(&call.cmd);
                    }
                }
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
            let key = match Key::<M>::parse_in(self.backend.layout(), &member) {
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

    /// One checked plan per entry (its instance exists, its stored partition values did not
    /// change), as `apply.lua` calls.
    fn move_calls(&self, moves: &[Move]) -> Vec<(Vec<String>, Vec<Vec<u8>>)> {
        let meta = M::META;
        let mut calls = Vec::with_capacity(moves.len());
        for mv in moves {
            let plan = move_entry(
                meta,
                self.target,
                (&mv.member, &self.source, &mv.dest),
                &self.stored,
                &mv.raw,
            );
            calls.push(apply::call(&plan));
        }
        calls
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
                if !self.stored.is_empty() {
                    // A dry run that records: the plans a real run sends for this batch.
                    self.backend.record_many(&APPLY, &self.move_calls(&moves));
                }
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
            let calls = self.move_calls(&moves);
            let replies = self
                .backend
                .eval_many(Self::OP, meta.name, &APPLY, &calls)
                .await?;
            for (mv, reply) in moves.into_iter().zip(replies) {
                let outcome = reply
                    .map_err(|e| e.to_string())
                    .and_then(|v| apply::outcome(meta, Self::OP, v).map_err(|e| e.to_string()));
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
        // Legacy unpartitioned keys are popoto's: the cluster layout partitions every key.
        let backend = self.backend().await?;
        let layout = backend.layout();
        if layout != Layout::Popoto {
            return Err(Error::Layout {
                model: meta.name,
                op: "migrate_to_partitioned",
                layout,
            });
        }
        let source = match target {
            Target::Confidence => layout.confidence_key(meta, None, field, &[])?,
            Target::Sorted => layout.sorted_key(meta, None, field, &[]),
        };
        let migration: Migration<M, P> = Migration {
            backend,
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
