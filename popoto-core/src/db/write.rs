//! Writes of one instance: each a plan of checks and writes applied by one script call.

use tracing::Instrument;

use crate::error::{Error, Result};
use crate::feed::ChangeOp;
use crate::model::{hidden_key_of, key_segments, Key, Model, ModelMeta, Record};
use crate::plan::write::{Stored, Target};
use crate::plan::{self, movable_partition_fields, Instance, Outcome, Plan};
use crate::script::apply::{self, APPLY};
use crate::script::create::{self, CREATE};

use super::{Mode, Session, MAX_ATTEMPTS};

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
        if M::META.version.is_some() {
            value.set_version(1);
        }
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
            self.write(Mode::Create, &key, &record, hidden.as_deref(), fresh, None)
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
    ///
    /// A versioned model (`#[popoto(version)]`) is written only if the stored version is still
    /// the value's (an absent instance counts as version 0), and stores the next version; a
    /// stale copy is refused with [`Error::Conflict`]. The value itself is not changed: read the
    /// instance again, or use [`Session::update`], to save it a second time.
    pub async fn save<M: Model>(&self, value: &M) -> Result<()> {
        let mut record = self.record_of(value)?;
        let version = next_version(value, &mut record)?;
        let key = self.key_of_record::<M>(&record)?;
        self.write(Mode::Save, &key, &record, None, false, version)
            .instrument(self.span::<M>("save"))
            .await
            .map(|_| ())
    }

    /// Inserts or updates the instance stored at `key` (for models with a hidden auto key).
    pub async fn save_at<M: Model>(&self, key: &Key<M>, value: &M) -> Result<()> {
        self.check_key(key)?;
        let mut record = self.record_of(value)?;
        let version = next_version(value, &mut record)?;
        let hidden = hidden_key_of(key, &record)?;
        self.write(Mode::Save, key, &record, hidden, false, version)
            .instrument(self.span::<M>("save"))
            .await
            .map(|_| ())
    }

    /// Changes key fields: moves the hash (foreign fields included), every index entry and the
    /// confidence entries from `old`'s key to `new`'s, atomically. `old` must exist; `new`'s key
    /// must not. A versioned model checks `old`'s version, like [`Session::save`], and returns
    /// `new` with the next version.
    pub async fn move_key<M: Model>(&self, old: &M, mut new: M) -> Result<M> {
        let old_record = self.record_of(old)?;
        self.scope_value(&mut new)?;
        new.fill_auto_keys();
        new.set_version(old.version());
        let span = self.span::<M>("move_key");
        async {
            let mut new_record = new.to_record()?;
            let version = next_version(&new, &mut new_record)?;
            let old_key = self.key_of_record::<M>(&old_record)?;
            let new_key = self.key_of_record::<M>(&new_record)?;
            if old_key == new_key {
                self.write(Mode::Save, &new_key, &new_record, None, false, version)
                    .await?;
            } else {
                self.relocate(&old_key, &old_record, &new_key, &new_record, version)
                    .await?;
            }
            if let Some(v) = version {
                new.set_version(v + 1);
            }
            Ok(new)
        }
        .instrument(span)
        .await
    }

    /// Deletes an instance and all its index and confidence entries; `false` if it did not exist.
    /// A versioned model refuses to delete through a stale copy ([`Error::Conflict`]).
    pub async fn delete<M: Model>(&self, value: &M) -> Result<bool> {
        let record = self.record_of(value)?;
        let key = self.key_of_record::<M>(&record)?;
        let version = M::META.version.map(|_| value.version());
        self.delete_at(&key, Some(&record), version).await
    }

    /// Deletes the instance at `key` (whatever its version); `false` if it did not exist.
    pub async fn delete_key<M: Model>(&self, key: &Key<M>) -> Result<bool> {
        self.delete_at(key, None, None).await
    }

    /// Deletes the instance at `key`; with `assumed`, first assuming its stored partition
    /// values are the given record's (one round trip when they are); with `version`, only if
    /// the stored version is still that one.
    async fn delete_at<M: Model>(
        &self,
        key: &Key<M>,
        assumed: Option<&Record>,
        version: Option<u64>,
    ) -> Result<bool> {
        self.check_key(key)?;
        let span = self.span::<M>("delete");
        async {
            let redis_key = key.redis_key_in(self.layout());
            for attempt in 1..=MAX_ATTEMPTS {
                let stored = match assumed {
                    Some(record) if attempt == 1 => Stored::assumed(M::META, record),
                    _ => self.read_stored::<M>(&redis_key).await?,
                };
                let (mut plan, record) = self.delete_plan(key, &stored, version)?;
                self.add_feed(&mut plan, ChangeOp::Delete, key, None, None)?;
                match self.apply::<M>("delete", &plan).await? {
                    Outcome::Applied(n) => return Ok(n > 0),
                    Outcome::Changed if attempt < MAX_ATTEMPTS => continue,
                    other => {
                        return Err(
                            self.outcome_error::<M>(other, &record, &redis_key, attempt, version)
                        )
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

    /// The plan deleting the instance at `key` given its stored partition values (and, with
    /// `version`, only if the stored version is that one).
    pub(super) fn delete_plan<M: Model>(
        &self,
        key: &Key<M>,
        stored: &Stored,
        version: Option<u64>,
    ) -> Result<(Plan, Record)> {
        let redis_key = key.redis_key_in(self.layout());
        plan::write::delete(
            &Target::of::<M>(self.layout(), &redis_key),
            key.segments(),
            stored,
            version,
        )
    }

    /// Reads the stored bytes of the movable partition fields (no command if there are none).
    pub(super) async fn read_stored<M: Model>(&self, redis_key: &str) -> Result<Stored> {
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

    /// Builds the plan of a create or save, given the stored partition values; with `version`,
    /// the stored version must be that one.
    pub(super) fn write_plan<M: Model>(
        &self,
        mode: Mode,
        key: &Key<M>,
        record: &Record,
        hidden: Option<&str>,
        stored: &Stored,
        version: Option<u64>,
    ) -> Result<Plan> {
        let redis_key = key.redis_key_in(self.layout());
        let target = Target::of::<M>(self.layout(), &redis_key);
        plan::write::save(
            &target,
            mode == Mode::Create,
            record,
            hidden,
            stored,
            version,
        )
    }

    /// Writes one instance (a create, or a save checked against the stored `version`).
    pub(super) async fn write<M: Model>(
        &self,
        mode: Mode,
        key: &Key<M>,
        record: &Record,
        hidden: Option<&str>,
        fresh: bool,
        version: Option<u64>,
    ) -> Result<i64> {
        let redis_key = key.redis_key_in(self.layout());
        for attempt in 1..=MAX_ATTEMPTS {
            // Models with a change feed write through apply.lua, which appends the event.
            if mode == Mode::Create && !M::CHANGE_FEED {
                let inst = Instance {
                    layout: self.layout(),
                    meta: M::META,
                    key: redis_key.clone(),
                    record,
                    hidden_key: hidden,
                };
                let (script, cmd, commands) = create::command(&inst, fresh)?;
                tracing::Span::current().record("commands", commands);
                let reply = self
                    .backend()
                    .await?
                    .create_grouped(
                        "create",
                        M::META.name,
                        (&CREATE, create::batch),
                        script,
                        cmd,
                    )
                    .await?;
                return match apply::outcome(M::META, "create", reply)? {
                    Outcome::Applied(n) => Ok(n),
                    other => Err(self.outcome_error::<M>(other, record, &redis_key, attempt, None)),
                };
            }
            // An update first assumes its partitions did not move (one round trip); if they did,
            // the plan is refused and the next attempt reads them.
            let stored = match mode {
                Mode::Create => Stored::none(M::META),
                Mode::Save if attempt == 1 => Stored::assumed(M::META, record),
                Mode::Save => self.read_stored::<M>(&redis_key).await?,
            };
            let mut plan = self.write_plan(mode, key, record, hidden, &stored, version)?;
            self.add_feed(&mut plan, mode.feed_op(), key, Some(record), None)?;
            match self.apply::<M>(mode.op(), &plan).await? {
                Outcome::Applied(n) => return Ok(n),
                Outcome::Changed if attempt < MAX_ATTEMPTS => continue,
                other => {
                    return Err(self.outcome_error::<M>(other, record, &redis_key, attempt, version))
                }
            }
        }
        Err(Error::Contention {
            model: M::META.name,
            key: redis_key,
            attempts: MAX_ATTEMPTS,
        })
    }

    pub(super) async fn apply<M: Model>(&self, op: &'static str, plan: &Plan) -> Result<Outcome> {
        tracing::Span::current().record("commands", plan.command_count());
        let reply = self
            .backend()
            .await?
            .eval(op, M::META.name, &APPLY, plan.keys(), &apply::args(plan))
            .await?;
        apply::outcome(M::META, op, reply)
    }

    /// The error of a refused write; `version` is the version the write expected.
    pub(super) fn outcome_error<M: Model>(
        &self,
        outcome: Outcome,
        record: &Record,
        key: &str,
        attempts: u32,
        version: Option<u64>,
    ) -> Error {
        let meta: &'static ModelMeta = M::META;
        match outcome {
            Outcome::Conflict {
                key,
                found: Some(found),
            } => Error::Conflict {
                model: meta.name,
                key,
                expected: version.unwrap_or_default(),
                found,
            },
            Outcome::Conflict { key, found: None } => Error::Decode {
                model: meta.name,
                key,
                field: meta.version.map_or("?", |f| meta.fields[f].name).to_owned(),
                reason: "the stored version is not a msgpack unsigned int".into(),
            },
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

/// For a versioned model: the version `value` was read at (checked by the write) after writing
/// the next one into `record`; `None` for a model without a version field.
pub(super) fn next_version<M: Model>(value: &M, record: &mut Record) -> Result<Option<u64>> {
    let Some(f) = M::META.version else {
        return Ok(None);
    };
    let expected = value.version();
    let next = expected
        .checked_add(1)
        .ok_or_else(|| crate::model::invalid_value(M::META, f, "the version cannot grow"))?;
    let mut bytes = Vec::with_capacity(9);
    crate::codec::Value::encode(&next, &mut bytes)
        .map_err(|e| crate::model::invalid_value(M::META, f, e))?;
    if let Some(slot) = record.values.get_mut(f) {
        *slot = bytes;
    }
    Ok(Some(expected))
}
