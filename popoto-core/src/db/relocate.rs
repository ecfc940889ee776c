//! Key moves: the hash, every index entry and the confidence entries of an instance, from
//! one key to another in one script call.

use crate::error::{Error, Result};
use crate::feed::ChangeOp;
use crate::model::{Key, Model, Record};
use crate::plan::write::Target;
use crate::plan::{self, Outcome};

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
        let (old_redis, new_redis) = (
            old_key.redis_key_in(self.layout()),
            new_key.redis_key_in(self.layout()),
        );
        for attempt in 1..=MAX_ATTEMPTS {
            let stored = self.read_stored::<M>(&old_redis).await?;
            let mut plan = plan::write::relocate(
                &Target::of::<M>(self.layout(), &old_redis),
                old_record,
                &new_redis,
                new_record,
                &stored,
                version,
            )?;
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
