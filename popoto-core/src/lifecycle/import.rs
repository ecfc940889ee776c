//! Import of a tenant export stream: checked record by record, applied as one atomic plan per
//! instance (its hash and index entries) in batches, and idempotent.
//!
//! An instance's plan checks that its key is absent or already holds exactly the stream's
//! fields (`Check::Same`), and that no other instance holds its unique values (the unique
//! checks every write builds, `Instance::unique_checks`); its writes are idempotent (`HSET` of
//! the same bytes, `SADD`, `ZADD`, `HSETNX`). So an import cut anywhere (each plan is applied
//! whole or not at all) is completed by running the same stream again.

use std::collections::HashSet;
use std::io::Read;

use serde::Deserialize;

use super::{layout, ExportRecord, VERSION};
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::keys;
use crate::model::ModelMeta;
use crate::plan::{entries, Expiry, Outcome, Plan, Write as W};
use crate::script::apply::{self, APPLY};
use crate::tenant::TenantId;

/// Plans per round trip (one script call).
const BATCH: usize = 100;

/// One plan to apply: an instance with its index entries, or the entries of a key without an
/// instance.
struct Step {
    meta: &'static ModelMeta,
    /// The instance key the plan writes (or whose entries it writes).
    member: String,
    plan: Plan,
}

fn refuse(what: impl std::fmt::Display) -> Error {
    Error::InvalidValue {
        model: "-",
        field: "-",
        reason: format!("import refused: {what}"),
    }
}

/// The next record, or `None` at the end of the input (between records).
pub(super) fn next_record(input: &mut impl Read) -> Result<Option<ExportRecord>> {
    use rmp_serde::decode::Error as De;
    let mut de = rmp_serde::Deserializer::new(input);
    de.set_max_depth(crate::codec::MAX_SERDE_DEPTH);
    match ExportRecord::deserialize(&mut de) {
        Ok(r) => Ok(Some(r)),
        Err(De::InvalidMarkerRead(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
        Err(De::InvalidMarkerRead(e) | De::InvalidDataRead(e)) => {
            Err(Error::Stream(format!("reading: {e}")))
        }
        Err(e) => Err(refuse(format!("unreadable record: {e}"))),
    }
}

/// The stream's state: what was read and what waits to be sent.
struct Import<'a> {
    backend: &'a Backend,
    metas: &'a [&'static ModelMeta],
    tenant: &'a TenantId,
    tenant_bytes: Vec<u8>,
    current: Option<Step>,
    batch: Vec<Step>,
}

