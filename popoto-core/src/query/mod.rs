//! Typed queries: filters built from field handles, resolved against Popoto's indexes.
//!
//! A query reads its candidate keys from index sets and sorted sets (one round trip), orders
//! them (one more for an order on a sorted field that is not filtered), then loads the hashes
//! in one pipeline: the number of round trips does not depend on the number of rows.

use std::collections::HashSet;

use redis::RedisResult;

use tracing::Instrument;

use crate::codec::KeySegment;
use crate::db::Session;
use crate::error::Result;
use crate::model::{render_segment, FieldHandle, Key, Model, SortedField};
use crate::verify::{self, Guard, Skip};

mod filter;
mod resolve;

use filter::FilterKind;
pub use filter::{Filter, Indexed};
use resolve::{index_keys, Source};

/// Sort direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Order {
    Asc,
    Desc,
}

/// An instance hash as read: field names and raw values.
type HashFields = Vec<(Vec<u8>, Vec<u8>)>;

type Predicate<'s, M> = Box<dyn Fn(&M) -> bool + Send + Sync + 's>;

/// A query on model `M` through a [`Session`]; nothing runs until `fetch`, `count`, ...
pub struct Query<'s, M: Model> {
    session: &'s Session,
    filters: Vec<FilterKind>,
    partitions: Vec<(usize, String)>,
    order: Option<(usize, Order)>,
    limit: Option<usize>,
    offset: usize,
    predicate: Option<Predicate<'s, M>>,
}

impl<'s, M: Model> Query<'s, M> {
    pub(crate) fn new(session: &'s Session) -> Self {
        Query {
            session,
            filters: Vec::new(),
            partitions: Vec::new(),
            order: None,
            limit: None,
            offset: 0,
            predicate: None,
        }
    }

    /// Adds a filter; several filters intersect.
    pub fn filter(mut self, filter: Filter<M>) -> Self {
        self.filters.push(filter.kind);
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
        self.predicate = Some(Box::new(predicate));
        self
    }

    fn span(&self, op: &'static str) -> tracing::Span {
        tracing::debug_span!(
            "popoto",
            op,
            model = M::META.name,
            tenant = self.session.scope().label(),
            commands = tracing::field::Empty
        )
    }

    /// Runs the query and returns the instances.
    ///
    /// Only instances of the handle's scope are returned: an index member that is stale, is not
    /// a key of the model, or belongs to another tenant (by its key or its stored tenant field)
    /// is skipped and reported as a `tracing` warning naming the index keys read. One row that
    /// cannot be decoded fails the whole call; [`Query::fetch_each`] returns the others.
    pub async fn fetch(self) -> Result<Vec<M>> {
        Ok(self
            .fetch_keyed()
            .await?
            .into_iter()
            .map(|(_, m)| m)
            .collect())
    }

    /// Runs the query and returns each instance with its key.
    pub async fn fetch_keyed(self) -> Result<Vec<(Key<M>, M)>> {
        self.fetch_each().await?.into_iter().collect()
    }

