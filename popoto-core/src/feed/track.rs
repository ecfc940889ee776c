//! Where a tenant's change feed is: the position in each stream it follows, the grants behind
//! them, and how the entries read become a batch. Shared by the reader that reads Redis itself
//! ([`super::FeedReader`]) and the one fed by its process's pump ([`super::HubReader`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use redis::Value;

use super::event::{self, ChangeEvent};
use super::position::{FeedBatch, FeedPosition, StreamPos};
use super::wire::{parse_entries, parse_id, Fields};
use super::{FeedSource, OP};
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::keys;
use crate::shared::{read_grants, Access, Grant, SharedId, Subscription};
use crate::tenant::TenantId;

/// A stream entry id, parsed: (milliseconds, sequence).
pub(crate) type EntryId = (u64, u64);

/// An entry id parsed (one that does not parse, `(0, 0)`: before every entry).
pub(crate) fn entry_id(id: &str) -> EntryId {
    parse_id(id).unwrap_or((0, 0))
}

/// A stream entry as read: its id (as text and parsed) and its verified event (`None`:
/// rejected, and reported), shared by every reader it is handed to.
#[derive(Debug, Clone)]
pub(crate) struct Read {
    pub(crate) id: String,
    pub(crate) at: EntryId,
    pub(crate) event: Option<Arc<ChangeEvent>>,
}

/// Verifies the entries read from `source`'s stream; a rejected one is logged.
pub(crate) fn verify(source: &FeedSource, items: Vec<(String, Fields)>) -> Vec<Read> {
    items
        .into_iter()
        .map(|(id, raw)| {
            let event = match event::parse(source, id.clone(), raw) {
                Ok(e) => Some(Arc::new(e)),
                Err(e) => {
                    tracing::warn!(stream = %source.stream_key(), error = %e, "change event rejected");
                    None
                }
            };
            Read {
                at: entry_id(&id),
                id,
                event,
            }
        })
        .collect()
}

/// Whether entry id `a` comes after `b` (an id that does not parse comes first).
pub(crate) fn id_after(a: &str, b: &str) -> bool {
    parse_id(a) > parse_id(b)
}

/// One stream a tenant follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Followed {
    pub(crate) source: FeedSource,
    /// Its field in [`FeedPosition::shared`] (`None`: the tenant's own stream).
    pub(crate) field: Option<String>,
    /// The grant's start (shared streams): nothing at or before it is delivered.
    pub(crate) start: Option<String>,
}

fn subscription(g: &Grant) -> Subscription {
    Subscription {
        model: g.model.clone(),
        id: g.id.clone(),
        access: g.access,
    }
}

/// A tenant feed's position and grants.
#[derive(Debug)]
pub(crate) struct Tracker {
    pub(crate) tenant: TenantId,
    pub(crate) position: FeedPosition,
    /// Whether the position was given (a resume) rather than fixed at the streams' ends.
    pub(crate) resumed: bool,
    /// Grants followed, by field.
    pub(crate) grants: BTreeMap<String, Grant>,
}

impl Tracker {
    /// Starts at the streams' ends.
    pub(crate) fn new(tenant: TenantId) -> Tracker {
        Tracker {
            tenant,
            position: FeedPosition::default(),
            resumed: false,
            grants: BTreeMap::new(),
        }
    }

    /// Resumes after `position`.
    pub(crate) fn resume(&mut self, position: FeedPosition) {
        self.position = position;
        self.resumed = true;
    }

