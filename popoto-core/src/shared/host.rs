//! The host's side: share, write, unshare, and grant shared instances to tenants.

use redis::Value;

use super::patch::{require_fields, MergeStrategy, Patch};
use super::wire::{self, InstanceKeys, Mode, Who, WriteReply, ATTEMPTS, GRANTS, OP};
use super::{Access, Merge, Replica, Shareable, Shared, SharedId, Written};
use crate::admin::Admin;
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::keys::{self, FeedOf};
use crate::tenant::TenantId;

/// The host of shared instances: shares them, writes them, grants them to tenants. Reached
/// from the admin handle ([`Admin::shared`]), so code holding a tenant handle cannot grant
/// itself anything.
#[derive(Clone, Debug)]
pub struct SharedHost {
    admin: Admin,
    replica: Replica,
}

impl Admin {
    /// The host of shared instances, on the shared backend, writing as a fresh random replica
    /// (see [`SharedHost::with_replica`]).
    pub fn shared(&self) -> SharedHost {
        SharedHost {
            admin: self.db().admin(),
            replica: Replica::random(),
        }
    }
}

impl SharedHost {
    /// The same host writing as `replica` (its id is the origin of the host's change events).
    pub fn with_replica(mut self, replica: Replica) -> SharedHost {
        self.replica = replica;
        self
    }

    /// The replica the host writes as.
    pub fn replica(&self) -> &Replica {
        &self.replica
    }

    async fn backend(&self) -> Result<Backend> {
        super::store(self.admin.backend().await?, "$Shared")
    }

    /// Shares `value` under a new random id, merged with `merge`; returns the id.
    pub async fn share<M: Shareable>(&self, value: &M, merge: Merge) -> Result<SharedId> {
        let id = SharedId::random();
        self.share_as(&id, value, merge).await?;
        Ok(id)
    }

    /// Shares `value` under `id`; [`Error::SharedExists`] if any key of that id exists.
    pub async fn share_as<M: Shareable>(
        &self,
        id: &SharedId,
        value: &M,
        merge: Merge,
    ) -> Result<Written> {
        let patch = Patch::all(value)?;
        self.send(id, Mode::Share(merge), &patch).await
    }

    /// Replaces every field of the instance (merged per field with the host's tags for an LWW
    /// map; written over the stored value for the other strategies).
    pub async fn set_shared<M: Shareable>(&self, id: &SharedId, value: &M) -> Result<Written> {
        let patch = Patch::all(value)?;
        self.send(id, Mode::Set, &patch).await
    }

    /// Writes the patch's fields (`LastWriteWins` and `LwwMapCrdt`; a `Custom` instance is
    /// written with [`SharedHost::update`]).
    pub async fn patch<M: Shareable>(&self, id: &SharedId, patch: &Patch<M>) -> Result<Written> {
        require_fields(patch, id.as_str())?;
        self.send(id, Mode::Patch, patch).await
    }

    /// Merges `patch` with `strategy` under a version check, retried until no other write
    /// landed in between (`Custom` and `LastWriteWins` instances).
    pub async fn update<M: Shareable>(
        &self,
        id: &SharedId,
        strategy: &dyn MergeStrategy<M>,
        patch: &Patch<M>,
    ) -> Result<Written> {
        let backend = self.backend().await?;
        update(&backend, id, Who::Host, &self.replica, strategy, patch).await
    }

    async fn send<M: Shareable>(
        &self,
        id: &SharedId,
        mode: Mode,
        patch: &Patch<M>,
    ) -> Result<Written> {
        let backend = self.backend().await?;
        let tag = self.replica.tick();
        let fields: Vec<(&str, &[u8], Option<super::Tag>)> = patch
            .pairs()
            .map(|(f, v)| (f, v, Some(tag.clone())))
            .collect();
        match wire::write::<M>(&backend, id, Who::Host, self.replica.id(), mode, &fields).await? {
            WriteReply::Done(w) => Ok(w),
            WriteReply::Changed => Err(wire::unexpected(M::META.name, &"changed")),
        }
    }

