//! Moving one shared instance: its paged parts staged in the target page by page (or, in a dry
//! run, only read and verified), then one `commit` call in the instance's slot that refuses if
//! any key of the instance exists there, and otherwise writes its hashes, renames the staged
//! keys into place and adds the id to the model's id set, all at once. And the comparison of
//! an instance the target already holds with the source's.

use std::sync::LazyLock;

use redis::Value;

use super::pages::{digest, Kind, Page, Pager};
use super::snapshot::{bad, Keys, Snapshot};
use super::OP;
use crate::backend::{Backend, Script};
use crate::error::{Error, Result};
use crate::feed::wire::text;
use crate::feed::FeedSource;
use crate::shared::SharedId;

/// Staging and landing calls (`lua/shared_relayout.lua`).
pub(crate) static RELAYOUT: LazyLock<Script> =
    LazyLock::new(|| Script::new(crate::script::lua!("shared_relayout.lua")));

/// What the paged parts of an instance held: feed entries and dead letters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Moved {
    pub(super) events: u64,
    pub(super) dead_letters: u64,
}

/// How a commit ended.
pub(super) enum Landed {
    /// The instance landed.
    Done,
    /// The target holds a key of it (nothing written): compare.
    Exists,
}

/// One staging call's reply: `{'ok', ...}`, or the refusal as an error.
fn staged(model: &'static str, reply: Value) -> Result<Vec<Value>> {
    match reply {
        Value::Array(items) if text(items.first()).as_deref() == Some("ok") => Ok(items),
        Value::Array(items) if text(items.first()).as_deref() == Some("wrongtype") => {
            Err(Error::WrongType {
                model,
                key: text(items.get(1)).unwrap_or_default(),
                found: text(items.get(2)).unwrap_or_default(),
            })
        }
        other => Err(bad(OP, &other)),
    }
}

/// One staging call on `stage` (`lua/shared_relayout.lua`): its reply's items.
async fn stage_call(
    dst: &Backend,
    model: &'static str,
    stage: &str,
    args: &[Vec<u8>],
) -> Result<Vec<Value>> {
    let reply = dst
        .eval(OP, model, &RELAYOUT, &[stage.to_owned()], args)
        .await?;
    staged(model, reply)
}

/// The paged parts of the instance: each of `parts` (source key, kind, staging key in the
/// target) read page by page from `src`, its feed entries verified as the instance's events,
/// and staged into `dst` (`None`: a dry run, nothing written).
async fn stage_parts(
    src: &Backend,
    dst: Option<&Backend>,
    model: &'static str,
    id: &SharedId,
    parts: &[(String, Kind, String)],
    stream: &str,
) -> Result<Moved> {
    let mut moved = Moved::default();
    let source = FeedSource::Shared(model.to_owned(), id.clone());
    for (key, kind, stage) in parts {
        let mut pager = Pager::new(key, kind.clone());
        let mut last = None;
        while let Some(page) = pager.next(src, model).await? {
            if let Page::Entries(entries) = &page {
                if key == stream {
                    for (entry, fields) in entries {
                        crate::feed::parse_event(&source, entry.clone(), fields.clone())?;
                    }
                    moved.events += entries.len() as u64;
                } else {
                    moved.dead_letters += entries.len() as u64;
                }
                last = entries.last().map(|(e, _)| e.clone()).or(last);
            }
            if let (Some(dst), true) = (dst, page.len() > 0) {
                stage_call(dst, model, stage, &page.stage_args()).await?;
            }
        }
        // Dead letters keep their last id (and exist even when empty).
        if let (Some(dst), Kind::Entries, false) = (dst, kind, key == stream) {
            let last = last.unwrap_or_else(|| "0-0".to_owned());
            let a = ["xsetid", last.as_str(), "", ""].map(|s| s.as_bytes().to_vec());
            stage_call(dst, model, stage, &a).await?;
        }
    }
    Ok(moved)
}

/// The target's keys of an instance a commit lands: (key, its staging key, whether staged).
pub(super) type Pairs = Vec<(String, String, bool)>;

