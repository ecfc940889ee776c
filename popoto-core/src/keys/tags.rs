//! Hash tags of the cluster layout, as plain text functions (a leaf of the layout module): the
//! tag of a tenant's keyspace, of a model without a tenant, and of one shared instance; and the
//! tag Redis Cluster hashes a key by.
//!
//! No tag holds `{`, `}` or `:`, so Redis hashes exactly the tag and the tag is the first `{…}`
//! of a key. The kinds never meet: a tenant's tag starts with a character of `[A-Za-z0-9_.-]`
//! or `~`, a model's with `=`, a shared instance's with `$`.

/// Characters a tenant id may keep as they are in a hash tag.
fn plain(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
}

/// `text` as one tag segment: as it is when made only of `[A-Za-z0-9_.-]` (and not empty),
/// otherwise `~` and the hex of its bytes.
fn encode(text: &str) -> String {
    if !text.is_empty() && text.chars().all(plain) {
        return text.to_owned();
    }
    let mut out = String::with_capacity(1 + 2 * text.len());
    out.push('~');
    for b in text.bytes() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// The text `seg` encodes, if `seg` is written exactly as [`encode`] writes it.
fn decode(seg: &str) -> Option<String> {
    let text = match seg.strip_prefix('~') {
        Some(hex) if hex.len() % 2 == 0 => {
            let bytes = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
                .collect::<Option<Vec<u8>>>()?;
            String::from_utf8(bytes).ok()?
        }
        Some(_) => return None,
        None => seg.to_owned(),
    };
    (encode(&text) == seg).then_some(text)
}

/// The hash tag of a keyspace, without braces: a tenant id made only of `[A-Za-z0-9_.-]` as
/// it is, any other tenant id as `~` and the hex of its bytes (so no tag holds `{`, `}` or
/// `:`, and two tenants never share a tag); a model without a tenant (or a key built without
/// one) as `=` and its class name.
///
/// ```
/// use popoto_core::keys::tag;
/// assert_eq!(tag("M", Some("acme")), "acme");
/// assert_eq!(tag("M", Some("a}b")), "~617d62");
/// assert_eq!(tag("M", None), "=M");
/// ```
pub fn tag(model: &str, tenant: Option<&str>) -> String {
    match tenant {
        Some(t) => encode(t),
        None => format!("={model}"),
    }
}

/// The tenant whose hash tag `tag` is (the inverse of [`tag`]), if `tag` is a tenant's tag
/// exactly as [`tag`] writes it.
pub(crate) fn tenant_of_tag(tag: &str) -> Option<String> {
    decode(tag)
}

/// The hash tag of every key of shared instance `id` of `model` in the cluster layout, without
/// braces: `$`, the model and `$`, the id, each written as a tenant's tag is (`[A-Za-z0-9_.-]`
/// as it is, anything else as `~` and hex), so the instance's value, meta, tags, subscribers
/// and change feed share one slot, and two instances never share a tag.
///
/// ```
/// use popoto_core::keys::shared_tag;
/// assert_eq!(shared_tag("Doc", "e1"), "$Doc$e1");
/// assert_eq!(shared_tag("Doc", "a}b"), "$Doc$~617d62");
/// ```
pub fn shared_tag(model: &str, id: &str) -> String {
    format!("${}${}", encode(model), encode(id))
}

/// The start of the tag of every shared instance of `model` (`$`, the model and `$`).
pub(crate) fn shared_tag_prefix(model: &str) -> String {
    format!("${}$", encode(model))
}

/// Model and id of a shared instance's tag (the inverse of [`shared_tag`]), if `tag` is
/// written exactly as [`shared_tag`] writes it.
pub(crate) fn parse_shared_tag(tag: &str) -> Option<(String, String)> {
    let (model, id) = tag.strip_prefix('$')?.split_once('$')?;
    Some((decode(model)?, decode(id)?))
}

/// The hash tag Redis Cluster hashes `key` by: the text between its first `{` and the first
/// `}` after it, if not empty.
///
/// ```
/// use popoto_core::keys::hash_tag;
/// assert_eq!(hash_tag("{acme}$Feed:tenant:acme"), Some("acme"));
/// assert_eq!(hash_tag("$Feed:{}x"), None);
/// ```
pub fn hash_tag(key: &str) -> Option<&str> {
    let (_, rest) = key.split_once('{')?;
    let (tag, _) = rest.split_once('}')?;
    (!tag.is_empty()).then_some(tag)
}

/// What Redis Cluster hashes `key` by: its hash tag, or the whole key without one. Keys with
/// the same answer are in one slot.
pub fn slot_text(key: &str) -> &str {
    hash_tag(key).unwrap_or(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_tags_parse_back_only_as_written() {
        for (m, id) in [
            ("Doc", "e1"),
            ("Doc", "a}{b"),
            ("Doc", "$x$"),
            ("M_1", "~61"),
        ] {
            assert_eq!(
                parse_shared_tag(&shared_tag(m, id)),
                Some((m.to_owned(), id.to_owned()))
            );
        }
        for bad in ["Doc$e1", "$Doc", "$Doc$~61", "$Doc$e1$x", "$~zz$e1", "$$e1"] {
            assert_eq!(parse_shared_tag(bad), None, "{bad}");
        }
        assert_eq!(slot_text("{a}b"), "a");
        assert_eq!(slot_text("{}b"), "{}b");
    }
}
