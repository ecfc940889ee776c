//! A tenant's change feed: its own stream and the streams of the shared instances it may
//! read, resumable from a position, with grants re-checked at every batch.

use std::collections::BTreeMap;
use std::time::Duration;

use redis::Value;

use super::position::{FeedBatch, FeedPosition};
use super::track::{verify, Followed, Tracker};
use super::wire::{parse_xread, Entries};
use super::OP;
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
            .map(|f| (f.source.stream_key_in(own.layout()), self.track.after(f)))
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
            .map(|f| (f.source.stream_key_in(own.layout()), f))
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

/// Reads the tenant's streams on its backend and the shared ones on the shared backend (one
/// `XREAD` when they are the same server), waiting up to `block` on dedicated connections.
async fn read(
    own: &Backend,
    own_reads: &[(String, String)],
    shared: &Backend,
    shared_reads: &[(String, String)],
    count: usize,
    block: Duration,
) -> Result<Entries> {
    if own.url() == shared.url() {
        let all: Vec<_> = own_reads.iter().chain(shared_reads).cloned().collect();
        return xread(own, &all, count, block).await;
    }
    // Two servers: take what is there on either, else wait on both and keep the first answer.
    let mut out = xread(own, own_reads, count, Duration::ZERO).await?;
    if !shared_reads.is_empty() {
        out.extend(xread(shared, shared_reads, count, Duration::ZERO).await?);
    }
    if !out.is_empty() || block.is_zero() {
        return Ok(out);
    }
    if shared_reads.is_empty() {
        return xread(own, own_reads, count, block).await;
    }
    let a = Box::pin(xread(own, own_reads, count, block));
    let b = Box::pin(xread(shared, shared_reads, count, block));
    match futures_util::future::select(a, b).await {
        futures_util::future::Either::Left((r, _))
        | futures_util::future::Either::Right((r, _)) => r,
    }
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
