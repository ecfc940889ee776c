//! Execution: candidate selection, verification against the scope, loading of rows.

use std::collections::HashSet;

use redis::RedisResult;

use crate::error::Result;
use crate::model::{Key, Model};
use crate::verify::{self, Guard, RowKey, Skip, Skipped};

use super::expr::{self, Program, Resolved};
use super::filter::Bound;
use super::resolve::{index_keys, Source};
use super::{Order, Query};

/// An instance hash as read: field names and raw values.
type HashFields = Vec<(Vec<u8>, Vec<u8>)>;

impl<M: Model> Query<'_, M> {
    /// The keys among `members` that hold an instance of the scope (in order), and how many
    /// were skipped (reported).
    pub(super) async fn verified(
        &self,
        sources: &[Source],
        members: Vec<Vec<u8>>,
        commands: &mut usize,
    ) -> Result<(Vec<Key<M>>, usize)> {
        let scope = self.read_scope();
        let guard = Guard::of::<M>(self.session.layout(), &scope);
        let mut skipped = Vec::new();
        let mut keys = Vec::with_capacity(members.len());
        let mut names = Vec::with_capacity(members.len());
        for m in members {
            match guard.key::<M>(m) {
                Ok((name, k)) => {
                    keys.push(k);
                    names.push(name);
                }
                Err(skip) => skipped.push(skip),
            }
        }
        let flags = self.stored(&guard, &names, commands).await?;
        let mut found = Vec::with_capacity(keys.len());
        for ((k, name), flag) in keys.into_iter().zip(names).zip(flags) {
            match flag {
                None => found.push(k),
                Some(why) => skipped.push((name, why)),
            }
        }
        self.skipped(sources, &skipped).await?;
        Ok((found, skipped.len()))
    }

    /// How many of `members` hold an instance of the scope: [`Query::verified`] without
    /// building their keys.
    pub(super) async fn verified_count(
        &self,
        sources: &[Source],
        members: Vec<Vec<u8>>,
        commands: &mut usize,
    ) -> Result<usize> {
        let scope = self.read_scope();
        let guard = Guard::of::<M>(self.session.layout(), &scope);
        let mut skipped = Vec::new();
        let mut names = Vec::with_capacity(members.len());
        for m in members {
            match guard.name::<M>(m) {
                Ok(name) => names.push(name),
                Err(skip) => skipped.push(skip),
            }
        }
        let flags = self.stored(&guard, &names, commands).await?;
        let mut found = 0;
        for (name, flag) in names.into_iter().zip(flags) {
            match flag {
                None => found += 1,
                Some(why) => skipped.push((name, why)),
            }
        }
        self.skipped(sources, &skipped).await?;
        Ok(found)
    }

    /// The stored-tenant check of `names` (keys of the scope by their shape).
    async fn stored(
        &self,
        guard: &Guard<'_>,
        names: &[String],
        commands: &mut usize,
    ) -> Result<Vec<Option<Skip>>> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        *commands += names.len();
        let backend = self.session.backend().await?;
        guard.verify::<M>(&backend, names).await
    }

    /// Reports the members a read skipped and sweeps the stale ones of an expiring model.
    async fn skipped(&self, sources: &[Source], skipped: &[Skipped]) -> Result<()> {
        verify::report(M::META.name, &index_keys(sources), skipped);
        self.sweep_stale(skipped).await
    }

    /// Candidate keys in the query's order; with `paged`, offset and limit applied.
    pub(super) async fn select(
        &self,
        sources: &[Source],
        paged: bool,
        commands: &mut usize,
    ) -> Result<Vec<Vec<u8>>> {
        // Boxed: keeps the nesting of callers' futures (and rustc's layout queries) shallow.
        Box::pin(self.select_in(sources, paged, true, commands)).await
    }

    /// Every candidate key, in no particular order (what `count` verifies).
    pub(super) async fn candidates(
        &self,
        sources: &[Source],
        commands: &mut usize,
    ) -> Result<Vec<Vec<u8>>> {
        Box::pin(self.select_in(sources, false, false, commands)).await
    }

    /// Whether source `s` gives the query's order (a range on the ordered field, or any range
    /// when there is no order).
    fn orders(&self, s: &Source) -> bool {
        match (s, self.order) {
            (Source::Range { field, .. }, Some((f, _))) => *field == f,
            (Source::Range { .. }, None) => true,
            _ => false,
        }
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
                let mut cmd = range_cmd(zset, *min, *max, desc);
                if offset > 0 || limit.is_some() {
                    cmd.arg("LIMIT")
                        .arg(offset)
                        .arg(limit.map_or(-1, |l| l as i64));
                }
                *commands += 1;
                return backend.query("query", name, &cmd).await;
            }
        }
        let driver = sources.iter().position(|s| self.orders(s));
        let resolved = expr::run_lookups::<M>(&backend, sources, commands).await?;
        let (mut keys, driver) = if let Some(reads) = or_of_reads(&resolved) {
            // An OR of plain index reads: the reads in one pipeline and their union here, as
            // hand-written code does it (the script costs the server more per member).
            let mut pipe = redis::pipe();
            for s in &reads {
                read_cmd(&mut pipe, s);
            }
            *commands += reads.len();
            let lists: Vec<Vec<Vec<u8>>> = if reads.is_empty() {
                Vec::new()
            } else {
                backend.pipeline("query", name, &pipe).await?
            };
            let mut seen = HashSet::new();
            let keys = lists
                .into_iter()
                .flatten()
                .filter(|k| seen.insert(k.clone()))
                .collect();
            (keys, None)
        } else if resolved.iter().any(Resolved::is_expr) {
            // OR / NOT: the whole intersection on the server, walking its smallest operand;
            // the order (a sorted field's, or a range's) is then read with ZMSCORE.
            *commands += 1;
            let keys = expr::run(&backend, name, &Program::of(&resolved, None)).await?;
            (keys, None)
        } else {
            let mut pipe = redis::pipe();
            let mut fetched = 0;
            for s in &resolved {
                match s {
                    Resolved::Index(Source::Union(ks)) if ks.is_empty() => return Ok(Vec::new()),
                    Resolved::Index(
                        s @ (Source::Set(_) | Source::Union(_) | Source::Range { .. }),
                    ) => read_cmd(&mut pipe, s),
                    _ => continue,
                };
                fetched += 1;
            }
            let mut replies: std::vec::IntoIter<Vec<Vec<u8>>> = if fetched > 0 {
                *commands += fetched;
                let r: Vec<Vec<Vec<u8>>> = backend.pipeline("query", name, &pipe).await?;
                r.into_iter()
            } else {
                Vec::new().into_iter()
            };
            let lists: Vec<Vec<Vec<u8>>> = resolved
                .into_iter()
                .map(|s| match s {
                    Resolved::List(items) => items,
                    _ => replies.next().unwrap_or_default(),
                })
                .collect();
            (intersect(lists, driver), driver)
        };
        // Without a driver, the order is `order_by`'s, else the first range's (ascending).
        let order = self.order.or_else(|| {
            sources.iter().find_map(|s| match s {
                Source::Range { field, .. } => Some((*field, Order::Asc)),
                _ => None,
            })
        });
        match (driver, order) {
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
            // A stable order for pages; a count needs none.
            (None, None) if ordered => keys.sort_unstable(),
            (None, None) => {}
        }
        Ok(page(keys, offset, limit))
    }

    /// Loads the hashes of `members` in one pipeline, keeping only instances of the scope (the
    /// others are reported); returns the rows (a row that cannot be decoded is an error in its
    /// place) and how many members were skipped.
    pub(super) async fn hydrate<K: RowKey<M>>(
        &self,
        sources: &[Source],
        members: Vec<Vec<u8>>,
        commands: &mut usize,
    ) -> Result<(Vec<Result<(K, M)>>, usize)> {
        let scope = self.read_scope();
        let guard = Guard::of::<M>(self.session.layout(), &scope);
        let (keys, mut skipped) = guard.keys::<M, K>(members);
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
        self.skipped(sources, &skipped).await?;
        Ok((rows, skipped.len()))
    }

    /// Sweeps the expired entries among `skipped` members (expiring models only, see
    /// `expiry.rs`): what expiry leaves in the indexes goes away as reads meet it.
    pub(super) async fn sweep_stale(&self, skipped: &[(String, Skip)]) -> Result<()> {
        if !M::META.expires() {
            return Ok(());
        }
        let stale: Vec<&str> = skipped
            .iter()
            .filter(|(_, why)| *why == Skip::Stale)
            .map(|(m, _)| m.as_str())
            .collect();
        self.session.sweep_after_read::<M>(&stale).await
    }
}

