//! The keys of shared instances and of the tenants' grants as a [`Layout`] gives them (part of
//! the layout module: nothing else formats these keys).
//!
//! [`Layout::Popoto`] writes popoto-rs's own keys as they always were (the free functions of
//! `shared.rs`: `$Shared:value:<Model>:<id>`, `$Shared:grants:<tenant>`, ...).
//! [`Layout::Cluster`] prefixes each with a hash tag: every key of one shared instance (value,
//! meta, tags, subscribers, and its change feed, see [`Layout::feed_stream_key`]) with the
//! instance's ([`super::shared_tag`]), a tenant's grants hash with the tenant's, so that every
//! read and write of one instance is one script call in one slot. The model-wide id set has no
//! slot of its own there: the cluster layout keeps none (a model's ids are found by scanning
//! for its meta hashes, each verified).

use super::layout_kind::Layout;
use super::tags::{parse_shared_tag, shared_tag, shared_tag_prefix, tag, tenant_of_tag};
use super::{
    escape, feed_pattern, feed_stream_key, glob_escape, parse_shared_key, shared_grants_key,
    shared_ids_key, shared_meta_key, shared_pattern, shared_subs_key, shared_tags_key,
    shared_value_key, FeedOf, SharedKey,
};

/// The popoto-layout prefix of every key of the shared keyspace.
const SHARED_PREFIX: &str = "$Shared:";

/// The prefix of a layout migration's staging keys (below the instance's tag on a cluster).
const STAGE_PREFIX: &str = "$Relayout:";

impl Layout {
    /// `key`, a key of shared instance `id` of `model`, under the instance's tag (cluster).
    fn shared_tagged(self, model: &str, id: &str, key: String) -> String {
        match self {
            Layout::Popoto => key,
            Layout::Cluster => format!("{{{}}}{key}", shared_tag(model, id)),
        }
    }

    /// The hash of a shared instance's fields (see [`super::shared_value_key`]).
    pub fn shared_value_key(self, model: &str, id: &str) -> String {
        self.shared_tagged(model, id, shared_value_key(model, id))
    }

    /// Model, id, merge strategy and version of a shared instance (see
    /// [`super::shared_meta_key`]).
    pub fn shared_meta_key(self, model: &str, id: &str) -> String {
        self.shared_tagged(model, id, shared_meta_key(model, id))
    }

    /// The per-field tags of a shared instance merged as an LWW map (see
    /// [`super::shared_tags_key`]).
    pub fn shared_tags_key(self, model: &str, id: &str) -> String {
        self.shared_tagged(model, id, shared_tags_key(model, id))
    }

    /// The subscribers of a shared instance: the grant every script checks (see
    /// [`super::shared_subs_key`]).
    pub fn shared_subs_key(self, model: &str, id: &str) -> String {
        self.shared_tagged(model, id, shared_subs_key(model, id))
    }

    /// The set of a model's shared ids, where the layout keeps one: popoto's layout only (on a
    /// cluster it would be in another slot than the instances it lists).
    pub fn shared_ids_key(self, model: &str) -> Option<String> {
        match self {
            Layout::Popoto => Some(shared_ids_key(model)),
            Layout::Cluster => None,
        }
    }

    /// A tenant's side of its grants (see [`super::shared_grants_key`]), under the tenant's tag
    /// in the cluster layout.
    pub fn shared_grants_key(self, tenant: &str) -> String {
        let key = shared_grants_key(tenant);
        match self {
            Layout::Popoto => key,
            Layout::Cluster => format!("{{{}}}{key}", tag("", Some(tenant))),
        }
    }

    /// The staging key of `key`, a key of shared instance `id` of `model` in this layout,
    /// where a layout migration gathers it page by page before it lands: `$Relayout:` and the
    /// key as popoto's layout writes it, under the instance's tag on a cluster (the same slot;
    /// outside every pattern of the shared keyspace and of the change feeds).
    pub fn shared_stage_key(self, model: &str, id: &str, key: &str) -> String {
        let base = match self {
            Layout::Popoto => key,
            Layout::Cluster => Self::split_tag(key).map_or(key, |(_, rest)| rest),
        };
        self.shared_tagged(model, id, format!("{STAGE_PREFIX}{base}"))
    }

