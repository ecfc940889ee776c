//! The paged parts of one shared instance: its stream's entries, each consumer group's pending
//! entries, done set and dead letters. Each is read a page at a time (constant memory), then
//! staged into the target's staging key by one script call per page, or digested to compare
//! two copies without holding either.

use std::hash::{DefaultHasher, Hash, Hasher};

use redis::Value;

use super::snapshot::bad;
use super::OP;
use crate::backend::Backend;
use crate::error::Result;
use crate::feed::wire::{num, parse_entries, parse_id, text, Fields};

/// Items read (and staged) per call.
pub(super) const PAGE: usize = 500;

/// What a paged part is.
#[derive(Debug, Clone)]
pub(super) enum Kind {
    /// Stream entries (the feed, dead letters).
    Entries,
    /// The pending entries of a consumer group of the stream whose data is still there: at or
    /// after the stream's first entry (`None`: the stream has none, so none is kept).
    Pending(String, Option<String>),
    /// Members of a sorted set with their scores (a done set).
    Members,
}

/// One pending entry: id, consumer, idle ms, deliveries.
pub(super) type Pend = (String, String, u64, u64);

/// A page of a part.
pub(super) enum Page {
    Entries(Vec<(String, Fields)>),
    /// The group's name and its pending entries.
    Pending(String, Vec<Pend>),
    /// (member, score) as Redis returns them.
    Members(Vec<(Vec<u8>, Vec<u8>)>),
}

impl Page {
    /// Items on the page.
    pub(super) fn len(&self) -> usize {
        match self {
            Page::Entries(e) => e.len(),
            Page::Pending(_, p) => p.len(),
            Page::Members(m) => m.len(),
        }
    }

    /// Feeds what two equal copies share into `h` (a pending entry's idle time is not: it
    /// grows by itself).
    fn digest(&self, h: &mut DefaultHasher) {
        match self {
            Page::Entries(e) => e.hash(h),
            Page::Pending(_, p) => p.iter().for_each(|(id, c, _, n)| (id, c, n).hash(h)),
            Page::Members(m) => m.hash(h),
        }
    }

    /// The arguments of the staging call of this page (`lua/shared_relayout.lua`).
    pub(super) fn stage_args(&self) -> Vec<Vec<u8>> {
        let s = |v: &str| v.as_bytes().to_vec();
        match self {
            Page::Entries(entries) => {
                let mut a = vec![s("xadd"), s(&entries.len().to_string())];
                for (id, fields) in entries {
                    a.push(s(id));
                    a.push(s(&(2 * fields.len()).to_string()));
                    for (k, v) in fields {
                        a.push(k.clone());
                        a.push(v.clone());
                    }
                }
                a
            }
            Page::Pending(group, pending) => {
                let mut a = vec![s("claim"), s(group), s(&pending.len().to_string())];
                for (id, consumer, idle, n) in pending {
                    a.extend([s(consumer), s(id), s(&idle.to_string()), s(&n.to_string())]);
                }
                a
            }
            Page::Members(members) => {
                let mut a = vec![s("zadd"), s(&members.len().to_string())];
                for (member, score) in members {
                    a.push(score.clone());
                    a.push(member.clone());
                }
                a
            }
        }
    }
}

/// A part of one key read page by page.
pub(super) struct Pager {
    key: String,
    kind: Kind,
    /// The last id read (entries, pending), or the members read so far.
    after: Option<String>,
    offset: usize,
    finished: bool,
}

impl Pager {
    /// A reader of part `kind` of `key` from its start.
    pub(super) fn new(key: &str, kind: Kind) -> Pager {
        Pager {
            key: key.to_owned(),
            kind,
            after: None,
            offset: 0,
            finished: false,
        }
    }

    /// The next page, `None` after the last one.
    pub(super) async fn next(
        &mut self,
        backend: &Backend,
        model: &'static str,
    ) -> Result<Option<Page>> {
        if self.finished {
            return Ok(None);
        }
        let from = self
            .after
            .as_ref()
            .map_or_else(|| "-".to_owned(), |a| format!("({a}"));
        let mut cmd;
        match &self.kind {
            Kind::Entries => {
                cmd = redis::cmd("XRANGE");
                cmd.arg(&self.key)
                    .arg(&from)
                    .arg("+")
                    .arg("COUNT")
                    .arg(PAGE);
            }
            Kind::Pending(group, _) => {
                cmd = redis::cmd("XPENDING");
                cmd.arg(&self.key).arg(group).arg(&from).arg("+").arg(PAGE);
            }
            Kind::Members => {
                cmd = redis::cmd("ZRANGE");
                cmd.arg(&self.key)
                    .arg(self.offset)
                    .arg(self.offset + PAGE - 1)
                    .arg("WITHSCORES");
            }
        }
        let reply: Value = backend.query(OP, model, &cmd).await?;
        let page = match &self.kind {
            Kind::Entries => {
                let entries = parse_entries(reply)?;
                self.after = entries.last().map(|(id, _)| id.clone());
                Page::Entries(entries)
            }
            Kind::Pending(group, first) => {
                let Value::Array(items) = reply else {
                    return Err(bad(OP, &reply));
                };
                let mut out = Vec::with_capacity(items.len());
                for item in &items {
                    let Value::Array(f) = item else {
                        return Err(bad(OP, item));
                    };
                    let id = text(f.first()).ok_or_else(|| bad(OP, item))?;
                    let consumer = text(f.get(1)).ok_or_else(|| bad(OP, item))?;
                    let idle = num(f.get(2)).ok_or_else(|| bad(OP, item))?;
                    let n = num(f.get(3)).ok_or_else(|| bad(OP, item))?;
                    out.push((id, consumer, idle, n));
                }
                self.after = out.last().map(|p| p.0.clone());
                let n = out.len();
                let first = first.as_deref().and_then(parse_id);
                out.retain(|p| first.is_some_and(|f| parse_id(&p.0).is_some_and(|id| id >= f)));
                self.finished = n < PAGE;
                return Ok(Some(Page::Pending(group.clone(), out)));
            }
            Kind::Members => {
                let members: Vec<(Vec<u8>, Vec<u8>)> =
                    redis::from_redis_value(reply).map_err(|e| bad(OP, &e.to_string()))?;
                self.offset += members.len();
                Page::Members(members)
            }
        };
        self.finished = page.len() < PAGE;
        Ok(Some(page))
    }
}

/// How many items part `kind` of `key` holds and a digest of them, read page by page.
pub(super) async fn digest(
    backend: &Backend,
    model: &'static str,
    key: &str,
    kind: Kind,
) -> Result<(u64, u64)> {
    let mut h = DefaultHasher::new();
    let mut n = 0;
    let mut pager = Pager::new(key, kind);
    while let Some(page) = pager.next(backend, model).await? {
        n += page.len() as u64;
        page.digest(&mut h);
    }
    Ok((n, h.finish()))
}