/// The members of `lists[driver]` (else of the shortest list) present in every other list, in
/// that list's order.
/// `ZRANGEBYSCORE zset min max` (`ZREVRANGEBYSCORE zset max min` with `desc`).
pub(super) fn range_cmd(zset: &str, min: Bound, max: Bound, desc: bool) -> redis::Cmd {
    let (name, first, second) = if desc {
        ("ZREVRANGEBYSCORE", max.arg(false), min.arg(true))
    } else {
        ("ZRANGEBYSCORE", min.arg(true), max.arg(false))
    };
    let mut cmd = redis::cmd(name);
    cmd.arg(zset).arg(first).arg(second);
    cmd
}

/// The read of index source `s` (an empty union, and the sources lookups resolve before any
/// read, read nothing).
fn read_cmd(pipe: &mut redis::Pipeline, s: &Source) {
    match s {
        Source::Set(k) => pipe.cmd("SMEMBERS").arg(k),
        Source::Union(ks) if ks.is_empty() => return,
        Source::Scan { .. } | Source::Expr { .. } => return,
        Source::Union(ks) => pipe.cmd("SUNION").arg(ks),
        Source::Range { zset, min, max, .. } => pipe
            .cmd("ZRANGEBYSCORE")
            .arg(zset)
            .arg(min.arg(true))
            .arg(max.arg(false)),
    };
}

