//! One shared instance as a layout migration reads it: its hashes whole (fields, meta, tags,
//! subscribers, feed bookkeeping) and its change feed's shape (the stream's counters, each
//! consumer group with its consumers, and which of its done sets and dead letters exist). The
//! paged parts are read page by page (`pages.rs`). What the source holds is verified before it
//! is trusted; the target is compared with the source part by part.

use redis::Value;

use super::super::wire::InstanceKeys;
use super::super::{Access, Merge, Tag};
use super::OP;
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::feed::wire::{flat_get, num, text};
use crate::keys::{FeedOf, Layout};
use crate::lifecycle::SharedDecode;
use crate::tenant::TenantId;

/// What each of an instance's hashes is, in [`Keys::hashes`] order (named in conflicts).
pub(super) const HASHES: [&str; 5] = ["value", "meta", "tags", "subscribers", "feed meta"];

/// A hash's fields, sorted.
pub(super) type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// Every key of one shared instance in one layout (its groups' keys by name).
pub(super) struct Keys {
    layout: Layout,
    model: &'static str,
    id: String,
    /// Value, meta, tags, subscribers, feed meta.
    pub(super) hashes: [String; 5],
    pub(super) stream: String,
    /// The model's id set, where the layout keeps one.
    pub(super) ids: Option<String>,
}

impl Keys {
    /// The keys of instance `id` of `model` in `layout`.
    pub(super) fn of(layout: Layout, model: &'static str, id: &str) -> Keys {
        let k = InstanceKeys::of(layout, model, id);
        Keys {
            layout,
            model,
            id: id.to_owned(),
            hashes: [k.value, k.meta, k.tags, k.subs, k.feed_meta],
            stream: k.stream,
            ids: k.ids,
        }
    }

    /// The instance's model.
    pub(super) fn model(&self) -> &'static str {
        self.model
    }

    /// Group `group`'s done set.
    pub(super) fn done(&self, group: &str) -> String {
        let of = FeedOf::Shared(self.model, &self.id);
        self.layout.feed_done_key(of, group)
    }

    /// Group `group`'s dead letters.
    pub(super) fn dead(&self, group: &str) -> String {
        let of = FeedOf::Shared(self.model, &self.id);
        self.layout.feed_dead_key(of, group)
    }

    /// Where `key`, one of these keys, is gathered before the instance lands.
    pub(super) fn stage(&self, key: &str) -> String {
        self.layout.shared_stage_key(self.model, &self.id, key)
    }
}

/// The counters of a change feed's stream (those `XSETID` restores).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct StreamInfo {
    pub(super) length: u64,
    pub(super) last_id: String,
    /// `entries-added` (Redis 7 and newer).
    pub(super) entries_added: Option<String>,
    /// `max-deleted-entry-id` (Redis 7 and newer).
    pub(super) max_deleted: Option<String>,
}

/// One consumer group of the feed: in the stream and/or registered in the feed meta hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct GroupInfo {
    pub(super) name: String,
    /// (last delivered id, entries read, consumers) when the stream has it.
    pub(super) state: Option<(String, Option<String>, Vec<String>)>,
    /// The Redis types of its done set and dead letters (`none` when absent).
    pub(super) done: String,
    pub(super) dead: String,
}

/// One instance's hashes and feed shape, as read from one layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Snapshot {
    pub(super) hashes: [Pairs; 5],
    /// The stream's Redis type (`none` when absent) and counters.
    pub(super) stream_type: String,
    pub(super) stream: Option<StreamInfo>,
    pub(super) groups: Vec<GroupInfo>,
}

/// A reply that is not what the command returns.
pub(super) fn bad(op: &'static str, reply: &dyn std::fmt::Debug) -> Error {
    let mut detail = format!("{reply:?}");
    detail.truncate(200);
    Error::Protocol {
        op,
        model: "-",
        detail,
    }
}

fn decode<T: redis::FromRedisValue>(v: Value) -> Result<T> {
    redis::from_redis_value(v).map_err(|e| bad(OP, &e.to_string()))
}

