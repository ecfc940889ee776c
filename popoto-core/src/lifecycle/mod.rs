//! Tenant lifecycle: destroy, export and import one tenant, and per-tenant counts.
//!
//! Operations take a [`ModelSet`]: the models whose data a tenant may have. They run on the
//! backend where the tenant lives and touch only keys and index members of that tenant: every
//! pattern is built from the escaped tenant segment and every match is checked exactly.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::io::{Read, Write};
use std::pin::Pin;

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::admin::Admin;
use crate::backend::{Backend, APPLY};
use crate::error::{Error, Result};
use crate::keys;
use crate::maintenance::IndexReport;
use crate::model::{Key, Model, ModelMeta};
use crate::plan::{Check, Outcome, Plan, Write as W};
use crate::tenant::TenantId;

type Deleter =
    fn(Admin, TenantId, Vec<String>) -> Pin<Box<dyn Future<Output = Result<u64>> + Send>>;

type Auditor = fn(Admin) -> Pin<Box<dyn Future<Output = Result<IndexReport>> + Send>>;

struct Entry {
    meta: &'static ModelMeta,
    delete: Deleter,
    audit: Auditor,
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

fn delete_boxed<M: Model>(
    s: Admin,
    _t: TenantId,
    keys: Vec<String>,
) -> Pin<Box<dyn Future<Output = Result<u64>> + Send>> {
    Box::pin(async move {
        let keys: Vec<Key<M>> = keys.iter().map(|k| Key::parse(k)).collect::<Result<_>>()?;
        s.delete_many(&keys).await
    })
}

fn audit_boxed<M: Model>(s: Admin) -> Pin<Box<dyn Future<Output = Result<IndexReport>> + Send>> {
    Box::pin(async move { s.audit::<M>().await })
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
        });
        self
    }

    /// Metadata of every model.
    pub fn metas(&self) -> impl Iterator<Item = &'static ModelMeta> + '_ {
        self.entries.iter().map(|e| e.meta)
    }

    fn tenant_models(&self) -> impl Iterator<Item = &Entry> + '_ {
        self.entries.iter().filter(|e| e.meta.tenant.is_some())
    }
}

/// What `destroy_tenant` removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DestroyReport {
    /// Instances deleted (hash and index entries, atomically each), per model.
    pub instances: BTreeMap<&'static str, u64>,
    /// Index members of the tenant left without an instance (orphans) that were removed.
    pub orphan_entries: u64,
}

/// One record of a tenant export stream (msgpack).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ExportRecord {
    /// First record: format version and tenant.
    Header {
        /// Stream format version (1).
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
}

/// The tenant's segment value for models with a tenant field, as a lookup for `instance_match`.
fn tenant_match(meta: &ModelMeta, tenant: &TenantId) -> String {
    let tf = meta.tenant;
    keys::instance_match(meta, &|i| (Some(i) == tf).then_some(tenant.as_str()))
}

/// Whether `member` is an instance key of `meta` belonging to `tenant`.
fn belongs(meta: &'static ModelMeta, tenant: &TenantId, member: &str) -> bool {
    let Some(tf) = meta.tenant else { return false };
    let Ok(segments) = keys::parse_instance_key(meta, member) else {
        return false;
    };
    meta.key_fields
        .iter()
        .position(|&k| k == tf)
        .and_then(|p| segments.get(p))
        .is_some_and(|s| s == tenant.as_str())
}

