//! A tenant's change feed fed by its process's pumps ([`FeedHub::reader`]): the same batches,
//! positions and guarantees as [`super::FeedReader`], without a connection of its own.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;

use super::hub::{Delivery, FeedHub, Pump, Slot, Sub};
use super::position::{FeedBatch, FeedPosition};
use super::reader::{feed_tenant, read_groups, xread};
use super::track::{entry_id, verify, Followed, Tracker};
use super::FeedSource;
use crate::backend::Backend;
use crate::db::Session;
use crate::error::{Error, Result};
use crate::shared::{check_grants, read_grants, Subscription};

/// Catch-up reads per [`HubReader::next`] at most before it waits.
const CATCH_UP_ROUNDS: usize = 8;

/// One stream the reader follows through a pump.
struct Registered {
    pump: Arc<Pump>,
    backend: Backend,
    followed: Followed,
    generation: u64,
    /// Behind the pump's cursor: catching up by reading alone.
    behind: bool,
}

/// A tenant's change feed fed by a [`FeedHub`]: open it, then call [`HubReader::next`] in a
/// loop. Dropping it ends its subscriptions.
pub struct HubReader {
    hub: FeedHub,
    session: Session,
    track: Tracker,
    id: u64,
    slot: Arc<Slot>,
    rx: mpsc::Receiver<Delivery>,
    subs: HashMap<Arc<str>, Registered>,
    generations: u64,
    opened: bool,
    first: FeedBatch,
    poll: Duration,
    next_poll: Instant,
}

impl std::fmt::Debug for HubReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubReader")
            .field("tenant", &self.track.tenant)
            .field("position", &self.track.position)
            .finish_non_exhaustive()
    }
}

impl Drop for HubReader {
    fn drop(&mut self) {
        for (stream, r) in self.subs.drain() {
            r.pump.remove(self.id, r.generation, &stream);
        }
    }
}

fn is_empty(b: &FeedBatch) -> bool {
    b.events.is_empty()
        && b.granted.is_empty()
        && b.revoked.is_empty()
        && b.gaps.is_empty()
        && b.rejected == 0
}

impl FeedHub {
    /// The change feed of `session`'s tenant fed by this hub: what [`Session::feed`] reads, with
    /// the same guarantees, without a dedicated connection of its own.
    pub fn reader(&self, session: &Session) -> Result<HubReader> {
        let id = self.inner.readers.fetch_add(1, Ordering::Relaxed);
        HubReader::new(self.clone(), session, id)
    }
}

impl HubReader {
    pub(crate) fn new(hub: FeedHub, session: &Session, id: u64) -> Result<HubReader> {
        let tenant = feed_tenant(session)?.clone();
        let config = hub.inner.config;
        let (tx, rx) = mpsc::channel(config.buffer);
        Ok(HubReader {
            session: session.clone(),
            track: Tracker::new(tenant),
            id,
            slot: Arc::new(Slot {
                tx,
                overflow: AtomicBool::new(false),
                dropped: Notify::new(),
            }),
            rx,
            subs: HashMap::new(),
            generations: 0,
            opened: false,
            first: FeedBatch::default(),
            poll: config.poll,
            next_poll: Instant::now(),
            hub,
        })
    }

