//! Unit tests of `keys.rs`: escaping, key shapes and their classification.
use super::*;

#[test]
fn escape_matches_popoto_examples() {
    let cases = [
        ("a:b", "a{&#58;}b"),
        ("a-b", "a/-b"),
        ("x*y?", "x/*y/?"),
        ("[q]^'", "/[q/]/^/'"),
        ("s/lash", "s//lash"),
        ("{&#58;}", "/{&#58;}"),
        ("umbrella:eu-1", "umbrella{&#58;}eu/-1"),
        ("-1", "/-1"),
        ("1e-05", "1e/-05"),
        ("2024-01-15", "2024/-01/-15"),
        (
            "2024-01-15T10:30:00.000000Z",
            "2024/-01/-15T10{&#58;}30{&#58;}00.000000Z",
        ),
        ("10:30:00", "10{&#58;}30{&#58;}00"),
        ("plain", "plain"),
        ("h\u{e9}llo {x} & # \\", "h\u{e9}llo {x} & # \\"),
    ];
    for (raw, seg) in cases {
        assert_eq!(escape(raw), seg, "escape({raw:?})");
        assert_eq!(unescape(seg), raw, "unescape({seg:?})");
    }
}

#[test]
fn escaped_segments_never_contain_separators_or_globs() {
    for raw in [
        "a:b:c",
        "*",
        "?",
        "[ab]",
        "^x",
        "a-b",
        "{&#58;}:{&#58;}",
        "//::",
    ] {
        let e = escape(raw);
        assert!(!e.contains(':'), "{e}");
        assert_eq!(unescape(&e), raw);
    }
}

#[test]
fn index_keys_are_classified_by_exact_prefix() {
    use crate::model::FieldMeta;
    static META: ModelMeta = ModelMeta {
        name: "M",
        fields: &[
            FieldMeta {
                name: "t",
                kind: FieldKind::Key,
                partition_by: &[],
                hidden: false,
                per_tenant: false,
            },
            FieldMeta {
                name: "score",
                kind: FieldKind::Sorted,
                partition_by: &[0],
                hidden: false,
                per_tenant: false,
            },
            FieldMeta {
                name: "scores",
                kind: FieldKind::Sorted,
                partition_by: &[],
                hidden: false,
                per_tenant: false,
            },
            FieldMeta {
                name: "c",
                kind: FieldKind::Confidence {
                    initial: 0.5,
                    evidence_cap: 20,
                },
                partition_by: &[0],
                hidden: false,
                per_tenant: false,
            },
        ],
        key_fields: &[0],
        tenant: Some(0),
        version: None,
        ttl: None,
        expire_at: false,
    };
    assert_eq!(index_pattern(&META), "$*:M:*");
    let cases = [
        ("$Class:M", Some(IndexKind::Class)),
        ("$KeyF:M:t:a{&#58;}b", Some(IndexKind::ValueSet(0))),
        ("$KeyF:M:t", None),
        ("$SortF:M:score", Some(IndexKind::Sorted(1))),
        ("$SortF:M:score:acme", Some(IndexKind::Sorted(1))),
        ("$SortF:M:scores", Some(IndexKind::Sorted(2))),
        ("$SortF:M:scoreboard", None),
        ("$ConfidencF:M:c:data", Some(IndexKind::Confidence(3))),
        ("$ConfidencF:M:c:data:a:b", Some(IndexKind::Confidence(3))),
        ("$ConfidencF:M:c:database", None),
        ("$KeyF:N:t:x", None),
        ("M:x", None),
    ];
    for (key, kind) in cases {
        assert_eq!(parse_index_key(&META, key), kind, "{key}");
    }
}

#[test]
fn expiry_sets_are_per_tenant_and_classified_exactly() {
    use crate::model::FieldMeta;
    static META: ModelMeta = ModelMeta {
        name: "S",
        fields: &[FieldMeta {
            name: "t",
            kind: FieldKind::Key,
            partition_by: &[],
            hidden: false,
            per_tenant: false,
        }],
        key_fields: &[0],
        tenant: Some(0),
        version: None,
        ttl: Some(60),
        expire_at: false,
    };
    assert_eq!(expiry_key(&META, Some("a:b*")), "$ExpireF:S:a{&#58;}b/*");
    assert_eq!(expiry_pattern(&META), r"$ExpireF:S*");
    assert_eq!(
        expiry_tenant(&META, "$ExpireF:S:a{&#58;}b/*"),
        Some(Some("a:b*".to_owned()))
    );
    for other in [
        "$ExpireF:S",
        "$ExpireF:S:",
        "$ExpireF:S:a:b",
        "$ExpireF:SS:a",
    ] {
        assert_eq!(expiry_tenant(&META, other), None, "{other}");
    }
    assert_eq!(
        parse_index_key(&META, "$ExpireF:S:acme"),
        Some(IndexKind::Expiry)
    );
    assert!(is_index_key(&META, "$ExpireF:S:acme"));
    assert!(index_patterns(&META).contains(&r"$ExpireF:S*".to_owned()));
}

#[test]
fn partition_labels_follow_the_unpartitioned_key() {
    assert_eq!(
        partition_label("$ConfidencF:M:c:data", "$ConfidencF:M:c:data:umbrella:eu-1"),
        "umbrella:eu-1"
    );
    assert_eq!(partition_label("$SortF:M:s", "$SortF:M:s:a/-b"), "a/-b");
    assert_eq!(partition_label("$SortF:M:s", "$SortF:M:s"), "default");
    assert_eq!(partition_label("$SortF:M:s", "$SortF:M:sx:a"), "default");
}

#[test]
fn job_streams_escape_the_queue_name() {
    assert_eq!(job_stream_key("mail"), "$Jobs:mail");
    assert_eq!(job_stream_key("a:b*"), "$Jobs:a{&#58;}b/*");
}

#[test]
fn catalog_keys_escape_the_tenant_and_stay_apart_from_model_keys() {
    assert_eq!(catalog_entry_key("acme"), "$PopotoCatalog:entry:acme");
    assert_eq!(
        catalog_entry_key("a:b*"),
        "$PopotoCatalog:entry:a{&#58;}b/*"
    );
    assert_eq!(catalog_status_key("active"), "$PopotoCatalog:status:active");
    assert_eq!(fleet_journal_key("r:1"), "$PopotoCatalog:run:r{&#58;}1");
    assert!(!catalog_ids_key().starts_with("$Class:"));
}

#[test]
fn glob_escape_escapes_metacharacters() {
    assert_eq!(glob_escape("a*"), "a\\*");
    assert_eq!(glob_escape("[ab]"), "\\[ab\\]");
    assert_eq!(glob_escape("a\\"), "a\\\\");
    assert_eq!(glob_escape("plain:x"), "plain:x");
}