/// Runs `cmds` (keys of one slot) as one pipeline.
async fn pipe(backend: &Backend, model: &'static str, cmds: Vec<redis::Cmd>) -> Result<Vec<Value>> {
    if cmds.is_empty() {
        return Ok(Vec::new());
    }
    let mut p = redis::pipe();
    for c in cmds {
        p.add_command(c);
    }
    backend.pipeline(OP, model, &p).await
}

fn cmd2(name: &str, a: &str, b: &str) -> redis::Cmd {
    let mut c = redis::cmd(name);
    c.arg(a).arg(b);
    c
}

impl Snapshot {
    /// Reads the instance at `keys` (three round trips at most, each in its slot).
    pub(super) async fn read(backend: &Backend, keys: &Keys) -> Result<Snapshot> {
        let model = keys.model;
        let mut cmds: Vec<redis::Cmd> = keys
            .hashes
            .iter()
            .map(|k| {
                let mut c = redis::cmd("HGETALL");
                c.arg(k);
                c
            })
            .collect();
        let mut ty = redis::cmd("TYPE");
        ty.arg(&keys.stream);
        cmds.push(ty);
        let mut replies = pipe(backend, model, cmds).await?.into_iter();
        let mut hashes: [Pairs; 5] = Default::default();
        for h in &mut hashes {
            let mut pairs: Pairs = decode(replies.next().unwrap_or(Value::Nil))?;
            pairs.sort();
            *h = pairs;
        }
        let stream_type: String = decode(replies.next().unwrap_or(Value::Nil))?;
        let mut names: Vec<String> = hashes[4]
            .iter()
            .filter_map(|(f, _)| f.strip_prefix(b"group:"))
            .map(|g| String::from_utf8_lossy(g).into_owned())
            .collect();
        let (mut stream, mut in_stream) = (None, Vec::new());
        if stream_type == "stream" {
            let r = pipe(
                backend,
                model,
                vec![
                    cmd2("XINFO", "STREAM", &keys.stream),
                    cmd2("XINFO", "GROUPS", &keys.stream),
                ],
            )
            .await?;
            let info = r.first().ok_or_else(|| bad(OP, &"XINFO STREAM"))?;
            stream = Some(StreamInfo {
                length: num(flat_get(info, "length")).ok_or_else(|| bad(OP, info))?,
                last_id: text(flat_get(info, "last-generated-id")).ok_or_else(|| bad(OP, info))?,
                entries_added: num(flat_get(info, "entries-added")).map(|n| n.to_string()),
                max_deleted: text(flat_get(info, "max-deleted-entry-id")),
            });
            if let Some(Value::Array(groups)) = r.get(1) {
                for g in groups {
                    let name = text(flat_get(g, "name")).ok_or_else(|| bad(OP, g))?;
                    let last = text(flat_get(g, "last-delivered-id")).ok_or_else(|| bad(OP, g))?;
                    let read = num(flat_get(g, "entries-read")).map(|n| n.to_string());
                    names.push(name.clone());
                    in_stream.push((name, (last, read)));
                }
            }
        }
        names.sort();
        names.dedup();
        let mut cmds = Vec::new();
        for g in &names {
            cmds.push(type_of(&keys.done(g)));
            cmds.push(type_of(&keys.dead(g)));
            if in_stream.iter().any(|(n, _)| n == g) {
                let mut c = redis::cmd("XINFO");
                c.arg("CONSUMERS").arg(&keys.stream).arg(g);
                cmds.push(c);
            }
        }
        let mut replies = pipe(backend, model, cmds).await?.into_iter();
        let mut groups = Vec::with_capacity(names.len());
        for name in names {
            let done: String = decode(replies.next().unwrap_or(Value::Nil))?;
            let dead: String = decode(replies.next().unwrap_or(Value::Nil))?;
            let state = match in_stream.iter().find(|(n, _)| *n == name) {
                Some((_, (last, read))) => {
                    let reply = replies.next().unwrap_or(Value::Nil);
                    let Value::Array(list) = &reply else {
                        return Err(bad(OP, &reply));
                    };
                    let mut consumers = list
                        .iter()
                        .map(|c| text(flat_get(c, "name")).ok_or_else(|| bad(OP, c)))
                        .collect::<Result<Vec<String>>>()?;
                    consumers.sort();
                    Some((last.clone(), read.clone(), consumers))
                }
                None => None,
            };
            groups.push(GroupInfo {
                name,
                state,
                done,
                dead,
            });
        }
        Ok(Snapshot {
            hashes,
            stream_type,
            stream,
            groups,
        })
    }

