//! Consumer groups of a change feed: workers sharing a stream, each entry handled once per
//! group (skipped when already done), dead-lettered after repeated failures, with pending and
//! lag per group, and trimming that keeps what live groups need.

use std::future::Future;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use redis::Value;

use super::event::{self, ChangeEvent};
use super::wire::{num, ok_items, parse_entries, parse_xread, protocol, Fields};
use super::{check_group_name, FeedSource, OP};
use crate::backend::{Backend, Script};
use crate::db::Session;
use crate::error::{Error, Result};
use crate::shared::read_grants;
use crate::tenant::{Scope, TenantId};

/// An entry taken by a consumer: id, fields, and whether it was taken over (redelivered).
type Taken = (String, Fields, bool);

/// Group operations (`lua/feed_group.lua`, after the feed prelude).
pub(crate) static GROUP: LazyLock<Script> =
    LazyLock::new(|| Script::new(crate::script::lua!("feed_common.lua", "feed_group.lua")));

/// Where a new consumer group starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupStart {
    /// At the oldest entry the stream still has.
    Beginning,
    /// After the stream's last entry: only events appended from now on.
    New,
    /// After this entry id.
    After(String),
}

/// What one [`FeedGroup::poll`] did.
#[derive(Debug, Clone, Default)]
pub struct GroupReport {
    /// Entries handled and acknowledged.
    pub done: Vec<String>,
    /// Entries already done by this group (a redelivery after another consumer finished it):
    /// acknowledged without running the handler again.
    pub duplicates: Vec<String>,
    /// Entries whose handler failed: left pending, taken over after the claim delay.
    pub failed: Vec<(String, String)>,
    /// Entries moved to the dead letters (delivered too often, or failing verification).
    pub dead_lettered: Vec<(String, String)>,
    /// Pending entries whose data was trimmed before they were handled (recorded as dead
    /// letters without data).
    pub lost: Vec<String>,
}

/// A consumer group on one stream ([`Session::feed_group`], [`crate::Admin::feed_group`]).
#[derive(Clone)]
pub struct FeedGroup {
    pub(super) backend: Backend,
    pub(super) source: FeedSource,
    pub(super) name: String,
    pub(super) stream: String,
    pub(super) meta: String,
    pub(super) done: String,
    pub(super) dead: String,
    /// A tenant reading a shared stream: its grant is re-checked at every poll.
    pub(super) reader: Option<TenantId>,
    /// Shared backend, where grants live (`reader` only).
    pub(super) grants: Option<Backend>,
    pub(super) claim_after: Duration,
    pub(super) block: Duration,
    pub(super) batch: usize,
    pub(super) max_deliveries: u64,
    pub(super) trim_every: Duration,
    pub(super) last_trim: Arc<Mutex<Option<Instant>>>,
    pub(super) last_beat: Arc<Mutex<Option<Instant>>>,
}

impl std::fmt::Debug for FeedGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeedGroup")
            .field("source", &self.source)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// A consumer group (created if needed) on this tenant's own stream or on the stream of a
    /// shared instance it may read; for a shared stream the grant is checked now and at every
    /// poll ([`Error::NotSubscribed`] once revoked, nothing delivered).
    pub async fn feed_group(
        &self,
        source: &FeedSource,
        name: &str,
        start: GroupStart,
    ) -> Result<FeedGroup> {
        let Scope::Tenant(tenant) = self.scope() else {
            return Err(Error::SharedScope { model: "feed" });
        };
        match source {
            FeedSource::Tenant(t) if t == tenant => {
                FeedGroup::open(self.backend().await?, source.clone(), name, start, None).await
            }
            FeedSource::Tenant(_) => Err(Error::NotSubscribed {
                model: "feed",
                id: crate::db::OTHER_TENANT.to_owned(),
            }),
            FeedSource::Shared(..) => {
                let shared = self.shared_backend().await?;
                let mut g = FeedGroup::open(
                    shared.clone(),
                    source.clone(),
                    name,
                    start,
                    Some(tenant.clone()),
                )
                .await?;
                g.grants = Some(shared);
                Ok(g)
            }
        }
    }
}