    /// Runs the query and returns each row on its own: a row that cannot be decoded is an
    /// error in its place (naming model, key and field), the other rows are still returned.
    /// Errors of the query itself (connection, missing partition) fail the call.
    pub async fn fetch_each(self) -> Result<Vec<Result<(Key<M>, M)>>> {
        let span = self.span("fetch");
        async {
            let sources = self.resolve()?;
            let mut commands = 0;
            let paged = self.predicate.is_none();
            let keys = self.select(&sources, paged, &mut commands).await?;
            let (mut rows, skipped) = self.hydrate(&sources, keys, &mut commands).await?;
            if paged && skipped > 0 && self.is_paged() {
                // Skipped members shortened the page: page again over verified rows only.
                let keys = self.select(&sources, false, &mut commands).await?;
                rows = self.hydrate(&sources, keys, &mut commands).await?.0;
                rows = page(rows, self.offset, self.limit);
            }
            if let Some(p) = &self.predicate {
                rows.retain(|r| r.as_ref().map_or(true, |(_, m)| p(m)));
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

    /// Runs the query and returns only the keys, each verified to hold an instance of the
    /// handle's scope (server-side, without loading the hashes unless a predicate needs them).
    pub async fn fetch_keys(self) -> Result<Vec<Key<M>>> {
        if self.predicate.is_some() {
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
                ..self
            };
            return Ok(q.fetch_keyed().await?.len());
        }
        let span = self.span("count");
        async {
            let sources = self.resolve()?;
            let mut commands = 0;
            let keys = self.candidates(&sources, &mut commands).await?;
            let (found, _) = self.verified(&sources, keys, &mut commands).await?;
            tracing::Span::current().record("commands", commands);
            Ok(found.len())
        }
        .instrument(span)
        .await
    }

    fn is_paged(&self) -> bool {
        self.offset > 0 || self.limit.is_some()
    }

    /// The keys among `members` that hold an instance of the scope (in order), and how many
    /// were skipped (reported).
    async fn verified(
        &self,
        sources: &[Source],
        members: Vec<Vec<u8>>,
        commands: &mut usize,
    ) -> Result<(Vec<Key<M>>, usize)> {
        let guard = Guard::of::<M>(self.session.scope());
        let mut skipped = Vec::new();
        let mut keys = Vec::with_capacity(members.len());
        let mut names = Vec::with_capacity(members.len());
        for m in members {
            match guard.key::<M>(m) {
                Ok((name, k)) => {
                    keys.push(k);
                    names.push(name);
                }
                Err((name, why)) => skipped.push((name, why)),
            }
        }
        let mut found = Vec::with_capacity(keys.len());
        if !names.is_empty() {
            let backend = self.session.backend().await?;
            *commands += names.len();
            let flags = guard.verify::<M>(&backend, &names).await?;
            for ((k, name), flag) in keys.into_iter().zip(names).zip(flags) {
                match flag {
                    None => found.push(k),
                    Some(why) => skipped.push((name, why)),
                }
            }
        }
        verify::report(M::META.name, &index_keys(sources), &skipped);
        Ok((found, skipped.len()))
    }

    /// Candidate keys in the query's order; with `paged`, offset and limit applied.
    async fn select(
        &self,
        sources: &[Source],
        paged: bool,
        commands: &mut usize,
    ) -> Result<Vec<Vec<u8>>> {
        self.select_in(sources, paged, true, commands).await
    }

    /// Every candidate key, in no particular order (what `count` verifies).
    async fn candidates(&self, sources: &[Source], commands: &mut usize) -> Result<Vec<Vec<u8>>> {
        self.select_in(sources, false, false, commands).await
    }

    async fn select_in(
        &self,
        sources: &[Source],
        paged: bool,
        ordered: bool,
        commands: &mut usize,
    ) -> Result<Vec<Vec<u8>>> {
        let backend = self.session.backend().await?;
        let name = M::META.name;
        let (offset, limit) = if paged {
            (self.offset, self.limit)
        } else {
            (0, None)
        };
        // One range, ordered by its own field (or not at all): let Redis order and page it.
        if let [Source::Range {
            field,
            zset,
            min,
            max,
        }] = sources
        {
            if self.order.is_none_or(|(f, _)| f == *field) {
                let desc = matches!(self.order, Some((_, Order::Desc)));
                let mut cmd = if desc {
                    redis::cmd("ZREVRANGEBYSCORE")
                        .arg(zset)
                        .arg(max.arg(false))
                        .arg(min.arg(true))
                        .clone()
                } else {
                    redis::cmd("ZRANGEBYSCORE")
                        .arg(zset)
                        .arg(min.arg(true))
                        .arg(max.arg(false))
                        .clone()
                };
                if offset > 0 || limit.is_some() {
                    cmd.arg("LIMIT")
                        .arg(offset)
                        .arg(limit.map_or(-1, |l| l as i64));
                }
                *commands += 1;
                return backend.query("query", name, &cmd).await;
            }
        }
        let mut pipe = redis::pipe();
        for s in sources {
            match s {
                Source::Set(k) => pipe.cmd("SMEMBERS").arg(k),
                Source::Union(ks) if ks.is_empty() => return Ok(Vec::new()),
                Source::Union(ks) => pipe.cmd("SUNION").arg(ks),
                Source::Range { zset, min, max, .. } => pipe
                    .cmd("ZRANGEBYSCORE")
                    .arg(zset)
                    .arg(min.arg(true))
                    .arg(max.arg(false)),
            };
        }
        *commands += sources.len();
        let lists: Vec<Vec<Vec<u8>>> = backend.pipeline("query", name, &pipe).await?;
        // Iterate the ordered source when it gives the order; intersect with the others.
        let ordered_by = |i: usize| match (&sources[i], self.order) {
            (Source::Range { field, .. }, Some((f, _))) => *field == f,
            (Source::Range { .. }, None) => true,
            _ => false,
        };
        let driver = (0..sources.len()).find(|&i| ordered_by(i));
        let driver_index = driver.unwrap_or_else(|| {
            (0..lists.len())
                .min_by_key(|&i| lists[i].len())
                .unwrap_or_default()
        });
        let others: Vec<HashSet<&[u8]>> = lists
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != driver_index)
            .map(|(_, l)| l.iter().map(Vec::as_slice).collect())
            .collect();
        let mut keys: Vec<Vec<u8>> = Vec::new();
        for k in lists.get(driver_index).into_iter().flatten() {
            if others.iter().all(|o| o.contains(k.as_slice())) {
                keys.push(k.clone());
            }
        }
        match (driver, self.order) {
            (Some(_), Some((_, Order::Desc))) => keys.reverse(),
            (Some(_), _) => {}
            (None, Some(_)) if !ordered => {}
            (None, Some((field, order))) => {
                let known: Vec<(usize, &str)> = self.known_partitions();
                let zset = self.zset(field, &known)?;
                let scores: Vec<Option<f64>> = if keys.is_empty() {
                    Vec::new()
                } else {
                    *commands += 1;
                    backend
                        .query("query", name, redis::cmd("ZMSCORE").arg(&zset).arg(&keys))
                        .await?
                };
                let mut scored: Vec<(Option<f64>, Vec<u8>)> =
                    scores.into_iter().zip(keys).collect();
                scored.sort_by(|a, b| {
                    let by_score = match (a.0, b.0) {
                        (Some(x), Some(y)) => x.total_cmp(&y),
                        (Some(_), None) => std::cmp::Ordering::Less,
                        (None, Some(_)) => std::cmp::Ordering::Greater,
                        (None, None) => std::cmp::Ordering::Equal,
                    };
                    by_score.then_with(|| a.1.cmp(&b.1))
                });
                if order == Order::Desc {
                    scored.reverse();
                }
                keys = scored.into_iter().map(|(_, k)| k).collect();
            }
            (None, None) => keys.sort_unstable(),
        }
        Ok(page(keys, offset, limit))
    }

    /// Loads the hashes of `members` in one pipeline, keeping only instances of the scope (the
    /// others are reported); returns the rows (a row that cannot be decoded is an error in its
    /// place) and how many members were skipped.
    async fn hydrate(
        &self,
        sources: &[Source],
        members: Vec<Vec<u8>>,
        commands: &mut usize,
    ) -> Result<(Vec<Result<(Key<M>, M)>>, usize)> {
        let guard = Guard::of::<M>(self.session.scope());
        let mut skipped = Vec::new();
        let mut keys = Vec::with_capacity(members.len());
        for m in members {
            match guard.key::<M>(m) {
                Ok(named) => keys.push(named),
                Err(skip) => skipped.push(skip),
            }
        }
        let mut rows = Vec::with_capacity(keys.len());
        if !keys.is_empty() {
            let mut pipe = redis::pipe();
            for (name, _) in &keys {
                pipe.cmd("HGETALL").arg(name);
            }
            *commands += keys.len();
            // A key holding another type fails alone, not the whole pipeline.
            pipe.ignore_errors();
            let hashes: Vec<RedisResult<HashFields>> = self
                .session
                .backend()
                .await?
                .pipeline("query", M::META.name, &pipe)
                .await?;
            for ((name, key), fields) in keys.into_iter().zip(hashes) {
                let fields = match fields {
                    Ok(f) if !f.is_empty() => f,
                    Ok(_) => {
                        skipped.push((name, Skip::Stale));
                        continue;
                    }
                    // A key of the model holding another type: not an instance.
                    Err(_) => {
                        skipped.push((name, Skip::ForeignStored));
                        continue;
                    }
                };
                match M::from_hash(&name, fields) {
                    Ok(value) => match guard.value(&value) {
                        Ok(()) => rows.push(Ok((key, value))),
                        Err(why) => skipped.push((name, why)),
                    },
                    Err(e) => rows.push(Err(e)),
                }
            }
        }
        verify::report(M::META.name, &index_keys(sources), &skipped);
        Ok((rows, skipped.len()))
    }
}

fn page<T>(mut items: Vec<T>, offset: usize, limit: Option<usize>) -> Vec<T> {
    if offset > 0 {
        items.drain(..offset.min(items.len()));
    }
    if let Some(l) = limit {
        items.truncate(l);
    }
    items
}
