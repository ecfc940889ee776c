//! Typed queries: filters built from field handles, resolved against Popoto's indexes.
//!
//! A query reads its candidate keys from index sets and sorted sets (one round trip; filters
//! combined with OR / NOT are evaluated by one server-side script), orders them (one more for
//! an order on a sorted field that is not filtered), verifies them against the handle's scope,
//! then loads the hashes in one pipeline: the number of round trips does not depend on the
//! number of rows. The guide is `docs/queries.md`.

use std::cmp::Ordering;
use std::sync::Arc;

use tracing::Instrument;

use crate::admin::Admin;
use crate::codec::KeySegment;
use crate::db::Session;
use crate::error::{Error, Result};
use crate::model::{render_segment, FieldHandle, Key, Model, SortedField};
use crate::tenant::TenantId;
use crate::verify::RowKey;

mod across;
mod cursor;
mod exec;
mod expr;
mod filter;
mod project;
mod resolve;
mod stream;
mod window;
#[cfg(any(test, feature = "testing"))]
pub(crate) use {expr::SELECT, project::PROJECT, window::WINDOW};

pub use cursor::{Cursor, Page};
use exec::page;
use filter::FilterKind;
pub use filter::{Filter, Indexed};
pub use project::{Projected, Projection, SerdeField};
pub use stream::Rows;

/// Sort direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Order {
    Asc,
    Desc,
}

impl Order {
    fn flip(self) -> Order {
        match self {
            Order::Asc => Order::Desc,
            Order::Desc => Order::Asc,
        }
    }
}

type Predicate<'s, M> = Arc<dyn Fn(&M) -> bool + Send + Sync + 's>;
type Compare<'s, M> = Arc<dyn Fn(&M, &M) -> Ordering + Send + Sync + 's>;

/// A query on model `M` through a [`Session`]; nothing runs until `fetch`, `count`, ...
///
/// Cloning a query is cheap (a client-side predicate or sort is shared, not copied), so one
/// query can be run several ways (`count`, then a page of `fetch`).
pub struct Query<'s, M: Model> {
    session: &'s Session,
    filters: Vec<FilterKind>,
    partitions: Vec<(usize, String)>,
    order: Option<(usize, Order)>,
    client_order: Option<Compare<'s, M>>,
    limit: Option<usize>,
    offset: usize,
    predicate: Option<Predicate<'s, M>>,
    /// The one tenant keyspace this run of an admin query across keyspaces reads (`across.rs`).
    keyspace: Option<TenantId>,
}

impl<M: Model> Clone for Query<'_, M> {
    fn clone(&self) -> Self {
        Query {
            session: self.session,
            filters: self.filters.clone(),
            partitions: self.partitions.clone(),
            order: self.order,
            client_order: self.client_order.clone(),
            limit: self.limit,
            offset: self.offset,
            predicate: self.predicate.clone(),
            keyspace: self.keyspace.clone(),
        }
    }
}

impl<'s, M: Model> Query<'s, M> {
    pub(crate) fn new(session: &'s Session) -> Self {
        Query {
            session,
            filters: Vec::new(),
            partitions: Vec::new(),
            order: None,
            client_order: None,
            limit: None,
            offset: 0,
            predicate: None,
            keyspace: None,
        }
    }

    /// Adds a filter; several filters intersect. Filters combined with `|` or `!` are
    /// evaluated on the server from the index sets, `!` relative to the handle's own instances.
    pub fn filter(mut self, filter: Filter<M>) -> Self {
        match filter.kind {
            FilterKind::All(fs) => self.filters.extend(fs),
            k => self.filters.push(k),
        }
        self
    }

    /// Gives the value of a partition field for ranges and ordering on partitioned sorted fields
    /// (the tenant field is bound by a tenant handle; key-field equality filters count too).
    pub fn partition<T: KeySegment>(
        mut self,
        field: impl FieldHandle<M, T>,
        value: impl Into<T>,
    ) -> Self {
        self.partitions
            .push((field.field_index(), render_segment(&value.into())));
        self
    }

    /// Orders by a sorted field, ascending (ties by key).
    pub fn order_by<T>(mut self, field: SortedField<M, T>) -> Self {
        self.order = Some((field.index(), Order::Asc));
        self
    }

    /// Orders by a sorted field, descending.
    pub fn order_by_desc<T>(mut self, field: SortedField<M, T>) -> Self {
        self.order = Some((field.index(), Order::Desc));
        self
    }

