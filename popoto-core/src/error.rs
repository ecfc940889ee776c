//! The one error type of popoto.

use std::fmt;

/// Result alias used throughout popoto.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in popoto; variants name the model, field and key they concern.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Redis refused a command or the connection failed while an operation was in flight.
    #[error("redis error during {op} on model {model}: {source}")]
    Redis {
        /// Operation that was running (`create`, `query`, ...).
        op: &'static str,
        /// Model concerned.
        model: &'static str,
        /// The client's error.
        #[source]
        source: redis::RedisError,
    },
    /// No connection could be checked out of the pool.
    #[error("no redis connection for {op} on model {model}: {reason}")]
    Pool {
        /// Operation that was running.
        op: &'static str,
        /// Model concerned.
        model: &'static str,
        /// What the pool said.
        reason: String,
    },
    /// The connection URL or pool configuration is invalid.
    #[error("invalid connection configuration: {0}")]
    Config(String),
    /// Writing a tenant export stream failed (the writer's error).
    #[error("tenant export stream: {0}")]
    Stream(String),
    /// A unique key value is already taken by another instance.
    #[error(
        "unique key violation on {model}.{field}: value {value:?} is already used by {existing}"
    )]
    UniqueViolation {
        /// Model concerned.
        model: &'static str,
        /// The unique field.
        field: &'static str,
        /// The value rendered as in the key.
        value: String,
        /// Instance key that holds the value; through a tenant handle,
        /// [`OTHER_TENANT`](crate::db::OTHER_TENANT) when that instance belongs to another
        /// tenant (uniqueness is model-wide, but another tenant's keys are not shown).
        existing: String,
    },
    /// `create` or a key move targeted a key that already exists.
    #[error("{model} instance {key} already exists")]
    AlreadyExists {
        /// Model concerned.
        model: &'static str,
        /// Instance key.
        key: String,
    },
    /// The instance does not exist.
    #[error("{model} instance {key} not found")]
    NotFound {
        /// Model concerned.
        model: &'static str,
        /// Instance key.
        key: String,
    },
    /// A value read from Redis could not be decoded into the field's type.
    #[error("cannot decode {model}.{field} at key {key}: {reason}")]
    Decode {
        /// Model concerned.
        model: &'static str,
        /// Instance (or index) key that was read.
        key: String,
        /// Field (hash field) that failed.
        field: String,
        /// What was wrong.
        reason: String,
    },
    /// A field value cannot be stored (NaN score, unsupported value, ...).
    #[error("cannot store {model}.{field}: {reason}")]
    InvalidValue {
        /// Model concerned.
        model: &'static str,
        /// Field concerned.
        field: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// A tenant-partitioned model was used without a tenant scope.
    #[error("model {model} is partitioned by tenant: use a tenant handle (db.tenant(id)) or the admin handle")]
    NoTenant {
        /// Model concerned.
        model: &'static str,
    },
    /// No ambient tenant: the code is not running inside `popoto::tenant::with_tenant`.
    #[error("no ambient tenant: run this inside popoto::tenant::with_tenant (spawned tasks do not inherit it)")]
    NoAmbientTenant,
    /// A value's tenant field disagrees with the tenant scope in use.
    #[error("{model}.{field} is {found:?} but the scope is tenant {expected:?}")]
    TenantMismatch {
        /// Model concerned.
        model: &'static str,
        /// The tenant field.
        field: &'static str,
        /// Tenant of the scope.
        expected: String,
        /// Tenant found in the value or key.
        found: String,
    },
    /// The instance stored at a key of the scope's tenant says, in its tenant field, that it
    /// belongs to another tenant (planted or corrupt data): it is not returned. The other
    /// tenant's id is not shown.
    #[error("{model} instance at {key} is not the scope's: its {field} names another tenant")]
    NotInScope {
        /// Model concerned.
        model: &'static str,
        /// The tenant field.
        field: &'static str,
        /// The instance key read.
        key: String,
    },
    /// A tenant id is empty, too long or contains control characters.
    #[error("invalid tenant id {tenant:?}: {reason}")]
    InvalidTenant {
        /// The refused id.
        tenant: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// The tenant's backend could not be built or validated; it stays disabled until rechecked.
    #[error("tenant {tenant:?} is disabled: {reason}")]
    TenantDisabled {
        /// The tenant.
        tenant: String,
        /// Why its backend failed.
        reason: String,
    },
    /// The tenant was unregistered while its backend was being built.
    #[error("tenant {tenant:?} was unregistered")]
    TenantUnregistered {
        /// The tenant.
        tenant: String,
    },
    /// The registry neither has the tenant registered nor places it by policy or default
    /// placement (`TenantRegistry::set_default_placement` opts in to serving such tenants).
    #[error("tenant {tenant:?} is not registered and no policy or default placement places it")]
    UnknownTenant {
        /// The tenant.
        tenant: String,
    },
    /// The tenant was destroyed; it is refused until it is registered again.
    #[error("tenant {tenant:?} was destroyed: register it again to re-create it")]
    TenantDestroyed {
        /// The tenant.
        tenant: String,
    },
    /// The tenant catalog marks the tenant suspended; it is refused until resumed.
    #[error("tenant {tenant:?} is suspended: resume it in the tenant catalog to serve it again")]
    TenantSuspended {
        /// The tenant.
        tenant: String,
    },
    /// A dry run reached a write that has no dry run of its own: it was refused before it was
    /// sent (a dry run never changes Redis).
    #[error("dry run: {op} would send {command}, which it cannot record: nothing was written")]
    DryRunWrite {
        /// Operation that was running.
        op: &'static str,
        /// The command's name.
        command: String,
    },
    /// A tenant catalog entry (or index) read from Redis is not what the catalog writes.
    #[error("corrupt tenant catalog entry at key {key}: {reason}")]
    CorruptCatalog {
        /// The catalog key read.
        key: String,
        /// What was wrong.
        reason: String,
    },
    /// A catalog update expected another version of the entry (changed concurrently).
    #[error("tenant catalog entry of {tenant:?} is at version {found}, not {expected}: changed concurrently")]
    CatalogConflict {
        /// The tenant.
        tenant: String,
        /// The version the update was based on.
        expected: u64,
        /// The version found.
        found: u64,
    },
    /// A query on a partitioned sorted field lacks a partition value.
    #[error("query on {model}.{field} needs a value for partition field {partition_field}")]
    MissingPartition {
        /// Model concerned.
        model: &'static str,
        /// The sorted (or confidence) field.
        field: &'static str,
        /// The partition field without a value.
        partition_field: &'static str,
    },
    /// The instance changed on the server between the read of its partition values and the write.
    #[error(
        "{model} instance {key} kept changing concurrently; gave up after {attempts} attempts"
    )]
    Contention {
        /// Model concerned.
        model: &'static str,
        /// Instance key.
        key: String,
        /// Attempts made.
        attempts: u32,
    },
    /// A versioned instance (`#[popoto(version)]`) was saved since this copy was read: the
    /// stored version is not the copy's, so the write was refused and nothing was written.
    /// Read the instance again (or use `Session::update`, which does) and redo the change.
    #[error("{model} instance {key} is at version {found}, not {expected}: it changed since this copy was read")]
    Conflict {
        /// Model concerned.
        model: &'static str,
        /// Instance key.
        key: String,
        /// The version of the copy being written (the one it was read at).
        expected: u64,
        /// The version stored (0: no instance, or one without a version).
        found: u64,
    },
    /// Some instances of a bulk write failed; the others were written (each all-or-nothing).
    #[error("{} of {total} {model} instances failed in a bulk write; first: {}", failed.len(), failed.first().map(|f| f.1.to_string()).unwrap_or_default())]
    Bulk {
        /// Model concerned.
        model: &'static str,
        /// Number of instances submitted.
        total: usize,
        /// Index in the input and the error of every failed instance.
        failed: Vec<(usize, Error)>,
    },
    /// A key popoto must write holds another Redis type; nothing was written.
    #[error(
        "{model}: key {key} holds a {found}, not what popoto stores there; nothing was written"
    )]
    WrongType {
        /// Model concerned.
        model: &'static str,
        /// The key.
        key: String,
        /// Redis type found.
        found: String,
    },
    /// A key read from Redis does not have the shape of the model's instance keys.
    #[error("{model}: malformed instance key {key:?}: {reason}")]
    MalformedKey {
        /// Model concerned.
        model: &'static str,
        /// The key.
        key: String,
        /// What was wrong.
        reason: String,
    },
    /// The server answered something popoto's scripts never return.
    #[error("unexpected reply during {op} on {model}: {detail}")]
    Protocol {
        /// Operation that was running.
        op: &'static str,
        /// Model concerned.
        model: &'static str,
        /// What was received.
        detail: String,
    },
    /// A maintenance operation was called through a handle other than the admin one.
    #[error("{op} on model {model} needs the admin handle (db.admin())")]
    AdminOnly {
        /// Operation that was refused.
        op: &'static str,
        /// Model concerned.
        model: &'static str,
    },
    /// A field handle names a field of another kind than the operation needs.
    #[error("{model}.{field} is not a {expected} field")]
    WrongFieldKind {
        /// Model concerned.
        model: &'static str,
        /// The field.
        field: &'static str,
        /// The kind the operation needs (`confidence`, `sorted`).
        expected: &'static str,
    },
    /// A query asks for something its filters and options cannot give (a cursor page without
    /// an order on a sorted field, a projection with a client-side predicate, ...).
    #[error("invalid query on {model}: {reason}")]
    InvalidQuery {
        /// Model concerned.
        model: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// A pagination cursor was not made by this query (another model, order, direction or
    /// scope) or was altered; it is refused before anything is read.
    #[error("invalid cursor for {model}: {reason}")]
    InvalidCursor {
        /// Model concerned.
        model: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// A tenant read or wrote a shared instance it is not subscribed to (or that does not
    /// exist: a tenant cannot tell the two apart). Nothing was read or written.
    #[error(
        "shared {model} {id:?}: this tenant is not subscribed to it; nothing was read or written"
    )]
    NotSubscribed {
        /// Model concerned.
        model: &'static str,
        /// The shared instance's id.
        id: String,
    },
    /// A tenant with read access only wrote a shared instance. Nothing was written.
    #[error("shared {model} {id:?}: this tenant has read access only; nothing was written")]
    ReadOnly {
        /// Model concerned.
        model: &'static str,
        /// The shared instance's id.
        id: String,
    },
    /// The host named a shared instance that does not exist.
    #[error("shared {model} {id:?} does not exist")]
    SharedNotFound {
        /// Model concerned.
        model: &'static str,
        /// The shared instance's id.
        id: String,
    },
    /// `share_as` named an id that is taken (some key of it exists). Nothing was written.
    #[error("shared {model} {id:?} already exists; nothing was written")]
    SharedExists {
        /// Model concerned.
        model: &'static str,
        /// The shared instance's id.
        id: String,
    },
    /// A write that the instance's merge strategy does not take: a patch of a `Custom`
    /// instance (merge with `update`), or a version-checked write of an `LwwMapCrdt` one.
    #[error("shared {model} {id:?} is merged with {merge:?}, which this write does not fit; nothing was written")]
    SharedMerge {
        /// Model concerned.
        model: &'static str,
        /// The shared instance's id.
        id: String,
        /// The instance's strategy.
        merge: crate::shared::merge::Merge,
    },
    /// Shared instances are reached through a tenant handle (or the admin's `SharedHost`).
    #[error("shared {model} instances are read and written through a tenant handle or the admin's SharedHost")]
    SharedScope {
        /// Model concerned.
        model: &'static str,
    },
    /// Data of a shared instance or grant read from Redis is not what popoto writes.
    #[error("corrupt shared data at key {key}: {reason}")]
    CorruptShared {
        /// The key read.
        key: String,
        /// What was wrong.
        reason: String,
    },
    /// A layout migration of shared instances found the target already holding the instance
    /// (or a tenant's grant of it) with other content. Nothing of it was written: the target is
    /// never overwritten.
    #[error("shared {model} {id:?}: the target layout already holds it with another {what}; nothing was overwritten")]
    SharedLayoutConflict {
        /// Model concerned.
        model: &'static str,
        /// The shared instance's id.
        id: String,
        /// What differs (`value`, `meta`, `feed entries`, `grant of tenant acme`, ...).
        what: String,
    },
    /// A change-feed entry read from Redis is not what popoto writes (or not this reader's).
    #[error("corrupt change event {entry} in {stream}: {reason}")]
    CorruptFeed {
        /// The stream read.
        stream: String,
        /// The entry id.
        entry: String,
        /// What was wrong.
        reason: String,
    },
    /// A reader fed by a process's feed pump (`feed::HubReader`) fell behind: its buffer was
    /// full, so the pump dropped it rather than hold the other readers up or buffer without
    /// bound. Nothing was lost: open a new reader from its position.
    #[error("the change feed of tenant {tenant} fell more than {buffer} deliveries behind and was dropped; resume from its position")]
    FeedOverflow {
        /// The reader's tenant.
        tenant: String,
        /// Deliveries its buffer holds.
        buffer: usize,
    },
    /// A partition migration was asked for a field without `partition_by`.
    #[error("{model}.{field} has no partition_by configured: nothing to migrate")]
    NotPartitioned {
        /// Model concerned.
        model: &'static str,
        /// The field.
        field: &'static str,
    },
    /// An operation the `Db`'s key layout does not offer (model-wide maintenance on the
    /// cluster layout, whose keys live in per-tenant slots).
    #[error("{op} of {model} is not available on the {layout:?} layout")]
    Layout {
        /// Model concerned.
        model: &'static str,
        /// The operation.
        op: &'static str,
        /// The layout.
        layout: crate::keys::layout_kind::Layout,
    },
}

