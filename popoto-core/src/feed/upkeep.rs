//! The upkeep of a consumer group's stream: trimming that keeps what live groups need,
//! standing (pending, lag, dead letters), dead letters, destruction.

use std::sync::LazyLock;

use redis::Value;

use super::event::{self, ChangeEvent};
use super::group::FeedGroup;
use super::wire::{flat_get, num, ok_items, parse_entries, parse_id, protocol, text};
use super::OP;
use crate::backend::{Backend, Script};
use crate::error::{Error, Result};
use crate::keys::FeedOf;

/// Trimming that keeps what live groups need (`lua/feed_trim.lua`, after the feed prelude).
pub(crate) static TRIM: LazyLock<Script> =
    LazyLock::new(|| Script::new(crate::script::lua!("feed_common.lua", "feed_trim.lua")));

/// A consumer group's standing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupStats {
    /// Entries delivered to a consumer and not acknowledged yet.
    pub pending: u64,
    /// Entries not delivered to the group yet (`None` when Redis cannot tell, after
    /// deletions in the undelivered range).
    pub lag: Option<u64>,
    /// Consumers the group has seen.
    pub consumers: u64,
    /// The last entry delivered to the group.
    pub last_delivered: String,
    /// Entries in the group's dead letters.
    pub dead_letters: u64,
    /// Entries in the stream.
    pub stream_len: u64,
}

/// What a [`FeedGroup::trim`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrimReport {
    /// Entries removed from the stream.
    pub trimmed: u64,
    /// The lowest entry id kept (empty: nothing was due).
    pub floor: String,
    /// Pending entries of dead groups copied to their dead letters before the trim.
    pub dead_lettered: u64,
    /// Groups found dead (not polled within the retention's `dead_after`).
    pub dead_groups: Vec<String>,
}

/// A dead letter: the entry, why, and how often it was delivered.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// The dead letter's own id.
    pub id: String,
    /// The entry's id in the stream.
    pub source: String,
    /// Why it was given up.
    pub reason: String,
    /// Deliveries before it was given up.
    pub deliveries: u64,
    /// The event, if the entry's data was still there and verifies.
    pub event: Option<ChangeEvent>,
}

/// The consumer groups of a stream: those Redis has and those its meta hash registers.
pub(crate) async fn group_names(backend: &Backend, of: FeedOf<'_>) -> Result<Vec<String>> {
    let stream = backend.layout().feed_stream_key(of);
    let meta = backend.layout().feed_meta_key(of);
    let fields: Vec<String> = backend
        .query(OP, "-", redis::cmd("HKEYS").arg(&meta))
        .await?;
    let mut names: Vec<String> = fields
        .into_iter()
        .filter_map(|f| f.strip_prefix("group:").map(str::to_owned))
        .collect();
    let ty: String = backend
        .query(OP, "-", redis::cmd("TYPE").arg(&stream))
        .await?;
    if ty == "stream" {
        let info: Value = backend
            .query(OP, "-", redis::cmd("XINFO").arg("GROUPS").arg(&stream))
            .await?;
        if let Value::Array(groups) = info {
            for g in groups {
                if let Some(Value::BulkString(n)) = flat_get(&g, "name") {
                    names.push(String::from_utf8_lossy(n).into_owned());
                }
            }
        }
    }
    names.sort();
    names.dedup();
    Ok(names)
}

impl FeedGroup {
    /// Trims the stream to its retention, keeping every entry a live group still needs and
    /// dead-lettering what dead groups held (see [`super::Retention`]).
    pub async fn trim(&self) -> Result<TrimReport> {
        let of = self.source.of();
        for _ in 0..8 {
            let groups = group_names(&self.backend, of).await?;
            let mut keys = vec![self.stream.clone(), self.meta.clone()];
            let mut args: Vec<Vec<u8>> = vec![groups.len().to_string().into_bytes()];
            for g in &groups {
                keys.push(self.backend.layout().feed_done_key(of, g));
                keys.push(self.backend.layout().feed_dead_key(of, g));
                args.push(g.as_bytes().to_vec());
            }
            let reply = self.backend.eval(OP, "-", &TRIM, &keys, &args).await?;
            if matches!(&reply, Value::Array(i) if text(i.first()).as_deref() == Some("changed")) {
                continue;
            }
            let items = ok_items(reply)?;
            return Ok(TrimReport {
                trimmed: num(items.get(1)).unwrap_or(0),
                floor: text(items.get(2)).unwrap_or_default(),
                dead_lettered: num(items.get(3)).unwrap_or(0),
                dead_groups: items.iter().skip(4).filter_map(|v| text(Some(v))).collect(),
            });
        }
        Err(Error::Contention {
            model: "feed",
            key: self.stream.clone(),
            attempts: 8,
        })
    }

    /// Pending entries, lag, consumers and dead letters of the group.
    pub async fn stats(&self) -> Result<GroupStats> {
        let info: Value = self
            .backend
            .query(OP, "-", redis::cmd("XINFO").arg("GROUPS").arg(&self.stream))
            .await?;
        let Value::Array(groups) = &info else {
            return Err(protocol(&info));
        };
        let g = groups
            .iter()
            .find(|g| text(flat_get(g, "name")).as_deref() == Some(self.name.as_str()))
            .ok_or_else(|| protocol(&"the group is gone"))?;
        let mut pipe = redis::pipe();
        pipe.cmd("XLEN")
            .arg(&self.dead)
            .cmd("XLEN")
            .arg(&self.stream);
        let (dead, len): (u64, u64) = self.backend.pipeline(OP, "-", &pipe).await?;
        Ok(GroupStats {
            pending: num(flat_get(g, "pending")).unwrap_or(0),
            lag: num(flat_get(g, "lag")),
            consumers: num(flat_get(g, "consumers")).unwrap_or(0),
            last_delivered: text(flat_get(g, "last-delivered-id")).unwrap_or_default(),
            dead_letters: dead,
            stream_len: len,
        })
    }

    /// The oldest `count` dead letters.
    pub async fn dead_letters(&self, count: usize) -> Result<Vec<DeadLetter>> {
        let reply: Value = self
            .backend
            .query(
                OP,
                "-",
                redis::cmd("XRANGE")
                    .arg(&self.dead)
                    .arg("-")
                    .arg("+")
                    .arg("COUNT")
                    .arg(count),
            )
            .await?;
        let mut out = Vec::new();
        for (id, fields) in parse_entries(reply)? {
            let get = |k: &str| {
                fields
                    .iter()
                    .find(|(f, _)| f == k.as_bytes())
                    .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            };
            let source = get("source").unwrap_or_default();
            let event = parse_id(&source)
                .and_then(|_| event::parse(&self.source, source.clone(), fields.clone()).ok());
            out.push(DeadLetter {
                reason: get("reason").unwrap_or_default(),
                deliveries: get("deliveries").and_then(|d| d.parse().ok()).unwrap_or(0),
                id,
                source,
                event,
            });
        }
        Ok(out)
    }

    /// Destroys the group, its done set and its dead letters.
    pub async fn destroy(self) -> Result<bool> {
        let keys = [
            self.stream.clone(),
            self.meta.clone(),
            self.done.clone(),
            self.dead.clone(),
        ];
        let items = self.script(&keys, &["destroy", &self.name]).await?;
        Ok(num(items.get(1)).unwrap_or(0) > 0)
    }
}
