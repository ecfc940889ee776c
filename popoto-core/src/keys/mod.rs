//! The Redis layout of popoto 1.10.1: the only code that builds key strings and MATCH patterns.
//!
//! Every segment goes through [`escape`] (Popoto's `DB_key.clean`), so a value can never add a
//! `:` separator or a glob metacharacter to a key. Confidence partition segments are the one
//! exception Popoto makes (they are not escaped); [`confidence_key`] refuses values that would
//! make such a key ambiguous instead.

use std::borrow::Cow;

use crate::error::{Error, Result};
use crate::model::{FieldKind, Key, Model, ModelMeta};

mod any_model;
mod catalog;
mod layout;
pub(crate) mod layout_kind;
mod shared;
mod shared_layout;
mod tags;

pub use any_model::{index_shape, instance_of, IndexShape, ANY_INDEX_PATTERNS};
pub use catalog::*;
pub use layout_kind::Layout;
pub use shared::*;
pub use tags::{hash_tag, shared_tag, slot_text, tag};

/// Popoto's escape token for `:`.
const COLON: &str = "{&#58;}";
/// Characters escaped with a `/` prefix (besides `/` itself).
const SLASHED: &[char] = &['\'', '?', '*', '^', '[', ']', '-'];
/// [`SLASHED`] as bytes (all ASCII).
const SLASHED_BYTES: &[u8] = b"'?*^[]-";

/// Escapes one key segment exactly as Popoto's `DB_key.clean`.
///
/// ```
/// use popoto_core::keys::escape;
/// assert_eq!(escape("umbrella:eu-1"), "umbrella{&#58;}eu/-1");
/// assert_eq!(escape("acme"), "acme");
/// ```
pub fn escape(raw: &str) -> Cow<'_, str> {
    // Every character escape changes is ASCII, and COLON starts with `{`: one byte scan.
    if !raw
        .bytes()
        .any(|b| b == b'/' || b == b':' || b == b'{' || SLASHED_BYTES.contains(&b))
        || (!raw.contains(|c| c == '/' || c == ':' || SLASHED.contains(&c)) && !raw.contains(COLON))
    {
        return Cow::Borrowed(raw);
    }
    let mut out = String::with_capacity(raw.len() + 8);
    let mut rest = raw;
    while let Some(c) = rest.chars().next() {
        if rest.starts_with(COLON) {
            out.push('/');
            out.push_str(COLON);
            rest = &rest[COLON.len()..];
            continue;
        }
        match c {
            '/' => out.push_str("//"),
            ':' => out.push_str(COLON),
            c if SLASHED.contains(&c) => {
                out.push('/');
                out.push(c);
            }
            c => out.push(c),
        }
        rest = &rest[c.len_utf8()..];
    }
    Cow::Owned(out)
}

/// Reverses [`escape`] (Popoto's `DB_key.unclean`): a single left-to-right scan.
///
/// ```
/// use popoto_core::keys::{escape, unescape};
/// assert_eq!(unescape("a{&#58;}b//c/*"), "a:b/c*");
/// assert_eq!(unescape(&escape("x/{&#58;}:y")), "x/{&#58;}:y");
/// ```
pub fn unescape(seg: &str) -> Cow<'_, str> {
    // COLON starts with `{`: one byte scan finds the segments with nothing to undo.
    if !seg.bytes().any(|b| b == b'/' || b == b'{') || (!seg.contains('/') && !seg.contains(COLON))
    {
        return Cow::Borrowed(seg);
    }
    let mut out = String::with_capacity(seg.len());
    let mut rest = seg;
    while let Some(c) = rest.chars().next() {
        if c == '/' {
            if let Some(next) = rest[1..].chars().next() {
                if next == '/' || next == '{' || SLASHED.contains(&next) {
                    out.push(next);
                    rest = &rest[1 + next.len_utf8()..];
                    continue;
                }
            }
        } else if rest.starts_with(COLON) {
            out.push(':');
            rest = &rest[COLON.len()..];
            continue;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    Cow::Owned(out)
}

/// Escapes Redis glob metacharacters (`*?[]\^-`) so that a pattern matches the text literally.
///
/// ```
/// assert_eq!(popoto_core::keys::glob_escape("a*[b]"), r"a\*\[b\]");
/// ```
pub fn glob_escape(text: &str) -> Cow<'_, str> {
    const META: &[char] = &['*', '?', '[', ']', '\\', '^', '-'];
    if !text.contains(META) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 4);
    for c in text.chars() {
        if META.contains(&c) {
            out.push('\\');
        }
        out.push(c);
    }
    Cow::Owned(out)
}