    /// Resumes after `position` (a stream missing from it: a subscription made since, read
    /// from its start).
    pub fn from(mut self, position: FeedPosition) -> Self {
        self.track.resume(position);
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

    /// Fixes the position of every stream and subscribes to them (so no event written after
    /// this returns can be missed); checks resumed positions as [`super::FeedReader::open`].
    pub async fn open(mut self) -> Result<HubReader> {
        self.fix().await?;
        Ok(self)
    }

    async fn fix(&mut self) -> Result<()> {
        if self.opened {
            return Ok(());
        }
        let own = self.session.backend().await?;
        let shared = self.session.shared_backend().await?;
        self.track.fix(&own, &shared, &mut self.first).await?;
        self.reconcile().await?;
        // The first re-read anywhere in the interval: readers opened together (a burst of
        // connections) do not all re-read their grants at the same moment ever after.
        let spread =
            (self.id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) as f64 / (1u64 << 53) as f64;
        self.next_poll = Instant::now() + self.poll.mul_f64(0.5 + spread);
        self.opened = true;
        Ok(())
    }

    /// Subscribes to every stream followed and not subscribed, and ends the subscriptions of
    /// streams no longer followed.
    async fn reconcile(&mut self) -> Result<()> {
        let followed = self.track.followed();
        let (own, shared) = (
            self.session.layout(),
            self.session.shared_backend().await?.layout(),
        );
        let keep: Vec<String> = followed
            .iter()
            .map(|f| match f.source {
                FeedSource::Tenant(_) => f.source.stream_key_in(own),
                FeedSource::Shared(..) => f.source.stream_key_in(shared),
            })
            .collect();
        let gone: Vec<Arc<str>> = self
            .subs
            .iter()
            .filter(|(k, r)| !keep.iter().any(|s| s == &***k) || !followed.contains(&r.followed))
            .map(|(k, _)| k.clone())
            .collect();
        for k in gone {
            if let Some(r) = self.subs.remove(&k) {
                r.pump.remove(self.id, r.generation, &k);
            }
        }
        for (f, key) in followed.into_iter().zip(keep) {
            if self.subs.contains_key(key.as_str()) {
                continue;
            }
            let backend = match f.source {
                FeedSource::Tenant(_) => self.session.backend().await?,
                FeedSource::Shared(..) => self.session.shared_backend().await?,
            };
            self.generations += 1;
            let stream: Arc<str> = key.into();
            let sub = Sub {
                reader: self.id,
                generation: self.generations,
                tenant: self.track.tenant.clone(),
                stream: stream.clone(),
                source: f.source.clone(),
                start: f.start.clone(),
                pos: entry_id(&self.track.after(&f)),
                live: false,
                slot: self.slot.clone(),
            };
            let (pump, live) = self.hub.register(&backend, sub);
            self.subs.insert(
                stream,
                Registered {
                    pump,
                    backend,
                    followed: f,
                    generation: self.generations,
                    behind: !live,
                },
            );
        }
        Ok(())
    }

    fn overflowed(&self) -> Result<()> {
        if self.slot.overflow.load(Ordering::Acquire) {
            return Err(Error::FeedOverflow {
                tenant: self.track.tenant.to_string(),
                buffer: self.hub.inner.config.buffer,
            });
        }
        Ok(())
    }

    /// The next batch: what the pumps handed over (waiting up to the poll interval when
    /// nothing is there), what a subscription behind the pump read to catch up, and the
    /// grants re-read when the poll interval passed or a pump found a grant gone. Events of a
    /// shared stream are delivered only while the grant they were read under holds: the pump
    /// checked it after reading them. [`Error::FeedOverflow`] once the reader fell behind
    /// (open a new one from [`HubReader::position`]).
    pub async fn next(&mut self) -> Result<FeedBatch> {
        self.fix().await?;
        let mut batch = std::mem::take(&mut self.first);
        self.overflowed()?;
        let mut regrant = false;
        while let Ok(d) = self.rx.try_recv() {
            self.take(d, &mut batch, &mut regrant)?;
        }
        for _ in 0..CATCH_UP_ROUNDS {
            if regrant || !batch.events.is_empty() || !self.subs.values().any(|r| r.behind) {
                break;
            }
            self.catch_up(&mut batch, &mut regrant).await?;
        }
        if is_empty(&batch) && !regrant {
            tokio::select! {
                d = self.rx.recv() => {
                    if let Some(d) = d {
                        self.take(d, &mut batch, &mut regrant)?;
                        while let Ok(d) = self.rx.try_recv() {
                            self.take(d, &mut batch, &mut regrant)?;
                        }
                    }
                }
                () = tokio::time::sleep_until(self.next_poll) => {}
                () = self.slot.dropped.notified() => {}
            }
        }
        self.overflowed()?;
        if regrant || Instant::now() >= self.next_poll {
            let shared = self.session.shared_backend().await?;
            let now = read_grants(&shared, &self.track.tenant).await?;
            let revoked = batch.revoked.len();
            self.track.regrant(now, &mut batch);
            // Events of a stream revoked in the same batch are not handed out after it.
            let ended: Vec<FeedSource> = batch.revoked[revoked..]
                .iter()
                .map(|s| FeedSource::Shared(s.model.clone(), s.id.clone()))
                .collect();
            batch.events.retain(|e| !ended.contains(&e.source));
            self.reconcile().await?;
            self.next_poll = Instant::now() + self.poll;
        }
        Ok(batch)
    }

    /// Takes one delivery into the batch.
    fn take(&mut self, d: Delivery, batch: &mut FeedBatch, regrant: &mut bool) -> Result<()> {
        let (stream, generation) = match &d {
            Delivery::Entries {
                stream, generation, ..
            }
            | Delivery::Behind { stream, generation }
            | Delivery::Ended { stream, generation }
            | Delivery::Failed { stream, generation } => (stream.clone(), *generation),
        };
        let Some(r) = self.subs.get_mut(&stream) else {
            return Ok(());
        };
        if r.generation != generation {
            return Ok(());
        }
        match d {
            Delivery::Entries { reads, from, .. } => {
                if !r.behind && self.track.follows(&r.followed) {
                    let reads = reads.get(from..).unwrap_or_default();
                    self.track.accept(&r.followed, reads, batch);
                }
            }
            Delivery::Behind { .. } => r.behind = true,
            Delivery::Ended { .. } => {
                // The pump removed it; the grants tell whether it ended or was made anew.
                self.subs.remove(&stream);
                *regrant = true;
            }
            Delivery::Failed { .. } => {
                return Err(Error::CorruptFeed {
                    stream: stream.to_string(),
                    entry: "-".into(),
                    reason: "the key is not a stream".into(),
                });
            }
        }
        Ok(())
    }

    /// One catch-up read of every subscription behind its pump (without blocking), checked
    /// against the grants; each one that reached the pump's cursor becomes live.
    async fn catch_up(&mut self, batch: &mut FeedBatch, regrant: &mut bool) -> Result<()> {
        let behind: Vec<Arc<str>> = self
            .subs
            .iter()
            .filter(|(_, r)| r.behind)
            .map(|(k, _)| k.clone())
            .collect();
        let mut by_backend: Vec<(Backend, Vec<(String, String)>)> = Vec::new();
        for k in &behind {
            let r = &self.subs[k];
            let read = (k.to_string(), self.track.after(&r.followed));
            match by_backend.iter_mut().find(|(b, _)| b.same_pool(&r.backend)) {
                Some((_, reads)) => reads.push(read),
                None => by_backend.push((r.backend.clone(), vec![read])),
            }
        }
        let count = self.hub.inner.config.count;
        let mut entries = Vec::new();
        // One `XREAD` per server, and on a cluster per slot.
        let parts: Vec<(&Backend, &[(String, String)])> =
            by_backend.iter().map(|(b, r)| (b, r.as_slice())).collect();
        for (backend, reads) in read_groups(&parts) {
            entries.extend(xread(backend, &reads, count, Duration::ZERO).await?);
        }
        // The grants of the shared streams read, checked after the read.
        let tenant = &self.track.tenant;
        let grants: Vec<_> = entries
            .iter()
            .filter_map(|(k, _)| {
                let f = &self.subs.get(k.as_str())?.followed;
                match (&f.source, &f.start) {
                    (FeedSource::Shared(m, id), Some(start)) => {
                        Some((tenant, m.as_str(), id, start.as_str()))
                    }
                    _ => None,
                }
            })
            .collect();
        let shared = self.session.shared_backend().await?;
        let mut held = check_grants(&shared, &grants).await?.into_iter();
        for (k, items) in entries {
            let Some(r) = self.subs.get(k.as_str()) else {
                continue;
            };
            if matches!(r.followed.source, FeedSource::Shared(..))
                && !(r.followed.start.is_some() && held.next() == Some(true))
            {
                *regrant = true;
                continue;
            }
            let reads = verify(&r.followed.source, items);
            self.track.accept(&r.followed, &reads, batch);
        }
        for k in behind {
            let Some(r) = self.subs.get_mut(&k) else {
                continue;
            };
            let pos = self.track.after(&r.followed);
            if r.pump.promote(self.id, r.generation, &k, &pos) {
                r.behind = false;
            }
        }
        Ok(())
    }
}
