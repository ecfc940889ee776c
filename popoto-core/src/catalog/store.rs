//! The catalog's operations: reads that validate, and changes that are one compare-and-set
//! script call each (`lua/catalog.lua`), retried when another writer got in first.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use super::{check_metadata, CatalogPlacement, TenantEntry, TenantStatus};
use crate::backend::{Backend, Script};
use crate::error::{Error, Result};
use crate::keys;
use crate::tenant::TenantId;

/// The compare-and-set script of one entry.
pub(crate) static CAS: LazyLock<Script> =
    LazyLock::new(|| Script::new(crate::script::lua!("catalog.lua")));

/// Tries of a change that lost its compare-and-set to another writer (each try after a lost
/// one waits a random 0..=`attempt` ms, so that contenders spread out).
const ATTEMPTS: u32 = 64;

/// A hash as HGETALL returns it.
type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// Label of catalog operations in errors and traces.
const MODEL: &str = "tenant catalog";

/// The tenant catalog on one backend (the shared/control server). Cheap to clone.
#[derive(Clone, Debug)]
pub struct Catalog {
    backend: Backend,
}

/// Which tenants [`Catalog::list`] returns: one status or all, paged by id.
#[derive(Debug, Clone)]
pub struct ListQuery {
    /// Only tenants in this status (`None`: every tenant).
    pub status: Option<TenantStatus>,
    /// Start after this id (the previous page's `next`).
    pub after: Option<TenantId>,
    /// Most entries returned.
    pub limit: usize,
}

impl Default for ListQuery {
    fn default() -> Self {
        ListQuery {
            status: None,
            after: None,
            limit: 100,
        }
    }
}

/// One page of [`Catalog::list`].
#[derive(Debug, Clone)]
pub struct CatalogPage {
    /// Valid entries, ordered by id.
    pub entries: Vec<TenantEntry>,
    /// Listed ids whose entry is corrupt or missing ([`Error::CorruptCatalog`], naming the key).
    pub invalid: Vec<Error>,
    /// Where the next page starts (`None`: this was the last page).
    pub next: Option<TenantId>,
}