impl Error {
    /// Whether this error came from the connection (the call may be retried once Redis is back).
    pub fn is_connection_error(&self) -> bool {
        match self {
            Error::Redis { source, .. } => {
                source.is_io_error()
                    || source.is_connection_dropped()
                    || source.is_connection_refusal()
                    || source.is_timeout()
            }
            Error::Pool { .. } => true,
            // A bulk write cut by the connection: the failed instances can be written again.
            Error::Bulk { failed, .. } => failed.iter().any(|(_, e)| e.is_connection_error()),
            _ => false,
        }
    }
}

/// A bulk write (`create_many`, `save_many`) in which some records were not written: every
/// record comes back, written or not, so none is lost. Converts into [`Error::Bulk`] with `?`.
pub struct BulkError<M> {
    /// Model concerned.
    pub model: &'static str,
    /// Records written (each with all its index entries), with their index in the input.
    pub written: Vec<(usize, M)>,
    /// Records not written, with their index in the input and why. After a connection error
    /// the outcome of the records in flight is unknown: each can simply be saved again.
    pub failed: Vec<(usize, M, Error)>,
}

impl<M> fmt::Debug for BulkError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BulkError")
            .field("model", &self.model)
            .field("written", &self.written.len())
            .field(
                "failed",
                &self
                    .failed
                    .iter()
                    .map(|(i, _, e)| (i, e))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl<M> fmt::Display for BulkError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} of {} {} instances failed in a bulk write",
            self.failed.len(),
            self.failed.len() + self.written.len(),
            self.model
        )?;
        if let Some((_, _, e)) = self.failed.first() {
            write!(f, "; first: {e}")?;
        }
        Ok(())
    }
}

impl<M> std::error::Error for BulkError<M> {}

impl<M> From<BulkError<M>> for Error {
    fn from(e: BulkError<M>) -> Error {
        Error::Bulk {
            model: e.model,
            total: e.written.len() + e.failed.len(),
            failed: e.failed.into_iter().map(|(i, _, e)| (i, e)).collect(),
        }
    }
}

/// Why a single value could not be decoded (wrapped into [`Error::Decode`] with model, key, field).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub String);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DecodeError {}

impl DecodeError {
    /// Builds a decode error from anything printable.
    pub fn new(msg: impl fmt::Display) -> Self {
        DecodeError(msg.to_string())
    }
}

/// Why a single value could not be encoded (wrapped into [`Error::InvalidValue`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodeError(pub String);

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EncodeError {}

impl EncodeError {
    /// Builds an encode error from anything printable.
    pub fn new(msg: impl fmt::Display) -> Self {
        EncodeError(msg.to_string())
    }
}
