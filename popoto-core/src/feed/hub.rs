//! One feed pump per backend for a whole process (on a Redis Cluster, per hash tag: one
//! `XREAD` reaches one slot): a task that follows, with one blocking `XREAD` on one dedicated
//! connection, every stream any reader of the process needs (tenant
//! streams and shared instances' streams), verifies each entry once, checks the grants of
//! every tenant it is about to hand a shared stream's entries to (one round trip), and hands
//! them to the readers ([`super::HubReader`]) through bounded channels.
//!
//! Each stream has a cursor: the last entry the pump read. A reader's subscription to a stream
//! is *live* when its position is at or after the cursor: every read hands it the entries
//! after its own position, so none is missed or repeated. A subscription behind the cursor (a
//! resume, a new grant) catches up by reading alone, without blocking, until it reaches the
//! cursor; the pump never reads back for it, so it holds no one up. A reader whose channel is
//! full is dropped ([`crate::Error::FeedOverflow`]): the pump never waits for a reader, and
//! buffers at most `buffer` deliveries per reader.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use redis::Value;
use tokio::sync::{mpsc, Notify};

use super::track::{entry_id, verify, EntryId, Read};
use super::wire::{parse_xread, Entries};
use super::{FeedSource, OP};
use crate::backend::{Backend, Held};
use crate::error::Result;
use crate::keys;
use crate::shared::{check_grants, SharedId};
use crate::tenant::TenantId;

/// How a [`FeedHub`] reads and hands out: chainable setters over the defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HubConfig {
    pub(crate) block: Duration,
    pub(crate) count: usize,
    pub(crate) buffer: usize,
    pub(crate) poll: Duration,
}

impl Default for HubConfig {
    /// 2 s block, 100 entries per stream and read, 1,024 deliveries per reader, grants
    /// re-read every second.
    fn default() -> Self {
        HubConfig {
            block: Duration::from_secs(2),
            count: 100,
            buffer: 1024,
            poll: Duration::from_secs(1),
        }
    }
}

impl HubConfig {
    /// How long the pump's read waits for an entry (it is cut short when a stream is added;
    /// keep it under the backend's response timeout).
    pub fn block(mut self, block: Duration) -> Self {
        self.block = block.max(Duration::from_millis(1));
        self
    }

    /// Entries read per stream and read at most.
    pub fn count(mut self, count: usize) -> Self {
        self.count = count.max(1);
        self
    }

    /// Deliveries (one stream's entries of one read each) a reader may have waiting before it
    /// is dropped.
    pub fn buffer(mut self, buffer: usize) -> Self {
        self.buffer = buffer.max(1);
        self
    }

    /// How often a reader re-reads its tenant's grants when nothing else makes it (new
    /// subscriptions, and revokes of streams nobody writes, show up within this).
    pub fn poll(mut self, poll: Duration) -> Self {
        self.poll = poll.max(Duration::from_millis(1));
        self
    }
}

/// The feed pumps of a process, one per backend, started by the first reader that needs one
/// and stopped when their last reader goes. Cheap to clone.
#[derive(Clone)]
pub struct FeedHub {
    pub(crate) inner: Arc<HubInner>,
}

pub(crate) struct HubInner {
    pub(crate) config: HubConfig,
    pumps: Mutex<Vec<Arc<Pump>>>,
    pub(super) readers: AtomicU64,
}

