//! Writes of one instance: each a plan of checks and writes applied by one script call.

use std::collections::HashMap;

use tracing::Instrument;

use crate::backend::{APPLY, CREATE};
use crate::error::{Error, Result};
use crate::feed::ChangeOp;
use crate::model::{hidden_key_of, key_segments, FieldKind, Key, Model, ModelMeta, Record};
use crate::plan::{movable_partition_fields, Check, Instance, Outcome, Plan, Write};

use super::{Mode, Session, MAX_ATTEMPTS};

/// The outcome of reading an instance's movable partition values before a write.
pub(super) struct Stored {
    /// Raw bytes of each movable partition field (`None`: absent).
    pub(super) raw: Vec<(usize, Option<Vec<u8>>)>,
    /// Not read but assumed equal to the value being written (the common update that moves
    /// nothing): the plan then checks the assumption instead of moving entries.
    pub(super) assumed: bool,
}

impl Stored {
    /// Nothing stored to move (no movable field, or a create).
    pub(super) fn none(meta: &ModelMeta) -> Stored {
        Stored {
            raw: movable_partition_fields(meta)
                .into_iter()
                .map(|f| (f, None))
                .collect(),
            assumed: false,
        }
    }

    /// The stored partition values assumed equal to `record`'s (checked by the plan).
    pub(super) fn assumed(meta: &ModelMeta, record: &Record) -> Stored {
        Stored {
            raw: movable_partition_fields(meta)
                .into_iter()
                .map(|f| (f, record.values.get(f).cloned()))
                .collect(),
            assumed: true,
        }
    }
}

impl Session {
    /// Creates an instance: fills empty auto keys (and the tenant field from a tenant scope),
    /// refuses an existing key ([`Error::AlreadyExists`]) or a taken unique value
    /// ([`Error::UniqueViolation`]), and writes the hash and all its index entries atomically.
    pub async fn create<M: Model>(&self, value: M) -> Result<M> {
        self.create_keyed(value).await.map(|(_, v)| v)
    }

    /// [`Session::create`], also returning the key (the only handle on a model whose key is
    /// Popoto's hidden `_auto_key`).
    pub async fn create_keyed<M: Model>(&self, mut value: M) -> Result<(Key<M>, M)> {
        self.scope_value(&mut value)?;
        let filled = value.fill_auto_keys();
        value.fill_confidence_initials();
        let span = self.span::<M>("create");
        async {
            let record = value.to_record()?;
            let hidden = M::META
                .has_hidden_key()
                .then(crate::__private::new_auto_key);
            let segments = key_segments::<M>(&record, hidden.as_deref());
            let key = Key::from_segments(segments);
            // A key holding a uuid4 generated just now cannot exist yet.
            let fresh = filled || hidden.is_some();
            self.write(Mode::Create, &key, &record, hidden.as_deref(), fresh)
                .await?;
            Ok((key, value))
        }
        .instrument(span)
        .await
    }

    /// Inserts or updates an instance (all its fields and index entries, atomically), moving
    /// sorted-set members and confidence entries when a non-key partition value changed.
    ///
    /// Auto keys must be set (use [`Session::create`] for new instances with generated keys).
    pub async fn save<M: Model>(&self, value: &M) -> Result<()> {
        let record = self.record_of(value)?;
        let key = self.key_of_record::<M>(&record)?;
        self.write(Mode::Save, &key, &record, None, false)
            .instrument(self.span::<M>("save"))
            .await
            .map(|_| ())
    }

    /// Inserts or updates the instance stored at `key` (for models with a hidden auto key).
    pub async fn save_at<M: Model>(&self, key: &Key<M>, value: &M) -> Result<()> {
        self.check_key(key)?;
        let record = self.record_of(value)?;
        let hidden = hidden_key_of(key, &record)?;
        self.write(Mode::Save, key, &record, hidden, false)
            .instrument(self.span::<M>("save"))
            .await
            .map(|_| ())
    }

    /// Changes key fields: moves the hash (foreign fields included), every index entry and the
    /// confidence entries from `old`'s key to `new`'s, atomically. `old` must exist; `new`'s key
    /// must not.
    pub async fn move_key<M: Model>(&self, old: &M, mut new: M) -> Result<M> {
        let old_record = self.record_of(old)?;
        self.scope_value(&mut new)?;
        new.fill_auto_keys();
        let span = self.span::<M>("move_key");
        async {
            let new_record = new.to_record()?;
            let old_key = self.key_of_record::<M>(&old_record)?;
            let new_key = self.key_of_record::<M>(&new_record)?;
            if old_key == new_key {
                self.write(Mode::Save, &new_key, &new_record, None, false)
                    .await?;
                return Ok(new);
            }
            self.relocate(&old_key, &old_record, &new_key, &new_record)
                .await?;
            Ok(new)
        }
        .instrument(span)
        .await
    }