    /// Fixes the position of every stream: the end of each stream not in a resumed position (a
    /// subscription made since a resumed one: its start); a resumed stream is checked (a valid
    /// id not past the stream's end) and reported in `first.gaps` when entries after it were
    /// trimmed. Grants ended since are reported in `first.revoked`.
    pub(crate) async fn fix(
        &mut self,
        own: &Backend,
        shared: &Backend,
        first: &mut FeedBatch,
    ) -> Result<()> {
        let tenant_source = FeedSource::Tenant(self.tenant.clone());
        match self.position.tenant.clone() {
            Some(pos) => {
                if check_resumed(own, &tenant_source.stream_key_in(own.layout()), &pos).await? {
                    first.gaps.push(tenant_source);
                }
            }
            None => {
                let stream = tenant_source.stream_key_in(own.layout());
                self.position.tenant = Some(last_pos(own, &stream).await?);
            }
        }
        let mut known = BTreeMap::new();
        for g in read_grants(shared, &self.tenant).await? {
            let field = keys::shared_grant_field(&g.model, g.id.as_str());
            let source = FeedSource::Shared(g.model.clone(), g.id.clone());
            match self.position.shared.get(&field).cloned() {
                Some(pos) => {
                    if check_resumed(shared, &source.stream_key_in(shared.layout()), &pos).await? {
                        first.gaps.push(source);
                    }
                }
                None if self.resumed => {
                    self.position
                        .shared
                        .insert(field.clone(), StreamPos::after(&g.start));
                    first.granted.push(subscription(&g));
                }
                None => {
                    let last = last_pos(shared, &source.stream_key_in(shared.layout())).await?;
                    self.position.shared.insert(field.clone(), last);
                }
            }
            known.insert(field, g);
        }
        let gone: Vec<String> = self
            .position
            .shared
            .keys()
            .filter(|f| !known.contains_key(*f))
            .cloned()
            .collect();
        for f in gone {
            self.position.shared.remove(&f);
            if let Some((model, id)) = keys::parse_shared_grant_field(&f) {
                if let Ok(id) = SharedId::new(id) {
                    first.revoked.push(Subscription {
                        model,
                        id,
                        access: Access::Read,
                    });
                }
            }
        }
        self.grants = known;
        Ok(())
    }

    /// The subscriptions followed.
    pub(crate) fn subscriptions(&self) -> Vec<Subscription> {
        self.grants.values().map(subscription).collect()
    }

    /// The tenant's stream.
    pub(crate) fn own(&self) -> Followed {
        Followed {
            source: FeedSource::Tenant(self.tenant.clone()),
            field: None,
            start: None,
        }
    }

    /// The stream of a grant.
    pub(crate) fn granted(field: &str, g: &Grant) -> Followed {
        Followed {
            source: FeedSource::Shared(g.model.clone(), g.id.clone()),
            field: Some(field.to_owned()),
            start: Some(g.start.clone()),
        }
    }

    /// Every stream followed, the tenant's first.
    pub(crate) fn followed(&self) -> Vec<Followed> {
        std::iter::once(self.own())
            .chain(self.grants.iter().map(|(f, g)| Self::granted(f, g)))
            .collect()
    }

    /// Where the next read of `f`'s stream starts (after this entry id).
    pub(crate) fn after(&self, f: &Followed) -> String {
        let pos = match &f.field {
            None => self.position.tenant.as_ref(),
            Some(field) => self.position.shared.get(field),
        };
        pos.map(|p| p.entry.clone())
            .or_else(|| f.start.clone())
            .unwrap_or_else(|| "0-0".into())
    }

    /// Applies the grants read now: a grant gone (or made anew, with another start) is
    /// revoked and leaves the position, a new one is granted from its start. Returns the
    /// grants followed before.
    pub(crate) fn regrant(
        &mut self,
        now: Vec<Grant>,
        batch: &mut FeedBatch,
    ) -> BTreeMap<String, Grant> {
        let now: BTreeMap<String, Grant> = now
            .into_iter()
            .map(|g| (keys::shared_grant_field(&g.model, g.id.as_str()), g))
            .collect();
        for (field, g) in &self.grants {
            if now.get(field).is_none_or(|n| n.start != g.start) {
                batch.revoked.push(subscription(g));
                self.position.shared.remove(field);
            }
        }
        for (field, g) in &now {
            if self.grants.get(field).is_none_or(|o| o.start != g.start) {
                batch.granted.push(subscription(g));
                self.position
                    .shared
                    .insert(field.clone(), StreamPos::after(&g.start));
            }
        }
        std::mem::replace(&mut self.grants, now)
    }

    /// Whether `f` (a shared stream) is followed under the grant it names.
    pub(crate) fn follows(&self, f: &Followed) -> bool {
        match (&f.field, &f.start) {
            (Some(field), Some(start)) => self.grants.get(field).is_some_and(|g| g.start == *start),
            _ => true,
        }
    }

