//! Resolution: a query's filters and scope turned into index reads, without a server.

use crate::error::{Error, Result};
use crate::keys::Layout;
use crate::model::{FieldKind, Model, ModelMeta};
use crate::tenant::{Scope, TenantId};

use super::filter::{Bound, FilterKind, Match};
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
    /// Members of the scope's own index set (`set`) whose key field `field` matches `needle`:
    /// an `SSCAN` of `set` with the escaped `pattern`, then an exact comparison of the parsed
    /// segment on the client.
    Scan {
        set: String,
        pattern: String,
        field: usize,
        how: Match,
        needle: String,
    },
    /// A combination with OR / NOT, evaluated on the server by `lua/select.lua`; `Not` is
    /// relative to `universe`, the scope's own index set.
    Expr {
        node: Box<Node>,
        universe: String,
    },
}

/// A boolean combination of sources.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    Leaf(Source),
    And(Vec<Node>),
    Or(Vec<Node>),
    Not(Box<Node>),
}

/// Merges range filters on one field into one range (the tighter bound on each side), so a
/// chained `gt` and `lt` read one `ZRANGEBYSCORE`; the merged range takes the first one's place.
pub(crate) fn merge_ranges(filters: &[FilterKind]) -> Vec<FilterKind> {
    let mut out: Vec<FilterKind> = Vec::with_capacity(filters.len());
    for f in filters {
        if let FilterKind::Range { field, min, max } = f {
            let same = out.iter_mut().find_map(|o| match o {
                FilterKind::Range {
                    field: of,
                    min: omin,
                    max: omax,
                } if of == field => Some((omin, omax)),
                _ => None,
            });
            if let Some((omin, omax)) = same {
                *omin = omin.tighter(*min, true);
                *omax = omax.tighter(*max, false);
                continue;
            }
        }
        out.push(f.clone());
    }
    out
}

impl<M: Model> Query<'_, M> {
    /// The tenant field and id of a tenant handle on a tenant model.
    fn tenant(&self) -> Option<(usize, &str)> {
        match (self.session.scope(), M::META.tenant) {
            (Scope::Tenant(t), Some(f)) => Some((f, t.as_str())),
            _ => None,
        }
    }

    fn mismatch(&self, found: &str) -> Error {
        let meta = M::META;
        let tenant = self.tenant();
        Error::TenantMismatch {
            model: meta.name,
            field: tenant.map_or("?", |(f, _)| meta.fields[f].name),
            expected: tenant.map_or(String::new(), |(_, t)| t.to_owned()),
            found: found.to_owned(),
        }
    }

    /// The scope's own index set: the tenant's value set, else the class set.
    pub(super) fn scope_set(&self) -> String {
        let layout = self.session.layout();
        match self.tenant() {
            Some((tf, t)) => layout.value_set_key(M::META, Some(t), tf, t),
            None => layout.class_key(M::META, self.keyspace.as_ref().map(TenantId::as_str)),
        }
    }

    /// The keyspace the query reads: its tenant's (`None`: the model's own, or every tenant's
    /// through the admin handle, which the cluster layout does not offer in one read).
    fn keyspace(&self) -> Result<Option<&str>> {
        if let Some(t) = &self.keyspace {
            return Ok(Some(t.as_str()));
        }
        let tenant = self.tenant().map(|(_, t)| t);
        let layout = self.session.layout();
        if layout != Layout::Popoto && tenant.is_none() && M::META.tenant.is_some() {
            return Err(Error::Layout {
                model: M::META.name,
                op: "a query across tenants",
                layout,
            });
        }
        Ok(tenant)
    }

    /// Turns filters and scope into index sources.
    pub(super) fn resolve(&self) -> Result<Vec<Source>> {
        let meta = M::META;
        self.session.check_model::<M>()?;
        let (layout, keyspace) = (self.session.layout(), self.keyspace()?);
        let tenant = self.tenant();
        let mut known = self.explicit_partitions();
        if let Some((tf, t)) = tenant {
            for (f, v) in &known {
                if *f == tf && *v != t {
                    return Err(self.mismatch(v));
                }
            }
            known.push((tf, t));
        }
        let filters = merge_ranges(&self.filters);
        let mut sources = Vec::with_capacity(filters.len() + 1);
        let mut tenant_covered = false;
        for f in &filters {
            if f.is_compound() {
                let node = self.node(f, &known)?;
                tenant_covered |=
                    tenant.is_some_and(|(tf, _)| covers(&node, meta, tf, &self.scope_set()));
                sources.push(Source::Expr {
                    node: Box::new(node),
                    universe: self.scope_set(),
                });
                continue;
            }
            match f {
                FilterKind::KeyEq { field, .. } => {
                    tenant_covered |= tenant.is_some_and(|(tf, _)| tf == *field);
                }
                FilterKind::Range { field, .. } => {
                    tenant_covered |= tenant
                        .is_some_and(|(tf, _)| meta.fields[*field].partition_by.contains(&tf));
                }
                // A scan reads the scope's own set.
                FilterKind::KeyMatch { .. } => tenant_covered = true,
                _ => {}
            }
            match self.node(f, &known)? {
                Node::Leaf(s) => sources.push(s),
                // A plain conjunction (flattened by `filter`; an empty `all` matches everything).
                Node::And(nodes) if nodes.is_empty() => {}
                other => sources.push(Source::Expr {
                    node: Box::new(other),
                    universe: self.scope_set(),
                }),
            }
        }
        // Ordering by a partitioned sorted field reads that partition: every instance is in its
        // sorted set, so the partition's zset is the candidate set (and Redis pages it).
        if let Some((of, _)) = self.order {
            let ranged = filters
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
                sources.push(Source::Set(layout.value_set_key(meta, keyspace, tf, t)));
            }
        }
        if sources.is_empty() {
            sources.push(Source::Set(layout.class_key(meta, keyspace)));
        }
        Ok(sources)
    }

    /// One filter as a node: leaves read one index; a tenant handle refuses another tenant's
    /// value anywhere in the tree, so no read ever names another tenant's index.
    fn node(&self, f: &FilterKind, known: &[(usize, &str)]) -> Result<Node> {
        let meta = M::META;
        let (layout, keyspace) = (self.session.layout(), self.keyspace()?);
        let tenant = self.tenant();
        Ok(match f {
            FilterKind::KeyEq { field, segment } => {
                if let Some((tf, t)) = tenant {
                    if tf == *field && segment != t {
                        return Err(self.mismatch(segment));
                    }
                }
                Node::Leaf(Source::Set(
                    layout.value_set_key(meta, keyspace, *field, segment),
                ))
            }
            FilterKind::KeyIn { field, segments } => {
                if let Some((tf, t)) = tenant {
                    if tf == *field {
                        if let Some(other) = segments.iter().find(|s| s.as_str() != t) {
                            return Err(self.mismatch(other));
                        }
                    }
                }
                Node::Leaf(Source::Union(
                    segments
                        .iter()
                        .map(|s| layout.value_set_key(meta, keyspace, *field, s))
                        .collect(),
                ))
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
                Node::Leaf(Source::Range {
                    field: *field,
                    zset: self.zset(*field, known)?,
                    min: *min,
                    max: *max,
                })
            }
            FilterKind::KeyMatch { field, how, needle } => {
                let wild = match how {
                    Match::Prefix => (false, true),
                    Match::Suffix => (true, false),
                    Match::Contains => (true, true),
                };
                let fixed = |i: usize| tenant.filter(|(tf, _)| *tf == i).map(|(_, t)| t);
                Node::Leaf(Source::Scan {
                    set: self.scope_set(),
                    pattern: layout.lookup_match(meta, keyspace, &fixed, *field, needle, wild),
                    field: *field,
                    how: *how,
                    needle: needle.clone(),
                })
            }
            // `all([])` matches every instance of the scope.
            FilterKind::All(fs) if fs.is_empty() => Node::Leaf(Source::Set(self.scope_set())),
            FilterKind::All(fs) => Node::And(
                merge_ranges(fs)
                    .iter()
                    .map(|f| self.node(f, known))
                    .collect::<Result<_>>()?,
            ),
            FilterKind::Any(fs) => Node::Or(
                fs.iter()
                    .map(|f| self.node(f, known))
                    .collect::<Result<_>>()?,
            ),
            FilterKind::Not(inner) => Node::Not(Box::new(self.node(inner, known)?)),
        })
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
        Ok(self
            .session
            .layout()
            .sorted_key(meta, self.keyspace()?, field, &partition))
    }

    /// Values of partition fields given explicitly: `partition(..)` and key equality filters
    /// (top-level ones only: an equality inside an OR or a NOT does not fix a partition).
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
        if let Some((tf, t)) = self.tenant() {
            known.push((tf, t));
        }
        known
    }
}