/// Whether index key `key` of `meta` may hold `member`, one of the model's instance keys: a
/// value set must be the one of the member's own value, and each partition segment given by a
/// key field (the tenant's above all) must be the member's own. Partition segments of non-key
/// fields, and the unpartitioned (legacy) key of a partitioned field, are free.
fn index_fits(meta: &'static ModelMeta, key: &str, member: &str) -> bool {
    let Ok(segments) = keys::parse_instance_key(meta, member) else {
        return false;
    };
    let own = |field: usize| {
        meta.key_fields
            .iter()
            .position(|&k| k == field)
            .and_then(|p| segments.get(p))
            .map(String::as_str)
    };
    // Partition values as read from the key, checked against the member, and the key rebuilt.
    let fits = |field: usize, parts: &[String]| {
        let by = meta.fields[field].partition_by;
        parts.is_empty()
            || (parts.len() == by.len()
                && by
                    .iter()
                    .zip(parts)
                    .all(|(&p, v)| !meta.fields[p].kind.is_key() || own(p) == Some(v.as_str())))
    };
    match keys::parse_index_key(meta, key) {
        None => false,
        Some(keys::IndexKind::Class) => true,
        Some(keys::IndexKind::ValueSet(f)) => {
            own(f).is_some_and(|v| keys::value_set_key(meta, f, v) == key)
        }
        Some(keys::IndexKind::Sorted(f)) => {
            let base = keys::sorted_key(meta, f, &[]);
            let parts: Vec<String> = match key.strip_prefix(base.as_str()) {
                Some("") => Vec::new(),
                Some(rest) => rest
                    .strip_prefix(':')
                    .unwrap_or(rest)
                    .split(':')
                    .map(|p| keys::unescape(p).into_owned())
                    .collect(),
                None => return false,
            };
            let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
            fits(f, &parts) && keys::sorted_key(meta, f, &refs) == key
        }
        Some(keys::IndexKind::Confidence(f)) => {
            let Ok(base) = keys::confidence_key(meta, f, &[]) else {
                return false;
            };
            let parts: Vec<String> = match key.strip_prefix(base.as_str()) {
                Some("") => Vec::new(),
                // Popoto does not escape companion partition segments: one field takes it all.
                Some(rest) if meta.fields[f].partition_by.len() == 1 => {
                    vec![rest.strip_prefix(':').unwrap_or(rest).to_owned()]
                }
                Some(rest) => rest
                    .strip_prefix(':')
                    .unwrap_or(rest)
                    .split(':')
                    .map(str::to_owned)
                    .collect(),
                None => return false,
            };
            let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
            fits(f, &parts) && keys::confidence_key(meta, f, &refs).is_ok_and(|k| k == key)
        }
    }
}

async fn scan_keys(backend: &Backend, model: &'static str, pattern: &str) -> Result<Vec<String>> {
    let mut cursor: u64 = 0;
    let mut out = Vec::new();
    loop {
        let (next, batch): (u64, Vec<String>) = backend
            .query(
                "scan",
                model,
                redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(pattern)
                    .arg("COUNT")
                    .arg(1000),
            )
            .await?;
        out.extend(batch);
        if next == 0 {
            out.sort();
            out.dedup();
            return Ok(out);
        }
        cursor = next;
    }
}

