//! Cursor pages: a stable, opaque position (score, key) in a query ordered by a sorted field,
//! found again on every page (by score, and among members sharing it by `lua/window.lua`), so
//! rows inserted or deleted between pages neither repeat nor hide the others.

use std::fmt;
use std::sync::LazyLock;

use tracing::Instrument;

use crate::backend::Script;
use crate::error::{Error, Result};
use crate::keys::Layout;
use crate::model::{Key, Model};
use crate::tenant::Scope;

use super::expr::{self, Program, Resolved};
use super::filter::{Bound, FilterKind};
use super::resolve::{merge_ranges, Source};
use super::{Order, Query};

/// The window script (`lua/window.lua`).
pub(crate) static WINDOW: LazyLock<Script> =
    LazyLock::new(|| Script::read_only(crate::script::lua!("window.lua")));

/// Largest window read per script call.
const MAX_WINDOW: usize = 1000;

/// Members a page's native read takes beyond its window, so that rows sharing the cursor's
/// score (the cursor's own among them) can be skipped without a second read.
const TIE_SLACK: usize = 16;

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
            // The window's (member, score) pairs: the page's last row finds its own here.
            let mut scores: Vec<(Vec<u8>, f64)> = Vec::new();
            // One member more than the page: a full page then knows whether anything follows.
            let mut window = (size + 1).min(MAX_WINDOW);
            loop {
                commands += 1;
                let flat =
                    read_window::<M>(&backend, &zset, (min, max), order, pos.as_ref(), window)
                        .await?;
                let Some((last, last_score)) = flat.last() else {
                    break;
                };
                pos = Some((*last_score, String::from_utf8_lossy(last).into_owned()));
                let read = flat.len();
                scores.clear();
                let mut members = Vec::with_capacity(read);
                for (m, s) in flat {
                    scores.push((m.clone(), s));
                    members.push(m);
                }
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
                    let tail = rest.split_off((size - rows.len()).min(rest.len()));
                    let batch = std::mem::replace(&mut rest, tail);
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
                        let (member, score) = window_member(self.session.layout(), &scores, k)
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
                window = (window * 2).min(MAX_WINDOW);
            }
            tracing::Span::current().record("commands", commands);
            Ok(Page { rows, next: None })
        }
        .instrument(span)
        .await
    }
}

/// The next `n` members (with scores) of `zset` within `range` after position `pos`, in the
/// page's order. Without a cursor, that is one native range read. After one, it is one native
/// read from the cursor's score inclusive, [`TIE_SLACK`] members longer than the window: when
/// the members at that score end inside it, those after the cursor (ties are ordered bytewise
/// by member) lead the window. When more than the slack of them precede the cursor, the window
/// strictly past the score is read again; when the read holds nothing but ties,
/// `lua/window.lua` finds the position among them.
async fn read_window<M: Model>(
    backend: &crate::backend::Backend,
    zset: &str,
    (min, max): (Bound, Bound),
    order: Order,
    pos: Option<&(f64, String)>,
    n: usize,
) -> Result<Vec<(Vec<u8>, f64)>> {
    let desc = order == Order::Desc;
    let read = async |lo: Bound, hi: Bound, n: usize| -> Result<Vec<(Vec<u8>, f64)>> {
        let mut c = super::exec::range_cmd(zset, lo, hi, desc);
        c.arg("WITHSCORES").arg("LIMIT").arg(0).arg(n);
        backend.query("page", M::META.name, &c).await
    };
    let Some((s, m)) = pos else {
        return read(min, max, n).await;
    };
    let s = *s;
    // From the cursor's score (inclusive) on, in the page's direction, within the range.
    let (lo, hi) = if desc {
        (min, max.tighter(Bound::Incl(s), false))
    } else {
        (min.tighter(Bound::Incl(s), true), max)
    };
    let limit = n + TIE_SLACK;
    let mut from = read(lo, hi, limit).await?;
    // The members at the cursor's score lead the read; those up to the cursor are skipped.
    let ties = from.iter().take_while(|(_, x)| *x == s).count();
    let m = m.as_bytes();
    let seen = from[..ties]
        .iter()
        .take_while(|(k, _)| {
            if desc {
                k.as_slice() >= m
            } else {
                k.as_slice() <= m
            }
        })
        .count();
    let ended = from.len() < limit;
    if ended || (ties < from.len() && seen <= TIE_SLACK) {
        // Whole: the range ended, or the ties ended and at least `n` members follow the cursor.
        from.drain(..seen);
        from.truncate(n);
        return Ok(from);
    }
    if ties < from.len() {
        // Every tie is known, but too many precede the cursor: the rest is read past them.
        let (lo, hi) = if desc {
            (min, past(max, s, |b, x| x <= b))
        } else {
            (past(min, s, |b, x| x >= b), max)
        };
        from.truncate(ties);
        from.drain(..seen);
        from.extend(read(lo, hi, n).await?);
        from.truncate(n);
        return Ok(from);
    }
    let at = crate::script::score_arg(s);
    let args: Vec<Vec<u8>> = vec![
        min.arg(true).into_bytes(),
        max.arg(false).into_bytes(),
        if desc { b"d".to_vec() } else { b"a".to_vec() },
        b"1".to_vec(),
        at.into_bytes(),
        m.to_vec(),
        n.to_string().into_bytes(),
    ];
    let reply = backend
        .eval(
            "page",
            M::META.name,
            &WINDOW,
            std::slice::from_ref(&zset.to_owned()),
            &args,
        )
        .await?;
    redis::from_redis_value(reply).map_err(|e| Error::Protocol {
        op: "page",
        model: M::META.name,
        detail: e.to_string(),
    })
}

/// The tighter of range bound `b` and "strictly past score `s`" (`within(x, s)`: bound value
/// `x` lets `s` through).
fn past(b: Bound, s: f64, within: impl Fn(f64, f64) -> bool) -> Bound {
    match b {
        Bound::Incl(x) | Bound::Excl(x) if !within(x, s) => b,
        _ => Bound::Excl(s),
    }
}

/// The member (as stored in the sorted set) and score of row `key` in a window: its canonical
/// key, else (a member spelled otherwise that parses to the same key) found by parsing.
fn window_member<M: Model>(
    layout: Layout,
    scores: &[(Vec<u8>, f64)],
    key: &Key<M>,
) -> Option<(String, f64)> {
    let canonical = key.redis_key_in(layout);
    // The page's last row is most often near the window's end.
    if let Some((_, s)) = scores.iter().rev().find(|(m, _)| m == canonical.as_bytes()) {
        return Some((canonical, *s));
    }
    scores.iter().rev().find_map(|(m, s)| {
        let text = std::str::from_utf8(m).ok()?;
        (Key::<M>::parse_in(layout, text).ok()? == *key).then(|| (text.to_owned(), *s))
    })
}
