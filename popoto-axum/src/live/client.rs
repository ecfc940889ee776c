//! The Rust client of the live-sync endpoint (tokio-tungstenite): the same reads and writes as
//! a local session, and the messages the server pushes.

use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use popoto_core::feed::{FeedPosition, StreamPos};
use popoto_core::shared::{Patch, Shareable, SharedId};
use popoto_core::{Key, Model};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

use super::{ClientMsg, ServerMsg};

/// Why a live-sync call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiveError {
    /// The connection could not be made, or broke.
    Connection(String),
    /// The server refused the request: its fixed code and message.
    Refused {
        /// Machine-readable code (`read_only`, `not_subscribed`, ...).
        code: String,
        /// Fixed message.
        message: String,
    },
    /// A value could not be turned into JSON or back, or the server answered oddly.
    Protocol(String),
}

impl fmt::Display for LiveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LiveError::Connection(e) => write!(f, "live-sync connection: {e}"),
            LiveError::Refused { code, message } => write!(f, "refused ({code}): {message}"),
            LiveError::Protocol(e) => write!(f, "live-sync protocol: {e}"),
        }
    }
}

impl std::error::Error for LiveError {}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<ServerMsg>>>>;

/// A live-sync connection: [`LiveClient::next`] yields what the server pushes (snapshots,
/// events, grants, the position), and the write calls mirror a tenant session's.
pub struct LiveClient {
    out: UnboundedSender<ClientMsg>,
    pushed: UnboundedReceiver<ServerMsg>,
    pending: Pending,
    next_req: AtomicU64,
    position: Arc<Mutex<Option<FeedPosition>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl fmt::Debug for LiveClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiveClient").finish_non_exhaustive()
    }
}

impl Drop for LiveClient {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl LiveClient {
    /// Connects to `url` (`ws://host/path`) with these request headers (the credentials and
    /// tenant selection the server's [`crate::Tenancy`] reads), resuming after `resume` (a
    /// reconnect) or starting with snapshots.
    pub async fn connect(
        url: &str,
        headers: &[(&str, &str)],
        resume: Option<FeedPosition>,
    ) -> Result<LiveClient, LiveError> {
        let mut request = url
            .into_client_request()
            .map_err(|e| LiveError::Connection(e.to_string()))?;
        for (k, v) in headers {
            let value =
                HeaderValue::from_str(v).map_err(|e| LiveError::Connection(e.to_string()))?;
            let name: tokio_tungstenite::tungstenite::http::HeaderName = k
                .parse()
                .map_err(|_| LiveError::Connection(format!("bad header name {k:?}")))?;
            request.headers_mut().insert(name, value);
        }
        // Requests go out at once (no Nagle delay); a small read buffer (it grows for big
        // messages), which the reads would otherwise clear in full every time.
        let config = WebSocketConfig::default().read_buffer_size(4096);
        let (ws, _) = tokio_tungstenite::connect_async_with_config(request, Some(config), true)
            .await
            .map_err(|e| LiveError::Connection(e.to_string()))?;
        let (mut sink, mut stream) = ws.split();
        let (out, mut outbox) = unbounded_channel::<ClientMsg>();
        let (push, pushed) = unbounded_channel::<ServerMsg>();
        let pending: Pending = Arc::default();
        let position: Arc<Mutex<Option<FeedPosition>>> = Arc::default();
        let writer = tokio::spawn(async move {
            while let Some(m) = outbox.recv().await {
                let Ok(text) = serde_json::to_string(&m) else {
                    continue;
                };
                if sink.send(Message::Text(text.into())).await.is_err() {
                    break;
                }
            }
        });
        let (p, pos) = (pending.clone(), position.clone());
        let reader = tokio::spawn(async move {
            while let Some(Ok(frame)) = stream.next().await {
                let Message::Text(text) = frame else {
                    continue;
                };
                let Ok(msg) = serde_json::from_str::<ServerMsg>(text.as_str()) else {
                    continue;
                };
                let req = match &msg {
                    ServerMsg::Reply { req, .. } => Some(*req),
                    ServerMsg::Error { req, .. } => *req,
                    ServerMsg::Subscribed { position } => {
                        *lock(&pos) = Some(position.clone());
                        None
                    }
                    ServerMsg::Event {
                        model,
                        key,
                        shared,
                        entry,
                        version,
                        ..
                    } => {
                        if let Some(p) = lock(&pos).as_mut() {
                            let stream = shared.then_some((model.as_str(), key.as_str()));
                            let at = StreamPos {
                                entry: entry.clone(),
                                version: *version,
                            };
                            p.set(stream, at);
                        }
                        None
                    }
                    ServerMsg::Position { position } => {
                        if let Some(p) = lock(&pos).as_mut() {
                            p.merge(position.clone());
                        }
                        None
                    }
                    ServerMsg::Revoked { model, id } => {
                        if let (Some(p), Ok(id)) = (lock(&pos).as_mut(), SharedId::new(id)) {
                            p.forget(model, &id);
                        }
                        None
                    }
                    _ => None,
                };
                if let Some(waiter) = req.and_then(|r| lock(&p).remove(&r)) {
                    let _ = waiter.send(msg);
                    continue;
                }
                if push.send(msg).is_err() {
                    break;
                }
            }
            // The connection is gone: every waiting request fails.
            lock(&p).clear();
        });
        out.send(ClientMsg::Hello { resume })
            .map_err(|_| LiveError::Connection("closed before the hello".into()))?;
        Ok(LiveClient {
            out,
            pushed,
            pending,
            next_req: AtomicU64::new(1),
            position,
            tasks: vec![writer, reader],
        })
    }

