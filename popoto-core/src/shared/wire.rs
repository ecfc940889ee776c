//! The script calls of shared instances and the verification of what they return.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use redis::Value;

use super::{Access, Merge, Shared, SharedId, Tag, Written};
use crate::backend::{Backend, Script};
use crate::error::{Error, Result};
use crate::keys::{FeedOf, Layout};
use crate::model::Model;
use crate::tenant::TenantId;

/// One write of a shared instance (`lua/shared_write.lua`, after the feed prelude).
pub(crate) static WRITE: LazyLock<Script> =
    LazyLock::new(|| Script::new(crate::script::lua!("feed_common.lua", "shared_write.lua")));

/// One read with its grant check (`lua/shared_read.lua`).
pub(crate) static READ: LazyLock<Script> =
    LazyLock::new(|| Script::new(crate::script::lua!("shared_read.lua")));

/// Attempts of a version-checked write (a custom merge) or of a call re-checked against what
/// was read (unshare, purge) before [`Error::Contention`]: enough for 64 writers racing on one
/// instance, each losing to every other one once.
pub(crate) const ATTEMPTS: u32 = 256;

/// Label of errors and traces.
pub(super) const OP: &str = "shared";

/// Every key of one shared instance, in a layout.
pub(super) struct InstanceKeys {
    pub(super) value: String,
    pub(super) meta: String,
    pub(super) tags: String,
    pub(super) subs: String,
    /// The model's id set, where the layout keeps one (popoto's).
    pub(super) ids: Option<String>,
    pub(super) stream: String,
    pub(super) feed_meta: String,
}

impl InstanceKeys {
    pub(super) fn of(layout: Layout, model: &str, id: &str) -> InstanceKeys {
        InstanceKeys {
            value: layout.shared_value_key(model, id),
            meta: layout.shared_meta_key(model, id),
            tags: layout.shared_tags_key(model, id),
            subs: layout.shared_subs_key(model, id),
            ids: layout.shared_ids_key(model),
            stream: layout.feed_stream_key(FeedOf::Shared(model, id)),
            feed_meta: layout.feed_meta_key(FeedOf::Shared(model, id)),
        }
    }
}

/// Who runs a call: the host, or a tenant (whose grant the script checks).
#[derive(Debug, Clone, Copy)]
pub(super) enum Who<'a> {
    Host,
    Tenant(&'a TenantId),
}

impl Who<'_> {
    fn arg(&self) -> &str {
        match self {
            Who::Host => "",
            Who::Tenant(t) => t.as_str(),
        }
    }
}

/// The write modes of `shared_write.lua`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    Share(Merge),
    Set,
    Patch,
    Cas(u64),
}

/// A refusal or outcome of a script call other than success.
fn refusal(layout: Layout, model: &'static str, id: &SharedId, reply: &[Value]) -> Error {
    let text = |i: usize| match reply.get(i) {
        Some(Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
        Some(Value::SimpleString(s)) => s.clone(),
        Some(Value::Int(n)) => n.to_string(),
        _ => String::new(),
    };
    let id_s = id.to_string();
    match text(0).as_str() {
        "missing" => Error::SharedNotFound { model, id: id_s },
        "exists" => Error::SharedExists { model, id: id_s },
        "denied" if text(1) == "r" => Error::ReadOnly { model, id: id_s },
        "denied" => Error::NotSubscribed { model, id: id_s },
        "merge" => Error::SharedMerge {
            model,
            id: id_s,
            merge: Merge::parse(&text(1)).unwrap_or(Merge::Custom),
        },
        "wrongtype" => Error::WrongType {
            model,
            key: text(1),
            found: text(2),
        },
        "corrupt" => Error::CorruptShared {
            key: layout.shared_meta_key(model, id.as_str()),
            reason: text(1),
        },
        "badtag" => Error::InvalidValue {
            model,
            field: "<tag>",
            reason: format!("field {} carries no valid tag", text(1)),
        },
        "changed" => Error::Contention {
            model,
            key: layout.shared_value_key(model, id.as_str()),
            attempts: 1,
        },
        _ => protocol(model, &reply),
    }
}

pub(super) fn protocol(model: &'static str, reply: &dyn std::fmt::Debug) -> Error {
    let mut detail = format!("{reply:?}");
    detail.truncate(200);
    Error::Protocol {
        op: OP,
        model,
        detail,
    }
}

/// Reply fields as numbers and text, read as the feed reads them.
pub(super) use crate::feed::wire::{num as int, text};

/// The outcome of a write call: done (possibly stale: no entry), or refused by the version
/// check of a custom merge (another write landed first).
pub(super) enum WriteReply {
    Done(Written),
    Changed,
}

/// Sends one write: `fields` are (name, bytes, tag).
#[allow(clippy::too_many_arguments)]
pub(super) async fn write<M: Model>(
    backend: &Backend,
    id: &SharedId,
    who: Who<'_>,
    origin: &str,
    mode: Mode,
    fields: &[(&str, &[u8], Option<Tag>)],
) -> Result<WriteReply> {
    let model = M::META.name;
    let k = InstanceKeys::of(backend.layout(), model, id.as_str());
    let mut keys = vec![k.value, k.meta, k.tags, k.subs, k.stream, k.feed_meta];
    keys.extend(k.ids);
    let (mode_s, merge, expected) = match mode {
        Mode::Share(m) => ("share", m.code(), 0),
        Mode::Set => ("set", "", 0),
        Mode::Patch => ("patch", "", 0),
        Mode::Cas(v) => ("cas", "", v),
    };
    let mut args: Vec<Vec<u8>> = Vec::with_capacity(8 + 3 * fields.len());
    for a in [
        mode_s,
        model,
        id.as_str(),
        who.arg(),
        origin,
        merge,
        &expected.to_string(),
        &fields.len().to_string(),
    ] {
        args.push(a.as_bytes().to_vec());
    }
    for (name, bytes, tag) in fields {
        args.push(name.as_bytes().to_vec());
        args.push(bytes.to_vec());
        args.push(
            tag.as_ref()
                .map(Tag::encode)
                .unwrap_or_default()
                .into_bytes(),
        );
    }
    let reply = backend.eval(OP, model, &WRITE, &keys, &args).await?;
    let Value::Array(items) = reply else {
        return Err(protocol(model, &reply));
    };
    match text(items.first()).as_deref() {
        Some("ok") => {
            let (Some(version), Some(entry), Some(applied)) =
                (int(items.get(1)), text(items.get(2)), int(items.get(3)))
            else {
                return Err(protocol(model, &items));
            };
            Ok(WriteReply::Done(Written {
                version,
                entry: Some(entry),
                applied: usize::try_from(applied).unwrap_or(usize::MAX),
            }))
        }
        Some("stale") => match int(items.get(1)) {
            Some(version) => Ok(WriteReply::Done(Written {
                version,
                entry: None,
                applied: 0,
            })),
            None => Err(protocol(model, &items)),
        },
        Some("changed") => Ok(WriteReply::Changed),
        _ => Err(refusal(backend.layout(), model, id, &items)),
    }
}

/// Pairs of a flat `HGETALL` reply.
fn pairs(v: Option<&Value>) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
    let Value::Array(items) = v? else {
        return None;
    };
    let mut out = Vec::with_capacity(items.len() / 2);
    for c in items.chunks(2) {
        match c {
            [Value::BulkString(k), Value::BulkString(v)] => out.push((k.clone(), v.clone())),
            _ => return None,
        }
    }
    Some(out)
}

