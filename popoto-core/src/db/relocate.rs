//! Key moves: the hash, every index entry and the confidence entries of an instance, from
//! one key to another in one script call.

use crate::error::{Error, Result};
use crate::feed::ChangeOp;
use crate::model::{FieldKind, Key, Model, Record};
use crate::plan::{Check, Instance, Outcome, Plan, Write};

use super::write::version_check;
use super::{Session, MAX_ATTEMPTS};

impl Session {
    /// Moves the instance at `old_key` (rendered as `old_record`) to `new_key` with the values
    /// of `new_record`; with `version`, only if the old instance is at that version.
    pub(super) async fn relocate<M: Model>(
        &self,
        old_key: &Key<M>,
        old_record: &Record,
        new_key: &Key<M>,
        new_record: &Record,
        version: Option<u64>,
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
            version_check(&mut plan, meta, ko, version);
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
            // The hash keeps its expiry through RENAME: so does its expiry entry (a new expiry
            // given by `new` then replaces it).
            if meta.expires() {
                let from = plan.key(old_inst.expiry_key());
                let to = plan.key(new_inst.expiry_key());
                plan.writes.push(Write::ZRename {
                    from,
                    to,
                    from_member: old_redis.clone(),
                    to_member: new_redis.clone(),
                });
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
                Outcome::Conflict { key, found } => {
                    return Err(self.outcome_error::<M>(
                        Outcome::Conflict { key, found },
                        new_record,
                        &old_redis,
                        attempt,
                        version,
                    ))
                }
                other => {
                    return Err(
                        self.outcome_error::<M>(other, new_record, &new_redis, attempt, version)
                    )
                }
            }
        }
        Err(Error::Contention {
            model: meta.name,
            key: old_redis,
            attempts: MAX_ATTEMPTS,
        })
    }
}
