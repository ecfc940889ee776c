//! One live-sync connection: the hello, the snapshots, the feed task and the requests.

use std::time::Duration;

use axum::extract::ws::{Message, Utf8Bytes, WebSocket};
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

/// The connection's outbox: messages as JSON text.
type Out = Sender<Utf8Bytes>;

/// Queues `msg`; false once the connection is gone.
async fn send(tx: &Out, msg: &ServerMsg) -> bool {
    match serde_json::to_string(msg) {
        Ok(text) => tx.send(text.into()).await.is_ok(),
        Err(e) => {
            tracing::warn!(error = %e, "a live-sync message could not be encoded");
            true
        }
    }
}

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
    mut rx: tokio::sync::mpsc::Receiver<Utf8Bytes>,
) {
    while let Some(text) = rx.recv().await {
        if sink.feed(Message::Text(text)).await.is_err() {
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
    // Bounded: beyond, the feed waits (and the pump's buffer for the connection fills, until
    // the connection is dropped as too slow).
    let (tx, rx) = channel::<Utf8Bytes>(live.inner.outbox);
    let writer = tokio::spawn(write(sink, rx));
    let resume = match tokio::time::timeout(HELLO_WITHIN, next_msg(&mut stream)).await {
        Ok(Some(Ok(ClientMsg::Hello { resume }))) => resume,
        _ => {
            let _ = send(&tx, &bad_message(None, "no hello")).await;
            drop(tx);
            let _ = writer.await;
            return;
        }
    };
    let fresh = resume.is_none();
    let reader = match open(&live, &session, resume).await {
        Ok(r) => r,
        Err(e) => {
            let _ = send(&tx, &refusal(None, e)).await;
            drop(tx);
            let _ = writer.await;
            return;
        }
    };
    if fresh {
        if let Err(e) = snapshots(&live, &session, &replica, &tx).await {
            let _ = send(&tx, &refusal(None, e)).await;
        }
    }
    let subscribed = ServerMsg::Subscribed {
        position: reader.position().clone(),
    };
    let _ = send(&tx, &subscribed).await;
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
        if !send(&tx, &reply).await {
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
            let snapshot = ServerMsg::Snapshot {
                model: m.name.to_owned(),
                key,
                shared: false,
                version: None,
                access: None,
                value,
            };
            send(tx, &snapshot).await;
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
    let snapshot = ServerMsg::Snapshot {
        model: model.to_owned(),
        key: id.to_string(),
        shared: true,
        version: Some(version),
        access,
        value,
    };
    send(tx, &snapshot).await;
    Ok(())
}

/// Sends the feed's batches until the connection ends: grants and revokes, gaps, events
/// (a private edit not back to the connection that made it), then what moved of the position
/// beyond the events sent. Returns when the reader fell behind (after telling the client) or
/// failed for good.
async fn follow(
    live: LiveSync,
    mut reader: HubReader,
    session: Session,
    replica: Replica,
    conn: String,
    tx: Out,
) {
    // The position as last sent whole (the confirmed one, then each position message): the
    // client moves it further with each event.
    let mut sent = reader.position().clone();
    loop {
        let batch = match reader.next().await {
            Ok(b) => b,
            Err(e) => {
                let retry = e.is_connection_error();
                if !send(&tx, &refusal(None, e)).await || !retry {
                    return;
                }
                // Redis is away: try again shortly.
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        for s in &batch.revoked {
            sent.forget(&s.model, &s.id);
            let revoked = ServerMsg::Revoked {
                model: s.model.clone(),
                id: s.id.to_string(),
            };
            if !send(&tx, &revoked).await {
                return;
            }
        }
        for s in &batch.granted {
            let granted = ServerMsg::Granted {
                model: s.model.clone(),
                id: s.id.to_string(),
                access: s.access,
            };
            if !send(&tx, &granted).await {
                return;
            }
            if let Err(e) = shared_snapshot(&live, &session, &replica, &s.model, &s.id, &tx).await {
                send(&tx, &refusal(None, e)).await;
            }
        }
        if !batch.gaps.is_empty() && !send(&tx, &ServerMsg::Gap).await {
            return;
        }
        // Entries the client does not get as events: its position moves past them by a
        // position message (as do new subscriptions' starts).
        let mut unsent = batch.rejected > 0 || !batch.granted.is_empty();
        for e in &batch.events {
            let shared = matches!(e.source, FeedSource::Shared(..));
            let text = if !shared && e.origin == conn {
                None
            } else {
                live.inner.rendered.event(&live.inner.models, e)
            };
            let Some(text) = text else {
                unsent = true;
                continue;
            };
            if tx.send(text).await.is_err() {
                return;
            }
        }
        if unsent {
            // Every stream moved since the last whole position: the client holds the events'
            // positions, and is at the reader's for each stream once past what was not sent.
            let moved = reader.position().moved_since(&sent);
            if !moved.is_empty() {
                sent.merge(moved.clone());
                if !send(&tx, &ServerMsg::Position { position: moved }).await {
                    return;
                }
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
