//! The layout as a value: every key of a model's data (instances, `$Class`, value sets, sorted
//! sets, confidence companions, expiry sets) and the patterns and parsers that go with them
//! are asked of a [`Layout`], chosen per `Db`, never formatted by the caller.
//!
//! [`Layout::Popoto`] is Popoto 1.10's layout byte for byte (the free functions of this
//! module). [`Layout::Cluster`] prefixes each of those keys with the hash tag of the keyspace
//! it belongs to (`{acme}Episode:…`, `{acme}$Class:Episode`): all of a tenant's keys share one
//! Redis Cluster slot, so an instance write stays one atomic script and a tenant's query stays
//! in one slot.

use std::borrow::Cow;

use crate::error::{Error, Result};
use crate::model::ModelMeta;

use super::layout_kind::Layout;
use super::tags::{shared_tag, tag, tenant_of_tag};
use super::{glob_escape, FeedOf, IndexKind};

impl Layout {
    /// The layout an instance key is written in: a key starting with a hash tag is the cluster
    /// layout's (popoto's instance keys start with a class name, which holds no `{`). Parsing
    /// the key in that layout still checks it whole.
    pub fn of_instance_key(key: &str) -> Layout {
        match key.starts_with('{') {
            true => Layout::Cluster,
            false => Layout::Popoto,
        }
    }