    /// Whether the instance exists (its meta hash, the authority in both layouts).
    pub(super) fn exists(&self) -> bool {
        !self.hashes[1].is_empty()
    }

    /// Whether no key of the instance exists at all.
    pub(super) fn is_empty(&self) -> bool {
        self.hashes.iter().all(Vec::is_empty)
            && self.stream_type == "none"
            && self
                .groups
                .iter()
                .all(|g| g.done == "none" && g.dead == "none")
    }

    /// Checks that the source holds the instance as popoto writes it: a meta hash naming it
    /// with a strategy and a version, tags that parse, subscriber entries that are a tenant
    /// and an access, a value `decode` takes, and keys of the types the feed writes.
    pub(super) fn verify(&self, keys: &Keys, decode: SharedDecode) -> Result<()> {
        let corrupt = |i: usize, reason: &str| Error::CorruptShared {
            key: keys.hashes[i].clone(),
            reason: reason.to_owned(),
        };
        let meta = |f: &str| {
            self.hashes[1]
                .iter()
                .find(|(k, _)| k == f.as_bytes())
                .and_then(|(_, v)| std::str::from_utf8(v).ok())
        };
        let named = meta("model") == Some(keys.model)
            && meta("id") == Some(keys.id.as_str())
            && meta("merge").and_then(Merge::parse).is_some()
            && meta("version").is_some_and(|v| v.parse::<u64>().is_ok());
        if !named {
            return Err(corrupt(
                1,
                "the meta hash does not name this instance with a strategy and a version",
            ));
        }
        for (f, t) in &self.hashes[2] {
            let ok = std::str::from_utf8(f).is_ok()
                && std::str::from_utf8(t).is_ok_and(|t| Tag::parse(t).is_ok());
            if !ok {
                return Err(corrupt(2, "a field's tag does not parse"));
            }
        }
        for (t, a) in &self.hashes[3] {
            let ok = std::str::from_utf8(t).is_ok_and(|t| TenantId::new(t).is_ok())
                && std::str::from_utf8(a).is_ok_and(|a| Access::parse(a).is_some());
            if !ok {
                return Err(corrupt(
                    3,
                    "a subscriber entry is not a tenant id and an access",
                ));
            }
        }
        decode(&keys.hashes[0], self.hashes[0].clone())?;
        let typed = |key: &str, found: &str, want: &str| match found == "none" || found == want {
            true => Ok(()),
            false => Err(Error::WrongType {
                model: keys.model,
                key: key.to_owned(),
                found: found.to_owned(),
            }),
        };
        typed(&keys.stream, &self.stream_type, "stream")?;
        for g in &self.groups {
            typed(&keys.done(&g.name), &g.done, "zset")?;
            typed(&keys.dead(&g.name), &g.dead, "stream")?;
        }
        Ok(())
    }

    /// The first part in which `other` (the same instance in the target) differs from this
    /// one, named; `None` when they are equal (the paged parts are compared apart).
    pub(super) fn differs(&self, other: &Snapshot) -> Option<String> {
        for (i, what) in HASHES.iter().enumerate() {
            if self.hashes[i] != other.hashes[i] {
                return Some((*what).to_owned());
            }
        }
        if self.stream_type != other.stream_type || self.stream != other.stream {
            return Some("feed stream".to_owned());
        }
        if self.groups.len() != other.groups.len() {
            return Some("consumer groups".to_owned());
        }
        self.groups
            .iter()
            .zip(&other.groups)
            .find(|(a, b)| a != b)
            .map(|(a, _)| format!("consumer group {}", a.name))
    }
}

fn type_of(key: &str) -> redis::Cmd {
    let mut c = redis::cmd("TYPE");
    c.arg(key);
    c
}
