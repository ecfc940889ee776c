//! The windows a cursor page reads from its sorted set: members in the page's order, with
//! scores only for the members that can end the page.
//!
//! A score costs the server a `%.17g` formatting and the client a parse: a 217-member
//! `ZRANGEBYSCORE` takes about 56 µs of server time with `WITHSCORES` and 13 µs without. A
//! page needs the score of its last row only (the next cursor), and that row is never before
//! the one the page would end on if no member were skipped, so each read asks scores from
//! there on, in the same `MULTI`.

use std::sync::LazyLock;

use crate::backend::{Backend, Script};
use crate::error::{Error, Result};
use crate::keys::Layout;
use crate::model::{Key, Model};

use super::filter::Bound;
use super::Order;

/// The window script (`lua/window.lua`).
pub(crate) static WINDOW: LazyLock<Script> =
    LazyLock::new(|| Script::read_only(crate::script::lua!("window.lua")));

/// Members a read takes beyond its window after a cursor, so that rows sharing the cursor's
/// score (the cursor's own among them) can be skipped without a second read.
const TIE_SLACK: usize = 16;

/// A window of the sorted set, in the page's order.
pub(super) struct Window {
    /// The members, at most the `n` asked for.
    pub members: Vec<Vec<u8>>,
    /// (member, score) of every member that can end the page (and of the window's last).
    pub tail: Scored,
}

/// Reads windows of one sorted set for a cursor page.
pub(super) struct Reader<'a> {
    /// The backend of the query's scope.
    pub backend: &'a Backend,
    /// The model, for errors.
    pub model: &'static str,
    /// The sorted set (the query's own partition).
    pub zset: &'a str,
    /// The query's range on the sorted field.
    pub range: (Bound, Bound),
    /// The page's order.
    pub order: Order,
}

/// (member, score) pairs of a read.
type Scored = Vec<(Vec<u8>, f64)>;

/// A read's count of ties, members and (member, score) pairs from its tail on.
type Reply = (usize, Vec<Vec<u8>>, Scored);