    /// Reads an instance.
    pub async fn get<M: Shareable>(&self, id: &SharedId) -> Result<Shared<M>> {
        let backend = self.backend().await?;
        let shared = wire::read::<M>(&backend, id, Who::Host).await?;
        for t in shared.tags.values() {
            self.replica.observe(t);
        }
        Ok(shared)
    }

    /// The ids of model `M`'s shared instances, sorted.
    pub async fn ids<M: Shareable>(&self) -> Result<Vec<SharedId>> {
        let raw: Vec<String> = self
            .backend()
            .await?
            .query(
                OP,
                M::META.name,
                redis::cmd("SMEMBERS").arg(keys::shared_ids_key(M::META.name)),
            )
            .await?;
        let mut ids: Vec<SharedId> = raw
            .into_iter()
            .filter_map(|s| SharedId::new(s).ok())
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// Grants `tenant` `access` to the instance (a new grant's change feed starts after the
    /// instance's last event; changing the access keeps the position).
    pub async fn subscribe<M: Shareable>(
        &self,
        tenant: &TenantId,
        id: &SharedId,
        access: Access,
    ) -> Result<()> {
        let model = M::META.name;
        let k = InstanceKeys::of(model, id.as_str());
        let keys = vec![
            k.meta,
            k.subs,
            keys::shared_grants_key(tenant.as_str()),
            k.stream,
        ];
        let args = grant_args(
            "subscribe",
            model,
            id,
            tenant,
            &keys::shared_grant_field(model, id.as_str()),
            access.code(),
        );
        let reply = self
            .backend()
            .await?
            .eval(OP, model, &GRANTS, &keys, &args)
            .await?;
        expect_ok(model, id, reply).map(|_| ())
    }

    /// Removes `tenant`'s grant; whether it had one. Every read and write of the tenant that
    /// starts after this returns is refused.
    pub async fn unsubscribe<M: Shareable>(
        &self,
        tenant: &TenantId,
        id: &SharedId,
    ) -> Result<bool> {
        let model = M::META.name;
        let k = InstanceKeys::of(model, id.as_str());
        let keys = vec![k.subs, keys::shared_grants_key(tenant.as_str())];
        let args = grant_args(
            "unsubscribe",
            model,
            id,
            tenant,
            &keys::shared_grant_field(model, id.as_str()),
            "",
        );
        let reply = self
            .backend()
            .await?
            .eval(OP, model, &GRANTS, &keys, &args)
            .await?;
        let items = expect_ok(model, id, reply)?;
        Ok(wire::reply_int(items.get(1)).unwrap_or(0) > 0)
    }

    /// The subscribers of an instance and their access, by tenant id (entries that are not a
    /// valid tenant and access are skipped and reported).
    pub async fn subscribers<M: Shareable>(
        &self,
        id: &SharedId,
    ) -> Result<Vec<(TenantId, Access)>> {
        let model = M::META.name;
        let key = keys::shared_subs_key(model, id.as_str());
        let raw: Vec<(String, String)> = self
            .backend()
            .await?
            .query(OP, model, redis::cmd("HGETALL").arg(&key))
            .await?;
        let mut out: Vec<(TenantId, Access)> = raw
            .into_iter()
            .filter_map(|(t, a)| {
                let parsed = TenantId::new(&t).ok().zip(Access::parse(&a));
                if parsed.is_none() {
                    tracing::warn!(key = %key, "malformed subscriber entry ignored");
                }
                parsed
            })
            .collect();
        out.sort();
        Ok(out)
    }

    /// Destroys the instance: its value, tags, change feed (with its consumer groups' keys)
    /// and every subscription, on both sides, in one call; whether it existed.
    pub async fn unshare<M: Shareable>(&self, id: &SharedId) -> Result<bool> {
        let model = M::META.name;
        let backend = self.backend().await?;
        let k = InstanceKeys::of(model, id.as_str());
        let of = FeedOf::Shared(model, id.as_str());
        for _ in 0..ATTEMPTS {
            let subs: Vec<String> = backend
                .query(OP, model, redis::cmd("HKEYS").arg(&k.subs))
                .await?;
            let groups = crate::feed::group_names(&backend, of).await?;
            let mut keys = vec![
                k.value.clone(),
                k.meta.clone(),
                k.tags.clone(),
                k.subs.clone(),
                k.ids.clone(),
                k.stream.clone(),
                k.feed_meta.clone(),
            ];
            keys.extend(subs.iter().map(|t| keys::shared_grants_key(t)));
            for g in &groups {
                keys.push(keys::feed_done_key(of, g));
                keys.push(keys::feed_dead_key(of, g));
            }
            let field = keys::shared_grant_field(model, id.as_str());
            let mut args: Vec<Vec<u8>> = ["unshare", model, id.as_str(), "", &field]
                .iter()
                .map(|a| a.as_bytes().to_vec())
                .collect();
            args.push(subs.len().to_string().into_bytes());
            args.extend(subs.iter().map(|t| t.as_bytes().to_vec()));
            args.push(groups.len().to_string().into_bytes());
            args.extend(groups.iter().map(|g| g.as_bytes().to_vec()));
            let reply = backend.eval(OP, model, &GRANTS, &keys, &args).await?;
            match &reply {
                Value::Array(items) => match wire::reply_text(items.first()).as_deref() {
                    Some("ok") => return Ok(true),
                    Some("missing") => return Ok(false),
                    Some("changed") => continue,
                    _ => return Err(wire::refused(model, id, items)),
                },
                _ => return Err(wire::unexpected(model, &reply)),
            }
        }
        Err(Error::Contention {
            model,
            key: k.subs,
            attempts: ATTEMPTS,
        })
    }
}

/// The arguments of a grants call: operation, model, id, tenant, grant field, access.
fn grant_args(
    op: &str,
    model: &str,
    id: &SharedId,
    tenant: &TenantId,
    field: &str,
    access: &str,
) -> Vec<Vec<u8>> {
    [op, model, id.as_str(), tenant.as_str(), field, access]
        .iter()
        .map(|a| a.as_bytes().to_vec())
        .collect()
}

/// The items of an `{'ok', ...}` reply, or the refusal as an error.
fn expect_ok(model: &'static str, id: &SharedId, reply: Value) -> Result<Vec<Value>> {
    match reply {
        Value::Array(items) if wire::reply_text(items.first()).as_deref() == Some("ok") => {
            Ok(items)
        }
        Value::Array(items) => Err(wire::refused(model, id, &items)),
        other => Err(wire::unexpected(model, &other)),
    }
}

/// A custom merge: read (grant checked), merge on the client, write with the version read
/// (grant checked again); retried when another write landed in between, with a short random
/// pause after the first retries so racing writers spread out.
pub(super) async fn update<M: Shareable>(
    backend: &Backend,
    id: &SharedId,
    who: Who<'_>,
    replica: &Replica,
    strategy: &dyn MergeStrategy<M>,
    patch: &Patch<M>,
) -> Result<Written> {
    require_fields(patch, id.as_str())?;
    for attempt in 0..ATTEMPTS {
        let current = wire::read::<M>(backend, id, who).await?;
        let merged = strategy.merge(&current.value, patch, replica.id())?;
        let full = Patch::all(&merged)?;
        let fields: Vec<(&str, &[u8], Option<super::Tag>)> =
            full.pairs().map(|(f, v)| (f, v, None)).collect();
        let mode = Mode::Cas(current.version);
        match wire::write::<M>(backend, id, who, replica.id(), mode, &fields).await? {
            WriteReply::Done(w) => return Ok(w),
            WriteReply::Changed if attempt >= 2 => {
                let pause = uuid::Uuid::new_v4().as_u128() % u128::from(attempt.min(20) + 1);
                tokio::time::sleep(std::time::Duration::from_millis(
                    u64::try_from(pause).unwrap_or(1),
                ))
                .await;
            }
            WriteReply::Changed => {}
        }
    }
    Err(Error::Contention {
        model: M::META.name,
        key: keys::shared_value_key(M::META.name, id.as_str()),
        attempts: ATTEMPTS,
    })
}