impl std::fmt::Debug for FeedHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeedHub")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl Default for FeedHub {
    fn default() -> Self {
        FeedHub::new(HubConfig::default())
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl FeedHub {
    /// A hub; nothing runs until a reader opens.
    pub fn new(config: HubConfig) -> FeedHub {
        FeedHub {
            inner: Arc::new(HubInner {
                config,
                pumps: Mutex::new(Vec::new()),
                readers: AtomicU64::new(0),
            }),
        }
    }

    /// Streams followed by the pumps now (for tests and metrics).
    pub fn streams(&self) -> usize {
        lock(&self.inner.pumps)
            .iter()
            .map(|p| lock(&p.state).streams.len())
            .sum()
    }

    /// Adds a subscription to the pump of `backend` (started if needed); whether it is live.
    pub(crate) fn register(&self, backend: &Backend, sub: Sub) -> (Arc<Pump>, bool) {
        let tag = backend
            .is_cluster()
            .then(|| keys::hash_tag(&sub.stream).map(Arc::from))
            .flatten();
        let mut pumps = lock(&self.inner.pumps);
        let pump = match pumps
            .iter()
            .find(|p| p.backend.same_pool(backend) && p.tag == tag)
        {
            Some(p) => p.clone(),
            None => {
                let p = Arc::new(Pump {
                    backend: backend.clone(),
                    tag,
                    hub: Arc::downgrade(&self.inner),
                    config: self.inner.config,
                    state: Mutex::new(State::default()),
                    wake: Notify::new(),
                });
                pumps.push(p.clone());
                tokio::spawn(p.clone().run());
                p
            }
        };
        let live = pump.add(sub);
        (pump, live)
    }
}

/// What a pump hands a reader.
#[derive(Debug)]
pub(crate) enum Delivery {
    /// Entries of `stream` after the subscription's position: `reads[from..]`.
    Entries {
        stream: Arc<str>,
        generation: u64,
        reads: Arc<[Read]>,
        from: usize,
    },
    /// The subscription fell behind the cursor: catch up alone.
    Behind { stream: Arc<str>, generation: u64 },
    /// The grant behind the subscription is gone or was made anew: it was removed.
    Ended { stream: Arc<str>, generation: u64 },
    /// The key is not a stream: the subscription was removed.
    Failed { stream: Arc<str>, generation: u64 },
}

/// A reader's end of its deliveries.
#[derive(Debug)]
pub(crate) struct Slot {
    pub(crate) tx: mpsc::Sender<Delivery>,
    /// Set when the channel was full: the reader was dropped.
    pub(crate) overflow: AtomicBool,
    pub(crate) dropped: Notify,
}

/// One reader's subscription to one stream.
#[derive(Debug)]
pub(crate) struct Sub {
    pub(crate) reader: u64,
    pub(crate) generation: u64,
    pub(crate) tenant: TenantId,
    pub(crate) stream: Arc<str>,
    pub(crate) source: FeedSource,
    /// The grant's start (shared streams).
    pub(crate) start: Option<String>,
    /// The last entry handed to it.
    pub(crate) pos: EntryId,
    pub(crate) live: bool,
    pub(crate) slot: Arc<Slot>,
}

struct Stream {
    source: FeedSource,
    /// The last entry the pump read (every live subscription is at or after it).
    cursor: EntryId,
    subs: Vec<Sub>,
}

#[derive(Default)]
struct State {
    streams: HashMap<Arc<str>, Stream>,
    /// Streams of the read in flight.
    reading: HashSet<Arc<str>>,
}

/// The pump of one backend.
pub(crate) struct Pump {
    backend: Backend,
    /// On a cluster, the hash tag of the streams it reads: one `XREAD` reaches one slot, so
    /// a cluster has a pump per tag (`None` on one server).
    tag: Option<Arc<str>>,
    hub: Weak<HubInner>,
    config: HubConfig,
    state: Mutex<State>,
    wake: Notify,
}

/// Where each (tenant, grant start) of a stream is in a fan-out's check.
type Places = HashMap<TenantId, Vec<(String, usize)>>;

/// Sends `d`; false when the reader must be dropped (full) or is gone.
fn deliver(sub: &Sub, d: Delivery) -> bool {
    match sub.slot.tx.try_send(d) {
        Ok(()) => true,
        Err(mpsc::error::TrySendError::Full(_)) => {
            sub.slot.overflow.store(true, Ordering::Release);
            sub.slot.dropped.notify_one();
            false
        }
        Err(mpsc::error::TrySendError::Closed(_)) => false,
    }
}

impl Pump {
    fn add(&self, sub: Sub) -> bool {
        let mut st = lock(&self.state);
        let key = sub.stream.clone();
        let stream = st.streams.entry(key.clone()).or_insert_with(|| Stream {
            source: sub.source.clone(),
            cursor: sub.pos,
            subs: Vec::new(),
        });
        let live = if stream.subs.iter().any(|s| s.live) {
            sub.pos >= stream.cursor
        } else {
            stream.cursor = sub.pos;
            true
        };
        stream.subs.push(Sub { live, ..sub });
        let wake = live && !st.reading.contains(&key);
        drop(st);
        if wake {
            self.wake.notify_one();
        }
        live
    }

    /// Makes a caught-up subscription live: its position is at or after the cursor.
    pub(crate) fn promote(&self, reader: u64, generation: u64, stream: &str, pos: &str) -> bool {
        let pos = entry_id(pos);
        let mut st = lock(&self.state);
        let reading = st.reading.contains(stream);
        let Some(s) = st.streams.get_mut(stream) else {
            return false;
        };
        let has_live = s.subs.iter().any(|s| s.live);
        if has_live && s.cursor > pos {
            return false;
        }
        let Some(sub) = s
            .subs
            .iter_mut()
            .find(|s| s.reader == reader && s.generation == generation)
        else {
            return false;
        };
        sub.live = true;
        sub.pos = pos;
        if !has_live {
            s.cursor = pos;
        }
        drop(st);
        if !reading {
            self.wake.notify_one();
        }
        true
    }

    /// Removes a subscription.
    pub(crate) fn remove(&self, reader: u64, generation: u64, stream: &str) {
        let mut st = lock(&self.state);
        if let Some(s) = st.streams.get_mut(stream) {
            s.subs
                .retain(|s| !(s.reader == reader && s.generation == generation));
            if s.subs.is_empty() {
                st.streams.remove(stream);
            }
        }
        let empty = st.streams.is_empty();
        drop(st);
        if empty {
            self.wake.notify_one();
        }
    }

    /// Drops every subscription of these readers (full, or gone).
    fn drop_readers(st: &mut State, readers: &HashSet<u64>) {
        if readers.is_empty() {
            return;
        }
        st.streams.retain(|_, s| {
            s.subs.retain(|sub| !readers.contains(&sub.reader));
            !s.subs.is_empty()
        });
    }

    /// Leaves the hub when no stream is followed; whether it did.
    fn retire(self: &Arc<Self>) -> bool {
        let Some(hub) = self.hub.upgrade() else {
            return true;
        };
        let mut pumps = lock(&hub.pumps);
        if !lock(&self.state).streams.is_empty() {
            return false;
        }
        pumps.retain(|p| !Arc::ptr_eq(p, self));
        true
    }

    async fn run(self: Arc<Self>) {
        let mut held: Option<Held> = None;
        loop {
            let reads: Vec<(Arc<str>, EntryId)> = {
                let mut st = lock(&self.state);
                let reads: Vec<_> = st
                    .streams
                    .iter()
                    .filter(|(_, s)| s.subs.iter().any(|s| s.live))
                    .map(|(k, s)| (k.clone(), s.cursor))
                    .collect();
                st.reading = reads.iter().map(|(k, _)| k.clone()).collect();
                reads
            };
            if reads.is_empty() {
                if self.retire() {
                    return;
                }
                self.wake.notified().await;
                continue;
            }
            let conn = match &mut held {
                Some(h) => h,
                None => match self.backend.hold(OP).await {
                    Ok(h) => held.insert(h),
                    Err(e) => {
                        tracing::warn!(error = %e, "feed pump: no connection");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                },
            };
            match self.read(conn, &reads).await {
                Ok(entries) => self.fan_out(&reads, entries).await,
                Err(e) if e.is_connection_error() => {
                    tracing::warn!(error = %e, "feed pump: read failed");
                    held = None;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "feed pump: read refused");
                    self.drop_bad_streams(&reads).await;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    /// One blocking read of every live stream, cut short (`CLIENT UNBLOCK`) when a stream
    /// is added.
    async fn read(&self, held: &mut Held, reads: &[(Arc<str>, EntryId)]) -> Result<Entries> {
        let mut cmd = redis::cmd("XREAD");
        cmd.arg("COUNT")
            .arg(self.config.count)
            .arg("BLOCK")
            .arg(u64::try_from(self.config.block.as_millis()).unwrap_or(u64::MAX))
            .arg("STREAMS");
        for (s, _) in reads {
            cmd.arg(&**s);
        }
        for (_, (ms, seq)) in reads {
            cmd.arg(format!("{ms}-{seq}"));
        }
        let id = held.id;
        let fut = self.backend.query_held::<Value>(held, OP, &cmd);
        tokio::pin!(fut);
        let mut cut = false;
        let reply = loop {
            tokio::select! {
                r = &mut fut => break r,
                () = self.wake.notified(), if !cut && id.is_some() => cut = true,
                // The read may not have reached the server yet: unblock until it answers.
                () = tokio::time::sleep(Duration::from_millis(2)), if cut => {
                    if let Some(id) = id {
                        // Done, or refused (an ACL without CLIENT): the read ends on its own.
                        if !matches!(self.backend.unblock(OP, id).await, Ok(false)) {
                            cut = false;
                        }
                    }
                }
            }
        };
        parse_xread(reply?)
    }

    /// Hands what was read to the live subscriptions, after checking the grants of every
    /// tenant about to receive a shared stream's entries.
    async fn fan_out(&self, reads: &[(Arc<str>, EntryId)], entries: Entries) {
        let from: HashMap<&str, EntryId> = reads.iter().map(|(k, c)| (&**k, *c)).collect();
        let mut got = Vec::with_capacity(entries.len());
        // The grants to check: each (tenant, start) of a shared stream's live subscriptions
        // once, by stream, with its place in the check.
        let mut followed: Vec<(TenantId, String, SharedId, String)> = Vec::new();
        let mut places: HashMap<Arc<str>, Places> = HashMap::new();
        {
            let st = lock(&self.state);
            for (name, items) in entries {
                let (Some((key, s)), Some(&from)) = (
                    st.streams.get_key_value(name.as_str()),
                    from.get(name.as_str()),
                ) else {
                    continue;
                };
                if let FeedSource::Shared(m, id) = &s.source {
                    let of = places.entry(key.clone()).or_default();
                    for sub in s.subs.iter().filter(|s| s.live) {
                        let start = sub.start.as_deref().unwrap_or_default();
                        let starts = of.entry(sub.tenant.clone()).or_default();
                        if !starts.iter().any(|(s, _)| s == start) {
                            starts.push((start.to_owned(), followed.len()));
                            followed.push((
                                sub.tenant.clone(),
                                m.clone(),
                                id.clone(),
                                start.into(),
                            ));
                        }
                    }
                }
                got.push((key.clone(), s.source.clone(), from, items));
            }
        }
        let got: Vec<(Arc<str>, EntryId, Arc<[Read]>)> = got
            .into_iter()
            .map(|(key, source, from, items)| (key, from, verify(&source, items).into()))
            .collect();
        let grants: Vec<_> = followed
            .iter()
            .map(|(t, m, id, start)| (t, m.as_str(), id, start.as_str()))
            .collect();
        let held: Vec<bool> = match check_grants(&self.backend, &grants).await {
            Ok(held) => held,
            Err(e) => {
                // Unchecked: nothing of a shared stream is handed out; its readers catch up.
                tracing::warn!(error = %e, "feed pump: grants could not be checked");
                places.clear();
                Vec::new()
            }
        };
        let mut st = lock(&self.state);
        let mut dropped = HashSet::new();
        for (key, from, reads) in got {
            let Some(s) = st.streams.get_mut(&key) else {
                continue;
            };
            let shared = matches!(s.source, FeedSource::Shared(..));
            let checked = places.get(&key);
            s.subs.retain_mut(|sub| {
                if !sub.live {
                    return true;
                }
                let (generation, stream) = (sub.generation, key.clone());
                // Shared: Some(held) once checked, None if registered since the check.
                let start = sub.start.as_deref().unwrap_or_default();
                let grant = checked
                    .and_then(|c| c.get(&sub.tenant)?.iter().find(|(s, _)| s == start))
                    .map(|&(_, i)| held.get(i).copied().unwrap_or(false));
                let d = match (shared, grant) {
                    // Ended: the grant is gone or was made anew.
                    (true, Some(false)) => {
                        if !deliver(sub, Delivery::Ended { stream, generation }) {
                            dropped.insert(sub.reader);
                        }
                        return false;
                    }
                    // Registered since the check, or behind this read: it catches up alone.
                    (true, None) => Delivery::Behind { stream, generation },
                    _ if from > sub.pos => Delivery::Behind { stream, generation },
                    _ => {
                        let i = reads.partition_point(|r| r.at <= sub.pos);
                        let Some(last) = reads.last().filter(|_| i < reads.len()) else {
                            return true;
                        };
                        sub.pos = last.at;
                        Delivery::Entries {
                            stream,
                            generation,
                            reads: reads.clone(),
                            from: i,
                        }
                    }
                };
                if matches!(d, Delivery::Behind { .. }) {
                    sub.live = false;
                }
                if !deliver(sub, d) {
                    dropped.insert(sub.reader);
                }
                true
            });
            if let Some(last) = reads.last() {
                s.cursor = s.cursor.max(last.at);
            }
        }
        st.streams.retain(|_, s| !s.subs.is_empty());
        Self::drop_readers(&mut st, &dropped);
    }

    /// After a refused read: the streams whose key holds something else are dropped, their
    /// readers told.
    async fn drop_bad_streams(&self, reads: &[(Arc<str>, EntryId)]) {
        let mut pipe = redis::pipe();
        for (s, _) in reads {
            pipe.cmd("TYPE").arg(&**s);
        }
        let types: Vec<String> = match self.backend.pipeline(OP, "-", &pipe).await {
            Ok(t) => t,
            Err(_) => return,
        };
        let mut st = lock(&self.state);
        let mut dropped = HashSet::new();
        for ((key, _), t) in reads.iter().zip(types) {
            if t == "stream" || t == "none" {
                continue;
            }
            tracing::warn!(key = %key, kind = %t, "feed pump: not a stream, dropped");
            if let Some(s) = st.streams.remove(key) {
                for sub in &s.subs {
                    let (stream, generation) = (key.clone(), sub.generation);
                    if !deliver(sub, Delivery::Failed { stream, generation }) {
                        dropped.insert(sub.reader);
                    }
                }
            }
        }
        Self::drop_readers(&mut st, &dropped);
    }
}
