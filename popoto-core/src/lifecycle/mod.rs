//! Tenant lifecycle: destroy, export and import one tenant, and per-tenant counts.
//!
//! Operations take a [`ModelSet`]: the models whose data a tenant may have. They run on the
//! backend where the tenant lives and touch only keys and index members of that tenant: every
//! pattern is built from the escaped tenant segment and every match is checked exactly. Their
//! cost follows the tenant's own data (its index keys, its instances and the entries those
//! have), plus, unless [`Sweep::Indexes`] is asked, one server-side `SCAN MATCH` pass over the
//! keyspace for keys no index names (see `footprint`); no index key of the whole model is
//! scanned.

mod destroy;
mod export;
mod footprint;
mod import;
mod layout;
mod relayout;

use std::collections::BTreeMap;
use std::future::Future;
use std::io::{Read, Write};
use std::pin::Pin;

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::admin::Admin;
use crate::backend::Backend;
use crate::catalog::Catalog;
use crate::db::{Db, Session};
use crate::error::Result;
use crate::maintenance::IndexReport;
use crate::model::{Key, Model, ModelMeta};
use crate::tenant::{Scope, TenantId};
use crate::verify::{Guard, Skip};

pub use relayout::{LayoutProgress, LayoutReport, LayoutRun};

/// Decodes a shared instance's hash (key, fields): what the audit checks of its value.
pub(crate) type SharedDecode = fn(&str, Vec<(Vec<u8>, Vec<u8>)>) -> Result<()>;

type Boxed<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;

/// Per candidate key: `None` for an instance of the scope, else why not.
type Flags = Vec<Option<Skip>>;

/// What a lifecycle operation needs of one model that only its type knows.
struct Entry {
    meta: &'static ModelMeta,
    /// Deletes instances (each atomically, with its index entries) by key.
    delete: fn(Admin, Vec<String>) -> Boxed<'static, u64>,
    /// The isolation audit (index check) of the model.
    audit: fn(Admin) -> Boxed<'static, IndexReport>,
    /// The index rebuild of the model.
    rebuild: fn(Admin) -> Boxed<'static, IndexReport>,
    /// `Query::count` through a tenant handle: verified instances.
    count: fn(Session) -> Boxed<'static, usize>,
    /// The read check of a tenant scope ([`Guard::verify`]) of candidate instance keys.
    verify: fn(Backend, TenantId, Vec<String>) -> Boxed<'static, Flags>,
    /// [`Model::segment_from_stored`].
    segment: fn(&str, usize, &[u8]) -> Result<String>,
    /// Decodes a shared instance's hash (models with [`Model::SHAREABLE`]), for the audit.
    shared_decode: Option<SharedDecode>,
    /// The stored bytes of the tenant field holding a tenant id.
    tenant_bytes: fn(usize, &str) -> Result<Vec<u8>>,
}

/// The models a tenant's data may belong to (the registration used by lifecycle operations).
#[derive(Default)]
pub struct ModelSet {
    entries: Vec<Entry>,
}

impl std::fmt::Debug for ModelSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.entries.iter().map(|e| e.meta.name))
            .finish()
    }
}

fn delete_boxed<M: Model>(s: Admin, keys: Vec<String>) -> Boxed<'static, u64> {
    Box::pin(async move {
        let layout = s.layout();
        let keys: Vec<Key<M>> = keys
            .iter()
            .map(|k| Key::parse_in(layout, k))
            .collect::<Result<_>>()?;
        s.delete_many(&keys).await
    })
}

fn decode_shared<M: Model>(key: &str, fields: Vec<(Vec<u8>, Vec<u8>)>) -> Result<()> {
    M::from_hash(key, fields).map(drop)
}

fn audit_boxed<M: Model>(s: Admin) -> Boxed<'static, IndexReport> {
    Box::pin(async move { s.audit::<M>().await })
}

fn rebuild_boxed<M: Model>(s: Admin) -> Boxed<'static, IndexReport> {
    Box::pin(async move { s.rebuild_indexes::<M>().await })
}

fn count_boxed<M: Model>(s: Session) -> Boxed<'static, usize> {
    Box::pin(async move { s.query::<M>().count().await })
}

fn verify_boxed<M: Model>(
    backend: Backend,
    tenant: TenantId,
    keys: Vec<String>,
) -> Boxed<'static, Flags> {
    Box::pin(async move {
        let scope = Scope::Tenant(tenant);
        Guard::of::<M>(backend.layout(), &scope)
            .verify::<M>(&backend, &keys)
            .await
    })
}

