//! Bulk writes: many instances in pipelined script calls, each written all or nothing.

use tracing::Instrument;

use crate::bulk;
use crate::error::{BulkError, Error, Result};
use crate::feed::ChangeOp;
use crate::model::{key_segments, Key, Model, Record};
use crate::plan::write::Stored;
use crate::plan::{movable_partition_fields, Outcome};
use crate::script::apply::{self, APPLY};

use super::write::next_version;
use super::{Mode, Session};

impl Session {
    /// Deletes many instances in pipelined batches, each atomically; returns how many existed.
    pub async fn delete_many<M: Model>(&self, keys: &[Key<M>]) -> Result<u64> {
        for k in keys {
            self.check_key(k)?;
        }
        let span = self.span::<M>("delete_many");
        async {
            let meta = M::META;
            let movable = movable_partition_fields(meta);
            let backend = self.backend().await?;
            let mut deleted = 0;
            for chunk in keys.chunks(1000) {
                let stored: Vec<Stored> = if movable.is_empty() {
                    chunk
                        .iter()
                        .map(|_| Stored {
                            raw: Vec::new(),
                            assumed: false,
                        })
                        .collect()
                } else {
                    let mut pipe = redis::pipe();
                    for k in chunk {
                        pipe.cmd("HMGET").arg(k.redis_key_in(self.layout())).arg(
                            movable
                                .iter()
                                .map(|&f| meta.fields[f].name)
                                .collect::<Vec<_>>(),
                        );
                    }
                    let raw: Vec<Vec<Option<Vec<u8>>>> =
                        backend.pipeline("delete_many", meta.name, &pipe).await?;
                    raw.into_iter()
                        .map(|r| Stored {
                            raw: movable.iter().copied().zip(r).collect(),
                            assumed: false,
                        })
                        .collect()
                };
                let mut calls = Vec::with_capacity(chunk.len());
                let mut plans = Vec::with_capacity(chunk.len());
                for (k, st) in chunk.iter().zip(&stored) {
                    let (mut plan, _) = self.delete_plan(k, st, None)?;
                    self.add_feed(&mut plan, ChangeOp::Delete, k, None, None)?;
                    calls.push(apply::call(&plan));
                    plans.push(plan);
                }
                // A dry run: the calls a real run sends, and what they would remove.
                if let Some(log) = backend.recorder() {
                    backend.record_many(&APPLY, &calls);
                    for plan in &plans {
                        crate::record::note_removals(log, &backend.url(), plan);
                    }
                    deleted += chunk.len() as u64;
                    continue;
                }
                let replies = backend
                    .eval_many("delete_many", meta.name, &APPLY, &calls)
                    .await?;
                for (k, reply) in chunk.iter().zip(replies) {
                    let reply = reply.map_err(|source| Error::Redis {
                        op: "delete_many",
                        model: meta.name,
                        source,
                    })?;
                    match apply::outcome(meta, "delete_many", reply)? {
                        Outcome::Applied(n) => deleted += u64::from(n > 0),
                        // Changed since the pipelined read: redo this one alone.
                        Outcome::Changed => deleted += u64::from(self.delete_key(k).await?),
                        other => {
                            let (_, record) = self.delete_plan(
                                k,
                                &Stored {
                                    raw: Vec::new(),
                                    assumed: false,
                                },
                                None,
                            )?;
                            return Err(self.outcome_error::<M>(
                                other,
                                &record,
                                &k.redis_key_in(self.layout()),
                                1,
                                None,
                            ));
                        }
                    }
                }
            }
            Ok(deleted)
        }
        .instrument(span)
        .await
    }

    /// Creates many instances in pipelined batches; each one is written atomically on its own.
    ///
    /// A record that fails (invalid, taken unique value, existing key) is refused alone; the
    /// others are still written, and [`BulkError`] gives back every record, written or not
    /// (`?` turns it into [`Error::Bulk`]).
    pub async fn create_many<M: Model>(
        &self,
        values: Vec<M>,
    ) -> std::result::Result<Vec<M>, BulkError<M>> {
        self.write_many(Mode::Create, values)
            .instrument(self.span::<M>("create_many"))
            .await
    }

    /// Saves (inserts or updates) many instances in pipelined batches, each atomically.
    ///
    /// Models with non-key partition fields read their stored partition values first (one
    /// pipelined round trip per batch). Failures are reported as for [`Session::create_many`].
    /// A versioned model checks each value's version as [`Session::save`] does (a stale one is
    /// refused alone with [`Error::Conflict`]); the values written come back with their new
    /// version.
    pub async fn save_many<M: Model>(
        &self,
        values: Vec<M>,
    ) -> std::result::Result<Vec<M>, BulkError<M>> {
        self.write_many(Mode::Save, values)
            .instrument(self.span::<M>("save_many"))
            .await
    }

    async fn write_many<M: Model>(
        &self,
        mode: Mode,
        mut values: Vec<M>,
    ) -> std::result::Result<Vec<M>, BulkError<M>> {
        let outcomes = self.write_rows(mode, &mut values).await;
        if mode == Mode::Save && M::META.version.is_some() {
            for (v, outcome) in values.iter_mut().zip(&outcomes) {
                if outcome.is_none() {
                    v.set_version(v.version().saturating_add(1));
                }
            }
        }
        if outcomes.iter().all(Option::is_none) {
            return Ok(values);
        }
        let mut err = BulkError {
            model: M::META.name,
            written: Vec::new(),
            failed: Vec::new(),
        };
        for (i, (value, outcome)) in values.into_iter().zip(outcomes).enumerate() {
            match outcome {
                None => err.written.push((i, value)),
                Some(e) => err.failed.push((i, value, e)),
            }
        }
        Err(err)
    }