    /// Deletes an instance and all its index and confidence entries; `false` if it did not exist.
    pub async fn delete<M: Model>(&self, value: &M) -> Result<bool> {
        let record = self.record_of(value)?;
        let key = self.key_of_record::<M>(&record)?;
        self.delete_at(&key, Some(&record)).await
    }

    /// Deletes the instance at `key`; `false` if it did not exist.
    pub async fn delete_key<M: Model>(&self, key: &Key<M>) -> Result<bool> {
        self.delete_at(key, None).await
    }

    /// Deletes the instance at `key`; with `assumed`, first assuming its stored partition
    /// values are the given record's (one round trip when they are).
    async fn delete_at<M: Model>(&self, key: &Key<M>, assumed: Option<&Record>) -> Result<bool> {
        self.check_key(key)?;
        let span = self.span::<M>("delete");
        async {
            let redis_key = key.redis_key();
            for attempt in 1..=MAX_ATTEMPTS {
                let stored = match assumed {
                    Some(record) if attempt == 1 => Stored::assumed(M::META, record),
                    _ => self.read_stored::<M>(&redis_key).await?,
                };
                let (mut plan, record) = Self::delete_plan(key, &stored)?;
                self.add_feed(&mut plan, ChangeOp::Delete, key, None, None)?;
                match self.apply::<M>("delete", &plan).await? {
                    Outcome::Applied(n) => return Ok(n > 0),
                    Outcome::Changed if attempt < MAX_ATTEMPTS => continue,
                    other => {
                        return Err(self.outcome_error::<M>(other, &record, &redis_key, attempt))
                    }
                }
            }
            Err(Error::Contention {
                model: M::META.name,
                key: redis_key,
                attempts: MAX_ATTEMPTS,
            })
        }
        .instrument(span)
        .await
    }

    /// The plan deleting the instance at `key` given its stored partition values.
    pub(super) fn delete_plan<M: Model>(key: &Key<M>, stored: &Stored) -> Result<(Plan, Record)> {
        let meta = M::META;
        let redis_key = key.redis_key();
        let mut record = Record {
            segments: vec![None; meta.fields.len()],
            ..Record::default()
        };
        for (pos, &i) in meta.key_fields.iter().enumerate() {
            record.segments[i] = key.segments().get(pos).cloned();
        }
        let hidden = meta
            .has_hidden_key()
            .then(|| key.segments().first().map(String::as_str))
            .flatten();
        let mut plan = Plan::default();
        let k = plan.key(redis_key.clone());
        plan.writes.push(Write::Del { key: k });
        for (f, raw) in &stored.raw {
            plan.checks.push(if stored.assumed {
                Check::FieldOrNew {
                    key: k,
                    field: meta.fields[*f].name.to_owned(),
                    value: raw.clone().unwrap_or_default(),
                }
            } else {
                Check::Field {
                    key: k,
                    field: meta.fields[*f].name.to_owned(),
                    value: raw.clone(),
                }
            });
            record.segments[*f] = match raw {
                Some(raw) => Some(M::segment_from_stored(&redis_key, *f, raw)?),
                None => Some("None".to_owned()),
            };
        }
        let inst = Instance {
            meta,
            key: redis_key,
            record: &record,
            hidden_key: hidden,
        };
        inst.remove_indexes(&mut plan, true)?;
        plan.add_type_checks();
        Ok((plan, record))
    }

    /// Reads the stored bytes of the movable partition fields (no command if there are none).
    async fn read_stored<M: Model>(&self, redis_key: &str) -> Result<Stored> {
        let movable = movable_partition_fields(M::META);
        if movable.is_empty() {
            return Ok(Stored {
                raw: Vec::new(),
                assumed: false,
            });
        }
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(redis_key);
        for &f in &movable {
            cmd.arg(M::META.fields[f].name);
        }
        let raw: Vec<Option<Vec<u8>>> = self
            .backend()
            .await?
            .query("read partitions", M::META.name, &cmd)
            .await?;
        Ok(Stored {
            raw: movable.into_iter().zip(raw).collect(),
            assumed: false,
        })
    }