impl ModelSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds model `M`.
    pub fn with<M: Model>(mut self) -> Self {
        self.entries.push(Entry {
            meta: M::META,
            delete: delete_boxed::<M>,
            audit: audit_boxed::<M>,
            rebuild: rebuild_boxed::<M>,
            count: count_boxed::<M>,
            verify: verify_boxed::<M>,
            segment: M::segment_from_stored,
            tenant_bytes: crate::verify::tenant_bytes::<M>,
            shared_decode: M::SHAREABLE.then_some(decode_shared::<M> as _),
        });
        self
    }

    /// The decoders of the shared models in the set, by class name.
    pub(crate) fn shared_models(&self) -> Vec<(&'static str, SharedDecode)> {
        self.entries
            .iter()
            .filter_map(|e| e.shared_decode.map(|d| (e.meta.name, d)))
            .collect()
    }

    /// Whether the set has a shared model (`#[popoto(shared)]`).
    pub fn has_shared(&self) -> bool {
        self.entries.iter().any(|e| e.shared_decode.is_some())
    }

    /// Metadata of every model.
    pub fn metas(&self) -> impl Iterator<Item = &'static ModelMeta> + '_ {
        self.entries.iter().map(|e| e.meta)
    }

    fn tenant_models(&self) -> impl Iterator<Item = &Entry> + '_ {
        self.entries.iter().filter(|e| e.meta.tenant.is_some())
    }
}

/// What `destroy_tenant` removed, and what it left.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestroyReport {
    /// Instances deleted (hash and index entries, atomically each), per model.
    pub instances: BTreeMap<String, u64>,
    /// Index entries of the tenant's instance keys left without an instance (orphans) that
    /// were removed: members of the tenant's own index keys, and the entries an orphan's key
    /// derives in the model's index keys.
    pub orphan_entries: u64,
    /// Keys of the tenant that hold something other than one of its instances: a hash whose
    /// stored tenant field names another tenant (the audit's `KeyMismatch`), or a key of
    /// another Redis type. Left as they are, with their index entries: which tenant owns such
    /// data is a decision for a person.
    pub kept: Vec<String>,
    /// Subscriptions to shared instances removed (each on both sides).
    pub grants: u64,
    /// Keys of the tenant's change feed removed (stream, bookkeeping, consumer groups' keys).
    pub feed_keys: u64,
}

/// One record of a tenant export stream (msgpack).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ExportRecord {
    /// First record: format version and tenant.
    Header {
        /// Stream format version: 2 (written now: the stream ends with [`ExportRecord::End`]);
        /// 1 (older streams, without it) is still read.
        version: u32,
        /// The exported tenant.
        tenant: String,
    },
    /// An instance hash, raw bytes.
    Hash {
        /// Instance key.
        key: String,
        /// Fields and raw values.
        fields: Vec<(ByteBuf, ByteBuf)>,
    },
    /// A member of a set (`$Class`, `$KeyF`, `$UniqueKeyF`).
    SetMember {
        /// Set key.
        key: String,
        /// Member (an instance key).
        member: String,
    },
    /// A member of a sorted set with its score.
    ZSetMember {
        /// Zset key.
        key: String,
        /// Member (an instance key).
        member: String,
        /// Score.
        score: f64,
    },
    /// An entry of a companion hash (`$ConfidencF`).
    HashEntry {
        /// Hash key.
        key: String,
        /// Field (an instance key).
        field: String,
        /// Raw value.
        value: ByteBuf,
    },
    /// Last record of a version 2 stream: the number of records before it (header included),
    /// so a truncated stream is refused instead of imported in part.
    End {
        /// Records before this one.
        records: u64,
    },
}

/// The current stream format version.
const VERSION: u32 = 2;

/// The catalog's durable destroy: the tombstone first, then the data.
impl Catalog {
    /// Destroys a tenant durably: resolves where its data lives (through `admin`, e.g.
    /// `db.admin()` on a registry), marks it destroyed in the catalog (every process on the
    /// catalog refuses it from then on), then removes its data (`Admin::destroy_tenant`).
    pub async fn destroy_tenant(
        &self,
        admin: &Admin,
        id: &TenantId,
        models: &ModelSet,
    ) -> Result<DestroyReport> {
        let backend = match admin.db().registry() {
            // Wherever it lives, whatever its status (a suspended tenant can be destroyed).
            Some(registry) => registry.locate(id).await?.0,
            None => admin.on(id).backend().await?,
        };
        self.destroy(id).await?;
        if let Some(registry) = admin.db().registry() {
            // A registry on a catalog obeys the tombstone (at once here); else its own.
            match registry.catalog() {
                Some(_) => registry.refresh_catalog(),
                None => registry.tombstone(id),
            }
        }
        Db::from_backend(backend)
            .admin()
            .destroy_tenant(id, models)
            .await
    }
}

