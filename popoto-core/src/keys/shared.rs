//! The layout of shared instances, their grants and the change feeds (part of the layout
//! module: nothing else formats these keys).
//!
//! Shared instances live under `$Shared`, outside every tenant's keys; change feeds under
//! `$Feed`. Both prefixes start with `$`, so no model instance key can be one of them, and no
//! index prefix of a model (`$Class`, `$KeyF`, `$UniqueKeyF`, `$SortF`, `$ConfidencF`) nor the
//! catalog's or the job queues' is either. Every segment is escaped as a key segment.

use super::{escape, glob_escape, push_seg, unescape};

/// Prefix of the shared-model keyspace.
const SHARED: &str = "$Shared";

/// One shared instance's key of kind `kind`: `$Shared:<kind>:<seg(Model)>:<seg(id)>`.
fn shared_key(kind: &str, model: &str, id: &str) -> String {
    let mut out = String::with_capacity(SHARED.len() + kind.len() + model.len() + id.len() + 4);
    out.push_str(SHARED);
    out.push(':');
    out.push_str(kind);
    push_seg(&mut out, model);
    push_seg(&mut out, id);
    out
}

/// `$Shared:value:<seg(Model)>:<seg(id)>`: the hash of a shared instance's fields (the bytes a
/// private instance's hash holds), outside every tenant's keys.
pub fn shared_value_key(model: &str, id: &str) -> String {
    shared_key("value", model, id)
}

/// `$Shared:meta:<seg(Model)>:<seg(id)>`: model name, id, merge strategy and version of a
/// shared instance.
pub fn shared_meta_key(model: &str, id: &str) -> String {
    shared_key("meta", model, id)
}

/// `$Shared:tags:<seg(Model)>:<seg(id)>`: the (clock, replica) tag of each field of a shared
/// instance merged as an LWW map.
pub fn shared_tags_key(model: &str, id: &str) -> String {
    shared_key("tags", model, id)
}

/// `$Shared:subs:<seg(Model)>:<seg(id)>`: the subscribers of a shared instance (tenant id ->
/// `r` or `w`): the grant every read and write script checks.
pub fn shared_subs_key(model: &str, id: &str) -> String {
    shared_key("subs", model, id)
}

/// `$Shared:ids:<seg(Model)>`: the ids of a model's shared instances (set).
pub fn shared_ids_key(model: &str) -> String {
    let mut out = format!("{SHARED}:ids");
    push_seg(&mut out, model);
    out
}

/// `$Shared:grants:<seg(tenant)>`: a tenant's side of its grants (field
/// [`shared_grant_field`] -> access and feed start), kept equal to the subscriber hashes.
pub fn shared_grants_key(tenant: &str) -> String {
    let mut out = format!("{SHARED}:grants");
    push_seg(&mut out, tenant);
    out
}

/// `<seg(Model)>:<seg(id)>`: the field naming one shared instance in a grants hash.
pub fn shared_grant_field(model: &str, id: &str) -> String {
    let mut out = escape(model).into_owned();
    push_seg(&mut out, id);
    out
}

/// Model name and id of a grants hash field, or `None` if it is not two escaped segments.
pub fn parse_shared_grant_field(field: &str) -> Option<(String, String)> {
    let mut parts = field.split(':');
    let (model, id) = (parts.next()?, parts.next()?);
    if parts.next().is_some() || model.is_empty() || id.is_empty() {
        return None;
    }
    Some((unescape(model).into_owned(), unescape(id).into_owned()))
}

/// MATCH pattern of every key of the shared-model keyspace.
pub fn shared_pattern() -> String {
    format!("{}:*", glob_escape(SHARED))
}

/// What a key of the shared-model keyspace is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SharedKey {
    /// `$Shared:value|meta|tags|subs:<Model>:<id>`: the kind (`value`...), model and id.
    Instance(&'static str, String, String),
    /// `$Shared:ids:<Model>`.
    Ids(String),
    /// `$Shared:grants:<tenant>`.
    Grants(String),
}

/// Classifies a key of the shared keyspace, or `None` if popoto writes no such key.
pub fn parse_shared_key(key: &str) -> Option<SharedKey> {
    let rest = key.strip_prefix(SHARED)?.strip_prefix(':')?;
    let parts: Vec<&str> = rest.split(':').collect();
    let seg = |s: &str| unescape(s).into_owned();
    match parts.as_slice() {
        [kind, model, id] if !model.is_empty() && !id.is_empty() => {
            let kind = ["value", "meta", "tags", "subs"]
                .into_iter()
                .find(|k| k == kind)?;
            Some(SharedKey::Instance(kind, seg(model), seg(id)))
        }
        ["ids", model] if !model.is_empty() => Some(SharedKey::Ids(seg(model))),
        ["grants", tenant] if !tenant.is_empty() => Some(SharedKey::Grants(seg(tenant))),
        _ => None,
    }
}

