//! A tenant's change feed: its own stream and the streams of the shared instances it may
//! read, resumable from a position, with grants re-checked at every batch.

use std::collections::BTreeMap;
use std::time::Duration;

use redis::Value;

use super::position::{FeedBatch, FeedPosition};
use super::track::{verify, Followed, Tracker};
use super::wire::{parse_xread, Entries};
use super::{FeedSource, OP};
use crate::backend::Backend;
use crate::db::Session;
use crate::error::{Error, Result};
use crate::shared::{read_grants, Subscription};
use crate::tenant::{Scope, TenantId};

/// A tenant's change feed ([`Session::feed`]).
pub struct FeedReader {
    session: Session,
    track: Tracker,
    opened: bool,
    block: Duration,
    count: usize,
    /// What `open` found, delivered with the first batch.
    first: FeedBatch,
}

impl std::fmt::Debug for FeedReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeedReader")
            .field("tenant", &self.track.tenant)
            .field("position", &self.track.position)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// This tenant's change feed: its own stream and those of the shared instances it may
    /// read. Starts at the current end of every stream unless [`FeedReader::from`] is given.
    pub fn feed(&self) -> Result<FeedReader> {
        Ok(FeedReader {
            session: self.clone(),
            track: Tracker::new(feed_tenant(self)?.clone()),
            opened: false,
            block: Duration::from_secs(1),
            count: 100,
            first: FeedBatch::default(),
        })
    }
}

/// The tenant of a tenant handle: only those have a change feed.
pub(crate) fn feed_tenant(session: &Session) -> Result<&TenantId> {
    match session.scope() {
        Scope::Tenant(tenant) => Ok(tenant),
        _ => Err(Error::SharedScope { model: "feed" }),
    }
}

impl FeedReader {
    /// Resumes after `position` (a stream missing from it: a subscription made since, read
    /// from its start).
    pub fn from(mut self, position: FeedPosition) -> Self {
        self.track.resume(position);
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
        &self.track.position
    }

    /// The subscriptions the reader follows.
    pub fn subscriptions(&self) -> Vec<Subscription> {
        self.track.subscriptions()
    }

    /// Fixes the position of every stream (so no event written after this returns can be
    /// missed) and checks resumed positions: a position past a stream's end is refused
    /// ([`Error::InvalidValue`]), entries trimmed after it are reported as a gap.
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
        self.track.fix(&own, &shared, &mut self.first).await?;
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
        let followed = self.track.followed();
        let reads: Vec<(String, String)> = followed
            .iter()
            .map(|f| (stream_of(f, &own, &shared), self.track.after(f)))
            .collect();
        let (own_reads, shared_reads) = reads.split_at(1);
        let block = if batch.granted.is_empty() && batch.revoked.is_empty() && batch.gaps.is_empty()
        {
            self.block
        } else {
            Duration::ZERO
        };
        let entries = read(&own, own_reads, &shared, shared_reads, self.count, block).await?;
        // Grants again: only streams granted before the read and still now are delivered.
        let now = read_grants(&shared, &self.track.tenant).await?;
        self.track.regrant(now, &mut batch);
        let by_stream: BTreeMap<String, &Followed> = followed
            .iter()
            .map(|f| (stream_of(f, &own, &shared), f))
            .collect();
        for (stream, items) in entries {
            let Some(f) = by_stream.get(&stream) else {
                continue;
            };
            // Revoked (or granted anew) since the read started: nothing is delivered.
            if self.track.follows(f) {
                let reads = verify(&f.source, items);
                self.track.accept(f, &reads, &mut batch);
            }
        }
        Ok(batch)
    }
}

/// The stream key of `f` in the layout of the backend holding it.
fn stream_of(f: &Followed, own: &Backend, shared: &Backend) -> String {
    match f.source {
        FeedSource::Tenant(_) => f.source.stream_key_in(own.layout()),
        FeedSource::Shared(..) => f.source.stream_key_in(shared.layout()),
    }
}

/// Reads the tenant's streams on its backend and the shared ones on the shared backend: one
/// `XREAD` per server, and on a cluster per slot (one `XREAD` reaches one slot). With one read
/// it waits up to `block` on it; with several it takes what is there on any, else waits on all
/// (each on a dedicated connection) and keeps the first answer.
async fn read(
    own: &Backend,
    own_reads: &[(String, String)],
    shared: &Backend,
    shared_reads: &[(String, String)],
    count: usize,
    block: Duration,
) -> Result<Entries> {
    let groups = read_groups(&[(own, own_reads), (shared, shared_reads)]);
    if let [(backend, reads)] = groups.as_slice() {
        return xread(backend, reads, count, block).await;
    }
    let mut out = Vec::new();
    for (backend, reads) in &groups {
        out.extend(xread(backend, reads, count, Duration::ZERO).await?);
    }
    if !out.is_empty() || block.is_zero() || groups.is_empty() {
        return Ok(out);
    }
    let waits = groups
        .iter()
        .map(|(backend, reads)| Box::pin(xread(backend, reads, count, block)));
    let (first, _, _) = futures_util::future::select_all(waits).await;
    first
}

/// One stream to read and the entry id to read after.
pub(crate) type Read = (String, String);

/// The reads of each backend grouped by what one `XREAD` reaches: a server (backends of one
/// URL share their reads), on a cluster one slot.
pub(crate) fn read_groups<'b>(
    by_backend: &[(&'b Backend, &[Read])],
) -> Vec<(&'b Backend, Vec<Read>)> {
    // (server URL, slot): what one `XREAD` reaches.
    type Reach = (String, String);
    let mut groups: Vec<(Reach, &'b Backend, Vec<Read>)> = Vec::new();
    for (backend, reads) in by_backend {
        let url = backend.url();
        for g in backend.slot_groups(reads.iter().map(|(s, _)| s.as_str())) {
            let slot = match backend.is_cluster() {
                true => crate::keys::slot_text(&reads[g[0]].0).to_owned(),
                false => String::new(),
            };
            let key = (url.clone(), slot);
            let part = g.iter().map(|&i| reads[i].clone());
            match groups.iter_mut().find(|(k, _, _)| *k == key) {
                Some((_, _, existing)) => existing.extend(part),
                None => groups.push((key, *backend, part.collect())),
            }
        }
    }
    groups.into_iter().map(|(_, b, r)| (b, r)).collect()
}

/// One `XREAD` (blocking on a dedicated connection, never a shared one).
pub(crate) async fn xread(
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