/// How [`Admin::export_tenant_with`] and [`Admin::destroy_tenant_with`] find a tenant's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Sweep {
    /// The tenant's own index keys, plus one server-side `SCAN MATCH` pass over the keyspace
    /// for the tenant's keys no index names (a hash missing from its value set, a partition no
    /// instance uses): complete. The pass costs server time per key in the database (about
    /// 0.8 us a key with redis 7.0 on the benchmark machine) and a round trip per 1,000 keys.
    #[default]
    Keyspace,
    /// Only what the tenant's own index keys name, and the entries its instances derive: the
    /// cost follows the tenant's data alone, but a key of the tenant that no index names (a
    /// defect the audit reports as a missing entry) is not seen. For databases whose audit is
    /// clean.
    Indexes,
}

impl Admin {
    /// Removes every instance of `tenant` for the models of `models` (each atomically, with
    /// all its index and companion-hash entries), then the tenant's entries left without an
    /// instance, touching no other tenant's data. Keys of the tenant holding something other
    /// than its instance (another tenant's stored tenant field) are kept and reported.
    ///
    /// On a `Db` with a registry the tenant is refused from the start: when the registry has a
    /// tenant catalog, by every process on that catalog, present or future (the catalog marks
    /// it destroyed, adding a destroyed entry where its data was if it did not know the tenant;
    /// `Catalog::create` starts it afresh); without a catalog, by this process (a tombstone,
    /// until registered again). Its data is found where it lives whatever its status, so a
    /// suspended tenant can be destroyed.
    ///
    /// On a recording backend ([`crate::Backend::recording`]) nothing is written: the calls a
    /// real run sends are recorded, and the report counts what they would remove.
    ///
    /// The cost follows the tenant's data (its own index keys, its instances and the entries
    /// they derive) plus one server-side `SCAN MATCH` pass for keys no index names
    /// ([`Sweep::Keyspace`]); the model's shared index keys are never scanned (orphan entries
    /// found only there are for `rebuild_indexes`).
    pub async fn destroy_tenant(
        &self,
        tenant: &TenantId,
        models: &ModelSet,
    ) -> Result<DestroyReport> {
        self.destroy_tenant_with(tenant, models, Sweep::default())
            .await
    }

    /// [`Admin::destroy_tenant`], finding the tenant's data as `sweep` says.
    pub async fn destroy_tenant_with(
        &self,
        tenant: &TenantId,
        models: &ModelSet,
        sweep: Sweep,
    ) -> Result<DestroyReport> {
        let registry = self.db().registry();
        let backend = match registry {
            Some(registry) => {
                // Found before it is marked: a destroyed tenant is refused by lookups.
                let (backend, placement) = registry.locate(tenant).await?;
                // A late request must not re-create the tenant's data: with a catalog, no
                // process serves it (this one from now on); else this process does not.
                match registry.catalog() {
                    Some(catalog) if !backend.is_recording() => {
                        catalog.tombstone(tenant, placement).await?;
                        registry.refresh_catalog();
                    }
                    Some(_) => {}
                    None if !backend.is_recording() => registry.tombstone(tenant),
                    None => {}
                }
                backend
            }
            None => self.on(tenant).backend().await?,
        };
        // Its own handle on that backend: lookups refuse the tenant from now on.
        let admin = Db::from_backend(backend.clone()).admin();
        let entries: Vec<&Entry> = models.tenant_models().collect();
        let metas: Vec<&'static ModelMeta> = entries.iter().map(|e| e.meta).collect();
        let footprints = footprint::read(&backend, &metas, tenant, sweep).await?;
        let mut report = DestroyReport::default();
        for (e, fp) in entries.into_iter().zip(footprints) {
            destroy::model(&admin, &backend, e, tenant, fp, &mut report).await?;
        }
        // Its grants to shared instances (on the shared backend) and its change feed (a dry
        // run records the feed's deletion and leaves grants alone: they are on another backend).
        if !backend.is_recording() {
            let shared = self.db().admin().backend().await?;
            report.grants = crate::shared::purge_tenant(&shared, tenant).await?;
        }
        report.feed_keys = crate::feed::destroy_tenant_feed(&backend, tenant).await?;
        Ok(report)
    }

    /// Writes every instance and index entry of `tenant` as a msgpack stream of
    /// [`ExportRecord`]s; returns the number of records. [`Admin::import_tenant`] restores it
    /// exactly.
    ///
    /// Only the tenant's instances are written: a hash under the tenant's key whose stored
    /// tenant field names another tenant (or a key of another type) is skipped with a
    /// `tracing` warning (the audit reports it as `KeyMismatch`). Costs as
    /// [`Admin::destroy_tenant`].
    pub async fn export_tenant(
        &self,
        tenant: &TenantId,
        models: &ModelSet,
        out: impl Write,
    ) -> Result<u64> {
        self.export_tenant_with(tenant, models, out, Sweep::default())
            .await
    }

