//! Query resolution without a server: filters and scope to index reads.

use super::*;
use crate::backend::{Backend, BackendConfig};
use crate::db::Db;
use crate::model::{FieldKind, FieldMeta, KeyField, ModelMeta, Record, SortedField};
use crate::query::filter::{Filter, Match};
use crate::query::Query;

/// Popoto's Episode by hand: tenant key `project_id`, auto key, a sorted score partitioned by
/// the tenant, an unpartitioned sorted rank.
struct Episode;

impl Model for Episode {
    const META: &'static ModelMeta = &ModelMeta {
        name: "Episode",
        fields: &[
            FieldMeta {
                name: "project_id",
                kind: FieldKind::Key,
                partition_by: &[],
                hidden: false,
                per_tenant: false,
            },
            FieldMeta {
                name: "episode_id",
                kind: FieldKind::AutoKey,
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
                name: "rank",
                kind: FieldKind::Sorted,
                partition_by: &[],
                hidden: false,
                per_tenant: false,
            },
        ],
        key_fields: &[1, 0],
        tenant: Some(0),
        version: None,
        ttl: None,
        expire_at: false,
    };

    fn to_record(&self) -> Result<Record> {
        Ok(Record::default())
    }
    fn from_hash(_key: &str, _fields: Vec<(Vec<u8>, Vec<u8>)>) -> Result<Self> {
        Ok(Episode)
    }
    fn fill_auto_keys(&mut self) -> bool {
        false
    }
    fn fill_confidence_initials(&mut self) {}
    fn tenant_id(&self) -> Option<&str> {
        None
    }
    fn set_tenant_id(&mut self, _tenant: &str) {}
    fn segment_from_stored(_key: &str, _field: usize, _raw: &[u8]) -> Result<String> {
        Ok(String::new())
    }
}

const PROJECT: KeyField<Episode, String> = KeyField::new(0);
const SCORE: SortedField<Episode, f64> = SortedField::new(2);
const RANK: SortedField<Episode, i64> = SortedField::new(3);

/// A `Db` on an address nothing listens on: resolution never dials.
fn db() -> Db {
    let backend =
        Backend::new(BackendConfig::new("redis://127.0.0.1:1/0")).unwrap_or_else(|e| panic!("{e}"));
    Db::from_backend(backend)
}

fn set(k: &str) -> Source {
    Source::Set(k.into())
}

fn range(field: usize, zset: &str, min: Bound, max: Bound) -> Source {
    Source::Range {
        field,
        zset: zset.into(),
        min,
        max,
    }
}

fn resolve(q: Query<'_, Episode>) -> Result<Vec<Source>> {
    q.resolve()
}

#[test]
fn a_tenant_handle_reads_its_value_set_or_its_partition() {
    let db = db();
    let acme = db.tenant("acme").unwrap_or_else(|e| panic!("{e}"));
    let q = || acme.query::<Episode>();
    assert_eq!(
        resolve(q()).ok(),
        Some(vec![set("$KeyF:Episode:project_id:acme")])
    );
    // A range on the tenant-partitioned score reads the partition only: no extra set.
    assert_eq!(
        resolve(q().filter(SCORE.gte(0.5))).ok(),
        Some(vec![range(
            2,
            "$SortF:Episode:score:acme",
            Bound::Incl(0.5),
            Bound::Unbounded
        )])
    );
    // A range on an unpartitioned field is intersected with the tenant's value set.
    assert_eq!(
        resolve(q().filter(RANK.lt(3))).ok(),
        Some(vec![
            range(3, "$SortF:Episode:rank", Bound::Unbounded, Bound::Excl(3.0)),
            set("$KeyF:Episode:project_id:acme"),
        ])
    );
    // Ordering by the partitioned field reads that partition as the source.
    assert_eq!(
        resolve(q().order_by(SCORE)).ok(),
        Some(vec![range(
            2,
            "$SortF:Episode:score:acme",
            Bound::Unbounded,
            Bound::Unbounded
        )])
    );
    // Tenant ids are escaped in the keys.
    let odd = db.tenant("a:b*").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        resolve(odd.query::<Episode>()).ok(),
        Some(vec![set("$KeyF:Episode:project_id:a{&#58;}b/*")])
    );
}

