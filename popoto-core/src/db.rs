//! `Db` and scoped sessions: the write and read paths of single instances.

use std::collections::HashMap;

use tracing::Instrument;

use crate::admin::Admin;
use crate::backend::{Backend, BackendConfig, APPLY, CREATE};
use crate::bulk;
use crate::error::{BulkError, Error, Result};
use crate::keys;
use crate::model::{key_segments, FieldKind, Key, Model, ModelMeta, Record};
use crate::plan::{movable_partition_fields, Check, Instance, Outcome, Plan, Write};
use crate::query::Query;
use crate::registry::TenantRegistry;
use crate::tenant::{Scope, TenantId};
use crate::verify::{Guard, Skip};

/// How often a write is retried when its instance changed between read and write.
const MAX_ATTEMPTS: u32 = 8;

/// A connection to Redis: the root handle, from which tenant handles ([`Db::tenant`]), the
/// unscoped handle for models without a tenant ([`Db::unscoped`]) and the admin handle
/// ([`Db::admin`]) are made. It does no reads or writes of its own.
#[derive(Clone, Debug)]
pub struct Db {
    root: Target,
    unscoped: Session,
    registry: Option<TenantRegistry>,
}

impl Db {
    /// Connects to `url` (`redis://host:port/db`) with default pool settings.
    ///
    /// No connection is dialed until the first call; a bad URL is an error at once.
    pub async fn connect(url: &str) -> Result<Db> {
        Db::with_config(BackendConfig::new(url))
    }

    /// Connects with explicit settings.
    pub fn with_config(config: BackendConfig) -> Result<Db> {
        Ok(Db::from_backend(Backend::new(config)?))
    }

    /// Wraps an existing backend.
    pub fn from_backend(backend: Backend) -> Db {
        Db::on(Target::Fixed(backend), None)
    }

    /// A `Db` whose tenants are placed by `registry` (shared keyspace, own database, own
    /// server); model code is the same whatever the placement.
    pub fn with_registry(registry: TenantRegistry) -> Db {
        let shared = registry.shared().clone();
        Db::on(Target::Fixed(shared), Some(registry))
    }

    fn on(root: Target, registry: Option<TenantRegistry>) -> Db {
        Db {
            unscoped: Session {
                target: root.clone(),
                scope: Scope::Unscoped,
            },
            root,
            registry,
        }
    }

    /// The tenant registry, if this `Db` has one.
    pub fn registry(&self) -> Option<&TenantRegistry> {
        self.registry.as_ref()
    }

    /// The admin handle on the shared backend: reads and writes across tenants, raw access and
    /// maintenance.
    pub fn admin(&self) -> Admin {
        Admin::new(self.clone(), self.root.clone())
    }

    /// The admin handle on the backend where `tenant` lives (maintenance of one tenant).
    pub fn admin_on(&self, tenant: &TenantId) -> Admin {
        Admin::new(self.clone(), self.target_for(tenant))
    }

    pub(crate) fn target_for(&self, tenant: &TenantId) -> Target {
        match &self.registry {
            Some(r) => Target::Routed(r.clone(), tenant.clone()),
            None => self.root.clone(),
        }
    }

    /// A handle confined to one tenant: every read and write of a tenant model goes to it.
    pub fn tenant(&self, id: impl AsRef<str>) -> Result<Session> {
        Ok(self.tenant_id(&TenantId::new(id)?))
    }

    /// A handle confined to an already validated tenant.
    pub fn tenant_id(&self, id: &TenantId) -> Session {
        Session {
            target: self.target_for(id),
            scope: Scope::Tenant(id.clone()),
        }
    }

    /// A handle for the ambient tenant of this task (`popoto::tenant::with_tenant`).
    pub fn current(&self) -> Result<Session> {
        crate::tenant::current_tenant()
            .map(|t| self.tenant_id(&t))
            .ok_or(Error::NoAmbientTenant)
    }

    /// The handle for models without a tenant field (shared data); tenant models are refused
    /// through it with [`Error::NoTenant`].
    pub fn unscoped(&self) -> &Session {
        &self.unscoped
    }
}

