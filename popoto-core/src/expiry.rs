//! Expiry without index orphans.
//!
//! An expiring instance (a model with `#[popoto(ttl = ..)]` or an `#[popoto(expire_at)]` field)
//! is stored as popoto stores it: its hash gets a TTL (`PEXPIREAT`), so Redis deletes it on
//! time and no read can return it (every read already skips index members whose hash is gone,
//! `verify.rs`). Redis cannot expire the set and zset members that index it: popoto leaves them
//! behind. Here the write that sets an expiry also records it in the expiry set of the
//! instance's tenant (`$ExpireF:<Model>:<tenant>`, scored by the expiry time), in the same
//! script. A sweep reads the members whose time has come and, in one script call, removes the
//! index entries of those whose hash is gone: every entry is derived from the instance key,
//! since an expiring model partitions its indexes by key fields only (a compile-time rule).
//!
//! Sweeps run after a read that met an expired instance's entries (one batch of the tenants
//! concerned), and on demand: [`Session::sweep_expired`] (one tenant) and
//! [`Admin::sweep_expired`] (every tenant).

use std::sync::LazyLock;

use crate::admin::Admin;
use crate::backend::{Backend, KeyScan, Script};
use crate::db::Session;
use crate::error::{Error, Result};
use crate::keys::Layout;
use crate::model::{Key, Model, Record};
use crate::plan::{movable_partition_fields, IndexEntry, Instance};
use crate::tenant::Scope;

/// The sweep script (`lua/sweep.lua`).
pub(crate) static SWEEP: LazyLock<Script> =
    LazyLock::new(|| Script::new(crate::script::lua!("sweep.lua")));

/// Expired members examined per script call.
const BATCH: usize = 200;

/// What sweeps did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Expired instances whose index entries (and expiry entry) were removed.
    pub swept: u64,
    /// Expiry entries of instances written again without an expiry, removed.
    pub persisted: u64,
    /// Expiry entries rescored with their hash's own TTL (set by another writer).
    pub rescored: u64,
    /// Members of an expiry set that are not an instance key of its tenant (planted or
    /// corrupt): left as they are (the audit reports them) and reported as a warning.
    pub skipped: u64,
}

impl SweepReport {
    fn add(&mut self, other: SweepReport) {
        self.swept += other.swept;
        self.persisted += other.persisted;
        self.rescored += other.rescored;
        self.skipped += other.skipped;
    }
}

/// The current time in milliseconds since the Unix epoch (the client's clock: it only selects
/// candidates, the script decides on what the server holds).
fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The index keys of the instance at `key` with one kind letter each, the expiry set excepted.
fn entries_of<M: Model>(layout: Layout, key: &Key<M>, member: &str) -> Result<Vec<(String, u8)>> {
    let meta = M::META;
    let record = Record::of_key(meta, key.segments());
    let inst = Instance {
        layout,
        meta,
        key: member.to_owned(),
        record: &record,
        hidden_key: meta
            .has_hidden_key()
            .then(|| key.segments().first().map(String::as_str))
            .flatten(),
    };
    Ok(inst
        .index_entries()?
        .into_iter()
        .filter_map(|e| match e {
            IndexEntry::Set(k, _) => Some((k, b's')),
            IndexEntry::ZSet(k, _) => Some((k, b'z')),
            IndexEntry::Companion(k, _) => Some((k, b'h')),
            IndexEntry::Expiry(..) => None,
        })
        .collect())
}

/// Refuses a model whose index entries cannot all be found from an instance key.
fn check_derivable(meta: &'static crate::model::ModelMeta) -> Result<()> {
    if movable_partition_fields(meta).is_empty() {
        return Ok(());
    }
    Err(Error::InvalidValue {
        model: meta.name,
        field: "<partition_by>",
        reason: "an expiring model must partition its indexes by key fields only".into(),
    })
}

/// Runs the sweep script on `members` of expiry set `zset` (of `tenant`, for a tenant model):
/// each is removed with its index entries if its hash is gone, or its expiry entry brought in
/// line with its hash. A member that is not an instance key of the tenant is skipped.
async fn sweep_members<M: Model>(
    backend: &Backend,
    zset: &str,
    tenant: Option<&str>,
    members: Vec<String>,
    report: &mut SweepReport,
) -> Result<()> {
    let meta = M::META;
    let mut keys = vec![zset.to_owned()];
    let mut args: Vec<Vec<u8>> = vec![Vec::new()];
    let mut n = 0usize;
    for member in members {
        let key = match Key::<M>::parse_in(backend.layout(), &member) {
            Ok(k) if k.redis_key_in(backend.layout()) == member && k.tenant() == tenant => k,
            _ => {
                tracing::warn!(
                    model = meta.name,
                    index = zset,
                    example = %member,
                    "expiry set member skipped: not an instance key of its tenant"
                );
                report.skipped += 1;
                continue;
            }
        };
        let entries = entries_of(backend.layout(), &key, &member)?;
        keys.push(member);
        args.push(entries.len().to_string().into_bytes());
        args.push(entries.iter().map(|(_, kind)| *kind).collect());
        keys.extend(entries.into_iter().map(|(k, _)| k));
        n += 1;
    }
    if n == 0 {
        return Ok(());
    }
    args[0] = n.to_string().into_bytes();
    let reply = backend
        .eval("sweep expired", meta.name, &SWEEP, &keys, &args)
        .await?;
    let flags: Vec<u8> = redis::from_redis_value(reply).map_err(|e| Error::Protocol {
        op: "sweep expired",
        model: meta.name,
        detail: e.to_string(),
    })?;
    for f in flags {
        match f {
            b'x' => report.swept += 1,
            b'p' => report.persisted += 1,
            _ => report.rescored += 1,
        }
    }
    Ok(())
}

