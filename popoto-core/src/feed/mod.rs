//! Change feeds: every write of a shared instance, and of a private model that opts in
//! (`#[popoto(change_feed)]`), appends a change event to a Redis Stream in the same script
//! call as the write, so an event exists exactly when its write does, whatever is killed when.
//!
//! Streams are per tenant (its private writes) and per shared instance, and trimmed by a
//! [`Retention`]: a length (approximate) and an age. A tenant reads its own stream and the
//! streams of the shared instances it has read access to, re-checked at every batch
//! ([`FeedReader`]); workers share a stream through consumer groups ([`FeedGroup`]), whose
//! trimming never drops an entry a live group still needs, dead-letters what a dead group
//! held, and whose consumers skip entries already done.
//!
//! Guide: `docs/shared-models.md` ("The change feed").

mod event;
mod group;
mod hub;
mod hub_reader;
mod position;
mod reader;
mod track;
mod upkeep;
pub(crate) mod wire;
#[cfg(any(test, feature = "testing"))]
pub(crate) use {group::GROUP, upkeep::TRIM};

use std::time::Duration;

pub use event::{ChangeEvent, ChangeOp};
pub use group::{FeedGroup, GroupReport, GroupStart};
pub use hub::{FeedHub, HubConfig};
pub use hub_reader::HubReader;
pub use position::{FeedBatch, FeedPosition, StreamPos};
pub use reader::FeedReader;
pub use upkeep::{DeadLetter, GroupStats, TrimReport};

pub(crate) use event::parse as parse_event;
pub(crate) use upkeep::group_names;

use crate::admin::Admin;
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::keys::{self, FeedOf, Layout};
use crate::shared::SharedId;
use crate::tenant::TenantId;

/// Label of errors and traces.
const OP: &str = "feed";

/// Whose change feed: a tenant's private writes, or one shared instance's writes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FeedSource {
    /// The tenant's stream.
    Tenant(TenantId),
    /// A shared instance's stream: model class name and id.
    Shared(String, SharedId),
}

impl FeedSource {
    /// The stream of shared instance `id` of model `M`.
    pub fn shared<M: crate::shared::Shareable>(id: &SharedId) -> FeedSource {
        FeedSource::Shared(M::META.name.to_owned(), id.clone())
    }

    pub(crate) fn of(&self) -> FeedOf<'_> {
        match self {
            FeedSource::Tenant(t) => FeedOf::Tenant(t.as_str()),
            FeedSource::Shared(m, id) => FeedOf::Shared(m, id.as_str()),
        }
    }

    /// The stream's key in popoto's layout (for raw inspection through the admin handle).
    pub fn stream_key(&self) -> String {
        keys::feed_stream_key(self.of())
    }

    /// The stream's key in `layout` (a tenant's stream carries its hash tag in the cluster
    /// layout).
    pub fn stream_key_in(&self, layout: Layout) -> String {
        layout.feed_stream_key(self.of())
    }
}

/// How long a stream is kept. Without consumer groups, every append trims the stream to
/// `max_len` (approximately: whole nodes) and to `max_age`; with groups, to the floor the
/// groups' last [`FeedGroup::trim`] computed, which never passes what a live group still needs
/// (a group is dead after `dead_after` without a poll or a consumer's read; what it held is
/// dead-lettered, and once no trim ran for `dead_after` the retention applies again).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Entries kept (default 10,000).
    pub max_len: u64,
    /// Entries older than this are trimmed (default: none).
    pub max_age: Option<Duration>,
    /// A consumer group without activity this long no longer holds trimming back (default
    /// 5 minutes).
    pub dead_after: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            max_len: 10_000,
            max_age: None,
            dead_after: Duration::from_secs(300),
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl Admin {
    /// Sets the retention of a stream (where the tenant lives, for a tenant stream; the shared
    /// backend for a shared instance's).
    pub async fn set_feed_retention(
        &self,
        source: &FeedSource,
        retention: Retention,
    ) -> Result<()> {
        let backend = feed_backend(self, source).await?;
        let meta = backend.layout().feed_meta_key(source.of());
        let mut cmd = redis::cmd("HSET");
        cmd.arg(&meta)
            .arg("maxlen")
            .arg(retention.max_len.max(1))
            .arg("stale")
            .arg(millis(retention.dead_after));
        if let Some(age) = retention.max_age {
            cmd.arg("maxage").arg(millis(age));
        }
        backend.query::<i64>(OP, "-", &cmd).await?;
        if retention.max_age.is_none() {
            backend
                .query::<i64>(OP, "-", redis::cmd("HDEL").arg(&meta).arg("maxage"))
                .await?;
        }
        Ok(())
    }

    /// A consumer group on any stream (created if needed): workers of the host.
    pub async fn feed_group(
        &self,
        source: &FeedSource,
        name: &str,
        start: GroupStart,
    ) -> Result<FeedGroup> {
        let backend = feed_backend(self, source).await?;
        FeedGroup::open(backend, source.clone(), name, start, None).await
    }
}

/// The backend holding a stream: the tenant's for its stream, the shared one otherwise.
async fn feed_backend(admin: &Admin, source: &FeedSource) -> Result<Backend> {
    match source {
        FeedSource::Tenant(t) => admin.on(t).backend().await,
        FeedSource::Shared(..) => admin.db().admin().backend().await,
    }
}

/// Deletes a tenant's stream and its bookkeeping (the tenant is being destroyed): stream,
/// meta hash, and each consumer group's done set and dead letters. Returns the keys deleted.
pub(crate) async fn destroy_tenant_feed(backend: &Backend, tenant: &TenantId) -> Result<u64> {
    let of = FeedOf::Tenant(tenant.as_str());
    let layout = backend.layout();
    let mut keys = vec![layout.feed_stream_key(of), layout.feed_meta_key(of)];
    for g in group_names(backend, of).await? {
        keys.push(layout.feed_done_key(of, &g));
        keys.push(layout.feed_dead_key(of, &g));
    }
    let mut del = redis::cmd("DEL");
    del.arg(&keys);
    // A dry run records the deletion a real run sends.
    if backend.record(&del) {
        return Ok(0);
    }
    backend.query(OP, "-", &del).await
}

/// A group name: not empty, at most 128 bytes, no control characters.
fn check_group_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
        return Err(Error::InvalidValue {
            model: "feed",
            field: "group",
            reason: format!(
                "consumer group or consumer name {:?} must be 1 to 128 bytes without control characters",
                name.chars().take(64).collect::<String>()
            ),
        });
    }
    Ok(())
}