    /// Adds the entries of `f`'s stream after its position (and after the grant's start) to
    /// the batch, in order, and moves the position; a version jump is reported as a gap.
    pub(crate) fn accept(&mut self, f: &Followed, reads: &[Read], batch: &mut FeedBatch) {
        let shared = &mut self.position.shared;
        let pos = match &f.field {
            None => self.position.tenant.get_or_insert_with(StreamPos::default),
            Some(field) => {
                // Looked up first: no key is built for a stream already there.
                if !shared.contains_key(field) {
                    shared.insert(field.clone(), StreamPos::default());
                }
                let Some(pos) = shared.get_mut(field) else {
                    return;
                };
                pos
            }
        };
        let mut gap = false;
        // Entries at or before the position, or the grant's start, were delivered or are
        // not this subscription's.
        let after = parse_id(&pos.entry).max(f.start.as_deref().and_then(parse_id));
        for r in reads {
            if Some(r.at) <= after {
                continue;
            }
            match &r.event {
                Some(e) => {
                    gap |= pos.version > 0 && e.version > pos.version + 1;
                    *pos = StreamPos {
                        entry: r.id.clone(),
                        version: e.version,
                    };
                    batch.events.push(e.clone());
                }
                None => {
                    batch.rejected += 1;
                    *pos = StreamPos::after(r.id.clone());
                }
            }
        }
        if gap && !batch.gaps.contains(&f.source) {
            batch.gaps.push(f.source.clone());
        }
    }
}

/// The version of an entry's event (0 if it has none that parses).
fn version_of(fields: &[(Vec<u8>, Vec<u8>)]) -> u64 {
    fields
        .iter()
        .find(|(k, _)| k == b"version")
        .and_then(|(_, v)| std::str::from_utf8(v).ok()?.parse().ok())
        .unwrap_or(0)
}

/// The position of a stream's last entry (`0-0` for none).
pub(crate) async fn last_pos(backend: &Backend, stream: &str) -> Result<StreamPos> {
    let reply: Value = backend
        .query(
            OP,
            "-",
            redis::cmd("XREVRANGE")
                .arg(stream)
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(1),
        )
        .await?;
    Ok(parse_entries(reply)?.into_iter().next().map_or_else(
        || StreamPos::after("0-0"),
        |(id, f)| StreamPos {
            version: version_of(&f),
            entry: id,
        },
    ))
}

/// The id the stream's next entry must exceed (`0-0` without a stream).
async fn last_generated(backend: &Backend, stream: &str) -> Result<String> {
    let last = last_pos(backend, stream).await?;
    if last.entry != "0-0" {
        return Ok(last.entry);
    }
    // Empty (trimmed by age) or absent: the stream's own record of its last id.
    let info: Value = match backend
        .query(OP, "-", redis::cmd("XINFO").arg("STREAM").arg(stream))
        .await
    {
        Ok(v) => v,
        Err(e) if e.is_connection_error() => return Err(e),
        Err(_) => return Ok(last.entry),
    };
    let pairs: Vec<Value> = match info {
        Value::Array(items) => items,
        Value::Map(kv) => kv.into_iter().flat_map(|(k, v)| [k, v]).collect(),
        _ => Vec::new(),
    };
    let mut it = pairs.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        if let (Value::BulkString(k), Value::BulkString(v)) = (k, v) {
            if k == b"last-generated-id" {
                return Ok(String::from_utf8(v).unwrap_or_else(|_| last.entry.clone()));
            }
        }
    }
    Ok(last.entry)
}

/// Checks a resumed position (it comes from a client): an entry id, not past the stream's
/// last one (a reader shares its reads with others, whose entries it would make them miss).
/// Returns whether entries after it were trimmed before being read: the first entry after it
/// has a version beyond the next one (positions of unknown version are not checked).
async fn check_resumed(backend: &Backend, stream: &str, pos: &StreamPos) -> Result<bool> {
    let invalid = |reason: &str| Error::InvalidValue {
        model: "feed",
        field: "position",
        reason: format!(
            "position {:?} of {stream}: {reason}",
            pos.entry.chars().take(64).collect::<String>()
        ),
    };
    if parse_id(&pos.entry).is_none() {
        return Err(invalid("not a stream entry id"));
    }
    if id_after(&pos.entry, &last_generated(backend, stream).await?) {
        return Err(invalid("past the stream's last entry"));
    }
    if pos.version == 0 {
        return Ok(false);
    }
    let reply: Value = backend
        .query(
            OP,
            "-",
            redis::cmd("XRANGE")
                .arg(stream)
                .arg(format!("({}", pos.entry))
                .arg("+")
                .arg("COUNT")
                .arg(1),
        )
        .await?;
    Ok(parse_entries(reply)?
        .first()
        .is_some_and(|(_, f)| version_of(f) > pos.version + 1))
}
