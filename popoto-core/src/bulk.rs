//! Bulk creates and saves: many instances of one model per script call (`lua/insert_many.lua`).
//!
//! One `apply.lua` call per instance costs the server the call itself, its arguments (the plan
//! is verbose) and one command per index entry: about twice popoto's own `MULTI`/`EXEC` of the
//! same writes. Here each instance is still checked and written all or nothing, but the call,
//! the type checks of the index keys the instances share (`$Class`, a tenant's sets) and their
//! `SADD`/`ZADD`s are paid once per call. The instances of one call are independent (distinct
//! keys and unique values: a repeat starts the next call), and calls run in the batch's order.
//! Models with a partition value stored outside the key do not take this path (the stored
//! value must be read first; `db.rs` handles them one by one).

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::LazyLock;
use std::task::Poll;

use redis::aio::ConnectionLike;
use redis::{ErrorKind, RedisError, RedisResult, Value};

use crate::backend::{
    is_connection_error, split_batch_replies, Backend, Form, Link, Route, Script, Tries,
};
use crate::error::{Error, Result};
use crate::keys::Layout;
use crate::model::{FieldKind, ModelMeta, Record};
use crate::plan::{initial_confidence, IndexEntry, Instance};
use crate::script::push_score;

/// The script that writes many instances at once.
pub(crate) static INSERT_MANY: LazyLock<Script> =
    LazyLock::new(|| Script::new(crate::script::lua!("insert_many.lua")));

/// Instances per script call: one call blocks the server for a few milliseconds.
const PER_CALL: usize = 500;

/// Calls queued on the connection before waiting for the oldest one's reply.
const IN_FLIGHT: usize = 3;

/// What a bulk call does with its instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Write {
    /// Creates: every key must be absent.
    Create,
    /// Creates whose keys all hold a uuid4 generated for them: they cannot exist yet.
    CreateFresh,
    /// Saves: insert or update.
    Save,
}

impl Write {
    /// The script's `ARGV[1]`.
    fn flag(self) -> &'static str {
        match self {
            Write::Create => "C",
            Write::CreateFresh => "F",
            Write::Save => "S",
        }
    }
}

/// One instance to write: its Redis key, rendered record and hidden `_auto_key`, if any.
pub(crate) struct Row<'r> {
    pub key: String,
    pub record: &'r Record,
    pub hidden: Option<&'r str>,
}

/// What two rows must not share in one call, per unique key field of `row`: its value set, and
/// for a value unique within a tenant, the row's tenant too (rows of two tenants may share it).
fn unique_sets(layout: Layout, meta: &'static ModelMeta, row: &Row<'_>) -> Vec<String> {
    let segment = |i: usize| {
        row.record
            .segments
            .get(i)
            .and_then(|s| s.as_deref())
            .unwrap_or_default()
    };
    meta.fields
        .iter()
        .enumerate()
        .filter(|(_, f)| f.kind == FieldKind::UniqueKey)
        .map(|(i, _)| {
            let tenant = meta.tenant.map(segment);
            let mut id = layout.value_set_key(meta, tenant, i, segment(i));
            if let (true, Some(t)) = (meta.unique_scope(i) > 0, meta.tenant) {
                // Tenant ids hold no control character: the last NUL splits the id back.
                id.push('\0');
                id.push_str(segment(t));
            }
            id
        })
        .collect()
}

