//! The index check that needs no model: every index key popoto writes (`$Class`, `$KeyF`,
//! `$UniqueKeyF`, `$SortF`, `$ConfidencF`) is found with `SCAN`, and each of its entries must
//! name an existing hash shaped like an instance key of the index's model. It finds orphan and
//! foreign entries, not missing or misplaced ones (that takes the model's fields:
//! [`Admin::check_indexes`]). What the generic `popoto check` runs.

use redis::Value as RValue;

use super::{Finding, FindingKind, IndexReport, DEFAULT_BATCH};
use crate::admin::Admin;
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::keys::{self, IndexShape};

/// Label of this check in errors and traces.
const OP: &str = "check keys";
/// The report's model: every model.
pub const ANY_MODEL: &str = "*";

impl Admin {
    /// Checks every index entry of every model on this handle's backend from popoto's key
    /// layout alone, writing nothing: an entry whose instance hash is missing is an orphan
    /// ([`FindingKind::Orphan`]); one naming a key of another model, or a key that is not a
    /// hash, and an index key of another Redis type are [`FindingKind::Foreign`]. Findings
    /// name no tenant (which segment is the tenant is the model's to say). The report's model
    /// is `*`. Popoto's layout only: on another it is refused with
    /// [`Error::Layout`](crate::Error::Layout) (its patterns would find nothing there).
    pub async fn check_keys(&self) -> Result<IndexReport> {
        let backend = self.backend().await?;
        if backend.layout() != crate::keys::Layout::Popoto {
            return Err(crate::Error::Layout {
                model: ANY_MODEL,
                op: OP,
                layout: backend.layout(),
            });
        }
        let mut report = IndexReport {
            model: ANY_MODEL.to_owned(),
            ..Default::default()
        };
        for (pattern, _) in keys::ANY_INDEX_PATTERNS {
            let mut cursor = 0u64;
            loop {
                let (next, found): (u64, Vec<Vec<u8>>) = backend
                    .query(
                        OP,
                        ANY_MODEL,
                        redis::cmd("SCAN")
                            .arg(cursor)
                            .arg("MATCH")
                            .arg(pattern)
                            .arg("COUNT")
                            .arg(DEFAULT_BATCH),
                    )
                    .await?;
                for key in found {
                    // Keys that are not UTF-8 are no key popoto writes.
                    if let Ok(key) = String::from_utf8(key) {
                        check_index_key(&backend, &key, &mut report).await?;
                    }
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok(report)
    }
}

fn finding(kind: FindingKind, index: &str, member: &str, detail: String) -> Finding {
    Finding {
        kind,
        index: index.to_owned(),
        member: member.to_owned(),
        field: None,
        tenant: None,
        detail,
        repaired: false,
    }
}

/// Checks the entries of one index key.
async fn check_index_key(backend: &Backend, key: &str, report: &mut IndexReport) -> Result<()> {
    let Some((shape, model)) = keys::index_shape(key) else {
        return Ok(());
    };
    let found: String = backend
        .query(OP, ANY_MODEL, redis::cmd("TYPE").arg(key))
        .await?;
    // Gone since the scan.
    if found == "none" {
        return Ok(());
    }
    report.index_keys += 1;
    if found != shape.redis_type() {
        report.findings.push(finding(
            FindingKind::Foreign,
            key,
            "",
            format!(
                "the index key holds a {found}, not a {}",
                shape.redis_type()
            ),
        ));
        return Ok(());
    }
    let scan = match shape {
        IndexShape::Set => "SSCAN",
        IndexShape::Sorted => "ZSCAN",
        IndexShape::Hash => "HSCAN",
    };
    let pairs = shape != IndexShape::Set;
    let mut cursor = 0u64;
    loop {
        let (next, flat): (u64, Vec<Vec<u8>>) = backend
            .query(
                OP,
                ANY_MODEL,
                redis::cmd(scan)
                    .arg(key)
                    .arg(cursor)
                    .arg("COUNT")
                    .arg(DEFAULT_BATCH),
            )
            .await?;
        let members: Vec<String> = flat
            .into_iter()
            .step_by(if pairs { 2 } else { 1 })
            .map(|m| String::from_utf8_lossy(&m).into_owned())
            .collect();
        check_members(backend, key, model, members, report).await?;
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

/// Checks one page of members of index key `key` of `model`.
async fn check_members(
    backend: &Backend,
    key: &str,
    model: &str,
    members: Vec<String>,
    report: &mut IndexReport,
) -> Result<()> {
    report.index_entries += members.len() as u64;
    let shaped: Vec<&String> = members
        .iter()
        .filter(|m| {
            let ok = keys::instance_of(model, m);
            if !ok {
                report.findings.push(finding(
                    FindingKind::Foreign,
                    key,
                    m,
                    format!("not an instance key of {model}"),
                ));
            }
            ok
        })
        .collect();
    if shaped.is_empty() {
        return Ok(());
    }
    let mut pipe = redis::pipe();
    for m in &shaped {
        pipe.cmd("TYPE").arg(m.as_str());
    }
    let types: Vec<RValue> = backend.pipeline(OP, ANY_MODEL, &pipe).await?;
    if types.len() != shaped.len() {
        return Err(Error::Protocol {
            op: OP,
            model: ANY_MODEL,
            detail: "a pipeline returned fewer replies than commands".into(),
        });
    }
    for (m, t) in shaped.into_iter().zip(types) {
        let t = redis::from_redis_value::<String>(t).unwrap_or_default();
        match t.as_str() {
            "hash" => {}
            "none" => report.findings.push(finding(
                FindingKind::Orphan,
                key,
                m,
                "no instance at this key".into(),
            )),
            other => report.findings.push(finding(
                FindingKind::Foreign,
                key,
                m,
                format!("the key holds a {other}, not an instance hash"),
            )),
        }
    }
    Ok(())
}