/// Stages the instance `snap` (read from `src` at `s`) under the target's staging keys (`t`
/// in `dst`; `None`: a dry run, which reads and verifies only), after removing what a cut run
/// left there.
pub(super) async fn stage(
    src: &Backend,
    dst: Option<&Backend>,
    (s, t): (&Keys, &Keys),
    id: &SharedId,
    snap: &Snapshot,
) -> Result<(Moved, Pairs)> {
    let model = s.model();
    let stage_stream = t.stage(&t.stream);
    // The staging keys: (key, staging key, staged) in commit order.
    let mut pairs: Pairs = vec![(
        t.stream.clone(),
        stage_stream.clone(),
        snap.stream.is_some(),
    )];
    let mut parts: Vec<(String, Kind, String)> = Vec::new();
    if snap.stream.is_some() {
        parts.push((s.stream.clone(), Kind::Entries, stage_stream.clone()));
    }
    for g in &snap.groups {
        let (done, dead) = (t.done(&g.name), t.dead(&g.name));
        pairs.push((done.clone(), t.stage(&done), g.done == "zset"));
        pairs.push((dead.clone(), t.stage(&dead), g.dead == "stream"));
        if g.done == "zset" {
            parts.push((s.done(&g.name), Kind::Members, t.stage(&done)));
        }
        if g.dead == "stream" {
            parts.push((s.dead(&g.name), Kind::Entries, t.stage(&dead)));
        }
    }
    if let Some(dst) = dst {
        let mut del = redis::cmd("DEL");
        for (_, stage, _) in &pairs {
            del.arg(stage);
        }
        dst.query::<i64>(OP, model, &del).await?;
    }
    let moved = stage_parts(src, dst, model, id, &parts, &s.stream).await?;
    let Some(dst) = dst else {
        return Ok((moved, pairs));
    };
    if let Some(info) = &snap.stream {
        let a = [
            "xsetid",
            info.last_id.as_str(),
            info.entries_added.as_deref().unwrap_or_default(),
            info.max_deleted.as_deref().unwrap_or_default(),
        ]
        .map(|s| s.as_bytes().to_vec());
        stage_call(dst, model, &stage_stream, &a).await?;
        for g in &snap.groups {
            let Some((last, read, consumers)) = &g.state else {
                continue;
            };
            let mut a = vec![
                "group",
                g.name.as_str(),
                last.as_str(),
                read.as_deref().unwrap_or_default(),
            ]
            .into_iter()
            .map(|s| s.as_bytes().to_vec())
            .collect::<Vec<_>>();
            a.push(consumers.len().to_string().into_bytes());
            a.extend(consumers.iter().map(|c| c.as_bytes().to_vec()));
            stage_call(dst, model, &stage_stream, &a).await?;
            let kind = Kind::Pending(g.name.clone(), first_entry(src, model, &s.stream).await?);
            let mut pager = Pager::new(&s.stream, kind);
            while let Some(page) = pager.next(src, model).await? {
                if page.len() > 0 {
                    stage_call(dst, model, &stage_stream, &page.stage_args()).await?;
                }
            }
        }
    }
    Ok((moved, pairs))
}

/// Lands the staged instance `snap` at `t` in `dst` with one call: refused (nothing written)
/// if the target holds any key of it.
pub(super) async fn commit(
    dst: &Backend,
    t: &Keys,
    id: &SharedId,
    snap: &Snapshot,
    pairs: &Pairs,
) -> Result<Landed> {
    let model = t.model();
    let mut keys: Vec<String> = t.hashes.to_vec();
    let mut a: Vec<Vec<u8>> = vec![b"commit".to_vec(), id.as_str().as_bytes().to_vec()];
    a.push(pairs.len().to_string().into_bytes());
    for (key, stage, on) in pairs {
        keys.push(key.clone());
        keys.push(stage.clone());
        a.push(if *on { b"1".to_vec() } else { b"0".to_vec() });
    }
    keys.extend(t.ids.clone());
    for h in &snap.hashes {
        a.push(h.len().to_string().into_bytes());
        for (f, v) in h {
            a.push(f.clone());
            a.push(v.clone());
        }
    }
    let reply = dst.eval(OP, model, &RELAYOUT, &keys, &a).await?;
    let Value::Array(items) = &reply else {
        return Err(bad(OP, &reply));
    };
    match text(items.first()).as_deref() {
        Some("ok") => Ok(Landed::Done),
        Some("exists") => Ok(Landed::Exists),
        Some("unstaged") => Err(Error::CorruptShared {
            key: text(items.get(1)).unwrap_or_default(),
            reason: "a staging key of the layout migration was removed before the instance \
                     landed; run the migration again"
                .into(),
        }),
        _ => Err(bad(OP, &reply)),
    }
}

/// The first part in which the target's copy (`t` in `dst`) differs from the source's (`snap`,
/// read from `src` at `s`), named; `None` when they are equal. The paged parts are compared
/// by digest, page by page.
pub(super) async fn differs(
    src: &Backend,
    dst: &Backend,
    (s, t): (&Keys, &Keys),
    snap: &Snapshot,
) -> Result<Option<String>> {
    let model = s.model();
    let other = Snapshot::read(dst, t).await?;
    if let Some(what) = snap.differs(&other) {
        return Ok(Some(what));
    }
    let mut parts: Vec<(String, String, Kind, String)> = Vec::new();
    if snap.stream.is_some() {
        let what = "feed entries".to_owned();
        parts.push((s.stream.clone(), t.stream.clone(), Kind::Entries, what));
    }
    let first = match snap.stream {
        Some(_) => first_entry(src, model, &s.stream).await?,
        None => None,
    };
    for g in &snap.groups {
        let n = &g.name;
        if g.state.is_some() {
            let kind = Kind::Pending(n.clone(), first.clone());
            let what = format!("pending entries of group {n}");
            parts.push((s.stream.clone(), t.stream.clone(), kind, what));
        }
        if g.done == "zset" {
            let what = format!("done set of group {n}");
            parts.push((s.done(n), t.done(n), Kind::Members, what));
        }
        if g.dead == "stream" {
            let what = format!("dead letters of group {n}");
            parts.push((s.dead(n), t.dead(n), Kind::Entries, what));
        }
    }
    for (sk, tk, kind, what) in parts {
        let a = digest(src, model, &sk, kind.clone()).await?;
        let b = digest(dst, model, &tk, kind).await?;
        if a != b {
            return Ok(Some(what));
        }
    }
    Ok(None)
}

/// The id of the first entry of `stream`, if it has one: a pending entry below it lost its
/// data to trimming, and Redis cannot make such an entry pending again.
async fn first_entry(
    backend: &Backend,
    model: &'static str,
    stream: &str,
) -> Result<Option<String>> {
    let mut cmd = redis::cmd("XRANGE");
    cmd.arg(stream).arg("-").arg("+").arg("COUNT").arg(1);
    let reply: Value = backend.query(OP, model, &cmd).await?;
    Ok(crate::feed::wire::parse_entries(reply)?
        .into_iter()
        .next()
        .map(|(id, _)| id))
}
