//! Typed queries: filters built from field handles, resolved against Popoto's indexes.
//!
//! A query reads its candidate keys from index sets and sorted sets (one round trip), orders
//! them (one more for an order on a sorted field that is not filtered), then loads the hashes
//! in one pipeline: the number of round trips does not depend on the number of rows.

use std::collections::HashSet;
use std::marker::PhantomData;

use redis::RedisResult;

use tracing::Instrument;

use crate::codec::{KeySegment, Score};
use crate::db::Session;
use crate::error::{Error, Result};
use crate::keys;
use crate::model::{render_segment, FieldHandle, FieldKind, Key, KeyField, Model, SortedField};
use crate::plan::score_arg;
use crate::tenant::Scope;
use crate::verify::{self, Guard, Skip};

/// One side of a score range.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Bound {
    Unbounded,
    Incl(f64),
    Excl(f64),
}

impl Bound {
    fn arg(self, low: bool) -> String {
        match self {
            Bound::Unbounded if low => "-inf".into(),
            Bound::Unbounded => "+inf".into(),
            Bound::Incl(v) => score_arg(v),
            Bound::Excl(v) => format!("({}", score_arg(v)),
        }
    }

    fn value(self) -> Option<f64> {
        match self {
            Bound::Incl(v) | Bound::Excl(v) => Some(v),
            Bound::Unbounded => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum FilterKind {
    KeyEq {
        field: usize,
        segment: String,
    },
    KeyIn {
        field: usize,
        segments: Vec<String>,
    },
    Range {
        field: usize,
        min: Bound,
        max: Bound,
    },
}

/// A filter on an indexed field of model `M`, built from its typed handle.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter<M> {
    kind: FilterKind,
    _m: PhantomData<fn() -> M>,
}

impl<M> Filter<M> {
    fn new(kind: FilterKind) -> Self {
        Filter {
            kind,
            _m: PhantomData,
        }
    }
}

impl<M: Model, T: KeySegment> KeyField<M, T> {
    /// Instances whose key field equals `value` (`$KeyF` set).
    pub fn eq(&self, value: impl Into<T>) -> Filter<M> {
        Filter::new(FilterKind::KeyEq {
            field: self.index(),
            segment: render_segment(&value.into()),
        })
    }

    /// Instances whose key field is one of `values` (union of `$KeyF` sets).
    pub fn is_in<V: Into<T>>(&self, values: impl IntoIterator<Item = V>) -> Filter<M> {
        let segments = values
            .into_iter()
            .map(|v| render_segment(&v.into()))
            .collect();
        Filter::new(FilterKind::KeyIn {
            field: self.index(),
            segments,
        })
    }
}

impl<M: Model, T: Score> SortedField<M, T> {
    fn range(&self, min: Bound, max: Bound) -> Filter<M> {
        Filter::new(FilterKind::Range {
            field: self.index(),
            min,
            max,
        })
    }

    /// Score equal to `value`'s.
    pub fn eq(&self, value: impl Into<T>) -> Filter<M> {
        let s = value.into().score();
        self.range(Bound::Incl(s), Bound::Incl(s))
    }

    /// Score greater than `value`'s.
    pub fn gt(&self, value: impl Into<T>) -> Filter<M> {
        self.range(Bound::Excl(value.into().score()), Bound::Unbounded)
    }

    /// Score greater than or equal to `value`'s.
    pub fn gte(&self, value: impl Into<T>) -> Filter<M> {
        self.range(Bound::Incl(value.into().score()), Bound::Unbounded)
    }

    /// Score less than `value`'s.
    pub fn lt(&self, value: impl Into<T>) -> Filter<M> {
        self.range(Bound::Unbounded, Bound::Excl(value.into().score()))
    }

    /// Score less than or equal to `value`'s.
    pub fn lte(&self, value: impl Into<T>) -> Filter<M> {
        self.range(Bound::Unbounded, Bound::Incl(value.into().score()))
    }

    /// Score between `low`'s and `high`'s, both included.
    pub fn between(&self, low: impl Into<T>, high: impl Into<T>) -> Filter<M> {
        self.range(
            Bound::Incl(low.into().score()),
            Bound::Incl(high.into().score()),
        )
    }
}

/// Sort direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Order {
    Asc,
    Desc,
}

/// Where candidate keys come from.
#[derive(Debug, Clone, PartialEq)]
enum Source {
    Set(String),
    Union(Vec<String>),
    Range {
        field: usize,
        zset: String,
        min: Bound,
        max: Bound,
    },
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

    /// Turns filters and scope into index sources.
    fn resolve(&self) -> Result<Vec<Source>> {
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
    fn zset(&self, field: usize, known: &[(usize, &str)]) -> Result<String> {
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
    fn known_partitions(&self) -> Vec<(usize, &str)> {
        let mut known = self.explicit_partitions();
        if let (Scope::Tenant(t), Some(tf)) = (self.session.scope(), M::META.tenant) {
            known.push((tf, t.as_str()));
        }
        known
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

/// The index keys a query reads, for reports.
fn index_keys(sources: &[Source]) -> Vec<String> {
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

fn page<T>(mut items: Vec<T>, offset: usize, limit: Option<usize>) -> Vec<T> {
    if offset > 0 {
        items.drain(..offset.min(items.len()));
    }
    if let Some(l) = limit {
        items.truncate(l);
    }
    items
}

/// Marker that a field has an index to filter on; plain fields never implement it, so a
/// filter on one is a compile error that says so.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is a plain field: it has no index to filter on",
    label = "plain fields cannot be filtered in Redis",
    note = "declare the field `#[popoto(key)]` or `#[popoto(sorted)]`, or filter on the client with `.matching(|m| ...)`"
)]
pub trait Indexed {
    /// Never called: no type implements the trait.
    fn unreachable() -> std::convert::Infallible;
}

macro_rules! plain_field_filters {
    ($($name:ident),*) => {
        impl<M: Model, T> crate::model::Field<M, T> {
            $(
                /// Does not compile: a plain field has no index (see [`Indexed`]).
                #[allow(unreachable_code)]
                pub fn $name<V>(&self, _value: V) -> Filter<M>
                where
                    Self: Indexed,
                {
                    match <Self as Indexed>::unreachable() {}
                }
            )*
        }
    };
}
plain_field_filters!(eq, is_in, gt, gte, lt, lte);