    /// Writes every valid record of `values` (each atomically; an invalid one is refused alone)
    /// and returns, per record, why it was not written (`None`: written).
    async fn write_rows<M: Model>(&self, mode: Mode, values: &mut [M]) -> Vec<Option<Error>> {
        let meta = M::META;
        let mut outcomes: Vec<Option<Error>> = Vec::with_capacity(values.len());
        // Index in `values`, key, record and hidden key of each valid record.
        let mut prepared = Vec::with_capacity(values.len());
        // Whether every key holds a uuid4 generated here: such creates need no existence check.
        let mut fresh = mode == Mode::Create;
        for (i, v) in values.iter_mut().enumerate() {
            match self.prepare_row(mode, v, &mut fresh) {
                Ok(row) => {
                    prepared.push((i, row));
                    outcomes.push(None);
                }
                Err(e) => outcomes.push(Some(e)),
            }
        }
        let replies = match self.send_rows(mode, &prepared, fresh).await {
            Ok(r) => r,
            Err(e) => {
                // The call failed as a whole: every record sent has an unknown outcome.
                for (i, ..) in &prepared {
                    outcomes[*i] = Some(e.clone());
                }
                return outcomes;
            }
        };
        for ((i, row), reply) in prepared.iter().zip(replies) {
            let Prepared {
                key,
                record,
                hidden,
                version,
            } = row;
            let outcome = reply
                .map_err(|source| Error::Redis {
                    op: mode.op(),
                    model: meta.name,
                    source,
                })
                .and_then(|v| apply::outcome(meta, mode.op(), v));
            outcomes[*i] = match outcome {
                Ok(Outcome::Applied(_)) => None,
                // Changed concurrently since the pipelined read: redo this one alone.
                Ok(Outcome::Changed) => self
                    .write(mode, key, record, hidden.as_deref(), false, *version)
                    .await
                    .err(),
                Ok(other) => Some(self.outcome_error::<M>(
                    other,
                    record,
                    &key.redis_key_in(self.layout()),
                    1,
                    *version,
                )),
                Err(e) => Some(e),
            };
        }
        outcomes
    }

    /// Checks one record of a bulk write through this scope and renders it.
    fn prepare_row<M: Model>(
        &self,
        mode: Mode,
        v: &mut M,
        fresh: &mut bool,
    ) -> Result<Prepared<M>> {
        let meta = M::META;
        self.scope_value(v)?;
        if mode == Mode::Create {
            *fresh &= v.fill_auto_keys() || meta.has_hidden_key();
            v.fill_confidence_initials();
            if meta.version.is_some() {
                v.set_version(1);
            }
        }
        let mut record = v.to_record()?;
        let version = match mode {
            Mode::Save => next_version(v, &mut record)?,
            Mode::Create => None,
        };
        let hidden =
            (meta.has_hidden_key() && mode == Mode::Create).then(crate::__private::new_auto_key);
        let key: Key<M> = match &hidden {
            Some(h) => Key::from_segments(key_segments::<M>(&record, Some(h))),
            None => self.key_of_record::<M>(&record)?,
        };
        Ok(Prepared {
            key,
            record,
            hidden,
            version,
        })
    }

    /// Sends the prepared records of a bulk write; one reply per record, in order.
    async fn send_rows<M: Model>(
        &self,
        mode: Mode,
        prepared: &[(usize, Prepared<M>)],
        fresh: bool,
    ) -> Result<Vec<redis::RedisResult<redis::Value>>> {
        let meta = M::META;
        tracing::Span::current().record("commands", prepared.len());
        if prepared.is_empty() {
            return Ok(Vec::new());
        }
        let backend = self.backend().await?;
        let movable = movable_partition_fields(meta);
        // Saves of a versioned model check each version, and expiring instances set their
        // expiry: one plan each.
        let checked = mode == Mode::Save && meta.version.is_some();
        if movable.is_empty() && !checked && !meta.expires() && !M::CHANGE_FEED {
            // Instances whose partitions are all in their keys: many per script call.
            let rows: Vec<bulk::Row<'_>> = prepared
                .iter()
                .map(|(_, p)| bulk::Row {
                    key: p.key.redis_key_in(self.layout()),
                    record: &p.record,
                    hidden: p.hidden.as_deref(),
                })
                .collect();
            let write = match mode {
                Mode::Create if fresh => bulk::Write::CreateFresh,
                Mode::Create => bulk::Write::Create,
                Mode::Save => bulk::Write::Save,
            };
            return bulk::insert_many(&backend, mode.op(), meta, write, &rows).await;
        }
        // Saves assume their partitions did not move; a refused one is redone alone.
        let mut calls = Vec::with_capacity(prepared.len());
        for (_, p) in prepared {
            let stored = match mode {
                Mode::Create => Stored::none(meta),
                Mode::Save => Stored::assumed(meta, &p.record),
            };
            let mut plan = self.write_plan(
                mode,
                &p.key,
                &p.record,
                p.hidden.as_deref(),
                &stored,
                p.version,
            )?;
            self.add_feed(&mut plan, mode.feed_op(), &p.key, Some(&p.record), None)?;
            calls.push(apply::call(&plan));
        }
        backend
            .eval_many(mode.op(), meta.name, &APPLY, &calls)
            .await
    }
}

/// One record of a bulk write, checked and rendered.
struct Prepared<M> {
    key: Key<M>,
    record: Record,
    /// The hidden `_auto_key` generated for a create.
    hidden: Option<String>,
    /// For a save of a versioned model: the version the value was read at.
    version: Option<u64>,
}
