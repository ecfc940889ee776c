//! A tenant's side: list, read and write the shared instances it is subscribed to.

use std::marker::PhantomData;

use super::host::update;
use super::patch::{require_fields, MergeStrategy, Patch};
use super::wire::{self, Mode, Who, WriteReply};
use super::{Access, Replica, Shareable, Shared, SharedId, Tag, Written};
use crate::backend::Backend;
use crate::db::Session;
use crate::error::{Error, Result};
use crate::tenant::{Scope, TenantId};

/// One shared instance a tenant is subscribed to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Subscription {
    /// The model's class name.
    pub model: String,
    /// The instance's id.
    pub id: SharedId,
    /// What the tenant may do with it.
    pub access: Access,
}

/// A tenant handle's access to the shared instances of model `M` it is subscribed to
/// ([`Session::shared`]). Every call checks the grant in the same script call as its read or
/// write: without a subscription a read is [`Error::NotSubscribed`], a write with read access
/// only is [`Error::ReadOnly`]; neither changes anything.
pub struct SharedAccess<'s, M> {
    session: &'s Session,
    replica: Replica,
    _m: PhantomData<fn() -> M>,
}

impl<M> std::fmt::Debug for SharedAccess<'_, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedAccess")
            .field("scope", self.session.scope())
            .field("replica", &self.replica.id())
            .finish()
    }
}

impl Session {
    /// The shared instances of model `M` this tenant is subscribed to, written as a fresh
    /// random replica (see [`SharedAccess::replica`]).
    pub fn shared<M: Shareable>(&self) -> SharedAccess<'_, M> {
        SharedAccess {
            session: self,
            replica: Replica::random(),
            _m: PhantomData,
        }
    }

    /// Every shared instance this tenant is subscribed to, of any model: the tenant's grants,
    /// each confirmed by the instance's subscribers (sorted by model, then id).
    pub async fn shared_subscriptions(&self) -> Result<Vec<Subscription>> {
        let tenant = shared_tenant(self, "-")?;
        let backend = self.shared_backend().await?;
        let mut out: Vec<Subscription> = super::read_grants(&backend, tenant)
            .await?
            .into_iter()
            .map(|g| Subscription {
                model: g.model,
                id: g.id,
                access: g.access,
            })
            .collect();
        out.sort_by(|a, b| (&a.model, &a.id).cmp(&(&b.model, &b.id)));
        Ok(out)
    }
}

/// The tenant of a tenant handle; shared instances are not reached through other handles.
pub(crate) fn shared_tenant<'s>(session: &'s Session, model: &'static str) -> Result<&'s TenantId> {
    match session.scope() {
        Scope::Tenant(t) => Ok(t),
        _ => Err(Error::SharedScope { model }),
    }
}

impl<M: Shareable> SharedAccess<'_, M> {
    /// The same access writing as `replica` (its id is the origin of the change events, and its
    /// clock tags `LwwMapCrdt` writes).
    pub fn replica(mut self, replica: Replica) -> Self {
        self.replica = replica;
        self
    }

    /// The replica this access writes as.
    pub fn current_replica(&self) -> &Replica {
        &self.replica
    }

    async fn ctx(&self) -> Result<(&TenantId, Backend)> {
        let tenant = shared_tenant(self.session, M::META.name)?;
        let backend = self.session.shared_backend().await?;
        Ok((tenant, backend))
    }

    /// The instances of `M` this tenant is subscribed to.
    pub async fn list(&self) -> Result<Vec<Subscription>> {
        self.ctx().await?;
        let mut all = self.session.shared_subscriptions().await?;
        all.retain(|s| s.model == M::META.name);
        Ok(all)
    }

    /// Reads an instance the tenant is subscribed to; the replica observes its tags, so an edit
    /// made after this read wins over what was read.
    pub async fn get(&self, id: &SharedId) -> Result<Shared<M>> {
        let (tenant, backend) = self.ctx().await?;
        let shared = wire::read::<M>(&backend, id, Who::Tenant(tenant)).await?;
        for t in shared.tags.values() {
            self.replica.observe(t);
        }
        Ok(shared)
    }

    /// Writes the patch's fields into an instance the tenant may write (`LastWriteWins`: they
    /// replace the stored ones; `LwwMapCrdt`: each field keeps the greater tag, so an older or
    /// repeated patch writes nothing and `entry` is `None`). A `Custom` instance is refused
    /// ([`Error::SharedMerge`]): use [`SharedAccess::update`].
    pub async fn patch(&self, id: &SharedId, patch: &Patch<M>) -> Result<Written> {
        let tag = self.replica.tick();
        self.patch_tagged(id, patch, &tag).await
    }

    /// [`SharedAccess::patch`] with an explicit tag on every field (a replica replaying an
    /// edit it made offline, with the tag it made it at).
    pub async fn patch_tagged(
        &self,
        id: &SharedId,
        patch: &Patch<M>,
        tag: &Tag,
    ) -> Result<Written> {
        require_fields(patch, id.as_str())?;
        let (tenant, backend) = self.ctx().await?;
        let fields: Vec<(&str, &[u8], Option<Tag>)> = patch
            .pairs()
            .map(|(f, v)| (f, v, Some(tag.clone())))
            .collect();
        let origin = self.replica.id();
        match wire::write::<M>(
            &backend,
            id,
            Who::Tenant(tenant),
            origin,
            Mode::Patch,
            &fields,
        )
        .await?
        {
            WriteReply::Done(w) => Ok(w),
            WriteReply::Changed => Err(wire::unexpected(M::META.name, &"changed")),
        }
    }

    /// Merges `patch` into an instance the tenant may write with `strategy`, on the client,
    /// under a version check in the write script: retried until no other write landed in
    /// between, so no update is lost (`Custom` and `LastWriteWins` instances).
    pub async fn update(
        &self,
        id: &SharedId,
        strategy: &dyn MergeStrategy<M>,
        patch: &Patch<M>,
    ) -> Result<Written> {
        let (tenant, backend) = self.ctx().await?;
        update(
            &backend,
            id,
            Who::Tenant(tenant),
            &self.replica,
            strategy,
            patch,
        )
        .await
    }
}
