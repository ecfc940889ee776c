//! Admin queries across tenant keyspaces: on a layout that gives each tenant a keyspace of its
//! own (the cluster layout, a keyspace per slot), an admin query of a tenant model that names
//! no tenant runs once per keyspace (each run reads one slot and verifies its rows as that
//! tenant's) and the rows are merged: in the query's order (a sorted field's score, ties by
//! key, as Redis orders a sorted set; or the client order), then offset and limit.
//!
//! Explicit and not atomic: the keyspaces are read one after the other, so a write landing
//! meanwhile may be seen in one keyspace and not another. Cursor pages, streams, scans and
//! projections do not merge and stay refused there; run them per tenant.

use std::cmp::Ordering;

use super::exec::page;
use super::filter::FilterKind;
use super::{Order, Query};
use crate::error::Result;
use crate::keyspaces;
use crate::model::{Key, Model};
use crate::tenant::{Scope, TenantId};

/// One row of a query's result.
type Row<M> = Result<(Key<M>, M)>;

impl<'s, M: Model> Query<'s, M> {
    /// Whether this query reads across tenant keyspaces: an admin query of a tenant model on a
    /// layout where each tenant has its own, not yet narrowed to one.
    pub(super) fn spans_keyspaces(&self) -> bool {
        self.keyspace.is_none()
            && matches!(self.session.scope(), Scope::Admin)
            && keyspaces::per_keyspace(self.session.layout(), M::META)
    }

    /// The scope rows are verified against: the session's; in one keyspace of a query across
    /// keyspaces, that keyspace's tenant (it holds that tenant's instances only).
    pub(super) fn read_scope(&self) -> std::borrow::Cow<'_, Scope> {
        match &self.keyspace {
            Some(t) => std::borrow::Cow::Owned(Scope::Tenant(t.clone())),
            None => std::borrow::Cow::Borrowed(self.session.scope()),
        }
    }

    /// The keyspaces to read: the tenants a top-level equality (or `partition`) on the tenant
    /// field names, else every tenant holding keys of the model.
    async fn keyspaces(&self) -> Result<Vec<TenantId>> {
        let tf = M::META.tenant;
        let mut named: Vec<&str> = Vec::new();
        for f in &self.filters {
            match f {
                FilterKind::KeyEq { field, segment } if Some(*field) == tf => {
                    named.push(segment);
                }
                FilterKind::KeyIn { field, segments } if Some(*field) == tf => {
                    named.extend(segments.iter().map(String::as_str));
                }
                _ => {}
            }
        }
        named.extend(
            self.partitions
                .iter()
                .filter(|(f, _)| Some(*f) == tf)
                .map(|(_, v)| v.as_str()),
        );
        if named.is_empty() {
            let backend = self.session.backend().await?;
            return keyspaces::tenants(&backend, M::META, "query across tenants").await;
        }
        named.sort_unstable();
        named.dedup();
        // An id no tenant can have names no keyspace: nothing to read there.
        Ok(named
            .into_iter()
            .filter_map(|t| TenantId::new(t).ok())
            .collect())
    }

    /// This query narrowed to `tenant`'s keyspace, unpaged and in Redis' order (the merge
    /// orders and pages).
    fn in_keyspace(&self, tenant: TenantId) -> Query<'s, M> {
        Query {
            keyspace: Some(tenant),
            limit: None,
            offset: 0,
            client_order: None,
            ..self.clone()
        }
    }

    /// [`Query::fetch_each`] across keyspaces.
    pub(super) async fn fetch_across(self) -> Result<Vec<Row<M>>> {
        let mut rows = Vec::new();
        for t in self.keyspaces().await? {
            rows.extend(Box::pin(self.in_keyspace(t).fetch_each()).await?);
        }
        if let Some(c) = &self.client_order {
            rows.sort_by(|a, b| errors_first(a, b).then_with(|| both(a, b, |x, y| c(&x.1, &y.1))));
        } else if let Some((field, order)) = self.effective_order() {
            let layout = self.session.layout();
            let mut keyed: Vec<(Option<f64>, String, Row<M>)> =
                rows.into_iter()
                    .map(|r| {
                        let score = r.as_ref().ok().and_then(|(_, m)| {
                            m.to_record().ok().and_then(|rec| rec.scores[field])
                        });
                        let name = r
                            .as_ref()
                            .map_or(String::new(), |(k, _)| k.redis_key_in(layout));
                        (score, name, r)
                    })
                    .collect();
            keyed.sort_by(|a, b| {
                errors_first(&a.2, &b.2).then_with(|| {
                    let by = a.0.unwrap_or(f64::NAN).total_cmp(&b.0.unwrap_or(f64::NAN));
                    let by = by.then_with(|| a.1.cmp(&b.1));
                    match order {
                        Order::Asc => by,
                        Order::Desc => by.reverse(),
                    }
                })
            });
            rows = keyed.into_iter().map(|(_, _, r)| r).collect();
        }
        Ok(page(rows, self.offset, self.limit))
    }

    /// [`Query::fetch_keys`] across keyspaces.
    pub(super) async fn keys_across(self) -> Result<Vec<Key<M>>> {
        if self.needs_rows() || self.is_paged() || self.effective_order().is_some() {
            let rows: Result<Vec<(Key<M>, M)>> = self.fetch_across().await?.into_iter().collect();
            return Ok(rows?.into_iter().map(|(k, _)| k).collect());
        }
        let mut keys = Vec::new();
        for t in self.keyspaces().await? {
            keys.extend(Box::pin(self.in_keyspace(t).fetch_keys()).await?);
        }
        Ok(keys)
    }

    /// [`Query::count`] across keyspaces: the sum of each keyspace's count.
    pub(super) async fn count_across(self) -> Result<usize> {
        let mut n = 0;
        for t in self.keyspaces().await? {
            n += Box::pin(self.in_keyspace(t).count()).await?;
        }
        Ok(n)
    }
}

/// Undecodable rows first (as [`Query::fetch_each`] orders them), then the others.
fn errors_first<M>(a: &Row<M>, b: &Row<M>) -> Ordering {
    b.is_err().cmp(&a.is_err())
}

/// `cmp` of two decoded rows (`Equal` if either is an error).
fn both<M>(
    a: &Row<M>,
    b: &Row<M>,
    cmp: impl Fn(&(Key<M>, M), &(Key<M>, M)) -> Ordering,
) -> Ordering {
    match (a, b) {
        (Ok(x), Ok(y)) => cmp(x, y),
        _ => Ordering::Equal,
    }
}