    /// Orders by any value computed from an instance (an unindexed field, say), ascending, on
    /// the client: every matching row is loaded and sorted before offset and limit apply, so
    /// the cost is every row's `HGETALL` and an O(n log n) sort, whatever the limit. Rows with
    /// equal values keep the index order ([`Query::order_by`], else by key).
    pub fn order_by_client<K: Ord>(mut self, key: impl Fn(&M) -> K + Send + Sync + 's) -> Self {
        self.client_order = Some(Arc::new(move |a: &M, b: &M| key(a).cmp(&key(b))));
        self
    }

    /// [`Query::order_by_client`], descending.
    pub fn order_by_client_desc<K: Ord>(
        mut self,
        key: impl Fn(&M) -> K + Send + Sync + 's,
    ) -> Self {
        self.client_order = Some(Arc::new(move |a: &M, b: &M| key(b).cmp(&key(a))));
        self
    }

    /// Returns at most `n` instances.
    pub fn limit(mut self, n: usize) -> Self {
        self.limit = Some(n);
        self
    }

    /// Skips the first `n` instances.
    pub fn offset(mut self, n: usize) -> Self {
        self.offset = n;
        self
    }

    /// Keeps only instances for which `predicate` holds, evaluated on the client after loading:
    /// the explicit opt-in for conditions on unindexed fields.
    pub fn matching(mut self, predicate: impl Fn(&M) -> bool + Send + Sync + 's) -> Self {
        self.predicate = Some(Arc::new(predicate));
        self
    }

    fn span(&self, op: &'static str) -> tracing::Span {
        self.session.span::<M>(op)
    }

    /// Whether rows must be loaded before paging (a client-side predicate or sort).
    fn needs_rows(&self) -> bool {
        self.predicate.is_some() || self.client_order.is_some()
    }

    fn is_paged(&self) -> bool {
        self.offset > 0 || self.limit.is_some()
    }

    fn invalid(&self, reason: &str) -> Error {
        Error::InvalidQuery {
            model: M::META.name,
            reason: reason.to_owned(),
        }
    }

    /// Runs the query and returns the instances.
    ///
    /// Only instances of the handle's scope are returned: an index member that is stale, is not
    /// a key of the model, or belongs to another tenant (by its key or its stored tenant field)
    /// is skipped and reported as a `tracing` warning naming the index keys read. One row that
    /// cannot be decoded fails the whole call; [`Query::fetch_each`] returns the others.
    pub async fn fetch(self) -> Result<Vec<M>> {
        if self.spans_keyspaces() {
            return Ok(self
                .fetch_keyed()
                .await?
                .into_iter()
                .map(|(_, m)| m)
                .collect());
        }
        // The same checks without building each row's key.
        self.rows::<()>()
            .await?
            .into_iter()
            .map(|r| r.map(|(_, m)| m))
            .collect()
    }

    /// Runs the query and returns each instance with its key.
    pub async fn fetch_keyed(self) -> Result<Vec<(Key<M>, M)>> {
        self.fetch_each().await?.into_iter().collect()
    }

    /// Runs the query and returns each row on its own: a row that cannot be decoded is an
    /// error in its place (naming model, key and field), the other rows are still returned.
    /// Errors of the query itself (connection, missing partition) fail the call.
    pub async fn fetch_each(self) -> Result<Vec<Result<(Key<M>, M)>>> {
        if self.spans_keyspaces() {
            return self.fetch_across().await;
        }
        self.rows().await
    }

    /// The rows of `fetch_each` within one keyspace, each with its key or `()`.
    async fn rows<K: RowKey<M>>(self) -> Result<Vec<Result<(K, M)>>> {
        let span = self.span("fetch");
        async {
            let sources = self.resolve()?;
            let mut commands = 0;
            let paged = !self.needs_rows();
            let keys = self.select(&sources, paged, &mut commands).await?;
            let (mut rows, skipped) = self.hydrate(&sources, keys, &mut commands).await?;
            if paged && skipped > 0 && self.is_paged() {
                // Skipped members shortened the page: page again over verified rows only.
                let keys = self.select(&sources, false, &mut commands).await?;
                rows = self.hydrate(&sources, keys, &mut commands).await?.0;
                rows = page(rows, self.offset, self.limit);
            }
            if !paged {
                if let Some(p) = &self.predicate {
                    rows.retain(|r| r.as_ref().map_or(true, |(_, m)| p(m)));
                }
                if let Some(c) = &self.client_order {
                    // Undecodable rows first, then the rows in the client order (stable).
                    rows.sort_by(|a, b| match (a, b) {
                        (Ok((_, x)), Ok((_, y))) => c(x, y),
                        (Err(_), Ok(_)) => Ordering::Less,
                        (Ok(_), Err(_)) => Ordering::Greater,
                        (Err(_), Err(_)) => Ordering::Equal,
                    });
                }
                rows = page(rows, self.offset, self.limit);
            }
            tracing::Span::current().record("commands", commands);
            Ok(rows)
        }
        .instrument(span)
        .await
    }