    /// The next message the server pushed; `None` once the connection is closed.
    pub async fn next(&mut self) -> Option<ServerMsg> {
        self.pushed.recv().await
    }

    /// The position after the last events received (to reconnect with); `None` before the
    /// subscription is confirmed.
    pub fn position(&self) -> Option<FeedPosition> {
        lock(&self.position).clone()
    }

    async fn request(&self, build: impl FnOnce(u64) -> ClientMsg) -> Result<ServerMsg, LiveError> {
        let req = self.next_req.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(req, tx);
        self.out
            .send(build(req))
            .map_err(|_| LiveError::Connection("closed".into()))?;
        match rx.await {
            Ok(ServerMsg::Error { code, message, .. }) => Err(LiveError::Refused { code, message }),
            Ok(reply) => Ok(reply),
            Err(_) => Err(LiveError::Connection("closed before the reply".into())),
        }
    }

    /// Saves (inserts or updates) a private instance of the connection's tenant.
    pub async fn save<M: Model + Serialize>(&self, value: &M) -> Result<(), LiveError> {
        let value = serde_json::to_value(value).map_err(|e| LiveError::Protocol(e.to_string()))?;
        let model = M::META.name.to_owned();
        self.request(|req| ClientMsg::Save { req, model, value })
            .await
            .map(drop)
    }

    /// Deletes a private instance of the connection's tenant.
    pub async fn delete<M: Model>(&self, key: &Key<M>) -> Result<(), LiveError> {
        let (model, key) = (M::META.name.to_owned(), key.redis_key());
        self.request(|req| ClientMsg::Delete { req, model, key })
            .await
            .map(drop)
    }

    /// The shared instances of `M` the tenant is subscribed to.
    pub fn shared<M: Shareable + Serialize + DeserializeOwned>(&self) -> LiveShared<'_, M> {
        LiveShared {
            client: self,
            _m: PhantomData,
        }
    }
}

/// A live client's access to shared instances of `M` (as [`popoto_core::shared::SharedAccess`]).
pub struct LiveShared<'c, M> {
    client: &'c LiveClient,
    _m: PhantomData<fn() -> M>,
}

impl<M: Shareable + Serialize + DeserializeOwned> LiveShared<'_, M> {
    /// Reads an instance: its value and version.
    pub async fn get(&self, id: &SharedId) -> Result<(M, u64), LiveError> {
        let (model, id) = (M::META.name.to_owned(), id.to_string());
        match self
            .client
            .request(|req| ClientMsg::Get { req, model, id })
            .await?
        {
            ServerMsg::Reply {
                value: Some(v),
                version: Some(version),
                ..
            } => Ok((
                serde_json::from_value(v).map_err(|e| LiveError::Protocol(e.to_string()))?,
                version,
            )),
            other => Err(LiveError::Protocol(format!("unexpected reply {other:?}"))),
        }
    }

    /// Writes the patch's fields; the instance's version after the write.
    pub async fn patch(&self, id: &SharedId, patch: &Patch<M>) -> Result<u64, LiveError> {
        let value = patch
            .value()
            .map_err(|e| LiveError::Protocol(e.to_string()))?;
        let Value::Object(all) =
            serde_json::to_value(&value).map_err(|e| LiveError::Protocol(e.to_string()))?
        else {
            return Err(LiveError::Protocol("the model is not a JSON object".into()));
        };
        let names: Vec<&str> = patch.field_names().collect();
        let fields: Map<String, Value> = all
            .into_iter()
            .filter(|(k, _)| names.contains(&k.as_str()))
            .collect();
        let (model, id) = (M::META.name.to_owned(), id.to_string());
        match self
            .client
            .request(|req| ClientMsg::Patch {
                req,
                model,
                id,
                fields,
            })
            .await?
        {
            ServerMsg::Reply {
                version: Some(v), ..
            } => Ok(v),
            other => Err(LiveError::Protocol(format!("unexpected reply {other:?}"))),
        }
    }
}
