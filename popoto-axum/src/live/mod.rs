//! Live sync over WebSocket: a connection resolved to its tenant (by the same [`crate::Tenancy`]
//! as every request) gets snapshots of the tenant's private models and of the shared instances
//! it is subscribed to, then every change event of its streams, and may write (private models,
//! and shared instances it may write).
//!
//! Everything travels through Redis: the process runs one feed pump per backend
//! ([`popoto_core::feed::FeedHub`]), a blocking read of every stream its connections follow
//! (their tenants' streams and their shared instances'), whose entries it hands to each
//! connection that follows them; so a write made through any process reaches every connection
//! of every process, and a process holds one dedicated Redis connection per backend however
//! many WebSocket connections it serves. A private edit is echoed to the tenant's other
//! connections (not to the one that made it); a shared write to every subscriber, its origin
//! included. Grants are checked again by the pump after each read, before a shared entry is
//! handed to a connection: a revoke ends delivery at the next message. The subscription is
//! confirmed ([`ServerMsg::Subscribed`]) only once the feed position is fixed, so nothing
//! written after the confirmation is missed, and a client that reconnects with its last
//! position resumes exactly after it. A connection that falls behind (its buffer of
//! deliveries is full: the client does not read fast enough) is told `too_slow` and closed,
//! never holding up the others: it reconnects from its position and loses nothing.

mod client;
mod conn;
mod models;
mod render;

use std::sync::Arc;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::State;
use axum::response::Response;
use popoto_core::feed::{ChangeOp, FeedHub, FeedPosition, HubConfig};
use popoto_core::shared::{Access, Shareable};
use popoto_core::Model;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::extract::Tenant;

pub use client::{LiveClient, LiveError, LiveShared};

/// A message from a client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMsg {
    /// The first message: resume after `resume` (a reconnect: no snapshots), or start now.
    Hello {
        /// The last position the client received.
        resume: Option<FeedPosition>,
    },
    /// Save (insert or update) a private instance of the tenant.
    Save {
        /// Echoed in the reply.
        req: u64,
        /// The model's class name.
        model: String,
        /// The instance, as JSON.
        value: Value,
    },
    /// Delete a private instance of the tenant by its key.
    Delete {
        /// Echoed in the reply.
        req: u64,
        /// The model's class name.
        model: String,
        /// The instance key (as in events and snapshots).
        key: String,
    },
    /// Write fields of a shared instance the tenant may write.
    Patch {
        /// Echoed in the reply.
        req: u64,
        /// The model's class name.
        model: String,
        /// The shared id.
        id: String,
        /// Top-level fields to set, as JSON.
        fields: Map<String, Value>,
    },
    /// Read a shared instance the tenant is subscribed to.
    Get {
        /// Echoed in the reply.
        req: u64,
        /// The model's class name.
        model: String,
        /// The shared id.
        id: String,
    },
}

/// A message to a client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMsg {
    /// A current value: a private instance (`shared` false, `key` its instance key) or a shared
    /// instance (`key` its id, with its version and the tenant's access).
    Snapshot {
        /// The model's class name.
        model: String,
        /// Instance key, or shared id.
        key: String,
        /// Whether it is a shared instance.
        shared: bool,
        /// A shared instance's version.
        version: Option<u64>,
        /// The tenant's access to a shared instance.
        access: Option<Access>,
        /// The value.
        value: Value,
    },
    /// Sent once the snapshots are out: the feed position is fixed, nothing written from now
    /// on can be missed.
    Subscribed {
        /// Where the feed starts.
        position: FeedPosition,
    },
    /// A change: the fields written (all of them when `full`).
    Event {
        /// The model's class name.
        model: String,
        /// Instance key, or shared id.
        key: String,
        /// Whether it is a shared instance.
        shared: bool,
        /// What the write did.
        op: ChangeOp,
        /// The shared instance's version, or the tenant stream's counter.
        version: u64,
        /// Its stream entry id: with `version`, the stream's position after this event
        /// ([`FeedPosition::set`]).
        entry: String,
        /// The writer's origin (a connection id for writes made over this endpoint).
        origin: String,
        /// Whether `fields` holds the whole value.
        full: bool,
        /// The fields written, as JSON.
        fields: Map<String, Value>,
    },
    /// The streams whose position moved past the events sent (entries not sent: a private
    /// edit not echoed back, a rejected entry): apply it with [`FeedPosition::merge`]. The
    /// confirmed position, moved by each event and by these, is where to resume after a
    /// reconnect.
    Position {
        /// The streams that moved.
        position: FeedPosition,
    },
    /// The tenant was subscribed to a shared instance (a snapshot follows).
    Granted {
        /// The model's class name.
        model: String,
        /// The shared id.
        id: String,
        /// The access.
        access: Access,
    },
    /// The tenant's subscription ended: nothing of the instance is sent any more (drop its
    /// stream from the position: [`FeedPosition::forget`]).
    Revoked {
        /// The model's class name.
        model: String,
        /// The shared id.
        id: String,
    },
    /// Events were trimmed before they could be sent: read the current values again.
    Gap,
    /// The answer to a request.
    Reply {
        /// The request's number.
        req: u64,
        /// The shared instance's version after a patch, or as read.
        version: Option<u64>,
        /// The value read.
        value: Option<Value>,
    },
    /// A refusal: a fixed code and message (never a key or another tenant's id).
    Error {
        /// The request's number, if the error answers one.
        req: Option<u64>,
        /// Machine-readable code (`read_only`, `not_subscribed`, ...).
        code: String,
        /// Fixed message.
        message: String,
    },
}

