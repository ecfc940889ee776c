//! One live-sync connection: the hello, the snapshots, the feed task and the requests.

use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use futures_util::{SinkExt, StreamExt};
use popoto_core::feed::{FeedPosition, FeedSource, HubReader};
use popoto_core::shared::{Replica, SharedId};
use popoto_core::{Error, Session};
use tokio::sync::mpsc::{channel, Sender};

use super::{ClientMsg, LiveSync, ServerMsg};
use crate::error::ApiError;
use crate::extract::Tenant;

/// How long a new connection may take to say hello.
const HELLO_WITHIN: Duration = Duration::from_secs(10);

/// Messages waiting for the socket at most; beyond, the feed waits (and the pump's buffer
/// for the connection fills, until the connection is dropped as too slow).
const OUTBOX: usize = 256;

type Out = Sender<ServerMsg>;

/// A refusal with the fixed code and message of [`ApiError`] (never a key or a tenant id).
fn refusal(req: Option<u64>, e: Error) -> ServerMsg {
    let api = ApiError::from(e);
    tracing::info!(error = %api, "live-sync request refused");
    ServerMsg::Error {
        req,
        code: api.code().to_owned(),
        message: api.message().to_owned(),
    }
}

fn bad_message(req: Option<u64>, what: &str) -> ServerMsg {
    tracing::info!(what, "live-sync message refused");
    ServerMsg::Error {
        req,
        code: "bad_message".into(),
        message: "the message is not one this endpoint takes".into(),
    }
}

async fn next_msg(
    stream: &mut futures_util::stream::SplitStream<WebSocket>,
) -> Option<Result<ClientMsg, String>> {
    loop {
        match stream.next().await? {
            Ok(Message::Text(t)) => {
                return Some(serde_json::from_str(t.as_str()).map_err(|e| e.to_string()))
            }
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => continue,
        }
    }
}

/// Writes the outbox to the socket, flushing whenever it is empty, then closes it.
async fn write(
    mut sink: futures_util::stream::SplitSink<WebSocket, Message>,
    mut rx: tokio::sync::mpsc::Receiver<ServerMsg>,
) {
    while let Some(m) = rx.recv().await {
        let Ok(text) = serde_json::to_string(&m) else {
            continue;
        };
        if sink.feed(Message::Text(text.into())).await.is_err() {
            return;
        }
        if rx.is_empty() && sink.flush().await.is_err() {
            return;
        }
    }
    let _closed = sink.close().await;
}

/// Serves one connection of `tenant` until the client goes away (or falls behind).
pub(super) async fn serve(live: LiveSync, tenant: Tenant, socket: WebSocket) {
    let conn = format!("c-{}", uuid::Uuid::new_v4().simple());
    let session = tenant.session().with_origin(&conn);
    // The connection id is the origin of its writes (never the tenant id: subscribers see it).
    let replica = Replica::new(&conn).unwrap_or_else(|_| Replica::random());
    let (sink, mut stream) = socket.split();
    let (tx, rx) = channel::<ServerMsg>(OUTBOX);
    let writer = tokio::spawn(write(sink, rx));
    let resume = match tokio::time::timeout(HELLO_WITHIN, next_msg(&mut stream)).await {
        Ok(Some(Ok(ClientMsg::Hello { resume }))) => resume,
        _ => {
            let _ = tx.send(bad_message(None, "no hello")).await;
            drop(tx);
            let _ = writer.await;
            return;
        }
    };
    let fresh = resume.is_none();
    let reader = match open(&live, &session, resume).await {
        Ok(r) => r,
        Err(e) => {
            let _ = tx.send(refusal(None, e)).await;
            drop(tx);
            let _ = writer.await;
            return;
        }
    };
    if fresh {
        if let Err(e) = snapshots(&live, &session, &replica, &tx).await {
            let _ = tx.send(refusal(None, e)).await;
        }
    }
    let _ = tx
        .send(ServerMsg::Subscribed {
            position: reader.position().clone(),
        })
        .await;
    let mut feed = tokio::spawn(follow(
        live.clone(),
        reader,
        session.clone(),
        replica.clone(),
        conn.clone(),
        tx.clone(),
    ));
    loop {
        let msg = tokio::select! {
            msg = next_msg(&mut stream) => msg,
            // The feed ended (the connection fell behind): close it.
            _ = &mut feed => break,
        };
        let Some(msg) = msg else { break };
        let reply = match msg {
            Ok(m) => request(&live, &session, &replica, m).await,
            Err(e) => bad_message(None, &e),
        };
        if tx.send(reply).await.is_err() {
            break;
        }
    }
    feed.abort();
    drop(tx);
    let _ = writer.await;
}

/// Opens the connection's feed reader: its position is fixed when this returns.
async fn open(
    live: &LiveSync,
    session: &Session,
    resume: Option<FeedPosition>,
) -> Result<HubReader, Error> {
    let mut reader = live.inner.hub.reader(session)?;
    if let Some(p) = resume {
        reader = reader.from(p);
    }
    reader.open().await
}

/// Snapshots of the tenant's private instances and of the shared instances it follows.
async fn snapshots(
    live: &LiveSync,
    session: &Session,
    replica: &Replica,
    tx: &Out,
) -> Result<(), Error> {
    for m in &live.inner.models.private {
        for (key, value) in (m.snapshot)(session).await? {
            let _ = tx
                .send(ServerMsg::Snapshot {
                    model: m.name.to_owned(),
                    key,
                    shared: false,
                    version: None,
                    access: None,
                    value,
                })
                .await;
        }
    }
    for sub in session.shared_subscriptions().await? {
        shared_snapshot(live, session, replica, &sub.model, &sub.id, tx).await?;
    }
    Ok(())
}

