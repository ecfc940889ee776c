//! Cursor pages: a stable, opaque position (score, key) in a query ordered by a sorted field,
//! found again on every page (by score, and among members sharing it by `lua/window.lua`), so
//! rows inserted or deleted between pages neither repeat nor hide the others.

use std::fmt;

use tracing::Instrument;

use crate::error::{Error, Result};
use crate::model::{Key, Model};
use crate::tenant::Scope;

use super::expr::{self, Program, Resolved};
use super::filter::{Bound, FilterKind};
use super::resolve::{merge_ranges, Source};
use super::window::{member_of, Reader, Window};
use super::{Order, Query};

/// Largest window read per script call.
const MAX_WINDOW: usize = 1000;

/// Cursor format version.
const VERSION: &str = "c1";

/// Separator of a cursor's parts (before hex encoding).
const SEP: char = '\u{1f}';

/// An opaque position in a query ordered by a sorted field: the score and key of the last row
/// of a page. It names the model, the order and the scope it was made for; a page refuses a
/// cursor made for anything else ([`Error::InvalidCursor`]), so a cursor cannot move a tenant's
/// reads to another tenant's partition (the partition read is always the handle's own).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Cursor(String);

impl Cursor {
    /// A cursor from its text (as given by [`Cursor::as_str`]); checked when used.
    pub fn new(text: impl Into<String>) -> Cursor {
        Cursor(text.into())
    }