/// A change of a tenant's placement or metadata.
#[derive(Debug, Clone, Default)]
pub struct TenantUpdate {
    /// New placement.
    pub placement: Option<CatalogPlacement>,
    /// Metadata entries to set.
    pub set: BTreeMap<String, String>,
    /// Metadata entries to remove.
    pub remove: Vec<String>,
    /// Refuse with [`Error::CatalogConflict`] unless the entry is at this version.
    pub expected_version: Option<u64>,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Catalog {
    /// The catalog stored on `backend`.
    pub fn new(backend: Backend) -> Catalog {
        Catalog { backend }
    }

    /// The backend holding the catalog.
    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// The catalog's change counter: it grows with every change (0: never changed).
    pub async fn version(&self) -> Result<u64> {
        let key = keys::catalog_version_key();
        let v: Option<String> = self
            .backend
            .query("catalog version", MODEL, redis::cmd("GET").arg(&key))
            .await?;
        parse_version(&key, v)
    }

    /// The change counter and one entry, read atomically (MULTI/EXEC).
    pub(crate) async fn versioned_get(&self, id: &TenantId) -> Result<(u64, Option<TenantEntry>)> {
        let (vkey, ekey) = (
            keys::catalog_version_key(),
            keys::catalog_entry_key(id.as_str()),
        );
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("GET")
            .arg(&vkey)
            .cmd("HGETALL")
            .arg(&ekey);
        let (v, pairs): (Option<String>, Pairs) =
            self.backend.pipeline("catalog get", MODEL, &pipe).await?;
        let version = parse_version(&vkey, v)?;
        Ok((version, decode(&ekey, id, pairs)?))
    }

    /// The entry of `id`, validated; `None` if the catalog does not know it.
    pub async fn get(&self, id: &TenantId) -> Result<Option<TenantEntry>> {
        let key = keys::catalog_entry_key(id.as_str());
        let pairs: Vec<(Vec<u8>, Vec<u8>)> = self
            .backend
            .query("catalog get", MODEL, redis::cmd("HGETALL").arg(&key))
            .await?;
        decode(&key, id, pairs)
    }

    /// One page of tenants, ordered by id; entries that fail validation are returned apart.
    pub async fn list(&self, query: &ListQuery) -> Result<CatalogPage> {
        let set = match query.status {
            Some(s) => keys::catalog_status_key(s.as_str()),
            None => keys::catalog_ids_key(),
        };
        let min = match &query.after {
            Some(a) => format!("({a}"),
            None => "-".to_string(),
        };
        let limit = query.limit.max(1);
        let ids: Vec<Vec<u8>> = self
            .backend
            .query(
                "catalog list",
                MODEL,
                redis::cmd("ZRANGEBYLEX")
                    .arg(&set)
                    .arg(&min)
                    .arg("+")
                    .arg("LIMIT")
                    .arg(0)
                    .arg(limit),
            )
            .await?;
        let next_after = ids.last().cloned();
        let mut page = CatalogPage {
            entries: Vec::with_capacity(ids.len()),
            invalid: Vec::new(),
            next: None,
        };
        let mut valid = Vec::with_capacity(ids.len());
        for raw in &ids {
            match std::str::from_utf8(raw).ok().map(TenantId::new) {
                Some(Ok(id)) => valid.push(id),
                _ => page.invalid.push(Error::CorruptCatalog {
                    key: set.clone(),
                    reason: format!(
                        "member {:?} is not a tenant id",
                        String::from_utf8_lossy(raw)
                    ),
                }),
            }
        }
        if !valid.is_empty() {
            let mut pipe = redis::pipe();
            for id in &valid {
                pipe.cmd("HGETALL")
                    .arg(keys::catalog_entry_key(id.as_str()));
            }
            let hashes: Vec<Vec<(Vec<u8>, Vec<u8>)>> =
                self.backend.pipeline("catalog list", MODEL, &pipe).await?;
            for (id, pairs) in valid.iter().zip(hashes) {
                let key = keys::catalog_entry_key(id.as_str());
                let listed = |e: &TenantEntry| query.status.is_none_or(|s| s == e.status);
                match decode(&key, id, pairs) {
                    Ok(Some(e)) if listed(&e) => page.entries.push(e),
                    Ok(Some(e)) => page.invalid.push(Error::CorruptCatalog {
                        key,
                        reason: format!("listed in {set} but its status is {}", e.status),
                    }),
                    Ok(None) => page.invalid.push(Error::CorruptCatalog {
                        key,
                        reason: format!("listed in {set} but there is no entry"),
                    }),
                    Err(e) => page.invalid.push(e),
                }
            }
        }
        if ids.len() == limit {
            page.next = next_after
                .and_then(|raw| String::from_utf8(raw).ok())
                .and_then(|s| TenantId::new(s).ok());
        }
        Ok(page)
    }

    /// Every entry of one status (or all), page after page.
    pub async fn list_all(&self, status: Option<TenantStatus>) -> Result<CatalogPage> {
        let mut query = ListQuery {
            status,
            after: None,
            limit: 500,
        };
        let mut all = CatalogPage {
            entries: Vec::new(),
            invalid: Vec::new(),
            next: None,
        };
        loop {
            let page = self.list(&query).await?;
            all.entries.extend(page.entries);
            all.invalid.extend(page.invalid);
            match page.next {
                Some(next) => query.after = Some(next),
                None => return Ok(all),
            }
        }
    }

    /// Adds an active tenant (or starts a destroyed one afresh); [`Error::AlreadyExists`] if it
    /// is active or suspended.
    pub async fn create(
        &self,
        id: &TenantId,
        placement: CatalogPlacement,
        metadata: BTreeMap<String, String>,
    ) -> Result<TenantEntry> {
        check_metadata(&metadata)?;
        self.change(id, None, |current| match current {
            Some(e) if e.status != TenantStatus::Destroyed => Err(Error::AlreadyExists {
                model: MODEL,
                key: keys::catalog_entry_key(id.as_str()),
            }),
            _ => {
                let now = now_ms();
                Ok(Some(TenantEntry {
                    id: id.clone(),
                    placement: placement.clone(),
                    status: TenantStatus::Active,
                    created_ms: now,
                    updated_ms: now,
                    version: 0,
                    metadata: metadata.clone(),
                }))
            }
        })
        .await
    }

    /// Changes the placement or metadata of an active or suspended tenant.
    pub async fn update(&self, id: &TenantId, update: &TenantUpdate) -> Result<TenantEntry> {
        self.change(id, update.expected_version, |current| {
            let mut e = live(id, current)?.clone();
            if let Some(p) = &update.placement {
                e.placement = p.clone();
            }
            for k in &update.remove {
                e.metadata.remove(k);
            }
            e.metadata
                .extend(update.set.iter().map(|(k, v)| (k.clone(), v.clone())));
            check_metadata(&e.metadata)?;
            Ok(Some(e))
        })
        .await
    }

    /// Suspends an active tenant (registries refuse it with [`Error::TenantSuspended`]).
    pub async fn suspend(&self, id: &TenantId) -> Result<TenantEntry> {
        self.set_status(id, TenantStatus::Suspended).await
    }

    /// Serves a suspended tenant again.
    pub async fn resume(&self, id: &TenantId) -> Result<TenantEntry> {
        self.set_status(id, TenantStatus::Active).await
    }

    /// Marks a tenant destroyed: a durable tombstone every registry on the catalog refuses with
    /// [`Error::TenantDestroyed`]. Its data is removed by `Admin::destroy_tenant`; mark it first,
    /// so that no process writes while the data is deleted.
    pub async fn destroy(&self, id: &TenantId) -> Result<TenantEntry> {
        self.change(id, None, |current| match current {
            None => Err(not_found(id)),
            Some(e) if e.status == TenantStatus::Destroyed => Ok(None),
            Some(e) => {
                let mut e = e.clone();
                e.status = TenantStatus::Destroyed;
                Ok(Some(e))
            }
        })
        .await
    }

    /// Marks a tenant destroyed like [`Catalog::destroy`]; a tenant the catalog does not know
    /// gets a destroyed entry at `placement` (where its data was), so that every process on the
    /// catalog refuses it too. What `Admin::destroy_tenant` does on a `Db` with a catalog.
    pub async fn tombstone(
        &self,
        id: &TenantId,
        placement: CatalogPlacement,
    ) -> Result<TenantEntry> {
        self.change(id, None, |current| match current {
            Some(e) if e.status == TenantStatus::Destroyed => Ok(None),
            Some(e) => {
                let mut e = e.clone();
                e.status = TenantStatus::Destroyed;
                Ok(Some(e))
            }
            None => {
                let now = now_ms();
                Ok(Some(TenantEntry {
                    id: id.clone(),
                    placement: placement.clone(),
                    status: TenantStatus::Destroyed,
                    created_ms: now,
                    updated_ms: now,
                    version: 0,
                    metadata: BTreeMap::new(),
                }))
            }
        })
        .await
    }

    async fn set_status(&self, id: &TenantId, status: TenantStatus) -> Result<TenantEntry> {
        self.change(id, None, |current| {
            let e = live(id, current)?;
            if e.status == status {
                return Ok(None);
            }
            let mut e = e.clone();
            e.status = status;
            Ok(Some(e))
        })
        .await
    }

    /// Reads the entry, lets `f` compute the new one (`None`: keep it as it is) and writes it
    /// if nobody changed it meanwhile, else starts again (or, with `expected`, refuses).
    async fn change(
        &self,
        id: &TenantId,
        expected: Option<u64>,
        f: impl Fn(Option<&TenantEntry>) -> Result<Option<TenantEntry>>,
    ) -> Result<TenantEntry> {
        let key = keys::catalog_entry_key(id.as_str());
        let mut found = 0;
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                let ms = uuid::Uuid::new_v4().as_u128() % (u128::from(attempt) + 1);
                tokio::time::sleep(std::time::Duration::from_millis(ms as u64)).await;
            }
            let current = self.get(id).await?;
            let base = current.as_ref().map_or(0, |e| e.version);
            if let Some(expected) = expected.filter(|v| *v != base) {
                return Err(conflict(id, expected, base));
            }
            let Some(mut new) = f(current.as_ref())? else {
                return current.ok_or_else(|| not_found(id));
            };
            new.version = base + 1;
            new.updated_ms = now_ms().max(new.created_ms);
            let cmd = cas_command(id, base, &new);
            // A dry run: the change a real run would send now, recorded instead.
            if self.backend.record(&cmd) {
                return Ok(new);
            }
            let reply = self
                .backend
                .eval_cmd("catalog change", MODEL, &CAS, &cmd)
                .await?;
            match cas_reply(&reply) {
                Some(("ok", _)) => {
                    tracing::info!(
                        target: "popoto::catalog",
                        tenant = %id,
                        status = new.status.as_str(),
                        placement = %new.placement,
                        version = new.version,
                        "tenant catalog entry changed"
                    );
                    return Ok(new);
                }
                Some(("conflict", v)) => {
                    found = v.parse().map_err(|_| Error::CorruptCatalog {
                        key: key.clone(),
                        reason: format!("version {v:?} is not an integer"),
                    })?;
                    if let Some(expected) = expected {
                        return Err(conflict(id, expected, found));
                    }
                }
                Some(("wrongtype", k)) => {
                    return Err(Error::CorruptCatalog {
                        key: k.to_owned(),
                        reason: "holds another Redis type than the catalog writes".into(),
                    })
                }
                _ => {
                    return Err(Error::Protocol {
                        op: "catalog change",
                        model: MODEL,
                        detail: format!("{reply:?}"),
                    })
                }
            }
        }
        Err(conflict(id, found.saturating_sub(1), found))
    }
}

