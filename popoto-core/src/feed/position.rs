//! Where a reader is, and what one read delivers: plain, serializable values that readers,
//! trackers and the hub share.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::event::ChangeEvent;
use super::FeedSource;
use crate::keys;
use crate::shared::Subscription;

/// Where a reader is: the last entry delivered of each stream (serializable, to resume).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FeedPosition {
    /// The tenant's own stream.
    pub tenant: Option<StreamPos>,
    /// Each shared instance's stream, by `<Model>:<id>` (escaped segments).
    pub shared: BTreeMap<String, StreamPos>,
}

impl FeedPosition {
    /// The streams whose position differs from `before` (what moved since): sent instead of
    /// the whole position, and applied with [`FeedPosition::merge`].
    pub fn moved_since(&self, before: &FeedPosition) -> FeedPosition {
        FeedPosition {
            tenant: self
                .tenant
                .clone()
                .filter(|t| before.tenant.as_ref() != Some(t)),
            shared: self
                .shared
                .iter()
                .filter(|(f, p)| before.shared.get(*f) != Some(*p))
                .map(|(f, p)| (f.clone(), p.clone()))
                .collect(),
        }
    }

    /// Applies what moved ([`FeedPosition::moved_since`]).
    pub fn merge(&mut self, moved: FeedPosition) {
        if moved.tenant.is_some() {
            self.tenant = moved.tenant;
        }
        self.shared.extend(moved.shared);
    }

    /// Sets the position of one stream: the tenant's (`None`), or shared instance
    /// `(model, id)`'s (a client following events one by one).
    pub fn set(&mut self, stream: Option<(&str, &str)>, pos: StreamPos) {
        match stream {
            None => self.tenant = Some(pos),
            Some((model, id)) => {
                self.shared.insert(keys::shared_grant_field(model, id), pos);
            }
        }
    }

    /// Drops the stream of shared instance `id` of `model` (a subscription that ended).
    pub fn forget(&mut self, model: &str, id: &crate::shared::SharedId) {
        self.shared
            .remove(&keys::shared_grant_field(model, id.as_str()));
    }

    /// Whether nothing is in it.
    pub fn is_empty(&self) -> bool {
        self.tenant.is_none() && self.shared.is_empty()
    }
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

/// What one [`FeedReader::next`](super::FeedReader::next) delivered.
#[derive(Debug, Clone, Default)]
pub struct FeedBatch {
    /// Events, each stream's in order (shared with the other readers they were handed to).
    pub events: Vec<Arc<ChangeEvent>>,
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