fn push_seg(out: &mut String, raw: &str) {
    out.push(':');
    out.push_str(&escape(raw));
}

/// `<Model>:<seg(k1)>:<seg(k2)>...` from unescaped segments in key-field order.
pub fn instance_key(meta: &ModelMeta, segments: &[String]) -> String {
    let mut out = String::with_capacity(
        meta.name.len() + segments.iter().map(|s| s.len() + 1).sum::<usize>(),
    );
    out.push_str(&escape(meta.name));
    for s in segments {
        push_seg(&mut out, s);
    }
    out
}

/// Splits an instance key into its unescaped segments, checking model name and arity.
pub fn parse_instance_key(meta: &'static ModelMeta, key: &str) -> Result<Vec<String>> {
    let mut segments = Vec::with_capacity(meta.key_fields.len());
    visit_instance_key(meta, key, |_, s| segments.push(s.into_owned()))?;
    Ok(segments)
}

/// Checks that `key` is an instance key of `meta` (model name and arity) and hands each
/// unescaped segment, with its position, to `visit` (borrowed where nothing was escaped): what
/// [`parse_instance_key`] does, without allocating for a key that needs no unescaping.
pub(crate) fn visit_instance_key<'k>(
    meta: &'static ModelMeta,
    key: &'k str,
    mut visit: impl FnMut(usize, Cow<'k, str>),
) -> Result<()> {
    let malformed = |reason: &str| Error::MalformedKey {
        model: meta.name,
        key: key.to_owned(),
        reason: reason.to_owned(),
    };
    let mut parts = key.split(':');
    let name = parts.next().unwrap_or_default();
    if name != escape(meta.name) {
        return Err(malformed(
            "the key does not start with the model's class name",
        ));
    }
    let expected = meta.key_fields.len();
    let mut found = 0;
    for p in parts {
        if found < expected {
            visit(found, unescape(p));
        }
        found += 1;
    }
    if found != expected {
        return Err(malformed(&format!(
            "expected {expected} key segments, found {found}"
        )));
    }
    Ok(())
}

/// `$Class:<Model>`: the set of every instance key.
pub fn class_key(meta: &ModelMeta) -> String {
    let model = escape(meta.name);
    let mut out = String::with_capacity(7 + model.len());
    out.push_str("$Class:");
    out.push_str(&model);
    out
}

/// `<prefix>:<Model>:<field>`, with room for `extra` more bytes.
fn field_base_with(meta: &ModelMeta, field: usize, extra: usize) -> String {
    let f = &meta.fields[field];
    let prefix = f.kind.prefix().unwrap_or("$F");
    let (model, name) = (escape(meta.name), escape(f.name));
    let mut out = String::with_capacity(prefix.len() + model.len() + name.len() + 2 + extra);
    out.push_str(prefix);
    out.push(':');
    out.push_str(&model);
    out.push(':');
    out.push_str(&name);
    out
}

fn field_base(meta: &ModelMeta, field: usize) -> String {
    field_base_with(meta, field, 0)
}

/// `$KeyF:<Model>:<field>:<seg(v)>` (or `$UniqueKeyF:...`): the value set of a key field.
pub fn value_set_key(meta: &ModelMeta, field: usize, value: &str) -> String {
    let mut out = field_base_with(meta, field, value.len() + 8);
    push_seg(&mut out, value);
    out
}