/// The compare-and-set call writing `new` over the entry at version `base` (`lua/catalog.lua`).
fn cas_command(id: &TenantId, base: u64, new: &TenantEntry) -> redis::Cmd {
    let mut cas_keys = vec![
        keys::catalog_entry_key(id.as_str()),
        keys::catalog_ids_key(),
    ];
    cas_keys.extend(
        TenantStatus::ALL
            .iter()
            .map(|s| keys::catalog_status_key(s.as_str())),
    );
    cas_keys.push(keys::catalog_version_key());
    let mut args: Vec<Vec<u8>> = vec![
        id.as_str().as_bytes().to_vec(),
        base.to_string().into_bytes(),
        (new.status.index() + 1).to_string().into_bytes(),
        keys::catalog_channel().into_bytes(),
    ];
    for (f, v) in new.to_fields() {
        args.push(f.into_bytes());
        args.push(v.into_bytes());
    }
    crate::backend::evalsha(&CAS, &cas_keys, &args)
}

/// The entry of a tenant that is neither absent nor destroyed.
fn live<'e>(id: &TenantId, current: Option<&'e TenantEntry>) -> Result<&'e TenantEntry> {
    match current {
        None => Err(not_found(id)),
        Some(e) if e.status == TenantStatus::Destroyed => Err(Error::TenantDestroyed {
            tenant: id.to_string(),
        }),
        Some(e) => Ok(e),
    }
}

