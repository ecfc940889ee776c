//! `Db` (the root handle) and `Session` (a tenant or unscoped handle): scope checks and reads;
//! writes of one instance in `write`, bulk writes in `bulk_write`.

use tracing::Instrument;

use crate::backend::{Backend, BackendConfig};
use crate::error::{Error, Result};
use crate::model::{key_segments, FieldKind, Key, Model, Record};
use crate::registry::TenantRegistry;
use crate::tenant::{Scope, TenantId};
use crate::verify::{Guard, Skip};

mod bulk_write;
mod feed_write;
mod relocate;
mod update;
mod write;

/// How often a write is retried when its instance changed between read and write.
const MAX_ATTEMPTS: u32 = 8;

/// A connection to Redis: the root handle, from which tenant handles ([`Db::tenant`]), the
/// unscoped handle for models without a tenant ([`Db::unscoped`]) and the admin handle
/// ([`Db::admin`]) are made. It does no reads or writes of its own.
#[derive(Clone, Debug)]
pub struct Db {
    /// Where the admin handle and unrouted sessions go.
    pub(crate) root: Target,
    unscoped: Session,
    registry: Option<TenantRegistry>,
}

impl Db {
    /// Connects to `url` (`redis://host:port/db`) with default pool settings and checks that
    /// the server answers (one `PING`), so a wrong address or password fails here, not at the
    /// first request. [`Db::with_config`] builds the pool without dialing.
    pub async fn connect(url: &str) -> Result<Db> {
        let db = Db::with_config(BackendConfig::new(url))?;
        let Target::Fixed(backend) = &db.root else {
            return Ok(db);
        };
        backend
            .query::<String>("connect", "-", &redis::cmd("PING"))
            .await?;
        Ok(db)
    }