    /// [`Admin::export_tenant`], finding the tenant's data as `sweep` says.
    pub async fn export_tenant_with(
        &self,
        tenant: &TenantId,
        models: &ModelSet,
        out: impl Write,
        sweep: Sweep,
    ) -> Result<u64> {
        let backend = self.on(tenant).backend().await?;
        let entries: Vec<&Entry> = models.tenant_models().collect();
        let metas: Vec<&'static ModelMeta> = entries.iter().map(|e| e.meta).collect();
        let footprints = footprint::read(&backend, &metas, tenant, sweep).await?;
        let mut w = export::Writer::new(out);
        w.emit(&ExportRecord::Header {
            version: VERSION,
            tenant: tenant.to_string(),
        })?;
        for (e, fp) in entries.into_iter().zip(footprints) {
            export::model(&backend, e, tenant, fp, &mut w).await?;
        }
        w.finish()
    }

    /// Restores a stream written by [`Admin::export_tenant`] into `tenant`, each instance with
    /// its index entries atomically; returns the number of records read.
    ///
    /// Refuses records of another tenant or of keys outside the models' layout, an instance
    /// whose unique value another instance holds ([`crate::Error::UniqueViolation`], naming
    /// it: the same server-side check as `create`), and an existing instance whose stored
    /// fields differ from the stream's ([`crate::Error::AlreadyExists`]). An instance already
    /// there with exactly the stream's fields is not an error: an import cut at any point
    /// (a reader error, a killed connection, a dropped task) is completed by running it again,
    /// which ends in exactly the state of one uninterrupted import. A stream cut short (no
    /// [`ExportRecord::End`]) is refused ([`crate::Error::Stream`]) without writing its last
    /// batch.
    ///
    /// On a recording backend ([`crate::Backend::recording`]) the stream is read and checked
    /// and the script calls a real import sends are recorded instead (nothing is written).
    pub async fn import_tenant(
        &self,
        tenant: &TenantId,
        models: &ModelSet,
        input: impl Read,
    ) -> Result<u64> {
        let backend = self.on(tenant).backend().await?;
        let metas: Vec<&'static ModelMeta> = models.tenant_models().map(|e| e.meta).collect();
        import::run(&backend, &metas, tenant, input).await
    }

    /// The isolation audit of every model in `models` on the shared backend: index members
    /// outside their partition, keys that disagree with their tenant field, unique values with
    /// several owners, orphan and missing index entries (see [`IndexReport`]); and, when the
    /// set has a shared model, one more report of the shared keyspace and its grants
    /// ([`Admin::audit_shared`]). Tenants placed on other backends: [`Admin::audit_all_on`].
    pub async fn audit_all(&self, models: &ModelSet) -> Result<Vec<IndexReport>> {
        let mut out = Vec::with_capacity(models.entries.len() + 1);
        for e in &models.entries {
            out.push((e.audit)(self.clone()).await?);
        }
        // With a shared model in the set: the shared keyspace, grants and feeds too.
        if !models.shared_models().is_empty() {
            out.push(self.audit_shared(models).await?);
        }
        Ok(out)
    }

    /// [`Admin::rebuild_indexes`] of every model in `models` on this handle's backend.
    pub async fn rebuild_indexes_all(&self, models: &ModelSet) -> Result<Vec<IndexReport>> {
        let mut out = Vec::with_capacity(models.entries.len());
        for e in &models.entries {
            out.push((e.rebuild)(self.clone()).await?);
        }
        Ok(out)
    }

    /// The isolation audit of every model in `models` on the backend where `tenant` lives.
    pub async fn audit_all_on(
        &self,
        tenant: &TenantId,
        models: &ModelSet,
    ) -> Result<Vec<IndexReport>> {
        let mut out = Vec::with_capacity(models.entries.len());
        for e in &models.entries {
            out.push((e.audit)(self.on(tenant)).await?);
        }
        Ok(out)
    }

    /// Number of instances of each tenant model for `tenant`: what a count through the
    /// tenant's handle answers (members of its value set verified server-side to be its
    /// instances; planted, stale and foreign members are not counted).
    pub async fn tenant_counts(
        &self,
        tenant: &TenantId,
        models: &ModelSet,
    ) -> Result<BTreeMap<&'static str, u64>> {
        let session = self.db().tenant_id(tenant);
        let mut out = BTreeMap::new();
        for e in models.tenant_models() {
            let n = (e.count)(session.clone()).await?;
            out.insert(e.meta.name, n as u64);
        }
        Ok(out)
    }
}