    /// The cursor as text (ASCII hex), to hand to a client.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One page of a cursor-paginated query.
#[derive(Debug)]
pub struct Page<M: Model> {
    /// The rows of the page, in the query's order.
    pub rows: Vec<(Key<M>, M)>,
    /// Where the next page starts; `None` once the end was reached.
    pub next: Option<Cursor>,
}

fn scope_tag(scope: &Scope) -> String {
    match scope {
        Scope::Unscoped => "u".into(),
        Scope::Admin => "a".into(),
        Scope::Tenant(t) => format!("t{t}"),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

impl<'s, M: Model> Query<'s, M> {
    fn cursor_for(&self, field: usize, order: Order, score: f64, member: &str) -> Cursor {
        let dir = if order == Order::Asc { "a" } else { "d" };
        let text = [
            VERSION,
            M::META.name,
            M::META.fields[field].name,
            dir,
            &scope_tag(self.session.scope()),
            &format!("{:016x}", score.to_bits()),
            member,
        ]
        .join(&SEP.to_string());
        Cursor(hex(text.as_bytes()))
    }

    /// The position `cursor` names, if it was made by this query's model, order and scope.
    fn position(&self, cursor: &Cursor, field: usize, order: Order) -> Result<(f64, String)> {
        let bad = |reason: &str| Error::InvalidCursor {
            model: M::META.name,
            reason: reason.to_owned(),
        };
        let text = unhex(&cursor.0)
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| bad("not a cursor"))?;
        let parts: Vec<&str> = text.splitn(7, SEP).collect();
        let [version, model, fname, dir, scope, bits, member] = parts[..] else {
            return Err(bad("not a cursor"));
        };
        if version != VERSION {
            return Err(bad("not a cursor of this version"));
        }
        if model != M::META.name {
            return Err(bad("made for another model"));
        }
        let want_dir = if order == Order::Asc { "a" } else { "d" };
        if fname != M::META.fields[field].name || dir != want_dir {
            return Err(bad("made for another order"));
        }
        if scope != scope_tag(self.session.scope()) {
            return Err(bad("made for another scope"));
        }
        let score = u64::from_str_radix(bits, 16)
            .map(f64::from_bits)
            .ok()
            .filter(|s| !s.is_nan())
            .ok_or_else(|| bad("bad score"))?;
        let key = Key::<M>::parse_in(self.session.layout(), member)
            .map_err(|_| bad("not a key of the model"))?;
        if let Scope::Tenant(t) = self.session.scope() {
            if M::META.tenant.is_some() && key.tenant() != Some(t.as_str()) {
                return Err(bad("made for another scope"));
            }
        }
        Ok((score, member.to_owned()))
    }

    /// One page of at most `size` rows after `cursor` (from the start with `None`), in the
    /// order of [`Query::order_by`] / [`Query::order_by_desc`], which a cursor page needs.
    ///
    /// The position is the last row's score and key: each page finds it again in the sorted
    /// set (`O(log n)`), so rows inserted or deleted between pages do not shift the pages, and
    /// a row present from the first page to the last is returned exactly once. Filters,
    /// verification against the scope and a client-side predicate apply as in `fetch`; a
    /// page reads windows of the sorted set until it is full. Offset, limit and a client-side
    /// order do not apply to cursor pages and are refused.
    pub async fn page(self, cursor: Option<&Cursor>, size: usize) -> Result<Page<M>> {
        let Some((field, order)) = self.order else {
            return Err(self.invalid("a cursor page needs order_by on a sorted field"));
        };
        if self.is_paged() || self.client_order.is_some() || size == 0 {
            return Err(self.invalid(
                "cursor pages take a page size > 0, and no offset, limit or client-side order",
            ));
        }
        let mut pos = cursor.map(|c| self.position(c, field, order)).transpose()?;
        let span = self.span("page");
        async {
            let sources = self.resolve()?;
            let zset = self.zset(field, &self.known_partitions())?;
            let (min, max) = merge_ranges(&self.filters)
                .iter()
                .find_map(|f| match f {
                    FilterKind::Range {
                        field: rf,
                        min,
                        max,
                    } if *rf == field => Some((*min, *max)),
                    _ => None,
                })
                .unwrap_or((Bound::Unbounded, Bound::Unbounded));
            let others: Vec<Source> = sources
                .iter()
                .filter(|s| !matches!(s, Source::Range { zset: z, .. } if *z == zset))
                .cloned()
                .collect();
            let backend = self.session.backend().await?;
            let mut commands = 0;
            let others = expr::run_lookups::<M>(&backend, &others, &mut commands).await?;
            let mut rows = Vec::with_capacity(size);
            let reader = Reader {
                backend: &backend,
                model: M::META.name,
                zset: &zset,
                range: (min, max),
                order,
            };
            // One member more than the page: a full page then knows whether anything follows.
            let mut window = (size + 1).min(MAX_WINDOW);
            loop {
                commands += 1;
                let Window { members, tail } =
                    reader.next(pos.as_ref(), window, size - rows.len()).await?;
                let read = members.len();
                let Some(last) = members.last().cloned() else {
                    break;
                };
                let candidates = if others.is_empty() {
                    members
                } else {
                    let mut srcs = vec![Resolved::List(members)];
                    srcs.extend(others.iter().cloned());
                    commands += 1;
                    expr::run(&backend, M::META.name, &Program::of(&srcs, Some(0))).await?
                };
                // Rows are loaded as the page still needs them: the member read past the page
                // only tells that more follow, and is loaded only to replace a skipped row.
                let mut rest = candidates;
                while !rest.is_empty() {
                    let after = rest.split_off((size - rows.len()).min(rest.len()));
                    let batch = std::mem::replace(&mut rest, after);
                    let (loaded, _) = self.hydrate(&sources, batch, &mut commands).await?;
                    let loaded_len = loaded.len();
                    for (i, row) in loaded.into_iter().enumerate() {
                        let (key, value) = row?;
                        if self.predicate.as_ref().is_some_and(|p| !p(&value)) {
                            continue;
                        }
                        rows.push((key, value));
                        if rows.len() < size {
                            continue;
                        }
                        let (k, _) = &rows[size - 1];
                        let (member, score) = member_of(self.session.layout(), &tail, k)
                            .ok_or_else(|| Error::Protocol {
                                op: "page",
                                model: M::META.name,
                                detail: format!(
                                    "row {} not in the window read",
                                    k.redis_key_in(self.session.layout())
                                ),
                            })?;
                        // The end is known when this window was the last and nothing of it is
                        // left; otherwise the next page may still come back empty.
                        let more = read == window || i + 1 < loaded_len || !rest.is_empty();
                        let next = more.then(|| self.cursor_for(field, order, score, &member));
                        tracing::Span::current().record("commands", commands);
                        return Ok(Page { next, rows });
                    }
                }
                if read < window {
                    break;
                }
                // The window's last member (a full window's is in its tail) is where the next
                // one starts.
                let score = tail
                    .iter()
                    .rev()
                    .find_map(|(m, s)| (*m == last).then_some(*s))
                    .ok_or_else(|| Error::Protocol {
                        op: "page",
                        model: M::META.name,
                        detail: "the window's last member came without its score".into(),
                    })?;
                pos = Some((score, String::from_utf8_lossy(&last).into_owned()));
                window = (window * 2).min(MAX_WINDOW);
            }
            tracing::Span::current().record("commands", commands);
            Ok(Page { rows, next: None })
        }
        .instrument(span)
        .await
    }
}
