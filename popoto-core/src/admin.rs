//! `Admin`: the one handle that crosses tenants. Raw backend access, unscoped queries of tenant
//! models, maintenance and tenant lifecycle live here and nowhere else, so code holding a tenant
//! [`Session`] cannot reach them: the boundary is a type, not a runtime flag.

use crate::backend::Backend;
use crate::db::{Db, Session, Target};
use crate::error::{BulkError, Result};
use crate::model::{Key, Model};
use crate::tenant::{Scope, TenantId};

/// The admin handle: reads and writes across tenants, raw access to Redis, maintenance
/// (migrations, index checks, audits) and tenant lifecycle (destroy, export, import).
///
/// Made by [`Db::admin`] (the shared backend) or [`Db::admin_on`] (where one tenant lives).
/// Tenant values it is given are validated like a tenant handle's.
#[derive(Clone, Debug)]
pub struct Admin {
    db: Db,
    session: Session,
}

/// The admin handles a root handle makes.
impl Db {
    /// The admin handle on the shared backend: reads and writes across tenants, raw access and
    /// maintenance.
    pub fn admin(&self) -> Admin {
        Admin::new(self.clone(), self.root.clone())
    }

    /// The admin handle on the backend where `tenant` lives (maintenance of one tenant).
    pub fn admin_on(&self, tenant: &TenantId) -> Admin {
        Admin::new(self.clone(), self.target_for(tenant))
    }
}

impl Admin {
    /// How this handle's keys are laid out.
    pub(crate) fn layout(&self) -> crate::keys::Layout {
        self.session.layout()
    }

    pub(crate) fn new(db: Db, target: Target) -> Admin {
        Admin {
            db,
            session: Session::with_scope(target, Scope::Admin),
        }
    }

    /// The admin-scoped session behind this handle (the features' admin methods use it).
    pub(crate) fn session(&self) -> &Session {
        &self.session
    }

    /// The root handle this admin handle was made from.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The admin handle on the backend where `tenant` lives.
    pub fn on(&self, tenant: &TenantId) -> Admin {
        self.db.admin_on(tenant)
    }

    /// The tenants holding data of tenant model `M` on this handle's backend, in id order
    /// (empty for a model without a tenant field): found by a `SCAN` of every node, so a
    /// tenant whose first instance is written meanwhile may be missed. In the cluster layout
    /// any key of the model counts (an instance or an index key); in popoto's layout, whose
    /// keys carry the tenant as a segment, the instance keys.
    pub async fn tenants_of<M: Model>(&self) -> Result<Vec<TenantId>> {
        if M::META.tenant.is_none() {
            return Ok(Vec::new());
        }
        let backend = self.backend().await?;
        crate::keyspaces::tenants(&backend, M::META, "tenants of").await
    }

    /// The backend this handle talks to: raw commands, round-trip counts.
    pub async fn backend(&self) -> Result<Backend> {
        self.session.backend().await
    }

    /// [`Session::create`] of any tenant's instance.
    pub async fn create<M: Model>(&self, value: M) -> Result<M> {
        self.session.create(value).await
    }

    /// [`Session::create_keyed`] of any tenant's instance.
    pub async fn create_keyed<M: Model>(&self, value: M) -> Result<(Key<M>, M)> {
        self.session.create_keyed(value).await
    }

    /// [`Session::save`] of any tenant's instance.
    pub async fn save<M: Model>(&self, value: &M) -> Result<()> {
        self.session.save(value).await
    }

    /// [`Session::save_at`] of any tenant's instance.
    pub async fn save_at<M: Model>(&self, key: &Key<M>, value: &M) -> Result<()> {
        self.session.save_at(key, value).await
    }

    /// [`Session::move_key`], also between tenants.
    pub async fn move_key<M: Model>(&self, old: &M, new: M) -> Result<M> {
        self.session.move_key(old, new).await
    }

    /// [`Session::delete`] of any tenant's instance.
    pub async fn delete<M: Model>(&self, value: &M) -> Result<bool> {
        self.session.delete(value).await
    }

    /// [`Session::delete_key`] of any tenant's instance.
    pub async fn delete_key<M: Model>(&self, key: &Key<M>) -> Result<bool> {
        self.session.delete_key(key).await
    }

    /// [`Session::delete_many`] across tenants.
    pub async fn delete_many<M: Model>(&self, keys: &[Key<M>]) -> Result<u64> {
        self.session.delete_many(keys).await
    }

    /// [`Session::create_many`] across tenants.
    pub async fn create_many<M: Model>(
        &self,
        values: Vec<M>,
    ) -> std::result::Result<Vec<M>, BulkError<M>> {
        self.session.create_many(values).await
    }

    /// [`Session::save_many`] across tenants.
    pub async fn save_many<M: Model>(
        &self,
        values: Vec<M>,
    ) -> std::result::Result<Vec<M>, BulkError<M>> {
        self.session.save_many(values).await
    }

    /// [`Session::update`] of any tenant's instance.
    pub async fn update<M, F>(&self, key: &Key<M>, change: F) -> Result<Option<M>>
    where
        M: Model,
        F: FnMut(&mut M) + Send,
    {
        self.session.update(key, change).await
    }

    /// [`Session::get`] of any tenant's instance.
    pub async fn get<M: Model>(&self, key: &Key<M>) -> Result<Option<M>> {
        self.session.get(key).await
    }

    /// [`Session::get_fields`] of any tenant's instance.
    pub async fn get_fields<M: Model>(
        &self,
        key: &Key<M>,
    ) -> Result<Option<std::collections::BTreeMap<String, crate::codec::Dynamic>>> {
        self.session.get_fields(key).await
    }

    /// [`Session::exists`] for any tenant's key.
    pub async fn exists<M: Model>(&self, key: &Key<M>) -> Result<bool> {
        self.session.exists(key).await
    }
}