/// Every index membership of `tenant`'s instances in `meta`'s index keys.
async fn memberships(
    backend: &Backend,
    meta: &'static ModelMeta,
    tenant: &TenantId,
) -> Result<Vec<ExportRecord>> {
    let pattern = tenant_match(meta, tenant);
    let mut out = Vec::new();
    for index_pattern in keys::index_patterns(meta) {
        for key in scan_keys(backend, meta.name, &index_pattern).await? {
            let ty: String = backend
                .query("type", meta.name, redis::cmd("TYPE").arg(&key))
                .await?;
            let scan = match ty.as_str() {
                "set" => "SSCAN",
                "zset" => "ZSCAN",
                "hash" => "HSCAN",
                _ => continue,
            };
            let mut cursor: u64 = 0;
            loop {
                let cmd = redis::cmd(scan)
                    .arg(&key)
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(1000)
                    .clone();
                let (next, items): (u64, Vec<Vec<u8>>) =
                    backend.query("scan", meta.name, &cmd).await?;
                let mut it = items.into_iter();
                while let Some(member) = it.next() {
                    let value = if scan == "SSCAN" { None } else { it.next() };
                    let Ok(member) = String::from_utf8(member) else {
                        continue;
                    };
                    if !belongs(meta, tenant, &member) {
                        continue;
                    }
                    out.push(match (scan, value) {
                        ("ZSCAN", Some(score)) => {
                            let score =
                                String::from_utf8_lossy(&score)
                                    .parse::<f64>()
                                    .map_err(|e| Error::Decode {
                                        model: meta.name,
                                        key: key.clone(),
                                        field: member.clone(),
                                        reason: e.to_string(),
                                    })?;
                            ExportRecord::ZSetMember {
                                key: key.clone(),
                                member,
                                score,
                            }
                        }
                        ("HSCAN", Some(value)) => ExportRecord::HashEntry {
                            key: key.clone(),
                            field: member,
                            value: ByteBuf::from(value),
                        },
                        _ => ExportRecord::SetMember {
                            key: key.clone(),
                            member,
                        },
                    });
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
    }
    Ok(out)
}

/// Instance keys of `tenant` in `meta`: the tenant's value set plus any stray hash found by SCAN.
async fn instances(
    backend: &Backend,
    meta: &'static ModelMeta,
    tenant: &TenantId,
) -> Result<Vec<String>> {
    let mut found = scan_keys(backend, meta.name, &tenant_match(meta, tenant)).await?;
    found.retain(|k| belongs(meta, tenant, k));
    let mut hashes = Vec::with_capacity(found.len());
    for chunk in found.chunks(1000) {
        let mut pipe = redis::pipe();
        for k in chunk {
            pipe.cmd("TYPE").arg(k);
        }
        let types: Vec<String> = backend.pipeline("scan", meta.name, &pipe).await?;
        hashes.extend(
            chunk
                .iter()
                .zip(types)
                .filter(|(_, t)| t == "hash")
                .map(|(k, _)| k.clone()),
        );
    }
    Ok(hashes)
}

impl Admin {
    /// Removes every instance, index entry and companion-hash entry of `tenant` for the models
    /// of `models`, in batches (each instance atomically), touching no other tenant's data.
    pub async fn destroy_tenant(
        &self,
        tenant: &TenantId,
        models: &ModelSet,
    ) -> Result<DestroyReport> {
        let session = self.on(tenant);
        let backend = session.backend().await?;
        let mut report = DestroyReport::default();
        for e in models.tenant_models() {
            let keys = instances(&backend, e.meta, tenant).await?;
            let mut n = 0;
            for chunk in keys.chunks(1000) {
                n += (e.delete)(session.clone(), tenant.clone(), chunk.to_vec()).await?;
            }
            report.instances.insert(e.meta.name, n);
            // Whatever is left of the tenant in the indexes has no instance any more.
            for m in memberships(&backend, e.meta, tenant).await? {
                let cmd = match &m {
                    ExportRecord::SetMember { key, member } => {
                        redis::cmd("SREM").arg(key).arg(member).clone()
                    }
                    ExportRecord::ZSetMember { key, member, .. } => {
                        redis::cmd("ZREM").arg(key).arg(member).clone()
                    }
                    ExportRecord::HashEntry { key, field, .. } => {
                        redis::cmd("HDEL").arg(key).arg(field).clone()
                    }
                    _ => continue,
                };
                let removed: u64 = backend.query("destroy", e.meta.name, &cmd).await?;
                report.orphan_entries += removed;
            }
        }
        // A late request must not re-create the tenant's data: refused until registered again.
        if let Some(registry) = self.db().registry() {
            registry.tombstone(tenant);
        }
        Ok(report)
    }

    /// Writes every instance and index entry of `tenant` as a msgpack stream of
    /// [`ExportRecord`]s; returns the number of records. [`Admin::import_tenant`] restores it exactly.
    pub async fn export_tenant(
        &self,
        tenant: &TenantId,
        models: &ModelSet,
        mut out: impl Write,
    ) -> Result<u64> {
        let backend = self.on(tenant).backend().await?;
        let mut n = 0;
        let mut emit = |r: &ExportRecord| -> Result<()> {
            rmp_serde::encode::write_named(&mut out, r)
                .map_err(|e| Error::Stream(e.to_string()))?;
            n += 1;
            Ok(())
        };
        emit(&ExportRecord::Header {
            version: 1,
            tenant: tenant.to_string(),
        })?;
        for e in models.tenant_models() {
            let mut by_member: HashMap<String, Vec<ExportRecord>> = HashMap::new();
            for m in memberships(&backend, e.meta, tenant).await? {
                let member = match &m {
                    ExportRecord::SetMember { member, .. }
                    | ExportRecord::ZSetMember { member, .. } => member.clone(),
                    ExportRecord::HashEntry { field, .. } => field.clone(),
                    _ => continue,
                };
                by_member.entry(member).or_default().push(m);
            }
            for chunk in instances(&backend, e.meta, tenant).await?.chunks(500) {
                let mut pipe = redis::pipe();
                for k in chunk {
                    pipe.cmd("HGETALL").arg(k);
                }
                let hashes: Vec<Vec<(Vec<u8>, Vec<u8>)>> =
                    backend.pipeline("export", e.meta.name, &pipe).await?;
                for (k, fields) in chunk.iter().zip(hashes) {
                    if fields.is_empty() {
                        continue;
                    }
                    let fields = fields
                        .into_iter()
                        .map(|(f, v)| (ByteBuf::from(f), ByteBuf::from(v)))
                        .collect();
                    emit(&ExportRecord::Hash {
                        key: k.clone(),
                        fields,
                    })?;
                    for m in by_member.remove(k).unwrap_or_default() {
                        emit(&m)?;
                    }
                }
            }
            // Index entries without an instance, kept so the round trip is exact.
            let mut rest: Vec<_> = by_member.into_iter().collect();
            rest.sort_by(|a, b| a.0.cmp(&b.0));
            for (_, records) in rest {
                for m in records {
                    emit(&m)?;
                }
            }
        }
        Ok(n)
    }

    /// Restores a stream written by [`Admin::export_tenant`] into `tenant` (each instance with its
    /// index entries atomically). Refuses records of another tenant or of keys outside the
    /// models' layout, and instances that already exist; returns the number of records applied.
    pub async fn import_tenant(
        &self,
        tenant: &TenantId,
        models: &ModelSet,
        mut input: impl Read,
    ) -> Result<u64> {
        let backend = self.on(tenant).backend().await?;
        let metas: Vec<&'static ModelMeta> = models.tenant_models().map(|e| e.meta).collect();
        let refuse = |what: String| Error::InvalidValue {
            model: "-",
            field: "-",
            reason: format!("import refused: {what}"),
        };
        // The model whose canonical instance key of `tenant` `member` is.
        let owner = |member: &str| {
            metas.iter().copied().find(|m| {
                belongs(m, tenant, member)
                    && keys::parse_instance_key(m, member)
                        .is_ok_and(|segments| keys::instance_key(m, &segments) == member)
            })
        };
        let mut tenant_bytes = Vec::new();
        crate::codec::encode_serde(tenant.as_str(), &mut tenant_bytes)
            .map_err(|e| refuse(e.to_string()))?;
        let mut applied = 0;
        let mut plan: Option<(Plan, &'static ModelMeta)> = None;
        let mut header = false;
        loop {
            let mut de = rmp_serde::Deserializer::new(&mut input);
            de.set_max_depth(crate::codec::MAX_SERDE_DEPTH);
            let record: ExportRecord = match ExportRecord::deserialize(&mut de) {
                Ok(r) => r,
                Err(rmp_serde::decode::Error::InvalidMarkerRead(e))
                    if e.kind() == std::io::ErrorKind::UnexpectedEof =>
                {
                    break
                }
                Err(e) => return Err(refuse(format!("unreadable record: {e}"))),
            };
            applied += 1;
            match record {
                ExportRecord::Header { version, tenant: t } => {
                    if version != 1 || t != tenant.as_str() {
                        return Err(refuse(format!("stream of tenant {t:?} version {version}")));
                    }
                    header = true;
                }
                _ if !header => return Err(refuse("missing header".into())),
                ExportRecord::Hash { key, fields } => {
                    if let Some((p, meta)) = plan.take() {
                        apply(&backend, meta, &p).await?;
                    }
                    let meta = owner(&key).ok_or_else(|| {
                        refuse(format!("instance {key} is not tenant {tenant}'s"))
                    })?;
                    let mut p = Plan::default();
                    let k = p.key(key);
                    p.checks.push(Check::Absent(k));
                    let pairs = fields
                        .into_iter()
                        .map(|(f, v)| String::from_utf8(f.into_vec()).map(|f| (f, v.into_vec())))
                        .collect::<std::result::Result<Vec<_>, _>>()
                        .map_err(|_| refuse("non-UTF-8 hash field".into()))?;
                    let tenant_field = meta.tenant.map(|t| meta.fields[t].name);
                    if pairs
                        .iter()
                        .any(|(f, v)| Some(f.as_str()) == tenant_field && *v != tenant_bytes)
                    {
                        return Err(refuse(format!(
                            "instance {} holds another tenant in its tenant field",
                            p.keys[k]
                        )));
                    }
                    p.writes.push(W::HSet { key: k, pairs });
                    plan = Some((p, meta));
                }
                other => {
                    let (key, member) = match &other {
                        ExportRecord::SetMember { key, member }
                        | ExportRecord::ZSetMember { key, member, .. } => (key, member),
                        ExportRecord::HashEntry { key, field, .. } => (key, field),
                        _ => continue,
                    };
                    let meta = owner(member).ok_or_else(|| {
                        refuse(format!("member {member} is not tenant {tenant}'s"))
                    })?;
                    if !index_fits(meta, key, member) {
                        return Err(refuse(format!("{key} is not an index of {}", meta.name)));
                    }
                    // Members follow their instance; orphans are applied on their own.
                    let same = plan.as_ref().is_some_and(|(p, _)| {
                        p.keys.first().map(String::as_str) == Some(member.as_str())
                    });
                    if !same {
                        if let Some((p, m)) = plan.take() {
                            apply(&backend, m, &p).await?;
                        }
                        plan = Some((Plan::default(), meta));
                    }
                    let Some((p, _)) = plan.as_mut() else {
                        continue;
                    };
                    let k = p.key(key.clone());
                    p.writes.push(match other {
                        ExportRecord::SetMember { member, .. } => W::SAdd { key: k, member },
                        ExportRecord::ZSetMember { member, score, .. } => W::ZAdd {
                            key: k,
                            score,
                            member,
                        },
                        ExportRecord::HashEntry { field, value, .. } => W::HSetNx {
                            key: k,
                            field,
                            value: value.into_vec(),
                        },
                        _ => continue,
                    });
                }
            }
        }
        if let Some((p, meta)) = plan.take() {
            apply(&backend, meta, &p).await?;
        }
        Ok(applied)
    }

    /// The isolation audit of every model in `models` on the shared backend: index members
    /// outside their partition, keys that disagree with their tenant field, orphan and missing
    /// index entries (see [`IndexReport`]). Tenants placed on other backends: [`Admin::audit_all_on`].
    pub async fn audit_all(&self, models: &ModelSet) -> Result<Vec<IndexReport>> {
        let mut out = Vec::with_capacity(models.entries.len());
        for e in &models.entries {
            out.push((e.audit)(self.clone()).await?);
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

    /// Number of instances of each tenant model for `tenant` (SCARD of the tenant's value set).
    pub async fn tenant_counts(
        &self,
        tenant: &TenantId,
        models: &ModelSet,
    ) -> Result<BTreeMap<&'static str, u64>> {
        let backend = self.on(tenant).backend().await?;
        let mut out = BTreeMap::new();
        for e in models.tenant_models() {
            let Some(tf) = e.meta.tenant else { continue };
            let key = keys::value_set_key(e.meta, tf, tenant.as_str());
            let n: u64 = backend
                .query("count", e.meta.name, redis::cmd("SCARD").arg(&key))
                .await?;
            out.insert(e.meta.name, n);
        }
        Ok(out)
    }
}

async fn apply(backend: &Backend, meta: &'static ModelMeta, plan: &Plan) -> Result<()> {
    let mut plan = plan.clone();
    plan.add_type_checks();
    let reply = backend
        .eval("import", meta.name, &APPLY, &plan.keys, &plan.args())
        .await?;
    match Plan::outcome(meta, "import", reply)? {
        Outcome::Applied(_) => Ok(()),
        Outcome::Exists(key) => Err(Error::AlreadyExists {
            model: meta.name,
            key,
        }),
        Outcome::WrongType { key, found } => Err(Error::WrongType {
            model: meta.name,
            key,
            found,
        }),
        other => Err(Error::Protocol {
            op: "import",
            model: meta.name,
            detail: format!("{other:?}"),
        }),
    }
}