/// Splits `rows` into calls of at most [`PER_CALL`] rows whose rows are independent: no two
/// share a key or a unique value (the script checks each row against what earlier calls
/// wrote, not against rows of its own call). A row that repeats a key or a unique value of the
/// current call starts the next call; calls run in order, so a batch keeps its order.
fn calls_of(
    layout: Layout,
    meta: &'static ModelMeta,
    rows: &[Row<'_>],
) -> Vec<std::ops::Range<usize>> {
    let has_unique = meta.fields.iter().any(|f| f.kind == FieldKind::UniqueKey);
    let mut calls = Vec::with_capacity(rows.len().div_ceil(PER_CALL));
    let (mut start, mut keys, mut sets) = (0, HashSet::new(), HashSet::new());
    for (i, row) in rows.iter().enumerate() {
        let unique = if has_unique {
            unique_sets(layout, meta, row)
        } else {
            Vec::new()
        };
        let conflict = keys.contains(row.key.as_str()) || unique.iter().any(|s| sets.contains(s));
        if i > start && (conflict || i - start == PER_CALL) {
            calls.push(start..i);
            start = i;
            keys.clear();
            sets.clear();
        }
        keys.insert(row.key.as_str());
        sets.extend(unique);
    }
    if start < rows.len() {
        calls.push(start..rows.len());
    }
    calls
}

/// An index entry of a row, by what it needs from the row: its KEYS index (1-based) and kind.
#[derive(Debug, Clone, Copy)]
enum Slot {
    /// A set member (`$Class`, a `$KeyF` value set); with the field of a unique key's set.
    Set(usize, Option<usize>),
    /// A zset member scored by the row's `n`-th sorted field.
    ZSet(usize, usize),
    /// A confidence entry with this initial confidence.
    Companion(usize, f64),
}

/// Fields whose key segments select a row's index keys: key fields (value sets) and the
/// partition fields of sorted and confidence fields. Rows equal on them share index keys.
fn selecting_fields(meta: &ModelMeta) -> Vec<usize> {
    let mut out: Vec<usize> = Vec::new();
    for (i, f) in meta.fields.iter().enumerate() {
        let selects: &[usize] = match f.kind {
            FieldKind::Key | FieldKind::UniqueKey => std::slice::from_ref(&i),
            FieldKind::Sorted | FieldKind::Confidence { .. } => f.partition_by,
            _ => &[],
        };
        for &p in selects {
            if !out.contains(&p) {
                out.push(p);
            }
        }
    }
    out
}

/// Builds one call, as `EVALSHA` or `EVAL` (`form`).
fn call(
    layout: Layout,
    meta: &'static ModelMeta,
    write: Write,
    rows: &[Row<'_>],
    form: Form,
) -> Result<redis::Cmd> {
    // Every distinct index key once in KEYS; rows that agree on the selecting fields (a
    // tenant's rows, mostly) reuse the first one's slots instead of rendering keys again.
    let mut keys: Vec<String> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let selecting = selecting_fields(meta);
    // Each distinct signature's slots once; rows point at theirs.
    let mut seen: HashMap<Vec<&str>, usize> = HashMap::new();
    let mut groups: Vec<Vec<Slot>> = Vec::new();
    let mut per_row: Vec<usize> = Vec::with_capacity(rows.len());
    let (mut args, mut bytes) = (4usize, 64usize);
    for row in rows {
        let inst = Instance {
            layout,
            meta,
            key: String::new(),
            record: row.record,
            hidden_key: row.hidden,
        };
        let signature: Vec<&str> = selecting.iter().map(|&i| inst.segment(i)).collect();
        let group = match seen.get(&signature) {
            Some(&g) => g,
            None => {
                let mut sorted = 0;
                let mut slots = Vec::new();
                for e in inst.index_entries()? {
                    let k = match index.get(e.key()) {
                        Some(&i) => i,
                        None => {
                            keys.push(e.key().to_owned());
                            index.insert(e.key().to_owned(), keys.len());
                            bytes += e.key().len() + 16;
                            keys.len()
                        }
                    };
                    slots.push(match e {
                        IndexEntry::Set(_, unique) => Slot::Set(k, unique),
                        IndexEntry::ZSet(..) => {
                            sorted += 1;
                            Slot::ZSet(k, sorted - 1)
                        }
                        IndexEntry::Companion(_, initial) => Slot::Companion(k, initial),
                        // Expiring models are written one plan each (`apply.lua`).
                        IndexEntry::Expiry(..) => {
                            return Err(Error::Protocol {
                                op: "bulk write",
                                model: meta.name,
                                detail: "an expiring model in insert_many".into(),
                            })
                        }
                    });
                }
                groups.push(slots);
                seen.insert(signature, groups.len() - 1);
                groups.len() - 1
            }
        };
        let slots = &groups[group];
        args += 6 + 2 * row.record.values.len() + 4 * slots.len();
        bytes += 2 * row.key.len()
            + row
                .record
                .values
                .iter()
                .map(|v| v.len() + 32)
                .sum::<usize>()
            + 48 * slots.len();
        per_row.push(group);
    }
    // What each KEYS index collects: `s` set members, `z` zset members, `h` hash entries.
    let mut kinds = vec![b's'; keys.len()];
    for slot in groups.iter().flatten() {
        match *slot {
            Slot::Set(k, _) => kinds[k - 1] = b's',
            Slot::ZSet(k, _) => kinds[k - 1] = b'z',
            Slot::Companion(k, _) => kinds[k - 1] = b'h',
        }
    }
    let sorted_fields: Vec<usize> = (0..meta.fields.len())
        .filter(|&i| meta.fields[i].kind == FieldKind::Sorted)
        .collect();
    // Every key the script touches is declared: the index keys, then each row's instance key.
    let mut cmd = INSERT_MANY.command(form, args + keys.len(), bytes);
    cmd.arg(keys.len() + rows.len()).arg(&keys);
    for row in rows {
        cmd.arg(&row.key);
    }
    // How many entries of each kind an instance has: the same for every row of a model.
    let shape = |slots: &[Slot]| {
        let mut n = [0usize; 4];
        for slot in slots {
            match slot {
                Slot::Set(_, unique) => {
                    n[0] += usize::from(unique.is_some());
                    n[1] += 1;
                }
                Slot::ZSet(..) => n[2] += 1,
                Slot::Companion(..) => n[3] += 1,
            }
        }
        n
    };
    let first = groups.first().map(|s| shape(s)).unwrap_or_default();
    if groups.iter().any(|s| shape(s) != first) {
        return Err(Error::Protocol {
            op: "bulk write",
            model: meta.name,
            detail: "instances of one model with different index entries".into(),
        });
    }
    // Saves rewrite no `_auto_key`; creates of a model that has one write it for every row.
    let hidden = rows.first().is_some_and(|r| r.hidden.is_some());
    let nf = meta.declared_len() + usize::from(hidden);
    cmd.arg(write.flag())
        .arg(rows.len())
        .arg(&kinds[..])
        .arg(nf);
    for n in first {
        cmd.arg(n);
    }
    for (row, group) in rows.iter().zip(per_row) {
        let slots = &groups[group];
        if row.record.values.len() != meta.declared_len() || row.hidden.is_some() != hidden {
            return Err(Error::Protocol {
                op: "bulk write",
                model: meta.name,
                detail: format!("a record of {} values", row.record.values.len()),
            });
        }
        Instance {
            layout,
            meta,
            key: String::new(),
            record: row.record,
            hidden_key: row.hidden,
        }
        .push_hash_fields(&mut cmd);
        for slot in slots {
            if let Slot::Set(k, Some(field)) = *slot {
                cmd.arg(k).arg(field).arg(meta.unique_scope(field));
            }
        }
        for slot in slots {
            if let Slot::Set(k, _) = *slot {
                cmd.arg(k);
            }
        }
        for slot in slots {
            if let Slot::ZSet(k, n) = *slot {
                let score = sorted_fields
                    .get(n)
                    .and_then(|&f| row.record.scores.get(f).copied().flatten())
                    .unwrap_or_default();
                push_score(cmd.arg(k), score);
            }
        }
        for slot in slots {
            if let Slot::Companion(k, initial) = *slot {
                cmd.arg(k).arg(initial_confidence(initial));
            }
        }
    }
    Ok(cmd)
}

/// Whether building a row's call can fail: only a confidence companion key with several
/// partition values can refuse a value (`keys::confidence_key`).
fn may_refuse(meta: &ModelMeta) -> bool {
    meta.fields
        .iter()
        .any(|f| matches!(f.kind, FieldKind::Confidence { .. }) && f.partition_by.len() > 1)
}

/// Sends one call; the reply keeps the rows' own errors (a plain query would turn the first
/// one into the call's).
async fn send(conn: &mut Link, cmd: redis::Cmd) -> RedisResult<Value> {
    match conn.req_packed_command(&cmd).await? {
        Value::ServerError(e) => Err(e.into()),
        v => Ok(v),
    }
}

/// Creates or saves every row, each all or nothing; one reply per row that `Plan::outcome`
/// reads (the HSET's reply for a row written, else `apply.lua`'s failure replies).
///
/// Rows go in calls of independent rows ([`calls_of`]), up to [`IN_FLIGHT`] queued on one
/// connection in the batch's order while the next is built, so the server runs them in that
/// order and later rows see what earlier ones wrote (a repeated key or unique value fails as it
/// would one by one, a key saved twice ends with its last value). Whatever can refuse a row is
/// checked before anything is sent.
pub(crate) async fn insert_many(
    backend: &Backend,
    op: &'static str,
    meta: &'static ModelMeta,
    write: Write,
    rows: &[Row<'_>],
) -> Result<Vec<RedisResult<Value>>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let layout = backend.layout();
    if may_refuse(meta) {
        for row in rows {
            Instance {
                layout,
                meta,
                key: String::new(),
                record: row.record,
                hidden_key: row.hidden,
            }
            .index_entries()?;
        }
    }
    let calls = calls_of(layout, meta, rows);
    let n = calls.len();
    let build = |i: usize, form: Form| {
        call(layout, meta, write, &rows[calls[i].clone()], form)
            .map_err(|e| RedisError::from((ErrorKind::Client, "bulk write", e.to_string())))
    };
    // The script cache can be emptied (`SCRIPT FLUSH`, a failover to a replica that never ran
    // the script) and refilled (another client's `EVAL` or `SCRIPT LOAD`) between two queued
    // calls. An `EVALSHA` refused with `NOSCRIPT` ran nothing, but sending it again after a
    // later call that did run would apply its rows after newer writes of the same keys. So an
    // `EVALSHA` goes only where nothing of the batch is sent behind it before its reply: the
    // first call (sent alone) and the last; the calls between go as `EVAL` (the source in
    // full, which the server never refuses). A refused first or last call is sent again as
    // `EVAL`, when every call before it has answered and none after it was sent.
    let form = |i: usize| {
        if i == 0 || i + 1 == n {
            Form::Sha
        } else {
            Form::Eval
        }
    };
    backend.guard_script(op, &INSERT_MANY)?;
    let replies: Vec<RedisResult<Value>> = backend
        // On a lane: its calls are queued on the connection together.
        .with_route(Route::Lane, op, meta.name, async |c| {
            let mut replies = Vec::with_capacity(n);
            // The first call alone: on a server that lacks the script, it is loaded here.
            let mut tries = Tries::new(Form::Sha);
            let first = loop {
                let reply = send(c, build(0, tries.form())?).await;
                if !tries.again(&reply) {
                    break reply;
                }
            };
            replies.push(first);
            // Then up to IN_FLIGHT calls queued on the connection, in the batch's order, while
            // the next is built here.
            let mut in_flight: VecDeque<Reply> = VecDeque::with_capacity(IN_FLIGHT);
            for i in 1..n {
                let cmd = build(i, form(i))?;
                while in_flight.len() >= IN_FLIGHT {
                    if let Some(reply) = in_flight.pop_front() {
                        replies.push(reply.await);
                    }
                }
                in_flight.push_back(start(c, cmd).await);
            }
            while let Some(reply) = in_flight.pop_front() {
                replies.push(reply.await);
            }
            if let Some(e) = replies.iter().find_map(|r| r.as_ref().err()) {
                if is_connection_error(e) {
                    return Err(e.clone());
                }
            }
            // The last call, if refused: everything before it has answered.
            if let Some(reply) = replies.get_mut(1..).and_then(|r| r.last_mut()) {
                let mut tries = Tries::new(Form::Sha);
                while tries.again(reply) {
                    *reply = send(c, build(n - 1, tries.form())?).await;
                }
            }
            Ok(replies)
        })
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for (range, reply) in calls.iter().zip(replies) {
        // Written: the HSET's reply (an integer, read by `Plan::outcome`), else the failed
        // check's reply or the error.
        out.extend(split_batch_replies(reply, range.len(), "bulk write"));
    }
    Ok(out)
}

/// The reply of a call already sent.
type Reply = Pin<Box<dyn Future<Output = RedisResult<Value>> + Send>>;

/// Sends `cmd` now and returns its reply to await later. The multiplexed connection queues a
/// request when its future is first polled, so polling each once here, in turn, sends the calls
/// in the order they were started; their replies arrive through the connection's own task.
async fn start(link: &mut Link, cmd: redis::Cmd) -> Reply {
    let Link::Shared(conn) = link else {
        // The solo connection carries one call at a time: the reply is awaited here.
        let done = send(link, cmd).await;
        return Box::pin(std::future::ready(done));
    };
    let mut conn = Link::Shared(conn.clone());
    let mut reply: Reply = Box::pin(async move { send(&mut conn, cmd).await });
    match std::future::poll_fn(|cx| Poll::Ready(reply.as_mut().poll(cx))).await {
        Poll::Ready(done) => Box::pin(std::future::ready(done)),
        Poll::Pending => reply,
    }
}