impl Reader<'_> {
    fn desc(&self) -> bool {
        self.order == Order::Desc
    }

    /// Members `0..limit` of `(lo, hi)` in the page's order and, with scores, those from `from`
    /// on; with `ties`, first the number of members at that score within the range. One
    /// `MULTI`.
    async fn read(
        &self,
        (lo, hi): (Bound, Bound),
        limit: usize,
        from: usize,
        ties: Option<f64>,
    ) -> Result<Reply> {
        let desc = self.desc();
        let range = |scores: bool, offset: usize, count: usize| {
            let mut c = super::exec::range_cmd(self.zset, lo, hi, desc);
            if scores {
                c.arg("WITHSCORES");
            }
            c.arg("LIMIT").arg(offset).arg(count);
            c
        };
        let mut pipe = redis::pipe();
        pipe.atomic();
        if let Some(s) = ties {
            // The members at score `s` within the read's range.
            let (a, b) = if desc {
                (Bound::Incl(s).tighter(lo, true), hi)
            } else {
                (lo, Bound::Incl(s).tighter(hi, false))
            };
            pipe.cmd("ZCOUNT")
                .arg(self.zset)
                .arg(a.arg(true))
                .arg(b.arg(false));
        }
        pipe.add_command(range(false, 0, limit)).add_command(range(
            true,
            from,
            limit.saturating_sub(from),
        ));
        if ties.is_some() {
            self.backend.pipeline("page", self.model, &pipe).await
        } else {
            let (members, tail): (Vec<Vec<u8>>, Scored) =
                self.backend.pipeline("page", self.model, &pipe).await?;
            Ok((0, members, tail))
        }
    }

    /// The next `n` members of the range after position `pos` (from its start with `None`),
    /// in the page's order, for a page that still needs `need` rows.
    ///
    /// After a cursor, one read from the cursor's score inclusive, [`TIE_SLACK`] members longer
    /// than the window: when the members at that score end inside it, those after the cursor
    /// (ties are ordered bytewise by member) lead the window. When more than the slack of them
    /// precede the cursor, the range strictly past the score is read again; when the read
    /// holds nothing but ties, `lua/window.lua` finds the position among them.
    pub async fn next(&self, pos: Option<&(f64, String)>, n: usize, need: usize) -> Result<Window> {
        let (min, max) = self.range;
        // The first position that can end the page (the window's last is at or after it).
        let last = need.min(n).saturating_sub(1);
        let Some((s, m)) = pos else {
            let (_, members, tail) = self.read((min, max), n, last, None).await?;
            return Ok(Window { members, tail });
        };
        let (s, m, desc) = (*s, m.as_bytes(), self.desc());
        // From the cursor's score (inclusive) on, in the page's direction, within the range.
        let from = if desc {
            (min, max.tighter(Bound::Incl(s), false))
        } else {
            (min.tighter(Bound::Incl(s), true), max)
        };
        let limit = n + TIE_SLACK;
        let (ties, mut members, mut tail) = self.read(from, limit, last, Some(s)).await?;
        // The members at the cursor's score lead the read; those up to the cursor are skipped.
        let ties = ties.min(members.len());
        let seen = members[..ties]
            .iter()
            .take_while(|k| {
                if desc {
                    k.as_slice() >= m
                } else {
                    k.as_slice() <= m
                }
            })
            .count();
        if members.len() < limit || (ties < members.len() && seen <= TIE_SLACK) {
            // Whole: the range ended, or the ties ended and at least `n` members follow.
            members.drain(..seen);
            members.truncate(n);
            return Ok(Window { members, tail });
        }
        if ties < members.len() {
            // Every tie is known, but too many precede the cursor: the rest is read past them.
            let past = if desc {
                (min, past(max, s, |b, x| x <= b))
            } else {
                (past(min, s, |b, x| x >= b), max)
            };
            members.truncate(ties);
            members.drain(..seen);
            let k = members.len();
            let (_, rest, rest_tail) = self.read(past, n, last.saturating_sub(k), None).await?;
            tail = members.iter().map(|k| (k.clone(), s)).collect();
            tail.extend(rest_tail);
            members.extend(rest);
            members.truncate(n);
            return Ok(Window { members, tail });
        }
        let args: Vec<Vec<u8>> = vec![
            min.arg(true).into_bytes(),
            max.arg(false).into_bytes(),
            if desc { b"d".to_vec() } else { b"a".to_vec() },
            b"1".to_vec(),
            crate::script::score_arg(s).into_bytes(),
            m.to_vec(),
            n.to_string().into_bytes(),
        ];
        let reply = self
            .backend
            .eval(
                "page",
                self.model,
                &WINDOW,
                std::slice::from_ref(&self.zset.to_owned()),
                &args,
            )
            .await?;
        let tail: Scored = redis::from_redis_value(reply).map_err(|e| Error::Protocol {
            op: "page",
            model: self.model,
            detail: e.to_string(),
        })?;
        let members = tail.iter().map(|(k, _)| k.clone()).collect();
        Ok(Window { members, tail })
    }
}

/// The tighter of range bound `b` and "strictly past score `s`" (`within(x, s)`: bound value
/// `x` lets `s` through).
fn past(b: Bound, s: f64, within: impl Fn(f64, f64) -> bool) -> Bound {
    match b {
        Bound::Incl(x) | Bound::Excl(x) if !within(x, s) => b,
        _ => Bound::Excl(s),
    }
}

/// The member (as stored in the sorted set) and score of row `key` among a window's `tail`:
/// its canonical key, else (a member spelled otherwise that parses to the same key) found by
/// parsing.
pub(super) fn member_of<M: Model>(
    layout: Layout,
    tail: &[(Vec<u8>, f64)],
    key: &Key<M>,
) -> Option<(String, f64)> {
    let canonical = key.redis_key_in(layout);
    if let Some((_, s)) = tail.iter().find(|(m, _)| m == canonical.as_bytes()) {
        return Some((canonical, *s));
    }
    tail.iter().find_map(|(m, s)| {
        let text = std::str::from_utf8(m).ok()?;
        (Key::<M>::parse_in(layout, text).ok()? == *key).then(|| (text.to_owned(), *s))
    })
}