/// `$SortF:<Model>:<field>[:<seg(p1)>...]`: the zset of a sorted field in one partition.
pub fn sorted_key(meta: &ModelMeta, field: usize, partition: &[&str]) -> String {
    let extra = partition.iter().map(|p| p.len() + 8).sum();
    let mut out = field_base_with(meta, field, extra);
    for p in partition {
        push_seg(&mut out, p);
    }
    out
}

/// Glob matching every partition zset of a sorted field and its unpartitioned key.
pub fn sorted_pattern(meta: &ModelMeta, field: usize) -> String {
    format!("{}*", glob_escape(&field_base(meta, field)))
}

/// `$ConfidencF:<Model>:<field>:data[:<p1>...]`, with Popoto's unescaped partition segments.
///
/// With several partition fields, refuses a value that would make the key ambiguous: one
/// containing `:` (it would read as two segments) or an empty one. With one partition field the
/// key stays unambiguous, so any value is accepted (popoto writes `...:data:umbrella:eu-1`).
pub fn confidence_key(
    meta: &'static ModelMeta,
    field: usize,
    partition: &[&str],
) -> Result<String> {
    let f = &meta.fields[field];
    debug_assert!(matches!(f.kind, FieldKind::Confidence { .. }));
    let extra = 5 + partition.iter().map(|p| p.len() + 1).sum::<usize>();
    let mut out = field_base_with(meta, field, extra);
    out.push_str(":data");
    for (i, p) in partition.iter().enumerate() {
        if partition.len() > 1 && (p.contains(':') || p.is_empty()) {
            let pf = f
                .partition_by
                .get(i)
                .map_or(f.name, |&j| meta.fields[j].name);
            return Err(Error::InvalidValue {
                model: meta.name,
                field: pf,
                reason: format!(
                    "partition value {p:?} would make the companion key of {} ambiguous (Popoto does not escape it)",
                    f.name
                ),
            });
        }
        out.push(':');
        out.push_str(p);
    }
    Ok(out)
}

/// Prefix of the expiry sets: not a popoto prefix (popoto keeps no record of expiry besides the
/// hash's own TTL).
const EXPIRY: &str = "$ExpireF";

/// `$ExpireF:<Model>[:<seg(tenant)>]`: the zset of the instances of a model (of one tenant, for
/// a tenant model) that expire, scored by their expiry time in milliseconds since the epoch.
/// An instance's index entries are removed from it once the hash is gone (`expiry.rs`).
pub fn expiry_key(meta: &ModelMeta, tenant: Option<&str>) -> String {
    let model = escape(meta.name);
    let mut out = String::with_capacity(EXPIRY.len() + model.len() + 24);
    out.push_str(EXPIRY);
    out.push(':');
    out.push_str(&model);
    if let Some(t) = tenant {
        push_seg(&mut out, t);
    }
    out
}

/// MATCH pattern for every expiry set of a model (candidates: [`parse_index_key`] keeps the
/// model's own).
pub fn expiry_pattern(meta: &ModelMeta) -> String {
    format!("{}*", glob_escape(&expiry_key(meta, None)))
}

/// The tenant of expiry set `key` of `meta` (`Some(None)` for an untenanted model's set), or
/// `None` if `key` is not one of the model's expiry sets.
pub fn expiry_tenant(meta: &ModelMeta, key: &str) -> Option<Option<String>> {
    let rest = key.strip_prefix(&expiry_key(meta, None))?;
    match (meta.tenant, rest.strip_prefix(':')) {
        (None, None) if rest.is_empty() => Some(None),
        (Some(_), Some(seg)) if !seg.is_empty() && !seg.contains(':') => {
            Some(Some(unescape(seg).into_owned()))
        }
        _ => None,
    }
}