    /// The prefix of every key of `meta`'s data of `tenant` (`None`: the model's own keyspace).
    fn prefix(self, meta: &ModelMeta, tenant: Option<&str>) -> Cow<'static, str> {
        match self {
            Layout::Popoto => Cow::Borrowed(""),
            Layout::Cluster => {
                let scope = meta.tenant.and(tenant);
                Cow::Owned(format!("{{{}}}", tag(meta.name, scope)))
            }
        }
    }

    /// The glob matching the prefix of `meta`'s keys of `tenant`: for a tenant model without a
    /// tenant in the cluster layout, any tenant's (`{*}`: candidates, checked by parsing).
    fn pattern_prefix(self, meta: &ModelMeta, tenant: Option<&str>) -> String {
        match (self, meta.tenant, tenant) {
            (Layout::Cluster, Some(_), None) => "{*}".to_owned(),
            _ => glob_escape(&self.prefix(meta, tenant)).into_owned(),
        }
    }

    fn tagged(self, meta: &ModelMeta, tenant: Option<&str>, key: String) -> String {
        match self {
            Layout::Popoto => key,
            Layout::Cluster => {
                let mut out = self.prefix(meta, tenant).into_owned();
                out.push_str(&key);
                out
            }
        }
    }

    /// `key` without its hash tag, if the tag is the one of a keyspace of `meta` (any tenant's,
    /// or the model's own); in popoto's layout `key` itself.
    fn untagged<'k>(self, meta: &ModelMeta, key: &'k str) -> Option<(&'k str, &'k str)> {
        match self {
            Layout::Popoto => Some(("", key)),
            Layout::Cluster => {
                let (tag, rest) = key.strip_prefix('{')?.split_once('}')?;
                let valid = match tag.strip_prefix('=') {
                    Some(model) => model == meta.name,
                    None => meta.tenant.is_some() && !tag.is_empty(),
                };
                valid.then_some((tag, rest))
            }
        }
    }

    /// The tenant whose keyspace `key` is in, for a key of tenant model `meta` in the cluster
    /// layout (its hash tag decoded and checked to be written as [`tag`] writes it); `None`
    /// in popoto's layout, for another model's key or a malformed tag.
    pub fn keyspace_of(self, meta: &ModelMeta, key: &str) -> Option<String> {
        match (self, meta.tenant) {
            (Layout::Cluster, Some(_)) => {
                let (tag, _) = self.untagged(meta, key)?;
                tenant_of_tag(tag)
            }
            _ => None,
        }
    }

    /// Whether `key` is in `tenant`'s keyspace of `meta` (`None`: the model's own): always in
    /// popoto's layout, where keyspaces share one; in the cluster layout, whether it carries
    /// the keyspace's hash tag.
    pub fn in_keyspace(self, meta: &ModelMeta, tenant: Option<&str>, key: &str) -> bool {
        key.starts_with(&*self.prefix(meta, tenant))
    }

    /// `key` below the prefix of `tenant`'s keyspace (its hash tag in the cluster layout;
    /// nothing in popoto's), or `None` if `key` is not in that keyspace.
    pub fn strip_tenant<'k>(self, tenant: &str, key: &'k str) -> Option<&'k str> {
        match self {
            Layout::Popoto => Some(key),
            Layout::Cluster => key
                .strip_prefix('{')?
                .strip_prefix(tag("", Some(tenant)).as_str())?
                .strip_prefix('}'),
        }
    }

    /// `key`, a change-feed key of `of`, in this layout: in the cluster layout a tenant's feed
    /// keys carry the tenant's hash tag, a shared instance's the instance's (one slot with the
    /// data it follows, so a write appends its event in its own script call); in popoto's
    /// layout they are popoto-rs's own keys, untagged.
    fn feed_tagged(self, of: FeedOf<'_>, key: String) -> String {
        match (self, of) {
            (Layout::Popoto, _) => key,
            (Layout::Cluster, FeedOf::Tenant(t)) => format!("{{{}}}{key}", tag("", Some(t))),
            (Layout::Cluster, FeedOf::Shared(m, id)) => format!("{{{}}}{key}", shared_tag(m, id)),
        }
    }

    /// The Redis Stream of change events of `of` (see [`super::feed_stream_key`]).
    pub fn feed_stream_key(self, of: FeedOf<'_>) -> String {
        self.feed_tagged(of, super::feed_stream_key(of))
    }

    /// The meta hash of `of`'s stream (see [`super::feed_meta_key`]).
    pub fn feed_meta_key(self, of: FeedOf<'_>) -> String {
        self.feed_tagged(of, super::feed_meta_key(of))
    }

    /// The entries consumer group `group` of `of` finished (see [`super::feed_done_key`]).
    pub fn feed_done_key(self, of: FeedOf<'_>, group: &str) -> String {
        self.feed_tagged(of, super::feed_done_key(of, group))
    }

    /// The dead letters of consumer group `group` of `of` (see [`super::feed_dead_key`]).
    pub fn feed_dead_key(self, of: FeedOf<'_>, group: &str) -> String {
        self.feed_tagged(of, super::feed_dead_key(of, group))
    }

    /// `key` below its hash tag, if the tag is one of `meta`'s keyspaces (in popoto's layout,
    /// `key` itself).
    pub fn strip_tag<'k>(self, meta: &ModelMeta, key: &'k str) -> Option<&'k str> {
        self.untagged(meta, key).map(|(_, rest)| rest)
    }

    /// `key` of `tenant`'s data of `meta`, rewritten from this layout to `to` (the same
    /// popoto key under the other layout's tag), or `None` if `key` is not in one of `meta`'s
    /// keyspaces here.
    pub fn convert(self, to: Layout, meta: &ModelMeta, tenant: &str, key: &str) -> Option<String> {
        let rest = self.strip_tag(meta, key)?;
        let own = super::parse_index_key(meta, rest).is_some()
            || rest.split(':').next() == Some(&super::escape(meta.name));
        own.then(|| to.tagged(meta, Some(tenant), rest.to_owned()))
    }

    /// The tenant segment of an instance key's segments (key-field order), if the model has one.
    fn tenant_of<'s>(meta: &ModelMeta, segments: &'s [String]) -> Option<&'s str> {
        let t = meta.tenant?;
        let pos = meta.key_fields.iter().position(|&k| k == t)?;
        segments.get(pos).map(String::as_str)
    }

    /// An instance key from unescaped segments in key-field order (its keyspace is the tenant
    /// segment's).
    pub fn instance_key(self, meta: &ModelMeta, segments: &[String]) -> String {
        let key = super::instance_key(meta, segments);
        self.tagged(meta, Self::tenant_of(meta, segments), key)
    }

    /// Splits an instance key into its unescaped segments, checking model name, arity and (in
    /// the cluster layout) that its hash tag is its tenant's.
    pub fn parse_instance_key(self, meta: &'static ModelMeta, key: &str) -> Result<Vec<String>> {
        let mut segments = Vec::with_capacity(meta.key_fields.len());
        self.visit_instance_key(meta, key, |_, s| segments.push(s.into_owned()))?;
        Ok(segments)
    }

    /// Whether `key` is an instance key of `meta` here (the checks of
    /// [`Layout::parse_instance_key`]) whose tenant segment is `tenant` (`None`: any key of
    /// the model); `Ok(false)` for a key of another tenant. Allocates nothing for a key whose
    /// segments need no unescaping: reads check every index member with it.
    pub(crate) fn instance_key_of(
        self,
        meta: &'static ModelMeta,
        key: &str,
        tenant: Option<&str>,
    ) -> Result<bool> {
        let own = self.visit_instance_key(meta, key, |_, _| {})?;
        Ok(tenant.is_none_or(|t| own.as_deref() == Some(t)))
    }

    /// The checks of [`Layout::parse_instance_key`], handing each unescaped segment to
    /// `visit`; returns the tenant segment (a tenant model's).
    fn visit_instance_key<'k>(
        self,
        meta: &'static ModelMeta,
        key: &'k str,
        mut visit: impl FnMut(usize, Cow<'k, str>),
    ) -> Result<Option<Cow<'k, str>>> {
        let malformed = |reason: &str| Error::MalformedKey {
            model: meta.name,
            key: key.to_owned(),
            reason: reason.to_owned(),
        };
        let Some((tag, rest)) = self.untagged(meta, key) else {
            return Err(malformed(
                "the key does not start with a hash tag of the model",
            ));
        };
        let pos = meta
            .tenant
            .and_then(|t| meta.key_fields.iter().position(|&k| k == t));
        let mut own = None;
        super::visit_instance_key(meta, rest, |i, seg| {
            if Some(i) == pos {
                own = Some(seg.clone());
            }
            visit(i, seg);
        })
        .map_err(|e| match e {
            Error::MalformedKey { reason, .. } => malformed(&reason),
            other => other,
        })?;
        if self == Layout::Cluster && tag != super::tag(meta.name, own.as_deref()) {
            return Err(malformed("the hash tag is not the tenant's of the key"));
        }
        Ok(own)
    }

    /// MATCH pattern for the `$Class` set of a keyspace (`None` on a tenant model in the
    /// cluster layout: every tenant's).
    pub fn class_pattern(self, meta: &ModelMeta, tenant: Option<&str>) -> String {
        format!(
            "{}{}",
            self.pattern_prefix(meta, tenant),
            glob_escape(&super::class_key(meta))
        )
    }

    /// `$Class:<Model>` of a keyspace: the set of its instance keys.
    pub fn class_key(self, meta: &ModelMeta, tenant: Option<&str>) -> String {
        self.tagged(meta, tenant, super::class_key(meta))
    }

    /// `$KeyF:<Model>:<field>:<seg(v)>` (or `$UniqueKeyF:...`) of a keyspace.
    pub fn value_set_key(
        self,
        meta: &ModelMeta,
        tenant: Option<&str>,
        field: usize,
        value: &str,
    ) -> String {
        self.tagged(meta, tenant, super::value_set_key(meta, field, value))
    }

    /// `$SortF:<Model>:<field>[:<seg(p)>...]` of a keyspace.
    pub fn sorted_key(
        self,
        meta: &ModelMeta,
        tenant: Option<&str>,
        field: usize,
        partition: &[&str],
    ) -> String {
        self.tagged(meta, tenant, super::sorted_key(meta, field, partition))
    }

    /// Glob matching every partition zset of a sorted field in a keyspace.
    pub fn sorted_pattern(self, meta: &ModelMeta, tenant: Option<&str>, field: usize) -> String {
        format!(
            "{}{}",
            self.pattern_prefix(meta, tenant),
            super::sorted_pattern(meta, field)
        )
    }

    /// `$ConfidencF:<Model>:<field>:data[:<p>...]` of a keyspace (see [`super::confidence_key`]).
    pub fn confidence_key(
        self,
        meta: &'static ModelMeta,
        tenant: Option<&str>,
        field: usize,
        partition: &[&str],
    ) -> Result<String> {
        Ok(self.tagged(meta, tenant, super::confidence_key(meta, field, partition)?))
    }

    /// `$ExpireF:<Model>[:<seg(tenant)>]`: the expiry set of a tenant (or of the model).
    pub fn expiry_key(self, meta: &ModelMeta, tenant: Option<&str>) -> String {
        self.tagged(meta, tenant, super::expiry_key(meta, tenant))
    }

    /// MATCH pattern for every expiry set of a model in a keyspace.
    pub fn expiry_pattern(self, meta: &ModelMeta, tenant: Option<&str>) -> String {
        format!(
            "{}{}",
            self.pattern_prefix(meta, tenant),
            super::expiry_pattern(meta)
        )
    }

    /// The tenant of expiry set `key` (`Some(None)`: an untenanted model's), or `None` if
    /// `key` is not one of the model's expiry sets.
    pub fn expiry_tenant(self, meta: &ModelMeta, key: &str) -> Option<Option<String>> {
        let (_, rest) = self.untagged(meta, key)?;
        super::expiry_tenant(meta, rest)
    }

    /// MATCH pattern for instance keys of a keyspace whose key fields have the given values.
    pub fn instance_match<'a>(
        self,
        meta: &ModelMeta,
        tenant: Option<&str>,
        value: &dyn Fn(usize) -> Option<&'a str>,
    ) -> String {
        format!(
            "{}{}",
            self.pattern_prefix(meta, tenant),
            super::instance_match(meta, value)
        )
    }

    /// MATCH patterns covering every index key of a model in a keyspace.
    pub fn index_patterns(self, meta: &ModelMeta, tenant: Option<&str>) -> Vec<String> {
        let prefix = self.pattern_prefix(meta, tenant);
        super::index_patterns(meta)
            .into_iter()
            .map(|p| format!("{prefix}{p}"))
            .collect()
    }

    /// Whether `key` is one of the model's index keys.
    pub fn is_index_key(self, meta: &ModelMeta, key: &str) -> bool {
        self.untagged(meta, key)
            .is_some_and(|(_, rest)| super::is_index_key(meta, rest))
    }

    /// MATCH pattern for every instance key of a model in a keyspace (SCAN).
    pub fn instance_pattern(self, meta: &ModelMeta, tenant: Option<&str>) -> String {
        format!(
            "{}{}",
            self.pattern_prefix(meta, tenant),
            super::instance_pattern(meta)
        )
    }

    /// MATCH pattern for a key lookup in an index set of a keyspace (see
    /// [`super::lookup_match`]).
    pub fn lookup_match<'a>(
        self,
        meta: &ModelMeta,
        tenant: Option<&str>,
        fixed: &dyn Fn(usize) -> Option<&'a str>,
        field: usize,
        needle: &str,
        wildcards: (bool, bool),
    ) -> String {
        format!(
            "{}{}",
            self.pattern_prefix(meta, tenant),
            super::lookup_match(meta, fixed, field, needle, wildcards)
        )
    }

    /// MATCH pattern for every `$`-prefixed index key of a model in a keyspace except its
    /// `$Class` set.
    pub fn index_pattern(self, meta: &ModelMeta, tenant: Option<&str>) -> String {
        format!(
            "{}{}",
            self.pattern_prefix(meta, tenant),
            super::index_pattern(meta)
        )
    }

    /// Classifies `key` as one of the model's index keys, or `None`.
    pub fn parse_index_key(self, meta: &ModelMeta, key: &str) -> Option<IndexKind> {
        let (_, rest) = self.untagged(meta, key)?;
        super::parse_index_key(meta, rest)
    }

    /// The partition segments written in index key `key` of sorted or confidence field `field`
    /// (empty for the unpartitioned key); `None` if `key` is not one of the field's keys.
    pub fn partition_of(
        self,
        meta: &'static ModelMeta,
        field: usize,
        key: &str,
    ) -> Option<Vec<String>> {
        let by = meta.fields[field].partition_by;
        // Below the keyspace's tag, the key is popoto's.
        let key = self.strip_tag(meta, key)?;
        let (base, confidence) = match super::parse_index_key(meta, key)? {
            IndexKind::Sorted(f) if f == field => (super::sorted_key(meta, f, &[]), false),
            IndexKind::Confidence(f) if f == field => {
                (super::confidence_key(meta, f, &[]).ok()?, true)
            }
            _ => return None,
        };
        let rest = key.strip_prefix(base.as_str())?;
        if rest.is_empty() {
            return Some(Vec::new());
        }
        let rest = rest.strip_prefix(':')?;
        Some(if confidence && by.len() == 1 {
            // Popoto does not escape companion partition segments: one field takes it all.
            vec![rest.to_owned()]
        } else if confidence {
            rest.split(':').map(str::to_owned).collect()
        } else {
            rest.split(':')
                .map(|p| super::unescape(p).into_owned())
                .collect()
        })
    }

    /// The glob of every key of `tenant`'s keyspace, where one exists: `{tag}*` in the cluster
    /// layout; `None` in popoto's, where a tenant's keys share no prefix.
    pub fn tenant_key_pattern(self, tenant: &str) -> Option<String> {
        match self {
            Layout::Popoto => None,
            Layout::Cluster => Some(format!("{{{}}}*", glob_escape(&tag("", Some(tenant))))),
        }
    }

    /// MATCH patterns finding every key of `tenant`'s keyspace (a keyspace sweep): in popoto's
    /// layout every key with a segment starting with the escaped tenant (`*:<seg(t)>*`), and
    /// with the raw tenant when `raw` (companion partitions with several segments write it
    /// unescaped); in the cluster layout the tenant's hash tag (`{t}*`). Candidates only.
    pub fn tenant_patterns(self, tenant: &str, raw: bool) -> Vec<String> {
        match self {
            Layout::Popoto => {
                let mut out = vec![super::segment_match(tenant, true)];
                if raw && super::escape(tenant) != tenant {
                    out.push(super::segment_match(tenant, false));
                }
                out
            }
            Layout::Cluster => self.tenant_key_pattern(tenant).into_iter().collect(),
        }
    }
}
