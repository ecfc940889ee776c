//! Read-modify-write of one instance: [`Session::update`].

use tracing::Instrument;

use crate::error::{Error, Result};
use crate::model::{hidden_key_of, Key, Model};
use crate::plan::write::{guard_update, Stored};
use crate::plan::{movable_partition_fields, Outcome};
use crate::verify::Guard;

use super::write::next_version;
use super::{Mode, Session};

/// How often `update` reads and writes again when the instance changed in between.
const UPDATE_ATTEMPTS: u32 = 32;

/// A random pause before attempt `attempt` (from 2) of a refused update, up to 2^attempt ms
/// (at most 64 ms): writers that keep refusing each other in lockstep fall out of step.
fn backoff(attempt: u32) -> std::time::Duration {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(attempt);
    let cap = 1u64 << attempt.min(6);
    std::time::Duration::from_micros(h.finish() % (cap * 1000))
}

impl Session {
    /// Reads the instance at `key`, applies `change` to it and writes it back, refusing the
    /// write if the instance changed in between (then it waits a random moment, reads it again
    /// and calls `change` again, up to 32 times, before [`Error::Contention`]); `None` if there
    /// is no instance.
    ///
    /// The write is one script call that checks the instance is still what was read: its
    /// version for a versioned model (`#[popoto(version)]`, which gets the next one), else
    /// every stored field and byte. So no concurrent write is lost, and `change` may run more
    /// than once: keep it free of side effects. It may not change key fields (use
    /// [`Session::move_key`]): that is [`Error::InvalidValue`], nothing written.
    pub async fn update<M, F>(&self, key: &Key<M>, mut change: F) -> Result<Option<M>>
    where
        M: Model,
        F: FnMut(&mut M) + Send,
    {
        self.check_key(key)?;
        let span = self.span::<M>("update");
        let redis_key = key.redis_key_in(self.layout());
        async {
            let meta = M::META;
            let backend = self.backend().await?;
            for attempt in 1..=UPDATE_ATTEMPTS {
                if attempt > 1 {
                    tokio::time::sleep(backoff(attempt)).await;
                }
                let fields: Vec<(Vec<u8>, Vec<u8>)> = backend
                    .query("update", meta.name, redis::cmd("HGETALL").arg(&redis_key))
                    .await?;
                if fields.is_empty() {
                    return Ok(None);
                }
                let mut value = M::from_hash(&redis_key, fields.clone())?;
                if Guard::of::<M>(self.layout(), self.scope())
                    .value(&value)
                    .is_err()
                {
                    return Err(self.not_in_scope::<M>(redis_key));
                }
                let read_at = value.version();
                change(&mut value);
                value.set_version(read_at);
                let mut record = self.record_of(&value)?;
                let hidden = hidden_key_of(key, &record)?;
                let version = next_version(&value, &mut record)?;
                // The stored partition values are the ones just read: moves are exact.
                let raw = |f: usize| {
                    let name = meta.fields[f].name.as_bytes();
                    fields
                        .iter()
                        .find(|(n, _)| n == name)
                        .map(|(_, v)| v.clone())
                };
                let stored = Stored {
                    raw: movable_partition_fields(meta)
                        .into_iter()
                        .map(|f| (f, raw(f)))
                        .collect(),
                    assumed: false,
                };
                let mut plan =
                    self.write_plan(Mode::Save, key, &record, hidden, &stored, version)?;
                let read = match version {
                    Some(_) => None,
                    None => Some(
                        fields
                            .iter()
                            .map(|(f, v)| String::from_utf8(f.clone()).map(|f| (f, v.clone())))
                            .collect::<std::result::Result<Vec<_>, _>>()
                            .map_err(|_| Error::Decode {
                                model: meta.name,
                                key: redis_key.clone(),
                                field: "<hash>".into(),
                                reason: "a field name is not UTF-8: cannot check it is unchanged"
                                    .into(),
                            })?,
                    ),
                };
                guard_update(&mut plan, &redis_key, read);
                match self.apply::<M>("update", &plan).await? {
                    Outcome::Applied(_) => {
                        if let Some(v) = version {
                            value.set_version(v + 1);
                        }
                        return Ok(Some(value));
                    }
                    // Changed, deleted or saved since the read: read it again.
                    Outcome::Changed
                    | Outcome::Missing(_)
                    | Outcome::Exists(_)
                    | Outcome::Conflict { found: Some(_), .. } => continue,
                    other => {
                        return Err(
                            self.outcome_error::<M>(other, &record, &redis_key, attempt, version)
                        )
                    }
                }
            }
            Err(Error::Contention {
                model: meta.name,
                key: redis_key,
                attempts: UPDATE_ATTEMPTS,
            })
        }
        .instrument(span)
        .await
    }
}