/// A handle with a [`Scope`]: one tenant ([`Db::tenant`]) or unscoped ([`Db::unscoped`]); the
/// admin scope is only reachable through [`Admin`]. It gives no raw access to Redis.
#[derive(Clone, Debug)]
pub struct Session {
    target: Target,
    scope: Scope,
}

/// Where a session's commands go: one backend, or the tenant's backend in a registry.
#[derive(Clone, Debug)]
pub(crate) enum Target {
    /// A fixed backend.
    Fixed(Backend),
    /// The backend the registry places this tenant on.
    Routed(TenantRegistry, TenantId),
}

/// The outcome of reading an instance's movable partition values before a write.
struct Stored {
    /// Raw bytes of each movable partition field (`None`: absent).
    raw: Vec<(usize, Option<Vec<u8>>)>,
    /// Not read but assumed equal to the value being written (the common update that moves
    /// nothing): the plan then checks the assumption instead of moving entries.
    assumed: bool,
}

impl Stored {
    /// Nothing stored to move (no movable field, or a create).
    fn none(meta: &ModelMeta) -> Stored {
        Stored {
            raw: movable_partition_fields(meta)
                .into_iter()
                .map(|f| (f, None))
                .collect(),
            assumed: false,
        }
    }

    /// The stored partition values assumed equal to `record`'s (checked by the plan).
    fn assumed(meta: &ModelMeta, record: &Record) -> Stored {
        Stored {
            raw: movable_partition_fields(meta)
                .into_iter()
                .map(|f| (f, record.values.get(f).cloned()))
                .collect(),
            assumed: true,
        }
    }
}

impl Session {
    pub(crate) fn with_scope(target: Target, scope: Scope) -> Session {
        Session { target, scope }
    }

    /// The scope of this handle.
    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// The backend this handle talks to (built on first use for lazily registered tenants).
    pub(crate) async fn backend(&self) -> Result<Backend> {
        match &self.target {
            Target::Fixed(b) => Ok(b.clone()),
            Target::Routed(r, t) => r.backend_for(t).await,
        }
    }

    fn span<M: Model>(&self, op: &'static str) -> tracing::Span {
        tracing::debug_span!(
            "popoto",
            op,
            model = M::META.name,
            tenant = self.scope.label(),
            commands = tracing::field::Empty
        )
    }

    /// Checks that this scope may use model `M` at all.
    pub(crate) fn check_model<M: Model>(&self) -> Result<()> {
        if M::META.tenant.is_some() && self.scope == Scope::Unscoped {
            return Err(Error::NoTenant {
                model: M::META.name,
            });
        }
        Ok(())
    }

    /// Fills an empty tenant field from the scope and refuses a value of another tenant.
    fn scope_value<M: Model>(&self, value: &mut M) -> Result<()> {
        if let Scope::Tenant(t) = &self.scope {
            if value.tenant_id() == Some("") {
                value.set_tenant_id(t.as_str());
            }
        }
        self.check_value(value)
    }

    /// The record of `value` as this scope writes it: an empty tenant field takes the scope's
    /// tenant (the rule of `create`, for every write), a value of another tenant is refused.
    fn record_of<M: Model>(&self, value: &M) -> Result<Record> {
        let fill = match (&self.scope, M::META.tenant) {
            (Scope::Tenant(t), Some(f)) if value.tenant_id() == Some("") => Some((f, t)),
            _ => None,
        };
        let Some((f, t)) = fill else {
            self.check_value(value)?;
            return value.to_record();
        };
        self.check_model::<M>()?;
        let mut record = value.to_record()?;
        record.values[f] = crate::verify::tenant_bytes::<M>(f, t.as_str())?;
        record.segments[f] = Some(t.to_string());
        Ok(record)
    }