    /// Whether an instance's subscribers hash and a tenant's grants hash may be in different
    /// slots, so that a grant change is two calls (the instance's side, then the tenant's)
    /// rather than one: in the cluster layout.
    pub fn splits_grants(self) -> bool {
        self == Layout::Cluster
    }

    /// MATCH pattern of the meta hashes of `model`'s shared instances (candidates for a
    /// listing by scan; each key is parsed and its hash verified).
    pub fn shared_meta_pattern(self, model: &str) -> String {
        let base = format!(
            "{}*",
            glob_escape(&format!("{SHARED_PREFIX}meta:{}:", escape(model)))
        );
        match self {
            Layout::Popoto => base,
            Layout::Cluster => format!("{{{}*}}{base}", glob_escape(&shared_tag_prefix(model))),
        }
    }

    /// MATCH patterns finding every key of the shared keyspace (candidates: see
    /// [`Layout::is_shared_key`] and [`Layout::parse_shared_key`]).
    pub fn shared_patterns(self) -> Vec<String> {
        match self {
            Layout::Popoto => vec![shared_pattern()],
            Layout::Cluster => vec![
                format!("{{$*}}{}", shared_pattern()),
                format!("{{*}}{}*", glob_escape(&format!("{SHARED_PREFIX}grants:"))),
            ],
        }
    }

    /// `key` below the hash tag it starts with (cluster), with that tag.
    fn split_tag(key: &str) -> Option<(&str, &str)> {
        key.strip_prefix('{')?.split_once('}')
    }

    /// Whether `key`, found by [`Layout::shared_patterns`], is in the shared keyspace (under
    /// `$Shared:` below its tag), as opposed to another key the pattern happened to match.
    pub fn is_shared_key(self, key: &str) -> bool {
        match self {
            Layout::Popoto => key.starts_with(SHARED_PREFIX),
            Layout::Cluster => {
                Self::split_tag(key).is_some_and(|(_, rest)| rest.starts_with(SHARED_PREFIX))
            }
        }
    }

    /// Classifies a key of the shared keyspace as this layout writes it, or `None`: in the
    /// cluster layout an instance's key must carry that instance's tag and a grants hash its
    /// tenant's, each written exactly as the layout writes it, and there is no id set.
    pub fn parse_shared_key(self, key: &str) -> Option<SharedKey> {
        match self {
            Layout::Popoto => parse_shared_key(key),
            Layout::Cluster => {
                let (tag, rest) = Self::split_tag(key)?;
                let parsed = parse_shared_key(rest)?;
                let own = match &parsed {
                    SharedKey::Instance(_, m, id) => {
                        parse_shared_tag(tag).is_some_and(|(tm, tid)| tm == *m && tid == *id)
                    }
                    SharedKey::Grants(t) => tenant_of_tag(tag).as_deref() == Some(t.as_str()),
                    SharedKey::Ids(_) => false,
                };
                own.then_some(parsed)
            }
        }
    }

    /// MATCH pattern finding the change-feed keys of shared instances (candidates: see
    /// [`Layout::shared_feed_instance`]).
    pub fn shared_feed_pattern(self) -> String {
        match self {
            Layout::Popoto => feed_pattern(),
            Layout::Cluster => format!("{{$*}}{}", feed_pattern()),
        }
    }