/// Whether every member `node` selects is in the tenant's own set `own` (tenant field `tf`): a
/// NOT (relative to that set), a lookup (a scan of it), the set itself (an equality on the
/// tenant field), a range of a partition of the tenant; an AND of which one is, an OR of which
/// all are. Such a tree needs no intersection with the tenant's set.
fn covers(node: &Node, meta: &ModelMeta, tf: usize, own: &str) -> bool {
    match node {
        Node::Not(_) | Node::Leaf(Source::Scan { .. }) => true,
        Node::Leaf(Source::Set(k)) => k == own,
        Node::Leaf(Source::Union(ks)) => !ks.is_empty() && ks.iter().all(|k| k == own),
        Node::Leaf(Source::Range { field, .. }) => meta.fields[*field].partition_by.contains(&tf),
        Node::Leaf(Source::Expr { .. }) => false,
        Node::And(ns) => ns.iter().any(|n| covers(n, meta, tf, own)),
        Node::Or(ns) => !ns.is_empty() && ns.iter().all(|n| covers(n, meta, tf, own)),
    }
}

/// The index keys a query reads, for reports.
pub(super) fn index_keys(sources: &[Source]) -> Vec<String> {
    fn node_keys(n: &Node, out: &mut Vec<String>) {
        match n {
            Node::Leaf(s) => out.extend(index_keys(std::slice::from_ref(s))),
            Node::And(ns) | Node::Or(ns) => ns.iter().for_each(|n| node_keys(n, out)),
            Node::Not(n) => node_keys(n, out),
        }
    }
    let mut out = Vec::new();
    for s in sources {
        match s {
            Source::Set(k) => out.push(k.clone()),
            Source::Union(ks) => out.extend(ks.iter().cloned()),
            Source::Range { zset, .. } => out.push(zset.clone()),
            Source::Scan { set, .. } => out.push(set.clone()),
            Source::Expr { node, universe } => {
                node_keys(node, &mut out);
                out.push(universe.clone());
            }
        }
    }
    out.dedup();
    out
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
