//! Change events as read from a stream, verified before they are handed out.

use super::FeedSource;
use crate::error::{Error, Result};
use crate::keys::{self, Layout};
use crate::model::{Key, Model};
use crate::shared::Tag;

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum ChangeOp {
    /// A shared instance was shared (full value).
    Share,
    /// The host replaced a shared instance's fields.
    Set,
    /// A patch was merged into a shared instance.
    Patch,
    /// A custom merge's version-checked write (full value).
    Update,
    /// A private instance was created (full value).
    Create,
    /// A private instance was saved (full value).
    Save,
    /// A private instance was deleted.
    Delete,
    /// A private instance's key changed (`from` holds the old key; full value).
    Move,
    /// A confidence update of a private instance: `fields` holds the confidence field with its
    /// new confidence.
    Confidence,
}

impl ChangeOp {
    fn parse(code: &str) -> Option<ChangeOp> {
        Some(match code {
            "share" => ChangeOp::Share,
            "set" => ChangeOp::Set,
            "patch" => ChangeOp::Patch,
            "cas" => ChangeOp::Update,
            "create" => ChangeOp::Create,
            "save" => ChangeOp::Save,
            "delete" => ChangeOp::Delete,
            "move" => ChangeOp::Move,
            "confidence" => ChangeOp::Confidence,
            _ => return None,
        })
    }

    /// The stored form.
    pub(crate) fn code(self) -> &'static str {
        match self {
            ChangeOp::Share => "share",
            ChangeOp::Set => "set",
            ChangeOp::Patch => "patch",
            ChangeOp::Update => "cas",
            ChangeOp::Create => "create",
            ChangeOp::Save => "save",
            ChangeOp::Delete => "delete",
            ChangeOp::Move => "move",
            ChangeOp::Confidence => "confidence",
        }
    }
}

/// One change event: what was written, by which origin, at which version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeEvent {
    /// The stream it was read from.
    pub source: FeedSource,
    /// Its entry id in that stream (increasing; the position to resume after).
    pub entry: String,
    /// What the write did.
    pub op: ChangeOp,
    /// The model's class name.
    pub model: String,
    /// The shared instance's id, or the private instance's key.
    pub key: String,
    /// The old key of a [`ChangeOp::Move`].
    pub from: Option<String>,
    /// The shared instance's version after the write, or the tenant stream's event counter.
    pub version: u64,
    /// The replica (or session origin) that wrote it.
    pub origin: String,
    /// Whether the host (or the admin handle) wrote it, not a tenant.
    pub by_host: bool,
    /// Whether `fields` holds every field of the value (else a patch).
    pub full: bool,
    /// Field name -> stored bytes of each field written.
    pub fields: Vec<(String, Vec<u8>)>,
    /// Field name -> tag, for writes of an `LwwMapCrdt` instance.
    pub tags: Vec<(String, Tag)>,
}

impl ChangeEvent {
    /// Whether the event is about model `M`.
    pub fn is<M: Model>(&self) -> bool {
        self.model == M::META.name
    }

    fn wrong(&self, reason: String) -> Error {
        Error::CorruptFeed {
            stream: self.source.stream_key(),
            entry: self.entry.clone(),
            reason,
        }
    }

    /// The full value written (events with `full` set, of model `M`).
    pub fn value<M: Model>(&self) -> Result<M> {
        if !self.is::<M>() {
            return Err(self.wrong(format!(
                "the event is about {}, not {}",
                self.model,
                M::META.name
            )));
        }
        if !self.full {
            return Err(self.wrong("the event carries a patch, not a full value".into()));
        }
        let fields = self
            .fields
            .iter()
            .map(|(f, v)| (f.as_bytes().to_vec(), v.clone()))
            .collect();
        M::from_hash(&self.key, fields)
    }

    /// `current` with the event's fields written over it (for a replica keeping a copy).
    pub fn apply_to<M: Model>(&self, current: &M) -> Result<M> {
        if !self.is::<M>() {
            return Err(self.wrong(format!(
                "the event is about {}, not {}",
                self.model,
                M::META.name
            )));
        }
        let mut fields: Vec<(Vec<u8>, Vec<u8>)> = M::META
            .fields
            .iter()
            .zip(current.to_record()?.values)
            .map(|(f, v)| (f.name.as_bytes().to_vec(), v))
            .collect();
        for (f, v) in &self.fields {
            if let Some(slot) = fields.iter_mut().find(|(n, _)| n == f.as_bytes()) {
                slot.1 = v.clone();
            }
        }
        M::from_hash(&self.key, fields)
    }