/// Reads one instance (the grant checked in the same call for a tenant) and verifies what
/// Redis returned: the meta hash names this model and id with a known strategy and a version,
/// every tag of a declared field parses, and the value decodes.
pub(super) async fn read<M: Model>(
    backend: &Backend,
    id: &SharedId,
    who: Who<'_>,
) -> Result<Shared<M>> {
    let model = M::META.name;
    let k = InstanceKeys::of(backend.layout(), model, id.as_str());
    let keys = vec![k.value.clone(), k.meta.clone(), k.tags.clone(), k.subs];
    let args: Vec<Vec<u8>> = [model, id.as_str(), who.arg()]
        .iter()
        .map(|a| a.as_bytes().to_vec())
        .collect();
    let reply = backend.eval(OP, model, &READ, &keys, &args).await?;
    let Value::Array(items) = reply else {
        return Err(protocol(model, &reply));
    };
    if text(items.first()).as_deref() != Some("ok") {
        return Err(refusal(backend.layout(), model, id, &items));
    }
    let corrupt = |key: &str, reason: String| Error::CorruptShared {
        key: key.to_owned(),
        reason,
    };
    let (Some(value), Some(meta), Some(tags), Some(access)) = (
        pairs(items.get(1)),
        pairs(items.get(2)),
        pairs(items.get(3)),
        text(items.get(4)),
    ) else {
        return Err(protocol(model, &items));
    };
    let meta: BTreeMap<Vec<u8>, Vec<u8>> = meta.into_iter().collect();
    let field = |name: &str| {
        meta.get(name.as_bytes())
            .and_then(|v| std::str::from_utf8(v).ok())
    };
    if field("model") != Some(model) || field("id") != Some(id.as_str()) {
        return Err(corrupt(
            &k.meta,
            "the meta hash names another instance".into(),
        ));
    }
    let merge = field("merge")
        .and_then(Merge::parse)
        .ok_or_else(|| corrupt(&k.meta, "unknown merge strategy".into()))?;
    let version: u64 = field("version")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| corrupt(&k.meta, "no version".into()))?;
    let access = match (who, access.as_str()) {
        (Who::Host, "host") => None,
        (Who::Tenant(_), a) => {
            Some(Access::parse(a).ok_or_else(|| protocol(model, &"access of a shared read"))?)
        }
        _ => return Err(protocol(model, &"access of a host read")),
    };
    let mut tag_map = BTreeMap::new();
    for (f, t) in tags {
        let (Ok(f), Ok(t)) = (String::from_utf8(f), std::str::from_utf8(&t)) else {
            return Err(corrupt(&k.tags, "a tag is not text".into()));
        };
        if !M::META.fields.iter().any(|m| m.name == f) {
            continue;
        }
        let tag = Tag::parse(t).map_err(|e| corrupt(&k.tags, e.to_string()))?;
        tag_map.insert(f, tag);
    }
    let value = M::from_hash(&k.value, value)?;
    Ok(Shared {
        id: id.clone(),
        value,
        version,
        merge,
        access,
        tags: tag_map,
    })
}

/// A refusal as an error (host module).
pub(super) fn refused(
    layout: Layout,
    model: &'static str,
    id: &SharedId,
    reply: &[Value],
) -> Error {
    refusal(layout, model, id, reply)
}

/// An unexpected reply as an error (host module).
pub(super) fn unexpected(model: &'static str, reply: &dyn std::fmt::Debug) -> Error {
    protocol(model, reply)
}