/// MATCH pattern for instance keys whose key fields have the given values (`*` elsewhere);
/// every value is escaped twice: as a key segment, then for the glob.
pub fn instance_match<'a>(meta: &ModelMeta, value: &dyn Fn(usize) -> Option<&'a str>) -> String {
    let mut out = glob_escape(&escape(meta.name)).into_owned();
    for &i in meta.key_fields {
        out.push(':');
        match value(i) {
            Some(v) => out.push_str(&glob_escape(&escape(v))),
            None => out.push('*'),
        }
    }
    out
}

/// MATCH pattern for every key with a segment starting with `value` (`*:<value>*`): escaped
/// as a key segment, or raw (`escaped` false) as Popoto writes companion partition segments,
/// then glob-escaped. Matches are candidates only: callers check each one exactly.
///
/// ```
/// assert_eq!(popoto_core::keys::segment_match("a-b", true), r"*:a/\-b*");
/// assert_eq!(popoto_core::keys::segment_match("a-b", false), r"*:a\-b*");
/// ```
pub fn segment_match(value: &str, escaped: bool) -> String {
    let seg = if escaped {
        escape(value)
    } else {
        Cow::Borrowed(value)
    };
    format!("*:{}*", glob_escape(&seg))
}

/// MATCH patterns covering every index key of a model: `$Class` and each indexed field's keys.
pub fn index_patterns(meta: &ModelMeta) -> Vec<String> {
    let mut out = vec![glob_escape(&class_key(meta)).into_owned()];
    if meta.expires() {
        out.push(expiry_pattern(meta));
    }
    for (i, f) in meta.fields.iter().enumerate() {
        if matches!(
            f.kind,
            FieldKind::Key
                | FieldKind::UniqueKey
                | FieldKind::Sorted
                | FieldKind::Confidence { .. }
        ) {
            out.push(format!("{}*", glob_escape(&field_base(meta, i))));
        }
    }
    out
}

/// Whether `key` is one of the model's index keys (`$Class` or an indexed field's key).
pub fn is_index_key(meta: &ModelMeta, key: &str) -> bool {
    if key == class_key(meta) || (meta.expires() && expiry_tenant(meta, key).is_some()) {
        return true;
    }
    meta.fields.iter().enumerate().any(|(i, f)| {
        matches!(
            f.kind,
            FieldKind::Key
                | FieldKind::UniqueKey
                | FieldKind::Sorted
                | FieldKind::Confidence { .. }
        ) && key
            .strip_prefix(&field_base(meta, i))
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(':'))
    })
}

/// MATCH pattern for every instance key of a model (SCAN).
pub fn instance_pattern(meta: &ModelMeta) -> String {
    format!("{}:*", glob_escape(&escape(meta.name)))
}

/// `$Jobs:<seg(queue)>`: the Redis Stream of a background job queue (popoto-axum); no model's
/// key or index pattern matches it.
pub fn job_stream_key(queue: &str) -> String {
    format!("$Jobs:{}", escape(queue))
}

/// The label of a partition key in migration reports: the text after `<unpartitioned>:`
/// (for a confidence field, what follows `:data:`; for a sorted field, the escaped partition
/// segments), or `default` when `partitioned` is not below `unpartitioned`.
pub fn partition_label(unpartitioned: &str, partitioned: &str) -> String {
    partitioned
        .strip_prefix(unpartitioned)
        .and_then(|rest| rest.strip_prefix(':'))
        .filter(|label| !label.is_empty())
        .unwrap_or("default")
        .to_owned()
}