    /// Builds the plan of a create or save, given the stored partition values.
    pub(super) fn write_plan<M: Model>(
        mode: Mode,
        key: &Key<M>,
        record: &Record,
        hidden: Option<&str>,
        stored: &Stored,
    ) -> Result<Plan> {
        let meta = M::META;
        let redis_key = key.redis_key();
        let inst = Instance {
            meta,
            key: redis_key.clone(),
            record,
            hidden_key: hidden,
        };
        let mut plan = Plan::default();
        let k = plan.key(redis_key.clone());
        if mode == Mode::Create {
            plan.checks.push(Check::Absent(k));
        }
        inst.unique_checks(&mut plan, None);
        // Moves out of partitions whose (non-key) partition value changed.
        let mut old_segments: HashMap<usize, String> = HashMap::new();
        for (f, raw) in &stored.raw {
            if stored.assumed {
                plan.checks.push(Check::FieldOrNew {
                    key: k,
                    field: meta.fields[*f].name.to_owned(),
                    value: raw.clone().unwrap_or_default(),
                });
                continue;
            }
            plan.checks.push(Check::Field {
                key: k,
                field: meta.fields[*f].name.to_owned(),
                value: raw.clone(),
            });
            if let Some(raw) = raw {
                old_segments.insert(*f, M::segment_from_stored(&redis_key, *f, raw)?);
            }
        }
        let mut moves = Vec::new();
        if !old_segments.is_empty() {
            let mut old = record.clone();
            for (f, s) in &old_segments {
                old.segments[*f] = Some(s.clone());
            }
            let old_inst = Instance {
                meta,
                key: redis_key.clone(),
                record: &old,
                hidden_key: hidden,
            };
            for (i, f) in meta.fields.iter().enumerate() {
                if !f.partition_by.iter().any(|p| old_segments.contains_key(p)) {
                    continue;
                }
                match f.kind {
                    FieldKind::Sorted => {
                        let (from, to) = (old_inst.sorted_key(i), inst.sorted_key(i));
                        if from != to {
                            let z = plan.key(from);
                            moves.push(Write::ZRem {
                                key: z,
                                member: redis_key.clone(),
                            });
                        }
                    }
                    FieldKind::Confidence { .. } => {
                        let (from, to) = (old_inst.confidence_key(i)?, inst.confidence_key(i)?);
                        if from != to {
                            let (from, to) = (plan.key(from), plan.key(to));
                            moves.push(Write::HMove {
                                from,
                                from_field: redis_key.clone(),
                                to,
                                to_field: redis_key.clone(),
                            });
                        }
                    }
                    _ => {}
                }
            }
        }
        plan.writes.push(Write::HSet {
            key: k,
            pairs: inst.hash_pairs(),
        });
        plan.writes.extend(moves);
        inst.add_indexes(&mut plan)?;
        plan.add_type_checks();
        Ok(plan)
    }

    pub(super) async fn write<M: Model>(
        &self,
        mode: Mode,
        key: &Key<M>,
        record: &Record,
        hidden: Option<&str>,
        fresh: bool,
    ) -> Result<i64> {
        let redis_key = key.redis_key();
        for attempt in 1..=MAX_ATTEMPTS {
            // Models with a change feed write through apply.lua, which appends the event.
            if mode == Mode::Create && !M::CHANGE_FEED {
                let inst = Instance {
                    meta: M::META,
                    key: redis_key.clone(),
                    record,
                    hidden_key: hidden,
                };
                let (cmd, commands) = inst.create_cmd(&CREATE, fresh)?;
                tracing::Span::current().record("commands", commands);
                let reply = self
                    .backend()
                    .await?
                    .create_grouped("create", M::META.name, cmd)
                    .await?;
                return match Plan::outcome(M::META, "create", reply)? {
                    Outcome::Applied(n) => Ok(n),
                    other => Err(self.outcome_error::<M>(other, record, &redis_key, attempt)),
                };
            }
            // An update first assumes its partitions did not move (one round trip); if they did,
            // the plan is refused and the next attempt reads them.
            let stored = match mode {
                Mode::Create => Stored::none(M::META),
                Mode::Save if attempt == 1 => Stored::assumed(M::META, record),
                Mode::Save => self.read_stored::<M>(&redis_key).await?,
            };
            let mut plan = Self::write_plan(mode, key, record, hidden, &stored)?;
            self.add_feed(&mut plan, mode.feed_op(), key, Some(record), None)?;
            match self.apply::<M>(mode.op(), &plan).await? {
                Outcome::Applied(n) => return Ok(n),
                Outcome::Changed if attempt < MAX_ATTEMPTS => continue,
                other => return Err(self.outcome_error::<M>(other, record, &redis_key, attempt)),
            }
        }
        Err(Error::Contention {
            model: M::META.name,
            key: redis_key,
            attempts: MAX_ATTEMPTS,
        })
    }