    /// A `Db` with explicit settings; no connection is dialed until the first call, a bad URL
    /// is an error at once.
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
                origin: None,
            },
            root,
            registry,
        }
    }

    /// The tenant registry, if this `Db` has one.
    pub fn registry(&self) -> Option<&TenantRegistry> {
        self.registry.as_ref()
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
            origin: None,
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
/// admin scope is only reachable through [`Admin`](crate::admin::Admin). It gives no raw
/// access to Redis.
#[derive(Clone, Debug)]
pub struct Session {
    target: Target,
    scope: Scope,
    /// The origin recorded in the change events of this handle's writes.
    origin: Option<std::sync::Arc<str>>,
}

/// Where a session's commands go: one backend, or the tenant's backend in a registry.
#[derive(Clone, Debug)]
pub(crate) enum Target {
    /// A fixed backend.
    Fixed(Backend),
    /// The backend the registry places this tenant on.
    Routed(TenantRegistry, TenantId),
}

impl Session {
    /// How this session's keys are laid out (a registry lays out every tenant's keys as its
    /// shared keyspace's).
    pub(crate) fn layout(&self) -> crate::keys::Layout {
        match &self.target {
            Target::Fixed(backend) => backend.layout(),
            Target::Routed(registry, _) => registry.shared().layout(),
        }
    }

    pub(crate) fn with_scope(target: Target, scope: Scope) -> Session {
        Session {
            target,
            scope,
            origin: None,
        }
    }

    /// The same handle, recording `origin` (a connection or process label, never a tenant
    /// id: change events show it) in the change events of its writes.
    pub fn with_origin(&self, origin: impl AsRef<str>) -> Session {
        Session {
            origin: Some(origin.as_ref().into()),
            ..self.clone()
        }
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

    /// The shared backend of this handle's `Db` (where shared instances and their grants
    /// live), whatever backend the tenant is placed on.
    pub(crate) async fn shared_backend(&self) -> Result<Backend> {
        match &self.target {
            Target::Fixed(b) => Ok(b.clone()),
            Target::Routed(r, _) => Ok(r.shared().clone()),
        }
    }

    pub(crate) fn span<M: Model>(&self, op: &'static str) -> tracing::Span {
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

    // ---------------------------------------------------------------- reads

    /// Every field of the hash at `redis_key` (one `HGETALL`), `None` if there is none.
    async fn hash<M: Model>(&self, redis_key: &str) -> Result<Option<Vec<(Vec<u8>, Vec<u8>)>>> {
        let fields: Vec<(Vec<u8>, Vec<u8>)> = self
            .backend()
            .await?
            .query("get", M::META.name, redis::cmd("HGETALL").arg(redis_key))
            .await?;
        Ok((!fields.is_empty()).then_some(fields))
    }

    /// Reads one instance by key. Through a tenant handle, an instance whose stored tenant
    /// field names another tenant is refused ([`Error::NotInScope`]), never returned.
    pub async fn get<M: Model>(&self, key: &Key<M>) -> Result<Option<M>> {
        self.check_key(key)?;
        let redis_key = key.redis_key_in(self.layout());
        let span = self.span::<M>("get");
        span.record("commands", 1);
        async {
            let Some(fields) = self.hash::<M>(&redis_key).await? else {
                return Ok(None);
            };
            let value = M::from_hash(&redis_key, fields)?;
            match Guard::of::<M>(self.layout(), &self.scope).value(&value) {
                Ok(()) => Ok(Some(value)),
                Err(_) => Err(self.not_in_scope::<M>(redis_key)),
            }
        }
        .instrument(span)
        .await
    }

    /// Every field of the hash stored at `key`, each decoded as a [`crate::codec::Dynamic`] value,
    /// whether the struct declares it or not (fields popoto or an older struct wrote included):
    /// one `HGETALL`, `None` if there is no instance. Through a tenant handle, the stored
    /// tenant field must be the tenant's ([`Error::NotInScope`] otherwise). A value that is not
    /// msgpack is [`Error::Decode`] naming its field; popoto's legacy `<field>\0idxset`
    /// entries are left out.
    pub async fn get_fields<M: Model>(
        &self,
        key: &Key<M>,
    ) -> Result<Option<std::collections::BTreeMap<String, crate::codec::Dynamic>>> {
        self.check_key(key)?;
        let redis_key = key.redis_key_in(self.layout());
        let span = self.span::<M>("get_fields");
        span.record("commands", 1);
        async {
            let Some(fields) = self.hash::<M>(&redis_key).await? else {
                return Ok(None);
            };
            if let (Scope::Tenant(t), Some(f)) = (&self.scope, M::META.tenant) {
                let want = crate::verify::tenant_bytes::<M>(f, t.as_str())?;
                let name = M::META.fields[f].name.as_bytes();
                if !fields.iter().any(|(n, v)| n == name && *v == want) {
                    return Err(self.not_in_scope::<M>(redis_key));
                }
            }
            let mut out = std::collections::BTreeMap::new();
            for (name, raw) in fields {
                if name.contains(&0) {
                    continue;
                }
                let decode = |reason: String, field: String| Error::Decode {
                    model: M::META.name,
                    key: redis_key.clone(),
                    field,
                    reason,
                };
                let name = String::from_utf8(name).map_err(|e| {
                    decode(
                        "the field name is not UTF-8".into(),
                        String::from_utf8_lossy(e.as_bytes()).into_owned(),
                    )
                })?;
                let value = <crate::codec::Dynamic as crate::codec::Value>::decode(&raw)
                    .map_err(|e| decode(e.0, name.clone()))?;
                out.insert(name, value);
            }
            Ok(Some(out))
        }
        .instrument(span)
        .await
    }

    /// Whether an instance of this scope exists at `key` (through a tenant handle, checked
    /// server-side against the stored tenant field, like every read).
    pub async fn exists<M: Model>(&self, key: &Key<M>) -> Result<bool> {
        self.check_key(key)?;
        let redis_key = key.redis_key_in(self.layout());
        let guard = Guard::of::<M>(self.layout(), &self.scope);
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
}

impl Session {
    /// `key` as this handle may show it: through a tenant handle, the key of another tenant's
    /// instance (a unique value taken model-wide) is replaced by [`OTHER_TENANT`].
    fn visible_key<M: Model>(&self, key: String) -> String {
        let Scope::Tenant(t) = &self.scope else {
            return key;
        };
        match Key::<M>::parse_in(self.layout(), &key) {
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
