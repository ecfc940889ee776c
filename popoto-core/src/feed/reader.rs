//! A tenant's change feed: its own stream and the streams of the shared instances it may
//! read, resumable from a position, with grants re-checked at every batch.

use std::collections::BTreeMap;
use std::time::Duration;

use redis::Value;

use super::event::{self, ChangeEvent};
use super::{FeedSource, OP};
use crate::backend::Backend;
use crate::db::Session;
use crate::error::{Error, Result};
use crate::keys::{self, FeedOf};
use crate::shared::{read_grants, Grant, Subscription};
use crate::tenant::{Scope, TenantId};

/// Where a reader is: the last entry delivered of each stream (serializable, to resume).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FeedPosition {
    /// The tenant's own stream.
    pub tenant: Option<StreamPos>,
    /// Each shared instance's stream, by `<Model>:<id>` (escaped segments).
    pub shared: BTreeMap<String, StreamPos>,
}

/// The last entry delivered of one stream, and its event's version (events of a stream have
/// versions 1, 2, 3...: a jump means entries were trimmed before they were read).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StreamPos {
    /// The entry id (`0-0`: before the first).
    pub entry: String,
    /// Its event's version (0: unknown, no gap check).
    pub version: u64,
}

impl StreamPos {
    /// After entry `entry`, version unknown.
    pub fn after(entry: impl Into<String>) -> StreamPos {
        StreamPos {
            entry: entry.into(),
            version: 0,
        }
    }
}

/// What one [`FeedReader::next`] delivered.
#[derive(Debug, Clone, Default)]
pub struct FeedBatch {
    /// Events, each stream's in order.
    pub events: Vec<ChangeEvent>,
    /// Subscriptions that appeared since the last batch: their events are delivered from the
    /// moment of the subscription on.
    pub granted: Vec<Subscription>,
    /// Subscriptions that ended since the last batch: nothing read after the end is delivered.
    pub revoked: Vec<Subscription>,
    /// Streams whose entries after the reader's position were trimmed before it read them
    /// (read the current values again).
    pub gaps: Vec<FeedSource>,
    /// Entries that failed verification (not popoto's, or another stream's): skipped.
    pub rejected: usize,
}

/// A tenant's change feed ([`Session::feed`]).
pub struct FeedReader {
    session: Session,
    tenant: TenantId,
    position: FeedPosition,
    resumed: bool,
    opened: bool,
    grants: BTreeMap<String, Grant>,
    block: Duration,
    count: usize,
    /// What `open` found, delivered with the first batch.
    first: FeedBatch,
}

impl std::fmt::Debug for FeedReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeedReader")
            .field("tenant", &self.tenant)
            .field("position", &self.position)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// This tenant's change feed: its own stream and those of the shared instances it may
    /// read. Starts at the current end of every stream unless [`FeedReader::from`] is given.
    pub fn feed(&self) -> Result<FeedReader> {
        let Scope::Tenant(tenant) = self.scope() else {
            return Err(Error::SharedScope { model: "feed" });
        };
        Ok(FeedReader {
            session: self.clone(),
            tenant: tenant.clone(),
            position: FeedPosition::default(),
            resumed: false,
            opened: false,
            grants: BTreeMap::new(),
            block: Duration::from_secs(1),
            count: 100,
            first: FeedBatch::default(),
        })
    }
}

fn subscription(g: &Grant) -> Subscription {
    Subscription {
        model: g.model.clone(),
        id: g.id.clone(),
        access: g.access,
    }
}