    /// For a key found by [`Layout::shared_feed_pattern`]: `None` if it is not a shared
    /// instance's feed key; `Some(None)` if it is one but names no instance as the layout
    /// writes it; `Some(Some((model, id)))` the instance it belongs to. Popoto's layout
    /// recognises a stream and its meta hash; the cluster layout every feed key under an
    /// instance's tag (its consumer groups' too), which must end with that instance.
    pub fn shared_feed_instance(self, key: &str) -> Option<Option<(String, String)>> {
        match self {
            Layout::Popoto => {
                let rest = key
                    .strip_prefix("$Feed:shared:")
                    .or_else(|| key.strip_prefix("$Feed:meta:shared:"))?;
                let parsed = match rest.split(':').collect::<Vec<_>>().as_slice() {
                    [m, id] if !m.is_empty() && !id.is_empty() => Some((
                        super::unescape(m).into_owned(),
                        super::unescape(id).into_owned(),
                    )),
                    _ => None,
                };
                // Written exactly as the layout writes the instance's stream or meta hash.
                Some(parsed.filter(|(m, id)| {
                    let of = FeedOf::Shared(m, id);
                    key == self.feed_stream_key(of) || key == self.feed_meta_key(of)
                }))
            }
            Layout::Cluster => {
                let (tag, rest) = Self::split_tag(key)?;
                if !tag.starts_with('$') || !rest.starts_with("$Feed:") {
                    return None;
                }
                let owner = parse_shared_tag(tag).filter(|(m, id)| {
                    let stream = feed_stream_key(FeedOf::Shared(m, id));
                    let suffix = stream.strip_prefix("$Feed").unwrap_or(&stream);
                    rest.ends_with(suffix)
                });
                Some(owner)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn popotos_layout_keeps_the_shared_keys_bytes_and_the_cluster_tags_each_instance() {
        let p = Layout::Popoto;
        assert_eq!(
            p.shared_value_key("Doc", "a:b"),
            shared_value_key("Doc", "a:b")
        );
        assert_eq!(p.shared_grants_key("acme"), "$Shared:grants:acme");
        assert_eq!(p.shared_ids_key("Doc").as_deref(), Some("$Shared:ids:Doc"));
        assert_eq!(p.shared_meta_pattern("Doc"), "$Shared:meta:Doc:*");
        let c = Layout::Cluster;
        assert_eq!(
            c.shared_value_key("Doc", "e1"),
            "{$Doc$e1}$Shared:value:Doc:e1"
        );
        assert_eq!(
            c.shared_subs_key("Doc", "a}b"),
            "{$Doc$~617d62}$Shared:subs:Doc:a}b"
        );
        assert_eq!(c.shared_grants_key("a}b"), "{~617d62}$Shared:grants:a}b");
        assert_eq!(c.shared_ids_key("Doc"), None);
        assert_eq!(
            c.feed_stream_key(FeedOf::Shared("Doc", "e1")),
            "{$Doc$e1}$Feed:shared:Doc:e1"
        );
        assert_eq!(c.shared_meta_pattern("Doc"), "{$Doc$*}$Shared:meta:Doc:*");
        let stream = c.feed_stream_key(FeedOf::Shared("Doc", "e1"));
        assert_eq!(
            c.shared_stage_key("Doc", "e1", &stream),
            "{$Doc$e1}$Relayout:$Feed:shared:Doc:e1"
        );
        assert_eq!(
            p.shared_stage_key("Doc", "e1", "$Feed:shared:Doc:e1"),
            "$Relayout:$Feed:shared:Doc:e1"
        );
        assert_eq!(
            c.shared_patterns(),
            ["{$*}$Shared:*", "{*}$Shared:grants:*"]
        );
        assert_eq!(
            c.parse_shared_key("{$Doc$e1}$Shared:meta:Doc:e1"),
            Some(SharedKey::Instance("meta", "Doc".into(), "e1".into()))
        );
        for bad in [
            "{$Doc$e2}$Shared:meta:Doc:e1",
            "$Shared:meta:Doc:e1",
            "{acme}$Shared:grants:beta",
            "{=Doc}$Shared:ids:Doc",
            "{$Doc$e1}$Shared:grants:acme",
        ] {
            assert_eq!(c.parse_shared_key(bad), None, "{bad}");
        }
        assert!(c.is_shared_key("{acme}$Shared:grants:beta"));
        assert!(!c.is_shared_key("{acme}Foo:x}$Shared:grants:y"));
        let group_done = c.feed_done_key(FeedOf::Shared("Doc", "e1"), "g");
        assert_eq!(
            c.shared_feed_instance(&group_done),
            Some(Some(("Doc".into(), "e1".into())))
        );
        assert_eq!(
            c.shared_feed_instance("{$Doc$e1}$Feed:shared:Doc:e2"),
            Some(None)
        );
        assert_eq!(c.shared_feed_instance("{acme}$Feed:tenant:acme"), None);
        assert_eq!(
            p.shared_feed_instance("$Feed:meta:shared:Doc:e1"),
            Some(Some(("Doc".into(), "e1".into())))
        );
        assert_eq!(p.shared_feed_instance("$Feed:tenant:acme"), None);
    }
}