impl FeedGroup {
    pub(crate) async fn open(
        backend: Backend,
        source: FeedSource,
        name: &str,
        start: GroupStart,
        reader: Option<TenantId>,
    ) -> Result<FeedGroup> {
        check_group_name(name)?;
        let (of, layout) = (source.of(), backend.layout());
        let group = FeedGroup {
            stream: layout.feed_stream_key(of),
            meta: layout.feed_meta_key(of),
            done: layout.feed_done_key(of, name),
            dead: layout.feed_dead_key(of, name),
            backend,
            source,
            name: name.to_owned(),
            reader,
            grants: None,
            claim_after: Duration::from_secs(30),
            block: Duration::from_secs(1),
            batch: 16,
            max_deliveries: 5,
            trim_every: Duration::from_secs(1),
            last_trim: Arc::new(Mutex::new(None)),
            last_beat: Arc::new(Mutex::new(None)),
        };
        if let (Some(t), FeedSource::Shared(m, id)) = (&group.reader, &group.source) {
            let shared = group.backend.clone();
            check_grant(&shared, t, m, id.as_str()).await?;
        }
        let start = match start {
            GroupStart::Beginning => "0".to_owned(),
            GroupStart::New => "$".to_owned(),
            GroupStart::After(id) => id,
        };
        let reply = group
            .backend
            .eval(
                OP,
                "-",
                &GROUP,
                &[group.stream.clone(), group.meta.clone()],
                &[
                    b"create".to_vec(),
                    name.as_bytes().to_vec(),
                    start.into_bytes(),
                ],
            )
            .await?;
        ok_items(reply)?;
        Ok(group)
    }

    /// How long an entry stays with a consumer that does not acknowledge it before another
    /// takes it over (default 30 s).
    pub fn claim_after(mut self, idle: Duration) -> Self {
        self.claim_after = idle;
        self
    }

    /// How long a poll waits for new entries (zero: not at all; default 1 s).
    pub fn block(mut self, block: Duration) -> Self {
        self.block = block;
        self
    }

    /// Entries a poll takes at most (default 16), and deliveries after which an entry is
    /// dead-lettered (default 5).
    pub fn limits(mut self, batch: usize, max_deliveries: u64) -> Self {
        self.batch = batch.max(1);
        self.max_deliveries = max_deliveries.max(1);
        self
    }

    /// How often polls trim the stream (default every second; zero: every poll).
    pub fn trim_every(mut self, every: Duration) -> Self {
        self.trim_every = every;
        self
    }

    /// The group's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Takes over entries idle longer than the claim delay, then reads new ones, and hands
    /// each (verified) event to `handler` as consumer `consumer`: acknowledged and marked done
    /// when it returns `Ok`, left pending when it fails, dead-lettered once delivered more than
    /// the maximum. An entry this group already finished is acknowledged without running the
    /// handler. A tenant's group on a shared stream re-checks the grant before handing out
    /// anything.
    pub async fn poll<F, Fut, E>(&self, consumer: &str, mut handler: F) -> Result<GroupReport>
    where
        F: FnMut(ChangeEvent) -> Fut,
        Fut: Future<Output = std::result::Result<(), E>>,
        E: std::fmt::Display,
    {
        check_group_name(consumer)?;
        self.beat().await?;
        self.maybe_trim().await?;
        let mut report = GroupReport::default();
        let mut entries = self.claim(consumer, &mut report).await?;
        if entries.len() < self.batch {
            entries.extend(self.read_new(consumer, self.batch - entries.len()).await?);
        }
        if entries.is_empty() {
            return Ok(report);
        }
        if let (Some(t), Some(shared), FeedSource::Shared(m, id)) =
            (&self.reader, &self.grants, &self.source)
        {
            check_grant(shared, t, m, id.as_str()).await?;
        }
        let done = self.done_flags(&entries).await?;
        for ((id, raw, redelivered), already) in entries.into_iter().zip(done) {
            if already {
                self.ack(&id).await?;
                report.duplicates.push(id);
                continue;
            }
            if redelivered {
                let n = self.deliveries(&id).await?;
                if n > self.max_deliveries {
                    let why = format!("delivered {n} times");
                    self.dead_letter(&id, &why, n).await?;
                    report.dead_lettered.push((id, why));
                    continue;
                }
            }
            let event = match event::parse(&self.source, id.clone(), raw) {
                Ok(e) => e,
                Err(e) => {
                    let why = e.to_string();
                    self.dead_letter(&id, &why, 1).await?;
                    report.dead_lettered.push((id, why));
                    continue;
                }
            };
            match handler(event).await {
                Ok(()) => {
                    self.ack(&id).await?;
                    report.done.push(id);
                }
                Err(e) => report.failed.push((id, e.to_string())),
            }
        }
        Ok(report)
    }

    pub(super) async fn script(&self, keys: &[String], args: &[&str]) -> Result<Vec<Value>> {
        let args: Vec<Vec<u8>> = args.iter().map(|a| a.as_bytes().to_vec()).collect();
        ok_items(self.backend.eval(OP, "-", &GROUP, keys, &args).await?)
    }

    async fn ack(&self, id: &str) -> Result<()> {
        let keys = [self.stream.clone(), self.done.clone()];
        self.script(&keys, &["ack", &self.name, id]).await.map(drop)
    }

    async fn dead_letter(&self, id: &str, reason: &str, deliveries: u64) -> Result<()> {
        let keys = [self.stream.clone(), self.done.clone(), self.dead.clone()];
        let n = deliveries.to_string();
        self.script(&keys, &["dead", &self.name, id, reason, &n])
            .await
            .map(drop)
    }