/// Prefix of the change-feed keyspace (streams and their bookkeeping).
const FEED: &str = "$Feed";

/// Whose change feed a stream is: one tenant's private writes, or one shared instance's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FeedOf<'a> {
    /// The tenant's stream (its private models that opt in).
    Tenant(&'a str),
    /// A shared instance's stream: model and id.
    Shared(&'a str, &'a str),
}

fn feed_suffix(out: &mut String, of: FeedOf<'_>) {
    match of {
        FeedOf::Tenant(t) => {
            out.push_str(":tenant");
            push_seg(out, t);
        }
        FeedOf::Shared(m, id) => {
            out.push_str(":shared");
            push_seg(out, m);
            push_seg(out, id);
        }
    }
}

/// `$Feed:tenant:<seg(tenant)>` or `$Feed:shared:<seg(Model)>:<seg(id)>`: the Redis Stream of
/// change events.
pub fn feed_stream_key(of: FeedOf<'_>) -> String {
    let mut out = FEED.to_owned();
    feed_suffix(&mut out, of);
    out
}

/// `$Feed:meta:<tenant:..|shared:..>`: a stream's event counter, retention, trim floor and
/// consumer groups (hash).
pub fn feed_meta_key(of: FeedOf<'_>) -> String {
    let mut out = format!("{FEED}:meta");
    feed_suffix(&mut out, of);
    out
}

/// `$Feed:done:<seg(group)>:<tenant:..|shared:..>`: the entry ids a consumer group finished
/// (zset scored by the id's milliseconds), so a redelivered entry is not handled twice.
pub fn feed_done_key(of: FeedOf<'_>, group: &str) -> String {
    let mut out = format!("{FEED}:done");
    push_seg(&mut out, group);
    feed_suffix(&mut out, of);
    out
}

/// `$Feed:dead:<seg(group)>:<tenant:..|shared:..>`: a consumer group's dead letters (stream).
pub fn feed_dead_key(of: FeedOf<'_>, group: &str) -> String {
    let mut out = format!("{FEED}:dead");
    push_seg(&mut out, group);
    feed_suffix(&mut out, of);
    out
}

/// MATCH pattern of every key of the change-feed keyspace.
pub fn feed_pattern() -> String {
    format!("{}:*", glob_escape(FEED))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_and_feed_keys_escape_their_segments_and_parse_back() {
        assert_eq!(
            shared_value_key("Doc", "a:b"),
            "$Shared:value:Doc:a{&#58;}b"
        );
        assert_eq!(shared_grants_key("acme-1"), "$Shared:grants:acme/-1");
        assert_eq!(shared_ids_key("Doc"), "$Shared:ids:Doc");
        let field = shared_grant_field("Doc", "x:*");
        assert_eq!(field, "Doc:x{&#58;}/*");
        assert_eq!(
            parse_shared_grant_field(&field),
            Some(("Doc".into(), "x:*".into()))
        );
        assert_eq!(parse_shared_grant_field("Doc"), None);
        assert_eq!(parse_shared_grant_field("a:b:c"), None);
        assert_eq!(
            parse_shared_key(&shared_subs_key("Doc", "1")),
            Some(SharedKey::Instance("subs", "Doc".into(), "1".into()))
        );
        assert_eq!(
            parse_shared_key("$Shared:grants:a{&#58;}b"),
            Some(SharedKey::Grants("a:b".into()))
        );
        assert_eq!(parse_shared_key("$Shared:other:Doc:1"), None);
        assert_eq!(parse_shared_key("$SharedX:value:Doc:1"), None);
        assert_eq!(
            feed_stream_key(FeedOf::Tenant("a:b")),
            "$Feed:tenant:a{&#58;}b"
        );
        assert_eq!(
            feed_stream_key(FeedOf::Shared("Doc", "1")),
            "$Feed:shared:Doc:1"
        );
        assert_eq!(
            feed_meta_key(FeedOf::Shared("Doc", "1")),
            "$Feed:meta:shared:Doc:1"
        );
        assert_eq!(
            feed_dead_key(FeedOf::Tenant("t"), "g:1"),
            "$Feed:dead:g{&#58;}1:tenant:t"
        );
        assert_eq!(
            feed_done_key(FeedOf::Tenant("t"), "g"),
            "$Feed:done:g:tenant:t"
        );
    }
}
