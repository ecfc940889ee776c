//! Unit tests of the layout as a value: popoto's layout is the free functions' bytes; in the
//! cluster layout every key of a tenant's instance carries one hash tag, the tenant's, whatever
//! the tenant id holds, and keys parse back exactly.

use proptest::prelude::*;

use super::*;
use crate::model::field;

/// A tenant key, a unique key, a sorted field and a confidence field partitioned by the
/// tenant, an unpartitioned sorted field, a ttl.
static TICKET: ModelMeta = ModelMeta {
    name: "Ticket",
    fields: &[
        field("org", FieldKind::Key, &[]),
        field("id", FieldKind::UniqueKey, &[]),
        field("score", FieldKind::Sorted, &[0]),
        field("rank", FieldKind::Sorted, &[]),
        field(
            "trust",
            FieldKind::Confidence {
                initial: 0.5,
                evidence_cap: 10,
            },
            &[0],
        ),
    ],
    key_fields: &[1, 0],
    tenant: Some(0),
    version: None,
    ttl: Some(60),
    expire_at: false,
};

/// A model without a tenant field.
static PLAIN: ModelMeta = ModelMeta {
    name: "Plain",
    fields: &[field("id", FieldKind::Key, &[])],
    key_fields: &[0],
    tenant: None,
    version: None,
    ttl: None,
    expire_at: false,
};

/// The hash tag Redis Cluster hashes for `key` (the whole key when it has none).
fn hashtag(key: &str) -> &str {
    if let Some(open) = key.find('{') {
        if let Some(len) = key[open + 1..].find('}') {
            if len > 0 {
                return &key[open + 1..open + 1 + len];
            }
        }
    }
    key
}

/// Every key an instance of `TICKET` of tenant `t` with id `id` writes, in `layout`.
fn ticket_keys(layout: Layout, t: &str, id: &str) -> Vec<String> {
    let segments = [id.to_owned(), t.to_owned()];
    let tenant = Some(t);
    vec![
        layout.instance_key(&TICKET, &segments),
        layout.class_key(&TICKET, tenant),
        layout.value_set_key(&TICKET, tenant, 0, t),
        layout.value_set_key(&TICKET, tenant, 1, id),
        layout.sorted_key(&TICKET, tenant, 2, &[t]),
        layout.sorted_key(&TICKET, tenant, 3, &[]),
        layout
            .confidence_key(&TICKET, tenant, 4, &[t])
            .unwrap_or_else(|e| panic!("{e}")),
        layout.expiry_key(&TICKET, tenant),
    ]
}

#[test]
fn popotos_layout_is_the_free_functions_bytes() {
    let l = Layout::Popoto;
    let segments = ["a:b".to_owned(), "acme".to_owned()];
    assert_eq!(
        l.instance_key(&TICKET, &segments),
        instance_key(&TICKET, &segments)
    );
    assert_eq!(l.class_key(&TICKET, Some("acme")), "$Class:Ticket");
    assert_eq!(
        l.value_set_key(&TICKET, Some("acme"), 0, "acme"),
        "$KeyF:Ticket:org:acme"
    );
    assert_eq!(
        l.sorted_key(&TICKET, Some("acme"), 2, &["acme"]),
        "$SortF:Ticket:score:acme"
    );
    assert_eq!(l.expiry_key(&TICKET, Some("acme")), "$ExpireF:Ticket:acme");
    assert_eq!(l.index_pattern(&TICKET, None), index_pattern(&TICKET));
    assert_eq!(
        l.tenant_patterns("acme", false),
        [segment_match("acme", true)]
    );
}

