//! Resolution: a query's filters and scope turned into index reads, without a server.

use crate::error::{Error, Result};
use crate::keys;
use crate::model::{FieldKind, Model};
use crate::tenant::Scope;

use super::filter::{Bound, FilterKind};
use super::Query;

/// Where candidate keys come from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Source {
    Set(String),
    Union(Vec<String>),
    Range {
        field: usize,
        zset: String,
        min: Bound,
        max: Bound,
    },
}

impl<M: Model> Query<'_, M> {
    /// Turns filters and scope into index sources.
    pub(super) fn resolve(&self) -> Result<Vec<Source>> {
        let meta = M::META;
        self.session.check_model::<M>()?;
        let tenant = match (self.session.scope(), meta.tenant) {
            (Scope::Tenant(t), Some(f)) => Some((f, t.as_str())),
            _ => None,
        };
        let mismatch = |found: &str| Error::TenantMismatch {
            model: meta.name,
            field: tenant.map_or("?", |(f, _)| meta.fields[f].name),
            expected: tenant.map_or(String::new(), |(_, t)| t.to_owned()),
            found: found.to_owned(),
        };
        let mut known = self.explicit_partitions();
        if let Some((tf, t)) = tenant {
            for (f, v) in &known {
                if *f == tf && *v != t {
                    return Err(mismatch(v));
                }
            }
            known.push((tf, t));
        }
        let mut sources = Vec::with_capacity(self.filters.len() + 1);
        let mut tenant_covered = false;
        for f in &self.filters {
            match f {
                FilterKind::KeyEq { field, segment } => {
                    tenant_covered |= tenant.is_some_and(|(tf, _)| tf == *field);
                    sources.push(Source::Set(keys::value_set_key(meta, *field, segment)));
                }
                FilterKind::KeyIn { field, segments } => {
                    if let Some((tf, t)) = tenant {
                        if tf == *field {
                            if let Some(other) = segments.iter().find(|s| s.as_str() != t) {
                                return Err(mismatch(other));
                            }
                        }
                    }
                    sources.push(Source::Union(
                        segments
                            .iter()
                            .map(|s| keys::value_set_key(meta, *field, s))
                            .collect(),
                    ));
                }
                FilterKind::Range { field, min, max } => {
                    for b in [min, max] {
                        if b.value().is_some_and(f64::is_nan) {
                            return Err(Error::InvalidValue {
                                model: meta.name,
                                field: meta.fields[*field].name,
                                reason: "a range bound cannot be NaN".into(),
                            });
                        }
                    }
                    let zset = self.zset(*field, &known)?;
                    tenant_covered |= tenant
                        .is_some_and(|(tf, _)| meta.fields[*field].partition_by.contains(&tf));
                    sources.push(Source::Range {
                        field: *field,
                        zset,
                        min: *min,
                        max: *max,
                    });
                }
            }
        }
        // Ordering by a partitioned sorted field reads that partition: every instance is in its
        // sorted set, so the partition's zset is the candidate set (and Redis pages it).
        if let Some((of, _)) = self.order {
            let ranged = self
                .filters
                .iter()
                .any(|x| matches!(x, FilterKind::Range { field, .. } if *field == of));
            if !meta.fields[of].partition_by.is_empty() && !ranged {
                let zset = self.zset(of, &known)?;
                tenant_covered |=
                    tenant.is_some_and(|(tf, _)| meta.fields[of].partition_by.contains(&tf));
                sources.push(Source::Range {
                    field: of,
                    zset,
                    min: Bound::Unbounded,
                    max: Bound::Unbounded,
                });
            }
        }
        if let Some((tf, t)) = tenant {
            if !tenant_covered {
                sources.push(Source::Set(keys::value_set_key(meta, tf, t)));
            }
        }
        if sources.is_empty() {
            sources.push(Source::Set(keys::class_key(meta)));
        }
        Ok(sources)
    }

    /// The zset of sorted field `field` in the partition given by `known` values.
    pub(super) fn zset(&self, field: usize, known: &[(usize, &str)]) -> Result<String> {
        let meta = M::META;
        let f = &meta.fields[field];
        debug_assert_eq!(f.kind, FieldKind::Sorted);
        let mut partition = Vec::with_capacity(f.partition_by.len());
        for &p in f.partition_by {
            match known.iter().find(|(k, _)| *k == p) {
                Some((_, v)) => partition.push(*v),
                None => {
                    return Err(Error::MissingPartition {
                        model: meta.name,
                        field: f.name,
                        partition_field: meta.fields[p].name,
                    })
                }
            }
        }
        Ok(keys::sorted_key(meta, field, &partition))
    }

    /// Values of partition fields given explicitly: `partition(..)` and key equality filters.
    fn explicit_partitions(&self) -> Vec<(usize, &str)> {
        let mut known: Vec<(usize, &str)> = self
            .partitions
            .iter()
            .map(|(f, s)| (*f, s.as_str()))
            .collect();
        for f in &self.filters {
            if let FilterKind::KeyEq { field, segment } = f {
                known.push((*field, segment));
            }
        }
        known
    }

    /// Explicit partition values plus the tenant handle's.
    pub(super) fn known_partitions(&self) -> Vec<(usize, &str)> {
        let mut known = self.explicit_partitions();
        if let (Scope::Tenant(t), Some(tf)) = (self.session.scope(), M::META.tenant) {
            known.push((tf, t.as_str()));
        }
        known
    }
}

/// The index keys a query reads, for reports.
pub(super) fn index_keys(sources: &[Source]) -> Vec<String> {
    let mut out = Vec::new();
    for s in sources {
        match s {
            Source::Set(k) => out.push(k.clone()),
            Source::Union(ks) => out.extend(ks.iter().cloned()),
            Source::Range { zset, .. } => out.push(zset.clone()),
        }
    }
    out
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