    /// The first instance (in the query's order), if any.
    pub async fn first(self) -> Result<Option<M>> {
        Ok(self.limit(1).fetch().await?.into_iter().next())
    }

    /// The last instance [`Query::fetch`] would return, if any. With an order (a sorted field's,
    /// or a range's) and no offset, limit or client-side step, the order is flipped and one row
    /// read, like `first`; otherwise the verified keys are read and only the last row loaded.
    pub async fn last(self) -> Result<Option<M>> {
        if self.needs_rows() || self.spans_keyspaces() {
            return Ok(self.fetch().await?.pop());
        }
        if !self.is_paged() {
            if let Some(order) = self.effective_order() {
                let flipped = Query {
                    order: Some((order.0, order.1.flip())),
                    ..self
                };
                return flipped.first().await;
            }
        }
        let sources = self.resolve()?;
        let mut keys = self.clone().fetch_keys().await?;
        let span = self.span("last");
        async {
            let mut commands = 0;
            // Verified already; a row deleted since moves to the one before.
            while let Some(k) = keys.pop() {
                let member = vec![k.redis_key_in(self.session.layout()).into_bytes()];
                let (rows, _) = self.hydrate::<()>(&sources, member, &mut commands).await?;
                if let Some(row) = rows.into_iter().next() {
                    tracing::Span::current().record("commands", commands);
                    return Ok(Some(row?.1));
                }
            }
            Ok(None)
        }
        .instrument(span)
        .await
    }

    /// The order rows come in: `order_by`'s, else the first range filter's (ascending).
    fn effective_order(&self) -> Option<(usize, Order)> {
        self.order.or_else(|| {
            resolve::merge_ranges(&self.filters)
                .iter()
                .find_map(|f| match f {
                    FilterKind::Range { field, .. } => Some((*field, Order::Asc)),
                    _ => None,
                })
        })
    }

    /// Whether at least one instance matches (offset and limit are ignored): members are
    /// verified like `fetch_keys` verifies them, and no row is loaded unless a client-side
    /// predicate needs it.
    pub async fn exists(self) -> Result<bool> {
        let q = Query {
            limit: Some(1),
            offset: 0,
            client_order: None,
            ..self
        };
        Ok(!q.fetch_keys().await?.is_empty())
    }

    /// Runs the query and returns only the keys, each verified to hold an instance of the
    /// handle's scope (server-side, without loading the hashes unless a predicate or a client
    /// order needs them).
    pub async fn fetch_keys(self) -> Result<Vec<Key<M>>> {
        if self.spans_keyspaces() {
            return self.keys_across().await;
        }
        if self.needs_rows() {
            return Ok(self
                .fetch_keyed()
                .await?
                .into_iter()
                .map(|(k, _)| k)
                .collect());
        }
        let span = self.span("keys");
        async {
            let sources = self.resolve()?;
            let mut commands = 0;
            let keys = self.select(&sources, true, &mut commands).await?;
            let (mut found, skipped) = self.verified(&sources, keys, &mut commands).await?;
            if skipped > 0 && self.is_paged() {
                let keys = self.select(&sources, false, &mut commands).await?;
                found = self.verified(&sources, keys, &mut commands).await?.0;
                found = page(found, self.offset, self.limit);
            }
            tracing::Span::current().record("commands", commands);
            Ok(found)
        }
        .instrument(span)
        .await
    }

    /// Number of matching instances: exactly the rows [`Query::fetch`] would return without
    /// limit and offset (stale, malformed and foreign index members are not counted), checked
    /// server-side without loading the hashes unless a client-side predicate forces it.
    pub async fn count(self) -> Result<usize> {
        if self.predicate.is_some() {
            let q = Query {
                limit: None,
                offset: 0,
                client_order: None,
                ..self
            };
            return Ok(q.fetch_keyed().await?.len());
        }
        if self.spans_keyspaces() {
            return self.count_across().await;
        }
        let span = self.span("count");
        async {
            let sources = self.resolve()?;
            let mut commands = 0;
            let keys = self.candidates(&sources, &mut commands).await?;
            let found = self.verified_count(&sources, keys, &mut commands).await?;
            tracing::Span::current().record("commands", commands);
            Ok(found)
        }
        .instrument(span)
        .await
    }
}

/// The queries of the handles: within a session's scope, or across tenants.
impl Session {
    /// A query on model `M` within this scope.
    pub fn query<M: Model>(&self) -> Query<'_, M> {
        Query::new(self)
    }
}

impl Admin {
    /// A query across tenants.
    pub fn query<M: Model>(&self) -> Query<'_, M> {
        self.session().query()
    }
}