async fn shared_snapshot(
    live: &LiveSync,
    session: &Session,
    replica: &Replica,
    model: &str,
    id: &SharedId,
    tx: &Out,
) -> Result<(), Error> {
    let Some(m) = live.inner.models.shared(model) else {
        return Ok(());
    };
    let (value, version, access) = (m.get)(session, id, replica).await?;
    let _ = tx
        .send(ServerMsg::Snapshot {
            model: model.to_owned(),
            key: id.to_string(),
            shared: true,
            version: Some(version),
            access,
            value,
        })
        .await;
    Ok(())
}

/// Sends the feed's batches until the connection ends: grants and revokes, gaps, events
/// (a private edit not back to the connection that made it), then what moved of the position.
/// Returns when the reader fell behind (after telling the client) or failed for good.
async fn follow(
    live: LiveSync,
    mut reader: HubReader,
    session: Session,
    replica: Replica,
    conn: String,
    tx: Out,
) {
    let mut sent = reader.position().clone();
    loop {
        let batch = match reader.next().await {
            Ok(b) => b,
            Err(e) => {
                let retry = e.is_connection_error();
                if tx.send(refusal(None, e)).await.is_err() || !retry {
                    return;
                }
                // Redis is away: try again shortly.
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let mut out = Vec::with_capacity(batch.events.len() + 2);
        for s in &batch.revoked {
            out.push(ServerMsg::Revoked {
                model: s.model.clone(),
                id: s.id.to_string(),
            });
        }
        for s in &batch.granted {
            out.push(ServerMsg::Granted {
                model: s.model.clone(),
                id: s.id.to_string(),
                access: s.access,
            });
        }
        if !batch.granted.is_empty() {
            for m in out.drain(..) {
                if tx.send(m).await.is_err() {
                    return;
                }
            }
        }
        for s in &batch.granted {
            if let Err(e) = shared_snapshot(&live, &session, &replica, &s.model, &s.id, &tx).await {
                out.push(refusal(None, e));
            }
        }
        if !batch.gaps.is_empty() {
            out.push(ServerMsg::Gap);
        }
        for e in batch.events {
            let shared = matches!(e.source, FeedSource::Shared(..));
            if !shared && e.origin == conn {
                continue;
            }
            let fields = if shared {
                live.inner.models.shared(&e.model).map(|m| (m.fields)(&e))
            } else {
                live.inner.models.private(&e.model).map(|m| (m.fields)(&e))
            };
            let fields = match fields {
                Some(Ok(f)) => f,
                Some(Err(err)) => {
                    tracing::warn!(error = %err, "a change event could not be sent");
                    continue;
                }
                None => continue,
            };
            out.push(ServerMsg::Event {
                model: e.model,
                key: e.key,
                shared,
                op: e.op,
                version: e.version,
                origin: e.origin,
                full: e.full,
                fields,
            });
        }
        let now = reader.position();
        let moved = now.moved_since(&sent);
        if !moved.is_empty() {
            out.push(ServerMsg::Position { position: moved });
            sent = now.clone();
        }
        for m in out {
            if tx.send(m).await.is_err() {
                return;
            }
        }
    }
}

/// Answers one request.
async fn request(
    live: &LiveSync,
    session: &Session,
    replica: &Replica,
    msg: ClientMsg,
) -> ServerMsg {
    let models = &live.inner.models;
    match msg {
        ClientMsg::Hello { .. } => bad_message(None, "a second hello"),
        ClientMsg::Save { req, model, value } => match models.private(&model) {
            Some(m) => match (m.save)(session, value).await {
                Ok(()) => ServerMsg::Reply {
                    req,
                    version: None,
                    value: None,
                },
                Err(e) => refusal(Some(req), e),
            },
            None => bad_message(Some(req), "unknown private model"),
        },
        ClientMsg::Delete { req, model, key } => match models.private(&model) {
            Some(m) => match (m.delete)(session, &key).await {
                Ok(_) => ServerMsg::Reply {
                    req,
                    version: None,
                    value: None,
                },
                Err(e) => refusal(Some(req), e),
            },
            None => bad_message(Some(req), "unknown private model"),
        },
        ClientMsg::Patch {
            req,
            model,
            id,
            fields,
        } => {
            let (Some(m), Ok(id)) = (models.shared(&model), SharedId::new(&id)) else {
                return bad_message(Some(req), "unknown shared model or id");
            };
            match (m.patch)(session, &id, fields, replica).await {
                Ok(version) => ServerMsg::Reply {
                    req,
                    version: Some(version),
                    value: None,
                },
                Err(e) => refusal(Some(req), e),
            }
        }
        ClientMsg::Get { req, model, id } => {
            let (Some(m), Ok(id)) = (models.shared(&model), SharedId::new(&id)) else {
                return bad_message(Some(req), "unknown shared model or id");
            };
            match (m.get)(session, &id, replica).await {
                Ok((value, version, _)) => ServerMsg::Reply {
                    req,
                    version: Some(version),
                    value: Some(value),
                },
                Err(e) => refusal(Some(req), e),
            }
        }
    }
}