#[test]
fn cluster_keys_carry_the_tenants_tag_and_parse_back() {
    let l = Layout::Cluster;
    let keys = ticket_keys(l, "acme", "t1");
    assert_eq!(keys[0], "{acme}Ticket:t1:acme");
    assert_eq!(keys[1], "{acme}$Class:Ticket");
    assert_eq!(keys[7], "{acme}$ExpireF:Ticket:acme");
    assert_eq!(
        l.parse_instance_key(&TICKET, &keys[0]).ok(),
        Some(vec!["t1".to_owned(), "acme".to_owned()])
    );
    assert_eq!(
        l.parse_index_key(&TICKET, &keys[4]),
        Some(IndexKind::Sorted(2))
    );
    assert_eq!(
        l.partition_of(&TICKET, 2, &keys[4]),
        Some(vec!["acme".to_owned()])
    );
    assert_eq!(
        l.expiry_tenant(&TICKET, &keys[7]),
        Some(Some("acme".to_owned()))
    );
    // A key of another tenant's tag, or without one, is not an instance key.
    for bad in [
        "{beta}Ticket:t1:acme",
        "Ticket:t1:acme",
        "{}Ticket:t1:acme",
        "{=Ticket}Ticket:t1:acme",
    ] {
        assert!(l.parse_instance_key(&TICKET, bad).is_err(), "{bad}");
    }
    // A model without a tenant lives under its own tag.
    assert_eq!(l.instance_key(&PLAIN, &["x".to_owned()]), "{=Plain}Plain:x");
    assert_eq!(l.class_key(&PLAIN, None), "{=Plain}$Class:Plain");
    assert_eq!(l.tenant_patterns("acme", true), ["{acme}*"]);
    assert_eq!(l.index_pattern(&TICKET, None), r"{*}$*:Ticket:*");
    assert_eq!(l.class_pattern(&TICKET, None), r"{*}$Class:Ticket");
    assert_eq!(
        l.class_pattern(&TICKET, Some("a*")),
        r"{~612a}$Class:Ticket"
    );
    assert_eq!(
        Layout::Popoto.class_pattern(&TICKET, None),
        r"$Class:Ticket"
    );
}

proptest! {
    /// Whatever a tenant id holds (braces, colons, globs, unicode), every key of its instance
    /// shares one hash tag that is its own and no other tenant's, and the instance key parses
    /// back to its segments.
    #[test]
    fn every_key_of_a_tenant_hashes_to_the_tenants_tag(
        t in "[a-z{}:*?\\[\\]~=. -]{1,12}|\\PC{1,8}",
        u in "[a-z{}:*?\\[\\]~=. -]{1,12}",
        id in "\\PC{0,10}",
    ) {
        let l = Layout::Cluster;
        let keys = ticket_keys(l, &t, &id);
        let own = tag("Ticket", Some(&t));
        let clean = !own.is_empty() && !own.contains(['{', '}', ':']);
        prop_assert!(clean, "tag {}", own);
        for k in &keys {
            prop_assert_eq!(hashtag(k), own.as_str(), "{}", k);
        }
        prop_assert_eq!(
            l.parse_instance_key(&TICKET, &keys[0]).ok(),
            Some(vec![id.clone(), t.clone()])
        );
        if u != t {
            prop_assert_ne!(tag("Ticket", Some(&u)), own);
        }
        // Every key of the instance names its tenant's keyspace back.
        for k in &keys {
            prop_assert_eq!(l.keyspace_of(&TICKET, k), Some(t.clone()), "{}", k);
        }
    }
}

proptest! {
    /// The check reads use on every index member agrees with the full parse in both layouts:
    /// a key is the tenant's exactly when it parses and its tenant segment is the tenant, and
    /// is refused exactly when the parse refuses it (mangled keys included).
    #[test]
    fn the_members_check_agrees_with_the_parse(
        t in "[a-z{}:*?\\[\\]~=/. -]{1,10}|\\PC{1,6}",
        u in "[a-z{}:/ -]{1,6}",
        id in "\\PC{0,8}",
        cut in 0usize..40,
        junk in "[a-z:{}/]{0,4}",
    ) {
        for l in [Layout::Popoto, Layout::Cluster] {
            let good = l.instance_key(&TICKET, &[id.clone(), t.clone()]);
            let mangled = format!("{}{}", good.get(..cut.min(good.len())).unwrap_or(&good), junk);
            for key in [good.as_str(), mangled.as_str()] {
                let parsed = l.parse_instance_key(&TICKET, key);
                for who in [Some(t.as_str()), Some(u.as_str()), None] {
                    let checked = l.instance_key_of(&TICKET, key, who);
                    match &parsed {
                        Ok(segments) => prop_assert_eq!(
                            checked.ok(),
                            Some(who.is_none_or(|w| segments[1] == w)),
                            "{}", key
                        ),
                        Err(_) => prop_assert!(checked.is_err(), "{}", key),
                    }
                }
            }
            prop_assert_eq!(l.instance_key_of(&TICKET, &good, Some(&t)).ok(), Some(true));
        }
    }
}

