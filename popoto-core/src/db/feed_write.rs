//! The change events of private writes (models with `#[popoto(change_feed)]`): added to the
//! write's own plan, so `apply.lua` appends the event in the same call as the write.

use crate::error::{Error, Result};
use crate::feed::ChangeOp;
use crate::keys::FeedOf;
use crate::model::{Key, Model, Record};
use crate::plan::Plan;
use crate::tenant::Scope;

use super::{Mode, Session};

/// A change event to append: its stream, the stream's meta hash, and its fields (without the
/// version, which the script counts).
pub(crate) struct FeedEvent {
    pub(crate) stream: String,
    pub(crate) meta: String,
    pub(crate) fields: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Session {
    /// The change event of a write of `key` (`None` for models without `CHANGE_FEED`):
    /// `record` is the value written (none for a delete or a confidence update), `from` the
    /// old key of a move. The stream is the key's tenant's.
    pub(crate) fn feed_event<M: Model>(
        &self,
        op: ChangeOp,
        key: &Key<M>,
        record: Option<&Record>,
        from: Option<&str>,
    ) -> Result<Option<FeedEvent>> {
        if !M::CHANGE_FEED {
            return Ok(None);
        }
        let Some(tenant) = key.tenant() else {
            return Err(Error::NoTenant {
                model: M::META.name,
            });
        };
        let of = FeedOf::Tenant(tenant);
        let by = match self.scope() {
            Scope::Tenant(_) => "tenant",
            _ => "admin",
        };
        let mut fields: Vec<(Vec<u8>, Vec<u8>)> = Vec::with_capacity(12 + M::META.fields.len());
        let mut head =
            |k: &str, v: &str| fields.push((k.as_bytes().to_vec(), v.as_bytes().to_vec()));
        head("op", op.code());
        head("model", M::META.name);
        head("key", &key.redis_key_in(self.layout()));
        head("scope", "tenant");
        head("tenant", tenant);
        head("origin", self.origin.as_deref().unwrap_or(""));
        head("by", by);
        head("full", if record.is_some() { "1" } else { "0" });
        if let Some(from) = from {
            head("from", from);
        }
        if let Some(record) = record {
            for (f, v) in M::META.fields.iter().zip(&record.values) {
                fields.push((format!("f:{}", f.name).into_bytes(), v.clone()));
            }
        }
        Ok(Some(FeedEvent {
            stream: self.layout().feed_stream_key(of),
            meta: self.layout().feed_meta_key(of),
            fields,
        }))
    }

    /// Adds the change event of a write of `key` to `plan` (see [`Session::feed_event`]), so
    /// `apply.lua` appends it in the write's call.
    pub(super) fn add_feed<M: Model>(
        &self,
        plan: &mut Plan,
        op: ChangeOp,
        key: &Key<M>,
        record: Option<&Record>,
        from: Option<&str>,
    ) -> Result<()> {
        let Some(event) = self.feed_event(op, key, record, from)? else {
            return Ok(());
        };
        plan.feed(event.stream, event.meta, event.fields);
        Ok(())
    }
}

impl Mode {
    /// The change operation of a write in this mode.
    pub(super) fn feed_op(self) -> ChangeOp {
        match self {
            Mode::Create => ChangeOp::Create,
            Mode::Save => ChangeOp::Save,
        }
    }
}