fn not_found(id: &TenantId) -> Error {
    Error::NotFound {
        model: MODEL,
        key: keys::catalog_entry_key(id.as_str()),
    }
}

fn conflict(id: &TenantId, expected: u64, found: u64) -> Error {
    Error::CatalogConflict {
        tenant: id.to_string(),
        expected,
        found,
    }
}

/// `None` for an absent hash, else the validated entry.
fn decode(key: &str, id: &TenantId, pairs: Vec<(Vec<u8>, Vec<u8>)>) -> Result<Option<TenantEntry>> {
    if pairs.is_empty() {
        return Ok(None);
    }
    TenantEntry::from_fields(key, id, pairs).map(Some)
}

fn parse_version(key: &str, v: Option<String>) -> Result<u64> {
    match v {
        None => Ok(0),
        Some(v) => v.parse().map_err(|_| Error::CorruptCatalog {
            key: key.to_owned(),
            reason: format!("change counter {v:?} is not an integer"),
        }),
    }
}

/// `(tag, value)` of the script's reply.
fn cas_reply(reply: &redis::Value) -> Option<(&str, String)> {
    let redis::Value::Array(items) = reply else {
        return None;
    };
    let text = |v: &redis::Value| match v {
        redis::Value::BulkString(b) => std::str::from_utf8(b).ok().map(str::to_owned),
        redis::Value::SimpleString(s) => Some(s.clone()),
        redis::Value::Int(n) => Some(n.to_string()),
        _ => None,
    };
    let tag = match items.first()? {
        redis::Value::BulkString(b) => std::str::from_utf8(b).ok()?,
        redis::Value::SimpleString(s) => s.as_str(),
        _ => return None,
    };
    Some((tag, text(items.get(1)?)?))
}