/// The live-sync endpoint: the models it serves and the process's feed pumps. Cheap to clone;
/// build one per process (its clones share the pumps).
#[derive(Clone)]
pub struct LiveSync {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) models: models::Registry,
    pub(crate) hub: FeedHub,
    pub(crate) outbox: usize,
    pub(crate) rendered: render::Rendered,
}

impl std::fmt::Debug for LiveSync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveSync")
            .field("hub", &self.inner.hub)
            .finish_non_exhaustive()
    }
}

/// Builds a [`LiveSync`].
pub struct LiveSyncBuilder {
    models: models::Registry,
    feed: HubConfig,
    outbox: usize,
}

impl LiveSync {
    /// A live-sync endpoint; add the models it serves. Connections use the tenant session of
    /// their request (the [`crate::Tenancy`]'s `Db`).
    pub fn builder() -> LiveSyncBuilder {
        LiveSyncBuilder {
            models: models::Registry::default(),
            feed: HubConfig::default(),
            outbox: 256,
        }
    }

    /// The process's feed pumps.
    pub fn hub(&self) -> &FeedHub {
        &self.inner.hub
    }
}

impl LiveSyncBuilder {
    /// Serves the tenant's private instances of `M` (snapshots, saves, deletes; their events
    /// need `#[popoto(change_feed)]`).
    pub fn private<M>(mut self) -> Self
    where
        M: Model + Serialize + DeserializeOwned + Default,
    {
        self.models.add_private::<M>();
        self
    }

    /// Serves the shared instances of `M` the tenant is subscribed to.
    pub fn shared<M>(mut self) -> Self
    where
        M: Shareable + Serialize + DeserializeOwned + Default,
    {
        self.models.add_shared::<M>();
        self
    }

    /// How the feed pumps read and hand out: the pump's block time, each connection's buffer
    /// (deliveries a connection may have waiting before it is closed as too slow) and how
    /// often a connection re-reads its grants (new subscriptions show up within it).
    pub fn feed(mut self, config: HubConfig) -> Self {
        self.feed = config;
        self
    }

    /// Messages a connection may have waiting for its socket (default 256); beyond, its feed
    /// waits, and once the feed's buffer is full too the connection is closed as too slow.
    pub fn outbox(mut self, messages: usize) -> Self {
        self.outbox = messages.max(1);
        self
    }

    /// The endpoint.
    pub fn build(self) -> LiveSync {
        LiveSync {
            inner: Arc::new(Inner {
                models: self.models,
                hub: FeedHub::new(self.feed),
                outbox: self.outbox,
                rendered: render::Rendered::default(),
            }),
        }
    }
}

/// The WebSocket handler: route it under the [`crate::TenancyLayer`] (`get(live_socket)` with
/// the [`LiveSync`] as state); the connection belongs to the request's tenant.
pub async fn live_socket(
    State(live): State<LiveSync>,
    tenant: Tenant,
    ws: WebSocketUpgrade,
) -> Response {
    // Clients send small requests: a small read buffer to start with (it grows if needed),
    // which keeps thousands of idle connections cheap.
    ws.read_buffer_size(4096)
        .on_upgrade(move |socket| conn::serve(live, tenant, socket))
}
