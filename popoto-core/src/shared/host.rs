//! The host's side: share, write, unshare, and grant shared instances to tenants.

use super::grants;
use super::patch::{require_fields, MergeStrategy, Patch};
use super::wire::{self, Mode, Who, WriteReply, ATTEMPTS, OP};
use super::{Access, Merge, Replica, Shareable, Shared, SharedId, Written};
use crate::admin::Admin;
use crate::backend::{Backend, KeyScan};
use crate::error::{Error, Result};
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
        self.admin.backend().await
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

    /// The ids of model `M`'s shared instances, sorted: the model's id set where the layout
    /// keeps one (popoto's); on a cluster, a scan of every master for the model's meta hashes,
    /// each key parsed as the layout writes it and its hash checked to name its instance (a
    /// scan is no snapshot: an instance shared or unshared meanwhile may be missed or listed).
    pub async fn ids<M: Shareable>(&self) -> Result<Vec<SharedId>> {
        let model = M::META.name;
        let backend = self.backend().await?;
        let layout = backend.layout();
        let mut ids: Vec<SharedId> = match layout.shared_ids_key(model) {
            Some(key) => {
                let raw: Vec<String> = backend
                    .query(OP, model, redis::cmd("SMEMBERS").arg(key))
                    .await?;
                raw.into_iter()
                    .filter_map(|s| SharedId::new(s).ok())
                    .collect()
            }
            None => {
                let found = KeyScan::new(layout.shared_meta_pattern(model), 1000)
                    .collect(&backend, OP, model)
                    .await?;
                let candidates: Vec<(String, SharedId)> = found
                    .into_iter()
                    .filter_map(|key| match layout.parse_shared_key(&key) {
                        Some(crate::keys::SharedKey::Instance("meta", m, id)) if m == model => {
                            Some((key, SharedId::new(id).ok()?))
                        }
                        _ => None,
                    })
                    .collect();
                let cmds: Vec<(String, redis::Cmd)> = candidates
                    .iter()
                    .map(|(key, _)| {
                        let mut cmd = redis::cmd("HMGET");
                        cmd.arg(key).arg("model").arg("id");
                        (key.clone(), cmd)
                    })
                    .collect();
                let metas: Vec<(Option<String>, Option<String>)> =
                    backend.pipeline_per_slot(OP, model, &cmds).await?;
                candidates
                    .into_iter()
                    .zip(metas)
                    .filter_map(|((key, id), (m, i))| {
                        let own = m.as_deref() == Some(model) && i.as_deref() == Some(id.as_str());
                        if !own {
                            tracing::warn!(key = %key, "a meta hash that does not name its instance skipped");
                        }
                        own.then_some(id)
                    })
                    .collect()
            }
        };
        ids.sort();
        Ok(ids)
    }

    /// Grants `tenant` `access` to the instance (a new grant's change feed starts after the
    /// instance's last event; changing the access keeps the position). On a cluster the
    /// instance's side is written first, then the tenant's (see [`crate::keys::Layout::splits_grants`]).
    pub async fn subscribe<M: Shareable>(
        &self,
        tenant: &TenantId,
        id: &SharedId,
        access: Access,
    ) -> Result<()> {
        let backend = self.backend().await?;
        grants::subscribe(&backend, M::META.name, id, tenant, access).await
    }

    /// Removes `tenant`'s grant; whether it had one. Every read and write of the tenant that
    /// starts after this returns is refused (on a cluster the instance's side, which every call
    /// checks, is removed first).
    pub async fn unsubscribe<M: Shareable>(
        &self,
        tenant: &TenantId,
        id: &SharedId,
    ) -> Result<bool> {
        let backend = self.backend().await?;
        grants::unsubscribe(&backend, M::META.name, id, tenant).await
    }

    /// The subscribers of an instance and their access, by tenant id (entries that are not a
    /// valid tenant and access are skipped and reported).
    pub async fn subscribers<M: Shareable>(
        &self,
        id: &SharedId,
    ) -> Result<Vec<(TenantId, Access)>> {
        let model = M::META.name;
        let backend = self.backend().await?;
        let key = backend.layout().shared_subs_key(model, id.as_str());
        let raw: Vec<(String, String)> = backend
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
    /// and every subscription, on both sides: in one call on one server; on a cluster the
    /// instance first, then each subscriber's grant. Whether it existed.
    pub async fn unshare<M: Shareable>(&self, id: &SharedId) -> Result<bool> {
        let backend = self.backend().await?;
        grants::unshare(&backend, M::META.name, id).await
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
        key: backend.layout().shared_value_key(M::META.name, id.as_str()),
        attempts: ATTEMPTS,
    })
}