/// MATCH pattern (for an `SSCAN` of an index set of instance keys) narrowing to keys whose
/// key field `field` may contain `needle` (with a wildcard `before` it, `after` it, or both: a
/// suffix, prefix or substring lookup); other key fields are `fixed` values or `*`. A superset: `*` also matches
/// `:`, and a needle holding `{` (which could meet an escaped `{&#58;}` half-way) does not
/// narrow at all, so callers compare the parsed segment exactly. Values are escaped as key
/// segments, then for the glob: a needle cannot widen the pattern.
pub fn lookup_match<'a>(
    meta: &ModelMeta,
    fixed: &dyn Fn(usize) -> Option<&'a str>,
    field: usize,
    needle: &str,
    (before, after): (bool, bool),
) -> String {
    let mut out = glob_escape(&escape(meta.name)).into_owned();
    for &i in meta.key_fields {
        out.push(':');
        if let Some(v) = fixed(i) {
            out.push_str(&glob_escape(&escape(v)));
            continue;
        }
        if i != field || needle.is_empty() || needle.contains('{') {
            out.push('*');
            continue;
        }
        if before {
            out.push('*');
        }
        out.push_str(&glob_escape(&escape(needle)));
        if after {
            out.push('*');
        }
    }
    out
}

/// MATCH pattern for every `$`-prefixed index key of a model except `$Class:<Model>`
/// (`$*:<Model>:*`); [`parse_index_key`] then keeps exactly the model's own index keys.
pub fn index_pattern(meta: &ModelMeta) -> String {
    format!("$*:{}:*", glob_escape(&escape(meta.name)))
}

/// What an index key of a model indexes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IndexKind {
    /// `$Class:<Model>`.
    Class,
    /// A `$KeyF`/`$UniqueKeyF` value set of the key field at this index.
    ValueSet(usize),
    /// A `$SortF` zset (any partition, or the unpartitioned key) of the sorted field at this index.
    Sorted(usize),
    /// A `$ConfidencF` companion hash (any partition, or the unpartitioned one) of this field.
    Confidence(usize),
    /// An `$ExpireF` expiry set (of one tenant, for a tenant model).
    Expiry,
}

/// Classifies `key` as one of the model's index keys by exact prefix, or `None`.
///
/// Unlike popoto's `rebuild_indexes` (which matches `$SortF:<Model>:<field>*`), a field's keys
/// are the base key itself or the base key followed by `:`, so field `score` never claims the
/// keys of a field `scores`.
pub fn parse_index_key(meta: &ModelMeta, key: &str) -> Option<IndexKind> {
    if key == class_key(meta) {
        return Some(IndexKind::Class);
    }
    if meta.expires() && expiry_tenant(meta, key).is_some() {
        return Some(IndexKind::Expiry);
    }
    let below = |base: &str| {
        key.strip_prefix(base)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(':'))
    };
    for (i, f) in meta.fields.iter().enumerate() {
        let base = field_base(meta, i);
        match f.kind {
            FieldKind::Key | FieldKind::UniqueKey
                if key
                    .strip_prefix(base.as_str())
                    .is_some_and(|rest| rest.starts_with(':')) =>
            {
                return Some(IndexKind::ValueSet(i));
            }
            FieldKind::Sorted if below(&base) => return Some(IndexKind::Sorted(i)),
            FieldKind::Confidence { .. } if below(&format!("{base}:data")) => {
                return Some(IndexKind::Confidence(i));
            }
            _ => {}
        }
    }
    None
}

/// An instance key's Redis form, asked of a layout (the key itself holds only its segments).
impl<M: Model> Key<M> {
    /// The Redis key of the instance in popoto's layout (see [`Key::redis_key_in`]).
    pub fn redis_key(&self) -> String {
        self.redis_key_in(Layout::Popoto)
    }

    /// The Redis key of the instance in `layout`.
    pub fn redis_key_in(&self, layout: Layout) -> String {
        layout.instance_key(M::META, self.segments())
    }

    /// Parses a Redis instance key of this model in popoto's layout.
    pub fn parse(key: &str) -> Result<Self> {
        Self::parse_in(Layout::Popoto, key)
    }

    /// Parses a Redis instance key of this model in `layout`.
    pub fn parse_in(layout: Layout, key: &str) -> Result<Self> {
        let segments = layout.parse_instance_key(M::META, key)?;
        Ok(Key::from_segments(segments))
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod layout_tests;