    /// Whether each entry is in the group's done set (one `ZMSCORE`).
    async fn done_flags(&self, entries: &[Taken]) -> Result<Vec<bool>> {
        let mut cmd = redis::cmd("ZMSCORE");
        cmd.arg(&self.done);
        for (id, ..) in entries {
            cmd.arg(id);
        }
        let scores: Vec<Option<f64>> = self.backend.query(OP, "-", &cmd).await?;
        Ok(scores.into_iter().map(|s| s.is_some()).collect())
    }

    async fn deliveries(&self, id: &str) -> Result<u64> {
        let reply: Value = self
            .backend
            .query(
                OP,
                "-",
                redis::cmd("XPENDING")
                    .arg(&self.stream)
                    .arg(&self.name)
                    .arg(id)
                    .arg(id)
                    .arg(1),
            )
            .await?;
        match &reply {
            Value::Array(rows) => match rows.first() {
                Some(Value::Array(row)) => num(row.get(3)).ok_or_else(|| protocol(&reply)),
                None => Ok(0),
                _ => Err(protocol(&reply)),
            },
            _ => Err(protocol(&reply)),
        }
    }

    /// Entries idle past the claim delay, taken over; pending entries whose data was trimmed
    /// are recorded as lost.
    async fn claim(&self, consumer: &str, report: &mut GroupReport) -> Result<Vec<Taken>> {
        let idle = u64::try_from(self.claim_after.as_millis()).unwrap_or(u64::MAX);
        let reply: Value = self
            .backend
            .query(
                OP,
                "-",
                redis::cmd("XAUTOCLAIM")
                    .arg(&self.stream)
                    .arg(&self.name)
                    .arg(consumer)
                    .arg(idle)
                    .arg("0-0")
                    .arg("COUNT")
                    .arg(self.batch),
            )
            .await?;
        let Value::Array(mut parts) = reply else {
            return Err(protocol(&"XAUTOCLAIM"));
        };
        if parts.len() < 2 {
            return Err(protocol(&parts));
        }
        let deleted = parts.get(2).cloned();
        let entries = parse_entries(parts.swap_remove(1))?;
        if let Some(Value::Array(ids)) = deleted {
            for id in ids {
                if let Value::BulkString(b) = id {
                    let id = String::from_utf8_lossy(&b).into_owned();
                    self.dead_letter(&id, "trimmed while pending", 0).await?;
                    report.lost.push(id);
                }
            }
        }
        Ok(entries.into_iter().map(|(id, f)| (id, f, true)).collect())
    }

    /// New entries, waiting up to the block time on a dedicated connection.
    async fn read_new(&self, consumer: &str, count: usize) -> Result<Vec<Taken>> {
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(&self.name)
            .arg(consumer)
            .arg("COUNT")
            .arg(count);
        if !self.block.is_zero() {
            cmd.arg("BLOCK").arg(
                u64::try_from(self.block.as_millis())
                    .unwrap_or(u64::MAX)
                    .max(1),
            );
        }
        cmd.arg("STREAMS").arg(&self.stream).arg(">");
        let reply: Value = if self.block.is_zero() {
            self.backend.query(OP, "-", &cmd).await?
        } else {
            self.backend.query_blocking(OP, "-", &cmd).await?
        };
        Ok(parse_xread(reply)?
            .into_iter()
            .flat_map(|(_, items)| items)
            .map(|(id, f)| (id, f, false))
            .collect())
    }

    /// Records that the group is polled (at most every 250 ms): Redis 7.0 does not count a
    /// read that finds nothing as a consumer's activity, and a polled group is alive.
    async fn beat(&self) -> Result<()> {
        let due = {
            let last = self.last_beat.lock().unwrap_or_else(|p| p.into_inner());
            last.is_none_or(|t| t.elapsed() >= Duration::from_millis(250))
        };
        if due {
            self.script(std::slice::from_ref(&self.meta), &["beat", &self.name])
                .await?;
            *self.last_beat.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        }
        Ok(())
    }

    async fn maybe_trim(&self) -> Result<()> {
        let due = {
            let last = self.last_trim.lock().unwrap_or_else(|p| p.into_inner());
            last.is_none_or(|t| t.elapsed() >= self.trim_every)
        };
        if due {
            self.trim().await?;
            *self.last_trim.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        }
        Ok(())
    }
}

/// Refuses a tenant whose grant to shared instance `id` of `model` is gone.
async fn check_grant(shared: &Backend, tenant: &TenantId, model: &str, id: &str) -> Result<()> {
    let granted = read_grants(shared, tenant)
        .await?
        .iter()
        .any(|g| g.model == model && g.id.as_str() == id);
    if granted {
        return Ok(());
    }
    Err(Error::NotSubscribed {
        model: "feed",
        id: id.to_owned(),
    })
}
