//! Group commit of script calls: calls of one script issued while earlier ones are on the wire
//! go out together, as one call of the script's batch form.
//!
//! A call finding nothing queued and fewer than [`IN_FLIGHT`] calls outstanding is sent at once,
//! as itself: a lone task pays nothing. Otherwise it is queued, and each time a call on the wire
//! answers, the queue goes out as one batch call: under load the server pays a script call's
//! fixed cost once per batch instead of once per instance, and the client writes one command
//! instead of many. The script checks and writes each instance of a batch all or nothing, and
//! the batch runs atomically.
//!
//! Order: a task issues its next write only once the previous one answered, so its writes apply
//! in order; calls of different tasks in flight together have no order to keep. A batch refused
//! with `NOSCRIPT` ran nothing and is sent again as `EVAL`.

use std::sync::{Arc, Mutex, MutexGuard};

use redis::cluster_routing::Slot;
use redis::{Arg, RedisResult, Value};
use tokio::sync::oneshot;

use super::exec::{split_batch_replies, Script};
use super::Backend;

/// A call's reply, or why no connection could be had for it.
pub(crate) type Reply = Result<RedisResult<Value>, String>;

/// Calls of one script outstanding at a time (sent alone or as batches).
pub(crate) const IN_FLIGHT: usize = 8;

/// Calls per batch at most (well under a millisecond of server time).
pub(crate) const MAX_BATCH: usize = 128;