    /// Refuses a tenant value (of a value or key of model `M`) other than this scope's tenant;
    /// the admin scope refuses invalid tenant ids (empty, blank, control characters).
    pub(crate) fn require_tenant<M: Model>(&self, found: Option<&str>) -> Result<()> {
        self.check_model::<M>()?;
        match (&self.scope, M::META.tenant) {
            (Scope::Tenant(t), Some(field)) => {
                let found = found.unwrap_or_default();
                if found != t.as_str() {
                    return Err(Error::TenantMismatch {
                        model: M::META.name,
                        field: M::META.fields[field].name,
                        expected: t.to_string(),
                        found: found.to_owned(),
                    });
                }
            }
            (Scope::Admin, Some(_)) => {
                TenantId::new(found.unwrap_or_default())?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Refuses a value of another tenant (without filling anything).
    pub(crate) fn check_value<M: Model>(&self, value: &M) -> Result<()> {
        self.require_tenant::<M>(value.tenant_id())
    }

    /// Refuses a key of another tenant.
    pub(crate) fn check_key<M: Model>(&self, key: &Key<M>) -> Result<()> {
        self.require_tenant::<M>(key.tenant())
    }

    // ---------------------------------------------------------------- writes

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
            self.write(Mode::Create, &key, &record, hidden.as_deref(), fresh)
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
    pub async fn save<M: Model>(&self, value: &M) -> Result<()> {
        let record = self.record_of(value)?;
        let key = self.key_of_record::<M>(&record)?;
        self.write(Mode::Save, &key, &record, None, false)
            .instrument(self.span::<M>("save"))
            .await
            .map(|_| ())
    }

    /// Inserts or updates the instance stored at `key` (for models with a hidden auto key).
    pub async fn save_at<M: Model>(&self, key: &Key<M>, value: &M) -> Result<()> {
        self.check_key(key)?;
        let record = self.record_of(value)?;
        let hidden = M::META
            .has_hidden_key()
            .then(|| key.segments().first().cloned())
            .flatten();
        if key_segments::<M>(&record, hidden.as_deref()) != key.segments() {
            return Err(Error::InvalidValue {
                model: M::META.name,
                field: "<key>",
                reason: format!(
                    "the value's key fields do not match key {}",
                    key.redis_key()
                ),
            });
        }
        self.write(Mode::Save, key, &record, hidden.as_deref(), false)
            .instrument(self.span::<M>("save"))
            .await
            .map(|_| ())
    }

    /// Changes key fields: moves the hash (foreign fields included), every index entry and the
    /// confidence entries from `old`'s key to `new`'s, atomically. `old` must exist; `new`'s key
    /// must not.
    pub async fn move_key<M: Model>(&self, old: &M, mut new: M) -> Result<M> {
        let old_record = self.record_of(old)?;
        self.scope_value(&mut new)?;
        new.fill_auto_keys();
        let span = self.span::<M>("move_key");
        async {
            let new_record = new.to_record()?;
            let old_key = self.key_of_record::<M>(&old_record)?;
            let new_key = self.key_of_record::<M>(&new_record)?;
            if old_key == new_key {
                self.write(Mode::Save, &new_key, &new_record, None, false)
                    .await?;
                return Ok(new);
            }
            self.relocate(&old_key, &old_record, &new_key, &new_record)
                .await?;
            Ok(new)
        }
        .instrument(span)
        .await
    }

    /// Deletes an instance and all its index and confidence entries; `false` if it did not exist.
    pub async fn delete<M: Model>(&self, value: &M) -> Result<bool> {
        let record = self.record_of(value)?;
        let key = self.key_of_record::<M>(&record)?;
        self.delete_at(&key, Some(&record)).await
    }

    /// Deletes the instance at `key`; `false` if it did not exist.
    pub async fn delete_key<M: Model>(&self, key: &Key<M>) -> Result<bool> {
        self.delete_at(key, None).await
    }

    /// Deletes the instance at `key`; with `assumed`, first assuming its stored partition
    /// values are the given record's (one round trip when they are).
    async fn delete_at<M: Model>(&self, key: &Key<M>, assumed: Option<&Record>) -> Result<bool> {
        self.check_key(key)?;
        let span = self.span::<M>("delete");
        async {
            let redis_key = key.redis_key();
            for attempt in 1..=MAX_ATTEMPTS {
                let stored = match assumed {
                    Some(record) if attempt == 1 => Stored::assumed(M::META, record),
                    _ => self.read_stored::<M>(&redis_key).await?,
                };
                let (plan, record) = Self::delete_plan(key, &stored)?;
                match self.apply::<M>("delete", &plan).await? {
                    Outcome::Applied(n) => return Ok(n > 0),
                    Outcome::Changed if attempt < MAX_ATTEMPTS => continue,
                    other => {
                        return Err(self.outcome_error::<M>(other, &record, &redis_key, attempt))
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

    /// Deletes many instances in pipelined batches, each atomically; returns how many existed.
    pub async fn delete_many<M: Model>(&self, keys: &[Key<M>]) -> Result<u64> {
        for k in keys {
            self.check_key(k)?;
        }
        let span = self.span::<M>("delete_many");
        async {
            let meta = M::META;
            let movable = movable_partition_fields(meta);
            let backend = self.backend().await?;
            let mut deleted = 0;
            for chunk in keys.chunks(1000) {
                let stored: Vec<Stored> = if movable.is_empty() {
                    chunk
                        .iter()
                        .map(|_| Stored {
                            raw: Vec::new(),
                            assumed: false,
                        })
                        .collect()
                } else {
                    let mut pipe = redis::pipe();
                    for k in chunk {
                        pipe.cmd("HMGET").arg(k.redis_key()).arg(
                            movable
                                .iter()
                                .map(|&f| meta.fields[f].name)
                                .collect::<Vec<_>>(),
                        );
                    }
                    let raw: Vec<Vec<Option<Vec<u8>>>> =
                        backend.pipeline("delete_many", meta.name, &pipe).await?;
                    raw.into_iter()
                        .map(|r| Stored {
                            raw: movable.iter().copied().zip(r).collect(),
                            assumed: false,
                        })
                        .collect()
                };
                let mut calls = Vec::with_capacity(chunk.len());
                for (k, st) in chunk.iter().zip(&stored) {
                    let (plan, _) = Self::delete_plan(k, st)?;
                    calls.push((plan.keys.clone(), plan.args()));
                }
                let replies = backend
                    .eval_many("delete_many", meta.name, &APPLY, &calls)
                    .await?;
                for (k, reply) in chunk.iter().zip(replies) {
                    let reply = reply.map_err(|source| Error::Redis {
                        op: "delete_many",
                        model: meta.name,
                        source,
                    })?;
                    match Plan::outcome(meta, "delete_many", reply)? {
                        Outcome::Applied(n) => deleted += u64::from(n > 0),
                        // Changed since the pipelined read: redo this one alone.
                        Outcome::Changed => deleted += u64::from(self.delete_key(k).await?),
                        other => {
                            let (_, record) = Self::delete_plan(
                                k,
                                &Stored {
                                    raw: Vec::new(),
                                    assumed: false,
                                },
                            )?;
                            return Err(self.outcome_error::<M>(other, &record, &k.redis_key(), 1));
                        }
                    }
                }
            }
            Ok(deleted)
        }
        .instrument(span)
        .await
    }

    /// The plan deleting the instance at `key` given its stored partition values.
    fn delete_plan<M: Model>(key: &Key<M>, stored: &Stored) -> Result<(Plan, Record)> {
        let meta = M::META;
        let redis_key = key.redis_key();
        let mut record = Record {
            segments: vec![None; meta.fields.len()],
            ..Record::default()
        };
        for (pos, &i) in meta.key_fields.iter().enumerate() {
            record.segments[i] = key.segments().get(pos).cloned();
        }
        let hidden = meta
            .has_hidden_key()
            .then(|| key.segments().first().map(String::as_str))
            .flatten();
        let mut plan = Plan::default();
        let k = plan.key(redis_key.clone());
        plan.writes.push(Write::Del { key: k });
        for (f, raw) in &stored.raw {
            plan.checks.push(if stored.assumed {
                Check::FieldOrNew {
                    key: k,
                    field: meta.fields[*f].name.to_owned(),
                    value: raw.clone().unwrap_or_default(),
                }
            } else {
                Check::Field {
                    key: k,
                    field: meta.fields[*f].name.to_owned(),
                    value: raw.clone(),
                }
            });
            record.segments[*f] = match raw {
                Some(raw) => Some(M::segment_from_stored(&redis_key, *f, raw)?),
                None => Some("None".to_owned()),
            };
        }
        let inst = Instance {
            meta,
            key: redis_key,
            record: &record,
            hidden_key: hidden,
        };
        inst.remove_indexes(&mut plan, true)?;
        plan.add_type_checks();
        Ok((plan, record))
    }

    /// Creates many instances in pipelined batches; each one is written atomically on its own.
    ///
    /// A record that fails (invalid, taken unique value, existing key) is refused alone; the
    /// others are still written, and [`BulkError`] gives back every record, written or not
    /// (`?` turns it into [`Error::Bulk`]).
    pub async fn create_many<M: Model>(
        &self,
        values: Vec<M>,
    ) -> std::result::Result<Vec<M>, BulkError<M>> {
        self.write_many(Mode::Create, values)
            .instrument(self.span::<M>("create_many"))
            .await
    }

    /// Saves (inserts or updates) many instances in pipelined batches, each atomically.
    ///
    /// Models with non-key partition fields read their stored partition values first (one
    /// pipelined round trip per batch). Failures are reported as for [`Session::create_many`].
    pub async fn save_many<M: Model>(
        &self,
        values: Vec<M>,
    ) -> std::result::Result<Vec<M>, BulkError<M>> {
        self.write_many(Mode::Save, values)
            .instrument(self.span::<M>("save_many"))
            .await
    }

    // ---------------------------------------------------------------- reads

    /// Reads one instance by key. Through a tenant handle, an instance whose stored tenant
    /// field names another tenant is refused ([`Error::NotInScope`]), never returned.
    pub async fn get<M: Model>(&self, key: &Key<M>) -> Result<Option<M>> {
        self.check_key(key)?;
        let redis_key = key.redis_key();
        let span = self.span::<M>("get");
        span.record("commands", 1);
        async {
            let fields: Vec<(Vec<u8>, Vec<u8>)> = self
                .backend()
                .await?
                .query("get", M::META.name, redis::cmd("HGETALL").arg(&redis_key))
                .await?;
            if fields.is_empty() {
                return Ok(None);
            }
            let value = M::from_hash(&redis_key, fields)?;
            match Guard::of::<M>(&self.scope).value(&value) {
                Ok(()) => Ok(Some(value)),
                Err(_) => Err(self.not_in_scope::<M>(redis_key)),
            }
        }
        .instrument(span)
        .await
    }

    /// Whether an instance of this scope exists at `key` (through a tenant handle, checked
    /// server-side against the stored tenant field, like every read).
    pub async fn exists<M: Model>(&self, key: &Key<M>) -> Result<bool> {
        self.check_key(key)?;
        let redis_key = key.redis_key();
        let guard = Guard::of::<M>(&self.scope);
        let backend = self.backend().await?;
        async {
            if !guard.is_tenant() {
                return backend
                    .query("exists", M::META.name, redis::cmd("EXISTS").arg(&redis_key))
                    .await;
            }
            let flags = guard
                .verify::<M>(&backend, std::slice::from_ref(&redis_key))
                .await?;
            match flags.first() {
                Some(None) => Ok(true),
                Some(Some(Skip::Stale)) => Ok(false),
                _ => Err(self.not_in_scope::<M>(redis_key)),
            }
        }
        .instrument(self.span::<M>("exists"))
        .await
    }

    fn not_in_scope<M: Model>(&self, key: String) -> Error {
        let field = M::META.tenant.map_or("?", |f| M::META.fields[f].name);
        tracing::warn!(model = M::META.name, key = %key, "instance with another tenant's {field} refused");
        Error::NotInScope {
            model: M::META.name,
            field,
            key,
        }
    }

    /// A query on model `M` within this scope.
    pub fn query<M: Model>(&self) -> Query<'_, M> {
        Query::new(self)
    }

    // ---------------------------------------------------------------- internals

    fn key_of_record<M: Model>(&self, record: &Record) -> Result<Key<M>> {
        if M::META.has_hidden_key() {
            return Err(Error::InvalidValue {
                model: M::META.name,
                field: "_auto_key",
                reason: "the model's key is Popoto's hidden _auto_key: use create_keyed/save_at/delete_key".into(),
            });
        }
        for &i in M::META.key_fields {
            if M::META.fields[i].kind == FieldKind::AutoKey
                && record
                    .segments
                    .get(i)
                    .and_then(|s| s.as_deref())
                    .is_none_or(str::is_empty)
            {
                return Err(Error::InvalidValue {
                    model: M::META.name,
                    field: M::META.fields[i].name,
                    reason: "the auto key is empty: use create to generate it".into(),
                });
            }
        }
        Ok(Key::from_segments(key_segments::<M>(record, None)))
    }

    /// Reads the stored bytes of the movable partition fields (no command if there are none).
    async fn read_stored<M: Model>(&self, redis_key: &str) -> Result<Stored> {
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

    /// Builds the plan of a create or save, given the stored partition values.
    fn write_plan<M: Model>(
        mode: Mode,
        key: &Key<M>,
        record: &Record,
        hidden: Option<&str>,
        stored: &Stored,
    ) -> Result<Plan> {
        let meta = M::META;
        let redis_key = key.redis_key();
        let inst = Instance {
            meta,
            key: redis_key.clone(),
            record,
            hidden_key: hidden,
        };
        let mut plan = Plan::default();
        let k = plan.key(redis_key.clone());
        if mode == Mode::Create {
            plan.checks.push(Check::Absent(k));
        }
        inst.unique_checks(&mut plan, None);
        // Moves out of partitions whose (non-key) partition value changed.
        let mut old_segments: HashMap<usize, String> = HashMap::new();
        for (f, raw) in &stored.raw {
            if stored.assumed {
                plan.checks.push(Check::FieldOrNew {
                    key: k,
                    field: meta.fields[*f].name.to_owned(),
                    value: raw.clone().unwrap_or_default(),
                });
                continue;
            }
            plan.checks.push(Check::Field {
                key: k,
                field: meta.fields[*f].name.to_owned(),
                value: raw.clone(),
            });
            if let Some(raw) = raw {
                old_segments.insert(*f, M::segment_from_stored(&redis_key, *f, raw)?);
            }
        }
        let mut moves = Vec::new();
        if !old_segments.is_empty() {
            let mut old = record.clone();
            for (f, s) in &old_segments {
                old.segments[*f] = Some(s.clone());
            }
            let old_inst = Instance {
                meta,
                key: redis_key.clone(),
                record: &old,
                hidden_key: hidden,
            };
            for (i, f) in meta.fields.iter().enumerate() {
                if !f.partition_by.iter().any(|p| old_segments.contains_key(p)) {
                    continue;
                }
                match f.kind {
                    FieldKind::Sorted => {
                        let (from, to) = (old_inst.sorted_key(i), inst.sorted_key(i));
                        if from != to {
                            let z = plan.key(from);
                            moves.push(Write::ZRem {
                                key: z,
                                member: redis_key.clone(),
                            });
                        }
                    }
                    FieldKind::Confidence { .. } => {
                        let (from, to) = (old_inst.confidence_key(i)?, inst.confidence_key(i)?);
                        if from != to {
                            let (from, to) = (plan.key(from), plan.key(to));
                            moves.push(Write::HMove {
                                from,
                                from_field: redis_key.clone(),
                                to,
                                to_field: redis_key.clone(),
                            });
                        }
                    }
                    _ => {}
                }
            }
        }
        plan.writes.push(Write::HSet {
            key: k,
            pairs: inst.hash_pairs(),
        });
        plan.writes.extend(moves);
        inst.add_indexes(&mut plan)?;
        plan.add_type_checks();
        Ok(plan)
    }

    async fn write<M: Model>(
        &self,
        mode: Mode,
        key: &Key<M>,
        record: &Record,
        hidden: Option<&str>,
        fresh: bool,
    ) -> Result<i64> {
        let redis_key = key.redis_key();
        for attempt in 1..=MAX_ATTEMPTS {
            if mode == Mode::Create {
                let inst = Instance {
                    meta: M::META,
                    key: redis_key.clone(),
                    record,
                    hidden_key: hidden,
                };
                let (cmd, commands) = inst.create_cmd(&CREATE, fresh)?;
                tracing::Span::current().record("commands", commands);
                let reply = self
                    .backend()
                    .await?
                    .eval_cmd("create", M::META.name, &CREATE, &cmd)
                    .await?;
                return match Plan::outcome(M::META, "create", reply)? {
                    Outcome::Applied(n) => Ok(n),
                    other => Err(self.outcome_error::<M>(other, record, &redis_key, attempt)),
                };
            }
            // An update first assumes its partitions did not move (one round trip); if they did,
            // the plan is refused and the next attempt reads them.
            let stored = match mode {
                Mode::Create => Stored::none(M::META),
                Mode::Save if attempt == 1 => Stored::assumed(M::META, record),
                Mode::Save => self.read_stored::<M>(&redis_key).await?,
            };
            let plan = Self::write_plan(mode, key, record, hidden, &stored)?;
            match self.apply::<M>(mode.op(), &plan).await? {
                Outcome::Applied(n) => return Ok(n),
                Outcome::Changed if attempt < MAX_ATTEMPTS => continue,
                other => return Err(self.outcome_error::<M>(other, record, &redis_key, attempt)),
            }
        }
        Err(Error::Contention {
            model: M::META.name,
            key: redis_key,
            attempts: MAX_ATTEMPTS,
        })
    }

    async fn relocate<M: Model>(
        &self,
        old_key: &Key<M>,
        old_record: &Record,
        new_key: &Key<M>,
        new_record: &Record,
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
            new_inst.add_indexes(&mut plan)?;
            plan.add_type_checks();
            match self.apply::<M>("move_key", &plan).await? {
                Outcome::Applied(_) => return Ok(()),
                Outcome::Changed if attempt < MAX_ATTEMPTS => continue,
                Outcome::Exists(k) => {
                    return Err(Error::AlreadyExists {
                        model: meta.name,
                        key: k,
                    })
                }
                other => {
                    return Err(self.outcome_error::<M>(other, new_record, &new_redis, attempt))
                }
            }
        }
        Err(Error::Contention {
            model: meta.name,
            key: old_redis,
            attempts: MAX_ATTEMPTS,
        })
    }

    async fn write_many<M: Model>(
        &self,
        mode: Mode,
        mut values: Vec<M>,
    ) -> std::result::Result<Vec<M>, BulkError<M>> {
        let outcomes = self.write_rows(mode, &mut values).await;
        if outcomes.iter().all(Option::is_none) {
            return Ok(values);
        }
        let mut err = BulkError {
            model: M::META.name,
            written: Vec::new(),
            failed: Vec::new(),
        };
        for (i, (value, outcome)) in values.into_iter().zip(outcomes).enumerate() {
            match outcome {
                None => err.written.push((i, value)),
                Some(e) => err.failed.push((i, value, e)),
            }
        }
        Err(err)
    }

    /// Writes every valid record of `values` (each atomically; an invalid one is refused alone)
    /// and returns, per record, why it was not written (`None`: written).
    async fn write_rows<M: Model>(&self, mode: Mode, values: &mut [M]) -> Vec<Option<Error>> {
        let meta = M::META;
        let mut outcomes: Vec<Option<Error>> = Vec::with_capacity(values.len());
        // Index in `values`, key, record and hidden key of each valid record.
        let mut prepared = Vec::with_capacity(values.len());
        // Whether every key holds a uuid4 generated here: such creates need no existence check.
        let mut fresh = mode == Mode::Create;
        for (i, v) in values.iter_mut().enumerate() {
            match self.prepare_row(mode, v, &mut fresh) {
                Ok((key, record, hidden)) => {
                    prepared.push((i, key, record, hidden));
                    outcomes.push(None);
                }
                Err(e) => outcomes.push(Some(e)),
            }
        }
        let replies = match self.send_rows(mode, &prepared, fresh).await {
            Ok(r) => r,
            Err(e) => {
                // The call failed as a whole: every record sent has an unknown outcome.
                for (i, ..) in &prepared {
                    outcomes[*i] = Some(e.clone());
                }
                return outcomes;
            }
        };
        for ((i, key, record, hidden), reply) in prepared.iter().zip(replies) {
            let outcome = reply
                .map_err(|source| Error::Redis {
                    op: mode.op(),
                    model: meta.name,
                    source,
                })
                .and_then(|v| Plan::outcome(meta, mode.op(), v));
            outcomes[*i] = match outcome {
                Ok(Outcome::Applied(_)) => None,
                // Changed concurrently since the pipelined read: redo this one alone.
                Ok(Outcome::Changed) => self
                    .write(mode, key, record, hidden.as_deref(), false)
                    .await
                    .err(),
                Ok(other) => Some(self.outcome_error::<M>(other, record, &key.redis_key(), 1)),
                Err(e) => Some(e),
            };
        }
        outcomes
    }

    /// Checks one record of a bulk write through this scope and renders it.
    fn prepare_row<M: Model>(
        &self,
        mode: Mode,
        v: &mut M,
        fresh: &mut bool,
    ) -> Result<(Key<M>, Record, Option<String>)> {
        let meta = M::META;
        self.scope_value(v)?;
        if mode == Mode::Create {
            *fresh &= v.fill_auto_keys() || meta.has_hidden_key();
            v.fill_confidence_initials();
        }
        let record = v.to_record()?;
        let hidden =
            (meta.has_hidden_key() && mode == Mode::Create).then(crate::__private::new_auto_key);
        let key: Key<M> = match &hidden {
            Some(h) => Key::from_segments(key_segments::<M>(&record, Some(h))),
            None => self.key_of_record::<M>(&record)?,
        };
        Ok((key, record, hidden))
    }

    /// Sends the prepared records of a bulk write; one reply per record, in order.
    async fn send_rows<M: Model>(
        &self,
        mode: Mode,
        prepared: &[(usize, Key<M>, Record, Option<String>)],
        fresh: bool,
    ) -> Result<Vec<redis::RedisResult<redis::Value>>> {
        let meta = M::META;
        tracing::Span::current().record("commands", prepared.len());
        if prepared.is_empty() {
            return Ok(Vec::new());
        }
        let backend = self.backend().await?;
        let movable = movable_partition_fields(meta);
        if movable.is_empty() {
            // Instances whose partitions are all in their keys: many per script call.
            let rows: Vec<bulk::Row<'_>> = prepared
                .iter()
                .map(|(_, key, record, hidden)| bulk::Row {
                    key: key.redis_key(),
                    record,
                    hidden: hidden.as_deref(),
                })
                .collect();
            let write = match mode {
                Mode::Create if fresh => bulk::Write::CreateFresh,
                Mode::Create => bulk::Write::Create,
                Mode::Save => bulk::Write::Save,
            };
            return bulk::insert_many(&backend, mode.op(), meta, write, &rows).await;
        }
        // Saves assume their partitions did not move; a refused one is redone alone.
        let mut calls = Vec::with_capacity(prepared.len());
        for (_, key, record, hidden) in prepared {
            let stored = match mode {
                Mode::Create => Stored::none(meta),
                Mode::Save => Stored::assumed(meta, record),
            };
            let plan = Self::write_plan(mode, key, record, hidden.as_deref(), &stored)?;
            calls.push((plan.keys.clone(), plan.args()));
        }
        backend
            .eval_many(mode.op(), meta.name, &APPLY, &calls)
            .await
    }

    async fn apply<M: Model>(&self, op: &'static str, plan: &Plan) -> Result<Outcome> {
        tracing::Span::current().record("commands", plan.command_count());
        let reply = self
            .backend()
            .await?
            .eval(op, M::META.name, &APPLY, &plan.keys, &plan.args())
            .await?;
        Plan::outcome(M::META, op, reply)
    }

    fn outcome_error<M: Model>(
        &self,
        outcome: Outcome,
        record: &Record,
        key: &str,
        attempts: u32,
    ) -> Error {
        let meta: &'static ModelMeta = M::META;
        match outcome {
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

impl Session {
    /// `key` as this handle may show it: through a tenant handle, the key of another tenant's
    /// instance (a unique value taken model-wide) is replaced by [`OTHER_TENANT`].
    fn visible_key<M: Model>(&self, key: String) -> String {
        let Scope::Tenant(t) = &self.scope else {
            return key;
        };
        match Key::<M>::parse(&key) {
            Ok(k) if k.tenant().is_none_or(|owner| owner == t.as_str()) => key,
            _ => OTHER_TENANT.to_owned(),
        }
    }
}

/// What a tenant handle shows instead of another tenant's instance key.
pub const OTHER_TENANT: &str = "<an instance of another tenant>";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Create,
    Save,
}

impl Mode {
    fn op(self) -> &'static str {
        match self {
            Mode::Create => "create",
            Mode::Save => "save",
        }
    }
}

/// The Redis key of model `M`'s class set (for callers that need to inspect it).
pub fn class_key<M: Model>() -> String {
    keys::class_key(M::META)
}