/// Sweeps the members of expiry set `zset` (of `tenant`, for a tenant model) whose time has
/// come: at most `batches` script calls of [`BATCH`] members (`None`: until none is left).
pub(crate) async fn sweep_set<M: Model>(
    backend: &Backend,
    zset: &str,
    tenant: Option<&str>,
    batches: Option<usize>,
) -> Result<SweepReport> {
    let meta = M::META;
    check_derivable(meta)?;
    let mut report = SweepReport::default();
    let mut calls = 0;
    // Members left in place (planted ones) are passed over by the next read.
    let mut offset = 0usize;
    loop {
        if batches.is_some_and(|b| calls >= b) {
            return Ok(report);
        }
        let cmd = redis::cmd("ZRANGEBYSCORE")
            .arg(zset)
            .arg("-inf")
            .arg(now_millis())
            .arg("LIMIT")
            .arg(offset)
            .arg(BATCH)
            .clone();
        let members: Vec<Vec<u8>> = backend.query("sweep expired", meta.name, &cmd).await?;
        if members.is_empty() {
            return Ok(report);
        }
        let read = members.len();
        let members = members
            .into_iter()
            .map(|m| String::from_utf8_lossy(&m).into_owned())
            .collect();
        let skipped = report.skipped;
        sweep_members::<M>(backend, zset, tenant, members, &mut report).await?;
        offset += usize::try_from(report.skipped - skipped).unwrap_or(usize::MAX);
        calls += 1;
        if read < BATCH {
            return Ok(report);
        }
    }
}

impl Session {
    /// Removes the index entries of this scope's expired instances of `M` (a tenant handle:
    /// its tenant's; the unscoped handle: an untenanted model's), reading the expiry set one
    /// batch at a time. Reads never return an expired instance whether or not this runs;
    /// sweeping keeps the indexes (and the isolation audit) free of what expiry left behind.
    pub async fn sweep_expired<M: Model>(&self) -> Result<SweepReport> {
        self.check_model::<M>()?;
        if !M::META.expires() {
            return Ok(SweepReport::default());
        }
        let tenant = match self.scope() {
            Scope::Tenant(t) => Some(t.as_str()),
            _ => None,
        };
        let zset = self.layout().expiry_key(M::META, tenant);
        sweep_set::<M>(&self.backend().await?, &zset, tenant, None).await
    }

    /// After a read of `M` that met index members without an instance (`stale`, keys of `M`
    /// that passed the read's scope checks): removes those members' entries (an instance that
    /// expired without an expiry entry, a popoto client's TTL for one, included), then sweeps
    /// one batch of each expiry set they belong to. What expiry leaves in the indexes goes
    /// away as reads meet it.
    pub(crate) async fn sweep_after_read<M: Model>(&self, stale: &[&str]) -> Result<()> {
        if !M::META.expires() || stale.is_empty() {
            return Ok(());
        }
        check_derivable(M::META)?;
        // Per expiry set: its tenant and the stale members of that tenant.
        let mut sets: Vec<(String, Option<String>, Vec<String>)> = Vec::new();
        for member in stale {
            let Ok(key) = Key::<M>::parse_in(self.layout(), member) else {
                continue;
            };
            let tenant = key.tenant().map(str::to_owned);
            let zset = self.layout().expiry_key(M::META, tenant.as_deref());
            match sets.iter_mut().find(|(z, ..)| *z == zset) {
                Some((.., members)) => members.push((*member).to_owned()),
                None => sets.push((zset, tenant, vec![(*member).to_owned()])),
            }
        }
        let backend = self.backend().await?;
        for (zset, tenant, members) in sets {
            let mut report = SweepReport::default();
            for chunk in members.chunks(BATCH) {
                sweep_members::<M>(
                    &backend,
                    &zset,
                    tenant.as_deref(),
                    chunk.to_vec(),
                    &mut report,
                )
                .await?;
            }
            report.add(sweep_set::<M>(&backend, &zset, tenant.as_deref(), Some(1)).await?);
            tracing::debug!(
                model = M::META.name,
                index = %zset,
                swept = report.swept,
                "expired entries swept after a read"
            );
        }
        Ok(())
    }
}

impl Admin {
    /// [`Session::sweep_expired`] for every tenant: every expiry set of `M` on this backend
    /// (found with `SCAN MATCH`, each checked to be one of the model's), until none holds an
    /// expired instance.
    pub async fn sweep_expired<M: Model>(&self) -> Result<SweepReport> {
        let meta = M::META;
        let mut report = SweepReport::default();
        if !meta.expires() {
            return Ok(report);
        }
        let backend = self.backend().await?;
        let pattern = backend.layout().expiry_pattern(meta, None);
        let mut scan = KeyScan::new(pattern, 1000);
        while let Some(found) = scan.next(&backend, "sweep expired", meta.name).await? {
            for zset in found {
                if let Some(tenant) = backend.layout().expiry_tenant(meta, &zset) {
                    report.add(sweep_set::<M>(&backend, &zset, tenant.as_deref(), None).await?);
                }
            }
        }
        Ok(report)
    }
}