/// How calls of a script become one call of its batch form (owned by the script's module).
pub(crate) type Batcher = fn(&'static Script, &[&redis::Cmd]) -> RedisResult<Batched>;

/// One call carrying several calls: the script it calls and the order of its replies.
pub(crate) struct Batched {
    /// The script the call is an `EVALSHA` of (the group's, or a batch form it chose).
    pub(crate) script: &'static Script,
    pub(crate) cmd: redis::Cmd,
    /// Reply `j` answers call `order[j]`; empty: the calls' own order.
    pub(crate) order: Vec<usize>,
}

/// A queued call and where its reply goes.
struct Waiting {
    /// The script it calls (the group's, or one its batch form takes calls of).
    script: &'static Script,
    cmd: redis::Cmd,
    reply: oneshot::Sender<Reply>,
}

#[derive(Default)]
struct State {
    queue: Vec<Waiting>,
    /// Calls or batches on the wire (a flusher counts as one until its queue is empty).
    sending: usize,
}

/// The group-commit state of one script on one backend.
pub(crate) struct Group {
    script: &'static Script,
    batch: Batcher,
    state: Mutex<State>,
}

/// How a call goes out.
pub(crate) enum Turn {
    /// Send it now, as itself; drop the [`Sending`] once it answered.
    Now(Sending, redis::Cmd),
    /// Queued: the reply arrives here.
    Queued(oneshot::Receiver<Reply>),
}

/// A call on the wire: dropping it lets the queue go out.
pub(crate) struct Sending {
    backend: Backend,
    group: Arc<Group>,
}

impl Drop for Sending {
    fn drop(&mut self) {
        let mut state = self.group.lock();
        if state.queue.is_empty() {
            state.sending -= 1;
        } else {
            // The flusher takes over this call's slot.
            drop(state);
            flush(self.backend.clone(), self.group.clone());
        }
    }
}

impl Group {
    /// The group of `script`, whose calls `batch` turns into one call of its batch form.
    pub(crate) fn new(script: &'static Script, batch: Batcher) -> Group {
        Group {
            script,
            batch,
            state: Mutex::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The turn of `cmd`, an `EVALSHA` of `script` (the group's script, or one whose calls
    /// its batch form takes).
    pub(crate) fn enter(
        self: &Arc<Self>,
        backend: &Backend,
        script: &'static Script,
        cmd: redis::Cmd,
    ) -> Turn {
        let mut state = self.lock();
        if state.queue.is_empty() && state.sending < IN_FLIGHT {
            state.sending += 1;
            let sending = Sending {
                backend: backend.clone(),
                group: self.clone(),
            };
            return Turn::Now(sending, cmd);
        }
        let (tx, rx) = oneshot::channel();
        state.queue.push(Waiting {
            script,
            cmd,
            reply: tx,
        });
        if state.sending < IN_FLIGHT {
            state.sending += 1;
            drop(state);
            flush(backend.clone(), self.clone());
        }
        Turn::Queued(rx)
    }
}

/// A task sending the queue as batches until it is empty (it holds one `sending` slot).
fn flush(backend: Backend, group: Arc<Group>) {
    tokio::spawn(async move {
        loop {
            // The callers the last replies woke queue their next creates before the queue is
            // taken: a batch fills up instead of leaving with the first one or two.
            tokio::task::yield_now().await;
            let batch: Vec<Waiting> = {
                let mut state = group.lock();
                if state.queue.is_empty() {
                    state.sending -= 1;
                    return;
                }
                let n = state.queue.len().min(MAX_BATCH);
                state.queue.drain(..n).collect()
            };
            let replies = send(&backend, &group, &batch).await;
            for (waiting, reply) in batch.into_iter().zip(replies) {
                // A caller that stopped waiting is not told (its write may have applied).
                let _ = waiting.reply.send(reply);
            }
        }
    });
}

/// The calls of `batch` as one call per slot on a cluster (a script's keys must share a slot:
/// creates of several tenants go as one batch per tenant, sent together), else one call; one
/// reply per call, in order.
async fn send(backend: &Backend, group: &Group, batch: &[Waiting]) -> Vec<Reply> {
    let all: Vec<&Waiting> = batch.iter().collect();
    if !backend.is_cluster() {
        return send_one(backend, group, &all).await;
    }
    // The batch's indexes by slot, in order of first appearance.
    let mut by_slot: Vec<(Option<Slot>, Vec<usize>)> = Vec::new();
    for (i, w) in batch.iter().enumerate() {
        let slot = first_key(&w.cmd).map(Slot::for_key);
        match by_slot.iter_mut().find(|(s, _)| *s == slot) {
            Some((_, indexes)) => indexes.push(i),
            None => by_slot.push((slot, vec![i])),
        }
    }
    if by_slot.len() == 1 {
        return send_one(backend, group, &all).await;
    }
    let parts: Vec<Vec<&Waiting>> = by_slot
        .iter()
        .map(|(_, indexes)| indexes.iter().map(|&i| &batch[i]).collect())
        .collect();
    let replies =
        futures_util::future::join_all(parts.iter().map(|p| send_one(backend, group, p))).await;
    let mut out: Vec<(usize, Reply)> = by_slot
        .into_iter()
        .zip(replies)
        .flat_map(|((_, indexes), replies)| indexes.into_iter().zip(replies))
        .collect();
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, r)| r).collect()
}

/// The first key of a script call (`EVALSHA <sha> <numkeys> <key>…`), if it has one.
fn first_key(cmd: &redis::Cmd) -> Option<&[u8]> {
    let mut args = cmd.args_iter().skip(2);
    match (args.next(), args.next()) {
        (Some(Arg::Simple(n)), Some(Arg::Simple(key))) if n != b"0" => Some(key),
        _ => None,
    }
}

/// One call for `batch` (as itself when alone); one reply per call, in order.
async fn send_one(backend: &Backend, group: &Group, batch: &[&Waiting]) -> Vec<Reply> {
    if let [one] = batch {
        return vec![backend.eval_raw(one.script, &one.cmd).await];
    }
    let calls: Vec<&redis::Cmd> = batch.iter().map(|w| &w.cmd).collect();
    let (reply, order) = match (group.batch)(group.script, &calls) {
        Ok(b) => (backend.eval_raw(b.script, &b.cmd).await, b.order),
        Err(e) => (Ok(Err(e)), Vec::new()),
    };
    let replies: Vec<Reply> = match reply {
        Ok(reply) => split_batch_replies(reply, batch.len(), "group-committed creates")
            .map(Ok)
            .collect(),
        Err(reason) => return batch.iter().map(|_| Err(reason.clone())).collect(),
    };
    if order.is_empty() {
        return replies;
    }
    let mut out: Vec<Option<Reply>> = batch.iter().map(|_| None).collect();
    for (reply, i) in replies.into_iter().zip(order) {
        if let Some(slot) = out.get_mut(i) {
            *slot = Some(reply);
        }
    }
    out.into_iter()
        .map(|r| r.unwrap_or_else(|| Err("a batch call lost this create's reply".to_owned())))
        .collect()
}