    /// The private instance's key, parsed as a key of `M` of the stream's tenant.
    pub fn instance_key<M: Model>(&self) -> Result<Key<M>> {
        let key = Key::<M>::parse_in(Layout::of_instance_key(&self.key), &self.key)?;
        match &self.source {
            FeedSource::Tenant(t) if key.tenant() == Some(t.as_str()) => Ok(key),
            _ => Err(self.wrong("the key is not an instance key of the stream's tenant".into())),
        }
    }
}

/// Parses and verifies one stream entry: every field popoto writes is there and well formed,
/// and the event is the stream's own (a shared stream's events name its model and id; a tenant
/// stream's name its tenant, with a key of that tenant's layout).
pub(crate) fn parse(
    source: &FeedSource,
    entry: String,
    raw: Vec<(Vec<u8>, Vec<u8>)>,
) -> Result<ChangeEvent> {
    let mut event = ChangeEvent {
        source: source.clone(),
        entry,
        op: ChangeOp::Save,
        model: String::new(),
        key: String::new(),
        from: None,
        version: 0,
        origin: String::new(),
        by_host: false,
        full: false,
        fields: Vec::new(),
        tags: Vec::new(),
    };
    let mut seen = (None, None, None, None, None, None, None, None);
    for (k, v) in raw {
        if let Some(f) = k.strip_prefix(b"f:") {
            let f = String::from_utf8(f.to_vec())
                .map_err(|_| event.wrong("a field name is not text".into()))?;
            event.fields.push((f, v));
            continue;
        }
        let v =
            String::from_utf8(v).map_err(|_| event.wrong("a header field is not text".into()))?;
        if let Some(f) = k.strip_prefix(b"t:") {
            let f = String::from_utf8(f.to_vec())
                .map_err(|_| event.wrong("a tag name is not text".into()))?;
            let tag = Tag::parse(&v).map_err(|e| event.wrong(e.to_string()))?;
            event.tags.push((f, tag));
            continue;
        }
        match k.as_slice() {
            b"op" => seen.0 = Some(v),
            b"model" => seen.1 = Some(v),
            b"id" | b"key" => seen.2 = Some(v),
            b"scope" => seen.3 = Some(v),
            b"version" => seen.4 = Some(v),
            b"origin" => seen.5 = Some(v),
            b"by" => seen.6 = Some(v),
            b"full" => event.full = v == "1",
            b"tenant" => seen.7 = Some(v),
            b"from" => event.from = Some(v),
            _ => {}
        }
    }
    let (Some(op), Some(model), Some(key), Some(scope), Some(version), Some(origin), Some(by)) =
        (seen.0, seen.1, seen.2, seen.3, seen.4, seen.5, seen.6)
    else {
        return Err(event.wrong("a header field is missing".into()));
    };
    event.op = ChangeOp::parse(&op).ok_or_else(|| event.wrong(format!("unknown op {op:?}")))?;
    event.version = version
        .parse()
        .map_err(|_| event.wrong("the version is not a number".into()))?;
    event.by_host = match by.as_str() {
        "host" | "admin" => true,
        "tenant" => false,
        _ => return Err(event.wrong("unknown writer kind".into())),
    };
    match (source, scope.as_str()) {
        (FeedSource::Shared(m, id), "shared") if *m == model && id.as_str() == key => {}
        (FeedSource::Tenant(t), "tenant") if seen.7.as_deref() == Some(t.as_str()) => {
            // The key of an instance of the model in the tenant's keyspace, in either layout.
            let prefix = format!("{}:", keys::escape(&model));
            let bare = Layout::of_instance_key(&key).strip_tenant(t.as_str(), &key);
            if !bare.is_some_and(|k| k.starts_with(&prefix)) {
                return Err(event.wrong("the key is not an instance key of the model".into()));
            }
        }
        _ => return Err(event.wrong("the event is not this stream's".into())),
    }
    event.model = model;
    event.key = key;
    event.origin = origin;
    Ok(event)
}