/// The index reads of a query that is one OR of plain index reads (no AND, NOT or lookup
/// list below it, nothing to intersect it with), empty unions left out; else `None`.
fn or_of_reads(resolved: &[Resolved]) -> Option<Vec<&Source>> {
    let [Resolved::Expr { node, .. }] = resolved else {
        return None;
    };
    let expr::RNode::Or(children) = node.as_ref() else {
        return None;
    };
    children
        .iter()
        .filter(|c| !matches!(c, expr::RNode::Leaf(Resolved::Index(Source::Union(ks))) if ks.is_empty()))
        .map(|c| match c {
            expr::RNode::Leaf(Resolved::Index(
                s @ (Source::Set(_) | Source::Union(_) | Source::Range { .. }),
            )) => Some(s),
            _ => None,
        })
        .collect()
}

pub(super) fn intersect(mut lists: Vec<Vec<Vec<u8>>>, driver: Option<usize>) -> Vec<Vec<u8>> {
    let driver_index = driver.unwrap_or_else(|| {
        (0..lists.len())
            .min_by_key(|&i| lists[i].len())
            .unwrap_or_default()
    });
    if driver_index >= lists.len() {
        return Vec::new();
    }
    // The driver's members are moved, not copied: a single list is returned as it is.
    let mut keys = lists.swap_remove(driver_index);
    if lists.is_empty() {
        return keys;
    }
    let others: Vec<HashSet<&[u8]>> = lists
        .iter()
        .map(|l| l.iter().map(Vec::as_slice).collect())
        .collect();
    keys.retain(|k| others.iter().all(|o| o.contains(k.as_slice())));
    keys
}

/// `items` without the first `offset`, at most `limit` of them.
pub(super) fn page<T>(mut items: Vec<T>, offset: usize, limit: Option<usize>) -> Vec<T> {
    if offset > 0 {
        items.drain(..offset.min(items.len()));
    }
    if let Some(l) = limit {
        items.truncate(l);
    }
    items
}