/// (milliseconds, sequence) of an entry id.
pub(crate) fn parse_id(id: &str) -> Option<(u64, u64)> {
    let (a, b) = id.split_once('-')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

fn id_after(a: &str, b: &str) -> bool {
    parse_id(a) > parse_id(b)
}

impl FeedReader {
    /// Resumes after `position` (a stream missing from it: a subscription made since, read
    /// from its start).
    pub fn from(mut self, position: FeedPosition) -> Self {
        self.position = position;
        self.resumed = true;
        self
    }

    /// How long [`FeedReader::next`] waits for an event (zero: not at all; default 1 s).
    pub fn block(mut self, block: Duration) -> Self {
        self.block = block;
        self
    }

    /// Entries read per stream and batch at most (default 100).
    pub fn count(mut self, count: usize) -> Self {
        self.count = count.max(1);
        self
    }

    /// The position after the last batch delivered.
    pub fn position(&self) -> &FeedPosition {
        &self.position
    }

    /// The subscriptions the reader follows.
    pub fn subscriptions(&self) -> Vec<Subscription> {
        self.grants.values().map(subscription).collect()
    }

    /// Fixes the position of every stream (so no event written after this returns can be
    /// missed) and checks resumed positions for trimmed entries.
    pub async fn open(mut self) -> Result<FeedReader> {
        self.fix_positions().await?;
        Ok(self)
    }

    async fn fix_positions(&mut self) -> Result<()> {
        if self.opened {
            return Ok(());
        }
        let own = self.session.backend().await?;
        let shared = self.session.shared_backend().await?;
        let tenant_source = FeedSource::Tenant(self.tenant.clone());
        match self.position.tenant.clone() {
            Some(pos) => {
                if trimmed_after(&own, &tenant_source.stream_key(), &pos).await? {
                    self.first.gaps.push(tenant_source);
                }
            }
            None => self.position.tenant = Some(last_pos(&own, &tenant_source.stream_key()).await?),
        }
        let grants = read_grants(&shared, &self.tenant).await?;
        let mut known = BTreeMap::new();
        for g in grants {
            let field = keys::shared_grant_field(&g.model, g.id.as_str());
            let source = FeedSource::Shared(g.model.clone(), g.id.clone());
            match self.position.shared.get(&field).cloned() {
                Some(pos) => {
                    if trimmed_after(&shared, &source.stream_key(), &pos).await? {
                        self.first.gaps.push(source);
                    }
                }
                None if self.resumed => {
                    self.position
                        .shared
                        .insert(field.clone(), StreamPos::after(&g.start));
                    self.first.granted.push(subscription(&g));
                }
                None => {
                    let last = last_pos(&shared, &source.stream_key()).await?;
                    self.position.shared.insert(field.clone(), last);
                }
            }
            known.insert(field, g);
        }
        let gone: Vec<String> = self
            .position
            .shared
            .keys()
            .filter(|f| !known.contains_key(*f))
            .cloned()
            .collect();
        for f in gone {
            self.position.shared.remove(&f);
            if let Some((model, id)) = keys::parse_shared_grant_field(&f) {
                if let Ok(id) = crate::shared::SharedId::new(id) {
                    self.first.revoked.push(Subscription {
                        model,
                        id,
                        access: crate::shared::Access::Read,
                    });
                }
            }
        }
        self.grants = known;
        self.opened = true;
        Ok(())
    }

    /// The next batch: waits up to the block time for events of the tenant's stream and of
    /// every shared stream it may read, then re-reads the grants and delivers only the events
    /// of streams still granted (a revoke that returned before the re-read ends delivery).
    pub async fn next(&mut self) -> Result<FeedBatch> {
        self.fix_positions().await?;
        let mut batch = std::mem::take(&mut self.first);
        let own = self.session.backend().await?;
        let shared = self.session.shared_backend().await?;
        let tenant_stream = keys::feed_stream_key(FeedOf::Tenant(self.tenant.as_str()));
        let own_reads = vec![(
            tenant_stream.clone(),
            self.position
                .tenant
                .as_ref()
                .map_or_else(|| "0-0".into(), |p| p.entry.clone()),
        )];
        let shared_reads: Vec<(String, String)> = self
            .grants
            .iter()
            .map(|(field, g)| {
                let stream = keys::feed_stream_key(FeedOf::Shared(&g.model, g.id.as_str()));
                let pos = self
                    .position
                    .shared
                    .get(field)
                    .map_or_else(|| g.start.clone(), |p| p.entry.clone());
                (stream, pos)
            })
            .collect();
        let block = if batch.granted.is_empty() && batch.revoked.is_empty() && batch.gaps.is_empty()
        {
            self.block
        } else {
            Duration::ZERO
        };
        let entries = read(&own, own_reads, &shared, shared_reads, self.count, block).await?;
        // Grants again: only streams still granted are delivered.
        let now: BTreeMap<String, Grant> = read_grants(&shared, &self.tenant)
            .await?
            .into_iter()
            .map(|g| (keys::shared_grant_field(&g.model, g.id.as_str()), g))
            .collect();
        for (field, g) in &self.grants {
            if now.get(field).is_none_or(|n| n.start != g.start) {
                batch.revoked.push(subscription(g));
                self.position.shared.remove(field);
            }
        }
        for (field, g) in &now {
            if self.grants.get(field).is_none_or(|o| o.start != g.start) {
                batch.granted.push(subscription(g));
                self.position
                    .shared
                    .insert(field.clone(), StreamPos::after(&g.start));
            }
        }
        let by_stream: BTreeMap<String, (String, &Grant)> = now
            .iter()
            .map(|(f, g)| {
                (
                    keys::feed_stream_key(FeedOf::Shared(&g.model, g.id.as_str())),
                    (f.clone(), g),
                )
            })
            .collect();
        for (stream, items) in entries {
            let (source, field, start) = if stream == tenant_stream {
                (FeedSource::Tenant(self.tenant.clone()), None, None)
            } else {
                match by_stream.get(&stream) {
                    Some((f, g)) if self.grants.get(f).is_some_and(|o| o.start == g.start) => (
                        FeedSource::Shared(g.model.clone(), g.id.clone()),
                        Some(f.clone()),
                        Some(g.start.clone()),
                    ),
                    // Revoked (or granted anew) since the read started: nothing is delivered.
                    _ => continue,
                }
            };
            let mut gap = false;
            for (id, raw) in items {
                if start.as_ref().is_some_and(|s| !id_after(&id, s)) {
                    continue;
                }
                let pos = match &field {
                    None => self.position.tenant.get_or_insert_with(StreamPos::default),
                    Some(f) => self.position.shared.entry(f.clone()).or_default(),
                };
                match event::parse(&source, id.clone(), raw) {
                    Ok(e) => {
                        gap |= pos.version > 0 && e.version > pos.version + 1;
                        *pos = StreamPos {
                            entry: id,
                            version: e.version,
                        };
                        batch.events.push(e);
                    }
                    Err(e) => {
                        tracing::warn!(stream = %stream, error = %e, "change event rejected");
                        batch.rejected += 1;
                        *pos = StreamPos::after(id);
                    }
                }
            }
            if gap && !batch.gaps.contains(&source) {
                batch.gaps.push(source);
            }
        }
        self.grants = now;
        Ok(batch)
    }
}

/// The fields of a stream entry, raw.
pub(crate) type Fields = Vec<(Vec<u8>, Vec<u8>)>;

/// Entries of each stream read (stream key -> (entry id, fields)).
type Entries = Vec<(String, Vec<(String, Fields)>)>;

/// Reads the tenant's streams on its backend and the shared ones on the shared backend (one
/// `XREAD` when they are the same server), waiting up to `block` on dedicated connections.
async fn read(
    own: &Backend,
    own_reads: Vec<(String, String)>,
    shared: &Backend,
    shared_reads: Vec<(String, String)>,
    count: usize,
    block: Duration,
) -> Result<Entries> {
    if own.url() == shared.url() {
        let all: Vec<_> = own_reads.into_iter().chain(shared_reads).collect();
        return xread(own, &all, count, block).await;
    }
    // Two servers: take what is there on either, else wait on both and keep the first answer.
    let mut out = xread(own, &own_reads, count, Duration::ZERO).await?;
    if !shared_reads.is_empty() {
        out.extend(xread(shared, &shared_reads, count, Duration::ZERO).await?);
    }
    if !out.is_empty() || block.is_zero() {
        return Ok(out);
    }
    if shared_reads.is_empty() {
        return xread(own, &own_reads, count, block).await;
    }
    let a = Box::pin(xread(own, &own_reads, count, block));
    let b = Box::pin(xread(shared, &shared_reads, count, block));
    match futures_util::future::select(a, b).await {
        futures_util::future::Either::Left((r, _))
        | futures_util::future::Either::Right((r, _)) => r,
    }
}

/// One `XREAD` (blocking on a dedicated connection, never a shared one).
async fn xread(
    backend: &Backend,
    reads: &[(String, String)],
    count: usize,
    block: Duration,
) -> Result<Entries> {
    if reads.is_empty() {
        return Ok(Vec::new());
    }
    let mut cmd = redis::cmd("XREAD");
    cmd.arg("COUNT").arg(count);
    if !block.is_zero() {
        cmd.arg("BLOCK")
            .arg(u64::try_from(block.as_millis()).unwrap_or(u64::MAX).max(1));
    }
    cmd.arg("STREAMS");
    for (s, _) in reads {
        cmd.arg(s);
    }
    for (_, id) in reads {
        cmd.arg(id);
    }
    let reply: Value = if block.is_zero() {
        backend.query(OP, "-", &cmd).await?
    } else {
        backend.query_blocking(OP, "-", &cmd).await?
    };
    parse_xread(reply)
}

/// Parses an `XREAD`/`XREADGROUP` reply (nil: nothing).
pub(crate) fn parse_xread(reply: Value) -> Result<Entries> {
    let bad = |v: &dyn std::fmt::Debug| {
        let mut detail = format!("stream read replied {v:?}");
        detail.truncate(200);
        Error::Protocol {
            op: OP,
            model: "-",
            detail,
        }
    };
    let streams = match reply {
        Value::Nil => return Ok(Vec::new()),
        Value::Array(s) => s,
        other => return Err(bad(&other)),
    };
    let mut out = Vec::with_capacity(streams.len());
    for s in streams {
        let Value::Array(pair) = s else {
            return Err(bad(&s));
        };
        let mut it = pair.into_iter();
        let (Some(Value::BulkString(name)), Some(items)) = (it.next(), it.next()) else {
            return Err(bad(&"stream"));
        };
        let name = String::from_utf8(name).map_err(|_| bad(&"stream name"))?;
        out.push((name, parse_entries(items)?));
    }
    Ok(out)
}

/// Entries of one stream: (id, fields); an entry whose data is gone (a pending entry trimmed
/// away) has no fields.
pub(crate) fn parse_entries(items: Value) -> Result<Vec<(String, Fields)>> {
    let bad = |what: &str| Error::Protocol {
        op: OP,
        model: "-",
        detail: format!("malformed stream entry: {what}"),
    };
    let Value::Array(items) = items else {
        return Err(bad("not an array"));
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let Value::Array(pair) = item else {
            return Err(bad("entry"));
        };
        let mut it = pair.into_iter();
        let id = match it.next() {
            Some(Value::BulkString(b)) => String::from_utf8(b).map_err(|_| bad("id"))?,
            _ => return Err(bad("id")),
        };
        let fields = match it.next() {
            Some(Value::Array(kv)) => {
                let mut f = Vec::with_capacity(kv.len() / 2);
                let mut kv = kv.into_iter();
                while let (Some(Value::BulkString(k)), Some(Value::BulkString(v))) =
                    (kv.next(), kv.next())
                {
                    f.push((k, v));
                }
                f
            }
            _ => Vec::new(),
        };
        out.push((id, fields));
    }
    Ok(out)
}

/// The version of an entry's event (0 if it has none that parses).
fn version_of(fields: &[(Vec<u8>, Vec<u8>)]) -> u64 {
    fields
        .iter()
        .find(|(k, _)| k == b"version")
        .and_then(|(_, v)| std::str::from_utf8(v).ok()?.parse().ok())
        .unwrap_or(0)
}

/// The position of a stream's last entry (`0-0` for none).
async fn last_pos(backend: &Backend, stream: &str) -> Result<StreamPos> {
    let reply: Value = backend
        .query(
            OP,
            "-",
            redis::cmd("XREVRANGE")
                .arg(stream)
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(1),
        )
        .await?;
    Ok(parse_entries(reply)?.into_iter().next().map_or_else(
        || StreamPos::after("0-0"),
        |(id, f)| StreamPos {
            version: version_of(&f),
            entry: id,
        },
    ))
}

/// Whether entries after `pos` were trimmed before being read: the first entry after it has a
/// version beyond the next one (positions of unknown version are not checked).
async fn trimmed_after(backend: &Backend, stream: &str, pos: &StreamPos) -> Result<bool> {
    if pos.version == 0 {
        return Ok(false);
    }
    let reply: Value = backend
        .query(
            OP,
            "-",
            redis::cmd("XRANGE")
                .arg(stream)
                .arg(format!("({}", pos.entry))
                .arg("+")
                .arg("COUNT")
                .arg(1),
        )
        .await?;
    Ok(parse_entries(reply)?
        .first()
        .is_some_and(|(_, f)| version_of(f) > pos.version + 1))
}