impl Import<'_> {
    /// The model whose canonical instance key of the tenant `member` is.
    fn owner(&self, member: &str) -> Option<&'static ModelMeta> {
        self.metas
            .iter()
            .copied()
            .find(|m| layout::owned(self.backend.layout(), m, self.tenant, member))
    }

    /// Queues the current plan; sends the batch when it is full.
    async fn finish_step(&mut self) -> Result<()> {
        if let Some(step) = self.current.take() {
            self.batch.push(step);
        }
        if self.batch.len() >= BATCH {
            self.send().await?;
        }
        Ok(())
    }

    /// Applies the queued plans (each on its own, in order); the first refusal is the error.
    async fn send(&mut self) -> Result<()> {
        let batch = std::mem::take(&mut self.batch);
        let Some(first) = batch.first() else {
            return Ok(());
        };
        let calls: Vec<(Vec<String>, Vec<Vec<u8>>)> =
            batch.iter().map(|s| apply::call(&s.plan)).collect();
        // A dry run: the calls a real run sends, recorded instead (assumed all applied).
        if self.backend.record_many(&APPLY, &calls) {
            return Ok(());
        }
        let replies = self
            .backend
            .eval_many("import", first.meta.name, &APPLY, &calls)
            .await?;
        for (step, reply) in batch.iter().zip(replies) {
            let meta = step.meta;
            let reply = reply.map_err(|source| Error::Redis {
                op: "import",
                model: meta.name,
                source,
            })?;
            match apply::outcome(meta, "import", reply)? {
                Outcome::Applied(_) => {}
                Outcome::Exists(key) => {
                    return Err(Error::AlreadyExists {
                        model: meta.name,
                        key,
                    })
                }
                Outcome::Unique { field, existing } => {
                    let value = self
                        .backend
                        .layout()
                        .parse_instance_key(meta, &step.member)
                        .ok()
                        .zip(meta.key_fields.iter().position(|&k| k == field))
                        .and_then(|(segments, pos)| segments.get(pos).cloned())
                        .unwrap_or_default();
                    return Err(Error::UniqueViolation {
                        model: meta.name,
                        field: meta.fields.get(field).map_or("?", |f| f.name),
                        value,
                        existing,
                    });
                }
                Outcome::WrongType { key, found } => {
                    return Err(Error::WrongType {
                        model: meta.name,
                        key,
                        found,
                    })
                }
                other => {
                    return Err(Error::Protocol {
                        op: "import",
                        model: meta.name,
                        detail: format!("{other:?}"),
                    })
                }
            }
        }
        Ok(())
    }

    /// Starts the plan of an instance hash.
    async fn hash(
        &mut self,
        key: String,
        fields: Vec<(serde_bytes::ByteBuf, serde_bytes::ByteBuf)>,
    ) -> Result<()> {
        self.finish_step().await?;
        let tenant = self.tenant;
        let meta = self
            .owner(&key)
            .ok_or_else(|| refuse(format!("instance {key} is not tenant {tenant}'s")))?;
        let pairs = fields
            .into_iter()
            .map(|(f, v)| String::from_utf8(f.into_vec()).map(|f| (f, v.into_vec())))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|_| refuse("non-UTF-8 hash field"))?;
        let mut names = HashSet::with_capacity(pairs.len());
        if !pairs.iter().all(|(f, _)| names.insert(f.as_str())) {
            return Err(refuse(format!("instance {key} repeats a hash field")));
        }
        let tenant_field = meta.tenant.map(|t| meta.fields[t].name);
        if pairs
            .iter()
            .any(|(f, v)| Some(f.as_str()) == tenant_field && *v != self.tenant_bytes)
        {
            return Err(refuse(format!(
                "instance {key} holds another tenant in its tenant field"
            )));
        }
        let segments = self.backend.layout().parse_instance_key(meta, &key)?;
        let record = layout::key_record(meta, &segments, &[]);
        let plan = entries::import(
            &layout::instance(self.backend.layout(), meta, &key, &segments, &record),
            pairs,
        );
        self.current = Some(Step {
            meta,
            member: key,
            plan,
        });
        Ok(())
    }

    /// Adds an index entry to its instance's plan (or to the plan of its key's entries).
    async fn entry(&mut self, record: ExportRecord) -> Result<()> {
        let (key, member) = match &record {
            ExportRecord::SetMember { key, member }
            | ExportRecord::ZSetMember { key, member, .. } => (key.clone(), member.clone()),
            ExportRecord::HashEntry { key, field, .. } => (key.clone(), field.clone()),
            _ => return Err(refuse("unexpected record")),
        };
        let tenant = self.tenant;
        let meta = self
            .owner(&member)
            .ok_or_else(|| refuse(format!("member {member} is not tenant {tenant}'s")))?;
        if !layout::index_fits(self.backend.layout(), meta, &key, &member) {
            return Err(refuse(format!(
                "{key} is not an index of {} for {member}",
                meta.name
            )));
        }
        // Entries follow their instance; entries of a key without an instance go on their own.
        if self.current.as_ref().is_none_or(|s| s.member != member) {
            self.finish_step().await?;
            self.current = Some(Step {
                meta,
                member: member.clone(),
                plan: Plan::default(),
            });
        }
        let Some(step) = self.current.as_mut() else {
            return Err(refuse("no plan"));
        };
        let expiry =
            self.backend.layout().parse_index_key(meta, &key) == Some(keys::IndexKind::Expiry);
        let k = step.plan.key(key);
        let instance = step.plan.key(member);
        let write = match record {
            // The instance's expiry: its hash's TTL again, and its expiry entry.
            ExportRecord::ZSetMember { score, .. } if expiry => W::Expire {
                key: instance,
                zset: k,
                expiry: Expiry::At(score as i64),
            },
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
            _ => return Err(refuse("unexpected record")),
        };
        step.plan.write(write);
        Ok(())
    }
}

/// Imports `input` into `tenant` (see [`crate::Admin::import_tenant`]).
pub(super) async fn run(
    backend: &Backend,
    metas: &[&'static ModelMeta],
    tenant: &TenantId,
    mut input: impl Read,
) -> Result<u64> {
    let mut tenant_bytes = Vec::new();
    crate::codec::encode_serde(tenant.as_str(), &mut tenant_bytes).map_err(refuse)?;
    let mut im = Import {
        backend,
        metas,
        tenant,
        tenant_bytes,
        current: None,
        batch: Vec::new(),
    };
    let mut read = 0u64;
    let mut version = None;
    loop {
        let Some(record) = next_record(&mut input)? else {
            return match version {
                // Version 1 streams have no end record: the end of the input ends them.
                Some(1) => {
                    im.finish_step().await?;
                    im.send().await?;
                    Ok(read)
                }
                Some(_) => Err(Error::Stream(format!(
                    "the stream ends after {read} records without its end record (truncated); nothing after the last full batch was written"
                ))),
                None => Err(refuse("empty stream")),
            };
        };
        read += 1;
        match record {
            ExportRecord::Header {
                version: v,
                tenant: t,
            } => {
                if version.is_some() {
                    return Err(refuse("a second header"));
                }
                if !(1..=VERSION).contains(&v) || t != tenant.as_str() {
                    return Err(refuse(format!("stream of tenant {t:?} version {v}")));
                }
                version = Some(v);
            }
            _ if version.is_none() => return Err(refuse("missing header")),
            ExportRecord::End { records } => {
                if version == Some(1) || records != read - 1 {
                    return Err(refuse(format!(
                        "end record counting {records} records after {} records",
                        read - 1
                    )));
                }
                if next_record(&mut input)?.is_some() {
                    return Err(refuse("records after the end record"));
                }
                im.finish_step().await?;
                im.send().await?;
                return Ok(read);
            }
            ExportRecord::Hash { key, fields } => im.hash(key, fields).await?,
            other => im.entry(other).await?,
        }
    }
}