#[test]
fn keyspaces_are_read_back_only_from_tags_written_as_tag_writes_them() {
    let l = Layout::Cluster;
    assert_eq!(
        l.keyspace_of(&TICKET, "{acme}$Class:Ticket"),
        Some("acme".into())
    );
    assert_eq!(
        l.keyspace_of(&TICKET, "{~617d62}Ticket:x:a}b"),
        Some("a}b".into())
    );
    for bad in [
        "{~617D62}$Class:Ticket", // uppercase hex: not how the tag is written
        "{~61}$Class:Ticket",     // "a" is written plain
        "{~6}$Class:Ticket",
        "{~zz}$Class:Ticket",
        "{~ff}$Class:Ticket", // not UTF-8
        "{=Ticket}$Class:Ticket",
        "{}$Class:Ticket",
        "$Class:Ticket",
    ] {
        assert_eq!(l.keyspace_of(&TICKET, bad), None, "{bad}");
    }
    assert_eq!(Layout::Popoto.keyspace_of(&TICKET, "$Class:Ticket"), None);
    assert!(l.in_keyspace(&TICKET, Some("acme"), "{acme}Ticket:x:acme"));
    assert!(!l.in_keyspace(&TICKET, Some("acme"), "{beta}Ticket:x:acme"));
    assert!(!l.in_keyspace(&TICKET, Some("acme"), "Ticket:x:acme"));
    assert!(Layout::Popoto.in_keyspace(&TICKET, Some("acme"), "Ticket:x:beta"));
    assert_eq!(l.strip_tenant("acme", "{acme}Ticket:x"), Some("Ticket:x"));
    assert_eq!(l.strip_tenant("a}b", "{~617d62}Ticket:x"), Some("Ticket:x"));
    assert_eq!(l.strip_tenant("acme", "{acmex}Ticket:x"), None);
    assert_eq!(l.strip_tenant("acme", "Ticket:x"), None);
    assert_eq!(
        Layout::Popoto.strip_tenant("acme", "Ticket:x"),
        Some("Ticket:x")
    );
    assert_eq!(l.keyspace_of(&PLAIN, "{=Plain}$Class:Plain"), None);
}

/// Every key of shared instance `id` of `model` in `layout`: its value, meta, tags, subscribers
/// and change feed (with a consumer group's keys).
fn shared_keys(layout: Layout, model: &str, id: &str) -> Vec<String> {
    let of = FeedOf::Shared(model, id);
    vec![
        layout.shared_value_key(model, id),
        layout.shared_meta_key(model, id),
        layout.shared_tags_key(model, id),
        layout.shared_subs_key(model, id),
        layout.feed_stream_key(of),
        layout.feed_meta_key(of),
        layout.feed_done_key(of, "g:{x}"),
        layout.feed_dead_key(of, "g:{x}"),
    ]
}

proptest! {
    /// Whatever a shared id holds (braces, colons, dollars, globs, unicode), every key of the
    /// instance hashes to one tag that is its own, no other instance's nor any tenant's, and
    /// each key parses back to its instance; a tenant's grants hash hashes to the tenant's tag.
    #[test]
    fn every_key_of_a_shared_instance_hashes_to_the_instances_tag(
        id in "[a-z{}:*?\\[\\]~=$. -]{1,12}|\\PC{1,8}",
        other in "[a-z{}:*?\\[\\]~=$. -]{1,12}",
        t in "[a-z{}:*?~=$. -]{1,12}",
    ) {
        let l = Layout::Cluster;
        let own = shared_tag("Doc", &id);
        prop_assert!(!own.contains(['{', '}', ':']), "tag {}", own);
        let keys = shared_keys(l, "Doc", &id);
        for k in &keys {
            prop_assert_eq!(hashtag(k), own.as_str(), "{}", k);
        }
        for k in &keys[..4] {
            let parsed = l.parse_shared_key(k);
            let back = matches!(&parsed, Some(SharedKey::Instance(_, m, i)) if m == "Doc" && *i == id);
            prop_assert!(back, "{} -> {:?}", k, parsed);
        }
        for k in &keys[4..] {
            prop_assert_eq!(
                l.shared_feed_instance(k),
                Some(Some(("Doc".to_owned(), id.clone())))
            );
        }
        if other != id {
            prop_assert_ne!(shared_tag("Doc", &other), own.clone());
            // Another instance's key under this instance's tag is no key of either.
            let planted = format!("{{{own}}}{}", shared_meta_key("Doc", &other));
            prop_assert_eq!(l.parse_shared_key(&planted), None);
        }
        prop_assert_ne!(tag("Doc", Some(&t)), own.clone());
        let grants = l.shared_grants_key(&t);
        let tenant_tag = tag("", Some(&t));
        prop_assert_eq!(hashtag(&grants), tenant_tag.as_str());
        prop_assert_eq!(l.parse_shared_key(&grants), Some(SharedKey::Grants(t.clone())));
        // Popoto's layout keeps popoto-rs's own bytes.
        prop_assert_eq!(
            Layout::Popoto.shared_value_key("Doc", &id),
            shared_value_key("Doc", &id)
        );
    }
}