    async fn relocate<M: Model>(
        &self,
        old_key: &Key<M>,
        old_record: &Record,
        new_key: &Key<M>,
        new_record: &Record,
    ) -> Result<()> {
        let meta = M::META;
        let (old_redis, new_redis) = (old_key.redis_key(), new_key.redis_key());
        for attempt in 1..=MAX_ATTEMPTS {
            let stored = self.read_stored::<M>(&old_redis).await?;
            let mut old = old_record.clone();
            let mut plan = Plan::default();
            let ko = plan.key(old_redis.clone());
            let kn = plan.key(new_redis.clone());
            plan.checks.push(Check::Present(ko));
            plan.checks.push(Check::Absent(kn));
            for (f, raw) in &stored.raw {
                plan.checks.push(Check::Field {
                    key: ko,
                    field: meta.fields[*f].name.to_owned(),
                    value: raw.clone(),
                });
                if let Some(raw) = raw {
                    old.segments[*f] = Some(M::segment_from_stored(&old_redis, *f, raw)?);
                }
            }
            let old_inst = Instance {
                meta,
                key: old_redis.clone(),
                record: &old,
                hidden_key: None,
            };
            let new_inst = Instance {
                meta,
                key: new_redis.clone(),
                record: new_record,
                hidden_key: None,
            };
            new_inst.unique_checks(&mut plan, Some(&old_redis));
            plan.writes.push(Write::Rename { from: ko, to: kn });
            plan.writes.push(Write::HSet {
                key: kn,
                pairs: new_inst.hash_pairs(),
            });
            old_inst.remove_indexes(&mut plan, false)?;
            for (i, f) in meta.fields.iter().enumerate() {
                if let FieldKind::Confidence { .. } = f.kind {
                    let from = plan.key(old_inst.confidence_key(i)?);
                    let to = plan.key(new_inst.confidence_key(i)?);
                    plan.writes.push(Write::HMove {
                        from,
                        from_field: old_redis.clone(),
                        to,
                        to_field: new_redis.clone(),
                    });
                }
            }
            new_inst.add_indexes(&mut plan)?;
            plan.add_type_checks();
            self.add_feed(
                &mut plan,
                ChangeOp::Move,
                new_key,
                Some(new_record),
                Some(&old_redis),
            )?;
            match self.apply::<M>("move_key", &plan).await? {
                Outcome::Applied(_) => return Ok(()),
                Outcome::Changed if attempt < MAX_ATTEMPTS => continue,
                Outcome::Exists(k) => {
                    return Err(Error::AlreadyExists {
                        model: meta.name,
                        key: k,
                    })
                }
                other => {
                    return Err(self.outcome_error::<M>(other, new_record, &new_redis, attempt))
                }
            }
        }
        Err(Error::Contention {
            model: meta.name,
            key: old_redis,
            attempts: MAX_ATTEMPTS,
        })
    }

    async fn apply<M: Model>(&self, op: &'static str, plan: &Plan) -> Result<Outcome> {
        tracing::Span::current().record("commands", plan.command_count());
        let reply = self
            .backend()
            .await?
            .eval(op, M::META.name, &APPLY, &plan.keys, &plan.args())
            .await?;
        Plan::outcome(M::META, op, reply)
    }

    pub(super) fn outcome_error<M: Model>(
        &self,
        outcome: Outcome,
        record: &Record,
        key: &str,
        attempts: u32,
    ) -> Error {
        let meta: &'static ModelMeta = M::META;
        match outcome {
            Outcome::Exists(k) => Error::AlreadyExists {
                model: meta.name,
                key: k,
            },
            Outcome::Missing(k) => Error::NotFound {
                model: meta.name,
                key: k,
            },
            Outcome::Unique { field, existing } => Error::UniqueViolation {
                model: meta.name,
                field: meta.fields.get(field).map_or("?", |f| f.name),
                value: record
                    .segments
                    .get(field)
                    .cloned()
                    .flatten()
                    .unwrap_or_default(),
                existing: self.visible_key::<M>(existing),
            },
            Outcome::WrongType { key, found } => Error::WrongType {
                model: meta.name,
                key,
                found,
            },
            Outcome::Changed => Error::Contention {
                model: meta.name,
                key: key.to_owned(),
                attempts,
            },
            Outcome::Applied(_) => Error::Protocol {
                op: "write",
                model: meta.name,
                detail: "applied".into(),
            },
        }
    }
}