#[test]
fn another_tenants_values_are_refused_before_any_read() {
    let db = db();
    let acme = db.tenant("acme").unwrap_or_else(|e| panic!("{e}"));
    for q in [
        acme.query::<Episode>().filter(PROJECT.eq("globex")),
        acme.query::<Episode>()
            .filter(PROJECT.is_in(["acme", "globex"])),
        acme.query::<Episode>().partition(PROJECT, "globex"),
    ] {
        match resolve(q) {
            Err(Error::TenantMismatch { found, .. }) => assert_eq!(found, "globex"),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn scopes_without_a_tenant_read_the_class_set_and_need_partitions() {
    let db = db();
    assert!(matches!(
        resolve(db.unscoped().query::<Episode>()),
        Err(Error::NoTenant { model: "Episode" })
    ));
    let admin = db.admin();
    assert_eq!(
        resolve(admin.query::<Episode>()).ok(),
        Some(vec![set("$Class:Episode")])
    );
    assert!(matches!(
        resolve(admin.query::<Episode>().filter(SCORE.gte(0.0))),
        Err(Error::MissingPartition {
            field: "score",
            partition_field: "project_id",
            ..
        })
    ));
    assert_eq!(
        resolve(
            admin
                .query::<Episode>()
                .filter(PROJECT.eq("globex"))
                .filter(SCORE.gte(1.0))
        )
        .ok(),
        Some(vec![
            set("$KeyF:Episode:project_id:globex"),
            range(
                2,
                "$SortF:Episode:score:globex",
                Bound::Incl(1.0),
                Bound::Unbounded
            ),
        ])
    );
    assert_eq!(
        resolve(admin.query::<Episode>().filter(PROJECT.is_in(["a", "b"]))).ok(),
        Some(vec![Source::Union(vec![
            "$KeyF:Episode:project_id:a".into(),
            "$KeyF:Episode:project_id:b".into()
        ])])
    );
}

#[test]
fn nan_bounds_are_refused() {
    let db = db();
    let acme = db.tenant("acme").unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        resolve(acme.query::<Episode>().filter(SCORE.lt(f64::NAN))),
        Err(Error::InvalidValue { field: "score", .. })
    ));
}

const EPISODE_ID: KeyField<Episode, String> = KeyField::new(1);

fn expr(node: Node, universe: &str) -> Source {
    Source::Expr {
        node: Box::new(node),
        universe: universe.into(),
    }
}

fn leaf(s: Source) -> Node {
    Node::Leaf(s)
}

#[test]
fn ranges_on_one_field_merge_into_one_read() {
    let db = db();
    let acme = db.tenant("acme").unwrap_or_else(|e| panic!("{e}"));
    let q = acme
        .query::<Episode>()
        .filter(SCORE.gt(1.0))
        .filter(RANK.gte(2))
        .filter(SCORE.lte(5.0))
        .filter(SCORE.gte(1.0))
        .filter(SCORE.lt(5.0));
    assert_eq!(
        resolve(q).ok(),
        Some(vec![
            range(
                2,
                "$SortF:Episode:score:acme",
                Bound::Excl(1.0),
                Bound::Excl(5.0)
            ),
            range(3, "$SortF:Episode:rank", Bound::Incl(2.0), Bound::Unbounded),
        ])
    );
    let half_open = acme.query::<Episode>().filter(SCORE.range(0.5..2.0));
    assert_eq!(
        resolve(half_open).ok(),
        Some(vec![range(
            2,
            "$SortF:Episode:score:acme",
            Bound::Incl(0.5),
            Bound::Excl(2.0)
        )])
    );
    assert_eq!(
        Bound::Incl(3.0).tighter(Bound::Excl(3.0), true),
        Bound::Excl(3.0)
    );
    assert_eq!(
        Bound::Excl(3.0).tighter(Bound::Incl(4.0), false),
        Bound::Excl(3.0)
    );
    assert_eq!(
        Bound::Unbounded.tighter(Bound::Incl(4.0), false),
        Bound::Incl(4.0)
    );
}

#[test]
fn or_and_not_become_one_expression_relative_to_the_scopes_own_set() {
    let db = db();
    let acme = db.tenant("acme").unwrap_or_else(|e| panic!("{e}"));
    let q = acme.query::<Episode>().filter(RANK.eq(1) | !SCORE.gte(2.0));
    let own = "$KeyF:Episode:project_id:acme";
    assert_eq!(
        resolve(q).ok(),
        Some(vec![
            expr(
                Node::Or(vec![
                    leaf(range(
                        3,
                        "$SortF:Episode:rank",
                        Bound::Incl(1.0),
                        Bound::Incl(1.0)
                    )),
                    Node::Not(Box::new(leaf(range(
                        2,
                        "$SortF:Episode:score:acme",
                        Bound::Incl(2.0),
                        Bound::Unbounded
                    )))),
                ]),
                own
            ),
            set(own),
        ])
    );
    // The admin's NOT is relative to the class set; a key equality inside an OR does not fix
    // a partition.
    let admin = db.admin();
    assert!(matches!(
        resolve(
            admin
                .query::<Episode>()
                .filter(PROJECT.eq("a") | SCORE.gte(1.0))
        ),
        Err(Error::MissingPartition { .. })
    ));
    assert_eq!(
        resolve(admin.query::<Episode>().filter(!PROJECT.eq("a"))).ok(),
        Some(vec![expr(
            Node::Not(Box::new(leaf(set("$KeyF:Episode:project_id:a")))),
            "$Class:Episode"
        )])
    );
    // Double negation cancels; `all` flattens into the query's filters.
    assert_eq!(
        resolve(acme.query::<Episode>().filter(!!RANK.eq(1))).ok(),
        resolve(acme.query::<Episode>().filter(RANK.eq(1))).ok()
    );
    assert_eq!(
        resolve(
            acme.query::<Episode>()
                .filter(Filter::all([RANK.eq(1), SCORE.gte(1.0)]))
        )
        .ok(),
        resolve(
            acme.query::<Episode>()
                .filter(RANK.eq(1))
                .filter(SCORE.gte(1.0))
        )
        .ok()
    );
}

#[test]
fn another_tenants_value_anywhere_in_a_tree_is_refused() {
    let db = db();
    let acme = db.tenant("acme").unwrap_or_else(|e| panic!("{e}"));
    for f in [
        RANK.eq(1) | PROJECT.eq("globex"),
        !PROJECT.eq("globex"),
        RANK.eq(1) & !(SCORE.gte(1.0) | PROJECT.is_in(["acme", "globex"])),
    ] {
        match resolve(acme.query::<Episode>().filter(f)) {
            Err(Error::TenantMismatch { found, .. }) => assert_eq!(found, "globex"),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn key_lookups_scan_the_scopes_own_set_with_an_escaped_pattern() {
    let db = db();
    let acme = db.tenant("a:b*").unwrap_or_else(|e| panic!("{e}"));
    let q = acme
        .query::<Episode>()
        .filter(EPISODE_ID.starts_with("x*[-"));
    assert_eq!(
        resolve(q).ok(),
        Some(vec![Source::Scan {
            set: "$KeyF:Episode:project_id:a{&#58;}b/*".into(),
            pattern: r"Episode:x/\*/\[/\-*:a{&#58;}b/\*".into(),
            field: 1,
            how: Match::Prefix,
            needle: "x*[-".into(),
        }])
    );
    let admin = db.admin();
    let q = admin.query::<Episode>().filter(EPISODE_ID.ends_with("z"));
    assert_eq!(
        resolve(q).ok(),
        Some(vec![Source::Scan {
            set: "$Class:Episode".into(),
            pattern: "Episode:*z:*".into(),
            field: 1,
            how: Match::Suffix,
            needle: "z".into(),
        }])
    );
    // A needle holding `{` does not narrow the pattern (it could meet an escaped `:`).
    let q = admin
        .query::<Episode>()
        .filter(EPISODE_ID.contains("{&#58;"));
    match resolve(q) {
        Ok(sources) => match &sources[..] {
            [Source::Scan { pattern, .. }] => assert_eq!(pattern, "Episode:*:*"),
            other => panic!("{other:?}"),
        },
        Err(e) => panic!("{e}"),
    }
}

/// The escaped needle is a substring of the escaped value whenever the needle (without `{`) is
/// a substring of the value, at the same end for prefixes and suffixes: the SSCAN pattern
/// never misses a match.
#[test]
fn escaped_needles_stay_inside_escaped_values() {
    let alphabet = [
        'a', ':', '/', '*', '-', '{', '&', '#', '5', '8', ';', '}', '?', '[', ']',
    ];
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..20_000 {
        let len = (next() % 10) as usize;
        let value: String = (0..len)
            .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
            .collect();
        let (a, b) = ((next() as usize) % (len + 1), (next() as usize) % (len + 1));
        let (a, b) = (a.min(b), a.max(b));
        let needle = &value[a..b];
        if needle.contains('{') {
            continue;
        }
        let (ev, en) = (crate::keys::escape(&value), crate::keys::escape(needle));
        assert!(ev.contains(en.as_ref()), "{value:?} / {needle:?}");
        if a == 0 {
            assert!(ev.starts_with(en.as_ref()), "prefix {value:?} / {needle:?}");
        }
        if b == len {
            assert!(ev.ends_with(en.as_ref()), "suffix {value:?} / {needle:?}");
        }
    }
}

#[test]
fn programs_are_postfix_with_keys_by_position() {
    use super::super::expr::{Program, RNode, Resolved};
    let sources = vec![
        Resolved::Expr {
            node: Box::new(RNode::Or(vec![
                RNode::Leaf(Resolved::Index(set("s1"))),
                RNode::Not(Box::new(RNode::Leaf(Resolved::List(vec![b"m".to_vec()])))),
            ])),
            universe: "own".into(),
        },
        Resolved::Index(range(3, "z", Bound::Excl(1.5), Bound::Unbounded)),
    ];
    let p = Program::of(&sources, Some(1));
    assert_eq!(p.keys, ["s1", "own", "z"]);
    let args: Vec<String> = p
        .args
        .iter()
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    assert_eq!(
        args,
        ["2", "2", "S", "1", "S", "2", "L", "1", "m", "N", "O", "2", "R", "3", "(1.5", "+inf"]
    );
}

#[test]
fn trees_confined_to_the_tenant_need_no_intersection_with_its_set() {
    let db = db();
    let acme = db.tenant("acme").unwrap_or_else(|e| panic!("{e}"));
    let own = "$KeyF:Episode:project_id:acme";
    let only_expr = |f: Filter<Episode>| match resolve(acme.query::<Episode>().filter(f)) {
        Ok(sources) => !sources.contains(&set(own)),
        Err(e) => panic!("{e}"),
    };
    // Ranges of acme's partition, a NOT (relative to acme's set), a lookup (a scan of it).
    assert!(only_expr(SCORE.lt(1.0) | SCORE.gte(5.0)));
    assert!(only_expr(!RANK.eq(1)));
    assert!(only_expr(EPISODE_ID.starts_with("a") | !RANK.eq(2)));
    assert!(only_expr(RANK.eq(1) & (SCORE.lt(1.0) | PROJECT.eq("acme"))));
    // The global rank zset is not confined: acme's set is intersected.
    match resolve(acme.query::<Episode>().filter(RANK.eq(1) | SCORE.lt(1.0))) {
        Ok(sources) => assert_eq!(sources.last(), Some(&set(own))),
        Err(e) => panic!("{e}"),
    }
}
