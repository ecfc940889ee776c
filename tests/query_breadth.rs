//! Query breadth against a private redis-server: `Query: Clone`, `exists`/`last`, OR / NOT of
//! indexed filters (property-tested against a naive filter of every row), merged ranges and
//! projections (lookups and client-side order: `tests/query_lookups.rs`). Each read path is attacked the
//! way `tests/boundary.rs` attacks the others: members planted in a tenant's indexes, and a
//! forged hash under a tenant's key, are never returned or counted.

mod support;

use popoto::{Error, Filter};
use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use support::*;

/// Acme's and globex's episodes: rank `i % 5`, score `i / 4` (ties), titles `<tenant>-<i>`.
async fn seeded(n: usize) -> (popoto::testing::TestRedis, popoto::Db) {
    let (server, db) = setup().await;
    for tenant in ["acme", "globex"] {
        seed_episodes(&db, tenant, n).await;
    }
    (server, db)
}

fn titles(rows: &[Episode]) -> Vec<String> {
    rows.iter().map(|e| e.title.clone()).collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// Globex's first episode planted in acme's value set and score partition (top score), and a
/// hash under an acme key whose stored tenant field says globex, indexed in acme's sets too.
/// Returns the planted and the forged member.
async fn plant(server: &popoto::testing::TestRedis, db: &popoto::Db) -> (String, String) {
    let globex = db.tenant("globex").unwrap_or_else(|e| panic!("{e}"));
    let (gkey, g) = globex
        .query::<Episode>()
        .order_by(Episode::score())
        .fetch_keyed()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("globex has rows"));
    let member = gkey.redis_key();
    let forged = Episode::key_of("acme", "f".repeat(32)).redis_key();
    for (field, value) in hgetall(server, &member) {
        let value = if field == "episode_id" {
            rmp_serde::to_vec(&"f".repeat(32)).unwrap_or_else(|e| panic!("{e}"))
        } else {
            value
        };
        hset(server, &forged, field.as_bytes(), &value);
    }
    for m in [&member, &forged] {
        raw_cmd::<i64>(
            server,
            redis::cmd("SADD")
                .arg("$KeyF:Episode:project_id:acme")
                .arg(m),
        );
        raw_cmd::<i64>(
            server,
            redis::cmd("ZADD")
                .arg("$SortF:Episode:score:acme")
                .arg(99)
                .arg(m),
        );
    }
    assert_eq!(g.project_id, "globex");
    (member, forged)
}

#[tokio::test]
async fn queries_clone_and_answer_exists_first_last() {
    let (_server, db) = seeded(20).await;
    let acme = db.tenant("acme").unwrap();
    let q = acme.query::<Episode>().filter(Episode::rank().eq(2));
    assert_eq!(q.clone().count().await.unwrap(), 4);
    let rows = q.clone().order_by(Episode::score()).fetch().await.unwrap();
    assert_eq!(titles(&rows), ["acme-2", "acme-7", "acme-12", "acme-17"]);
    assert!(q.clone().exists().await.unwrap());
    assert!(!acme
        .query::<Episode>()
        .filter(Episode::rank().eq(9))
        .exists()
        .await
        .unwrap());
    // last: the last row fetch returns, with an order, a range's order, or key order.
    let by_score = acme.query::<Episode>().order_by(Episode::score());
    let all = by_score.clone().fetch().await.unwrap();
    let last = by_score.clone().last().await.unwrap();
    assert_eq!(last.as_ref(), all.last());
    assert_eq!(last.map(|e| e.score), Some(4.0));
    let desc_last = acme
        .query::<Episode>()
        .order_by_desc(Episode::score())
        .last()
        .await
        .unwrap();
    assert_eq!(
        desc_last.as_ref(),
        all.first(),
        "desc ties reverse the key order"
    );
    let ranged = acme.query::<Episode>().filter(Episode::score().lt(2.0));
    assert_eq!(
        ranged.clone().last().await.unwrap(),
        ranged.clone().fetch().await.unwrap().pop()
    );
    let keyed = acme.query::<Episode>().filter(Episode::rank().eq(3));
    assert_eq!(
        keyed.clone().last().await.unwrap(),
        keyed.clone().fetch().await.unwrap().pop()
    );
    let paged = by_score.clone().offset(2).limit(3);
    assert_eq!(
        paged.clone().last().await.unwrap(),
        paged.fetch().await.unwrap().pop()
    );
    // A predicate is shared by clones.
    let odd = acme.query::<Episode>().matching(|e| e.rank % 2 == 1);
    assert_eq!(odd.clone().count().await.unwrap(), 8);
    assert_eq!(odd.fetch().await.unwrap().len(), 8);
}

#[tokio::test]
async fn exists_and_last_never_confirm_a_planted_member() {
    let (server, db) = seeded(4).await;
    let (member, forged) = plant(&server, &db).await;
    let acme = db.tenant("acme").unwrap();
    // The planted members have the top score: last() by score and first() desc skip them.
    let last = acme
        .query::<Episode>()
        .order_by(Episode::score())
        .last()
        .await
        .unwrap();
    assert_eq!(last.map(|e| e.project_id).as_deref(), Some("acme"));
    // Only the planted members are in the range above the real scores.
    let above = || acme.query::<Episode>().filter(Episode::score().gt(50.0));
    assert!(!above().exists().await.unwrap());
    assert_eq!(above().last().await.unwrap(), None);
    assert_eq!(above().count().await.unwrap(), 0);
    assert!(!member.is_empty() && !forged.is_empty());
}

/// A filter tree over Episode's indexes, and the same condition on a loaded row.
#[derive(Debug, Clone)]
enum Tree {
    Rank(i64),
    RankIn(i64, i64),
    ScoreGte(f64),
    ScoreLt(f64),
    Tenant,
    IdStarts(String),
    And(Vec<Tree>),
    Or(Vec<Tree>),
    Not(Box<Tree>),
}

impl Tree {
    fn filter(&self) -> Filter<Episode> {
        match self {
            Tree::Rank(r) => Episode::rank().eq(*r),
            Tree::RankIn(a, b) => Episode::rank().range(*a..*b),
            Tree::ScoreGte(s) => Episode::score().gte(*s),
            Tree::ScoreLt(s) => Episode::score().lt(*s),
            Tree::Tenant => Episode::project_id().eq("acme"),
            Tree::IdStarts(p) => Episode::episode_id().starts_with(p),
            Tree::And(ts) => Filter::all(ts.iter().map(Tree::filter)),
            Tree::Or(ts) => Filter::any(ts.iter().map(Tree::filter)),
            Tree::Not(t) => !t.filter(),
        }
    }

    fn holds(&self, e: &Episode) -> bool {
        match self {
            Tree::Rank(r) => e.rank == *r,
            Tree::RankIn(a, b) => (*a..*b).contains(&e.rank),
            Tree::ScoreGte(s) => e.score >= *s,
            Tree::ScoreLt(s) => e.score < *s,
            Tree::Tenant => e.project_id == "acme",
            Tree::IdStarts(p) => e.episode_id.starts_with(p.as_str()),
            Tree::And(ts) => ts.iter().all(|t| t.holds(e)),
            Tree::Or(ts) => ts.iter().any(|t| t.holds(e)),
            Tree::Not(t) => !t.holds(e),
        }
    }
}

fn tree() -> impl Strategy<Value = Tree> {
    let leaf = prop_oneof![
        (0i64..6).prop_map(Tree::Rank),
        (0i64..6, 0i64..6).prop_map(|(a, b)| Tree::RankIn(a, b)),
        (0u8..8).prop_map(|s| Tree::ScoreGte(f64::from(s))),
        (0u8..8).prop_map(|s| Tree::ScoreLt(f64::from(s))),
        Just(Tree::Tenant),
        "[0-9a-f]".prop_map(Tree::IdStarts),
    ];
    leaf.prop_recursive(3, 16, 3, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 1..4).prop_map(Tree::And),
            proptest::collection::vec(inner.clone(), 1..4).prop_map(Tree::Or),
            inner.prop_map(|t| Tree::Not(Box::new(t))),
        ]
    })
}

/// OR / NOT / AND trees through a tenant handle return exactly the tenant's rows a naive
/// filter of every row keeps, in order, counted alike, and so do cursor pages of them; never
/// another tenant's row.
#[test]
fn or_and_not_agree_with_a_naive_filter_of_every_row() {
    let rt = runtime();
    let (server, db, every) = rt.block_on(async {
        let (server, db) = seeded(30).await;
        let every = db.admin().query::<Episode>().fetch().await.unwrap();
        assert_eq!(every.len(), 60);
        (server, db, every)
    });
    let acme = db.tenant("acme").unwrap();
    let mut runner = TestRunner::new(proptest_config(96));
    let nonempty = std::cell::Cell::new(0);
    runner
        .run(&tree(), |t| {
            let want: Vec<String> = {
                let mut rows: Vec<&Episode> = every
                    .iter()
                    .filter(|e| e.project_id == "acme" && t.holds(e))
                    .collect();
                rows.sort_by(|a, b| {
                    a.score
                        .total_cmp(&b.score)
                        .then(a.episode_id.cmp(&b.episode_id))
                });
                rows.iter().map(|e| e.title.clone()).collect()
            };
            if !want.is_empty() {
                nonempty.set(nonempty.get() + 1);
            }
            let (got, count, keys, paged) = rt.block_on(async {
                let q = acme.query::<Episode>().filter(t.filter());
                let got = q.clone().order_by(Episode::score()).fetch().await;
                let count = q.clone().count().await;
                let keys = q.clone().fetch_keys().await;
                // Cursor pages of 4 over the same filter (other filters applied per window).
                let mut paged = Vec::new();
                let mut cursor = None;
                for _ in 0..100 {
                    let page = q
                        .clone()
                        .order_by(Episode::score())
                        .page(cursor.as_ref(), 4)
                        .await
                        .unwrap_or_else(|e| panic!("{t:?}: {e}"));
                    paged.extend(page.rows.into_iter().map(|(_, e)| e));
                    match page.next {
                        Some(c) => cursor = Some(c),
                        None => break,
                    }
                }
                (got, count, keys, paged)
            });
            let got = titles(&got.unwrap_or_else(|e| panic!("{t:?}: {e}")));
            prop_assert_eq!(&got, &want, "{:?}", t);
            prop_assert_eq!(&titles(&paged), &want, "pages of {:?}", t);
            prop_assert_eq!(count.unwrap_or_else(|e| panic!("{e}")), want.len());
            prop_assert_eq!(keys.unwrap_or_else(|e| panic!("{e}")).len(), want.len());
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
    let nonempty = nonempty.get();
    assert!(nonempty > 20, "the cases select rows: {nonempty}");
    drop(server);
}

#[tokio::test]
async fn not_is_relative_to_the_tenants_own_rows_and_planted_members_stay_out() {
    let (server, db) = seeded(10).await;
    // The admin's NOT is relative to every instance of the model.
    let admin_not = db
        .admin()
        .query::<Episode>()
        .filter(!Episode::project_id().eq("acme"))
        .count()
        .await
        .unwrap();
    assert_eq!(admin_not, 10);
    let (member, forged) = plant(&server, &db).await;
    let acme = db.tenant("acme").unwrap();
    let not_rank1 = acme
        .query::<Episode>()
        .filter(!Episode::rank().eq(1))
        .fetch()
        .await
        .unwrap();
    assert_eq!(not_rank1.len(), 8);
    assert!(not_rank1
        .iter()
        .all(|e| e.project_id == "acme" && e.rank != 1));
    // OR over the partition the planted members sit in: they are never returned or counted.
    let q = || {
        acme.query::<Episode>()
            .filter(Episode::score().gte(50.0) | Episode::rank().eq(0))
    };
    let rows = q().fetch_keyed().await.unwrap();
    let keys: Vec<String> = rows.iter().map(|(k, _)| k.redis_key()).collect();
    assert!(
        !keys.contains(&member) && !keys.contains(&forged),
        "{keys:?}"
    );
    assert_eq!(
        sorted(titles(
            &rows.into_iter().map(|(_, e)| e).collect::<Vec<_>>()
        )),
        ["acme-0", "acme-5"]
    );
    assert_eq!(q().count().await.unwrap(), 2);
    assert_eq!(q().fetch_keys().await.unwrap().len(), 2);
    let none = || acme.query::<Episode>().filter(!Episode::score().lt(50.0));
    assert_eq!(none().count().await.unwrap(), 0);
    assert!(!none().exists().await.unwrap());
    // Another tenant's value anywhere in a tree is refused before anything is read.
    for f in [
        Episode::project_id().eq("globex") | Episode::rank().eq(1),
        !Episode::project_id().eq("globex"),
        Episode::rank().eq(1) & !Episode::project_id().is_in(["acme", "globex"]),
    ] {
        match acme.query::<Episode>().filter(f).count().await {
            Err(Error::TenantMismatch { found, .. }) => assert_eq!(found, "globex"),
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn ranges_on_one_field_are_one_read() {
    let (server, db) = seeded(20).await;
    let acme = db.tenant("acme").unwrap();
    let before = calls(&server, "zrangebyscore");
    let rows = acme
        .query::<Episode>()
        .filter(Episode::score().gt(1.0))
        .filter(Episode::score().lt(4.0))
        .fetch()
        .await
        .unwrap();
    assert_eq!(
        calls(&server, "zrangebyscore") - before,
        1,
        "one range read"
    );
    assert_eq!(
        sorted(titles(&rows)),
        ["acme-10", "acme-11", "acme-12", "acme-13", "acme-14", "acme-15", "acme-8", "acme-9"]
    );
    assert!(
        rows.windows(2).all(|w| w[0].score <= w[1].score),
        "in score order"
    );
    // Half-open, closed and open-ended Rust ranges.
    let count = |f: Filter<Episode>| {
        let acme = acme.clone();
        async move { acme.query::<Episode>().filter(f).count().await.unwrap() }
    };
    assert_eq!(count(Episode::score().range(1.0..3.0)).await, 8);
    assert_eq!(count(Episode::score().range(1.0..=3.0)).await, 12);
    assert_eq!(count(Episode::score().range(3.0..)).await, 8);
    assert_eq!(count(Episode::score().range(..1.0)).await, 4);
    assert_eq!(
        count(Episode::score().gte(2.0) & Episode::score().lte(2.0)).await,
        4
    );
    // Merged bounds keep the tighter side, exclusive at equal values.
    assert_eq!(
        count(Episode::score().gte(2.0) & Episode::score().gt(2.0)).await,
        8
    );
    assert_eq!(
        count(Episode::score().gt(3.0) & Episode::score().lt(2.0)).await,
        0
    );
}

#[tokio::test]
async fn projections_read_only_their_fields_and_verify_the_tenant() {
    let (server, db) = seeded(8).await;
    let acme = db.tenant("acme").unwrap();
    let top = || {
        acme.query::<Episode>()
            .order_by_desc(Episode::score())
            .limit(3)
    };
    let want: Vec<(String, f64, String)> = top()
        .fetch()
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.title, e.score, e.project_id))
        .collect();
    assert_eq!(want.len(), 3);
    let hgetall_before = calls(&server, "hgetall");
    let rows = top()
        .values((Episode::title(), Episode::score(), Episode::project_id()))
        .await
        .unwrap();
    assert_eq!(rows, want);
    assert_eq!(
        calls(&server, "hgetall"),
        hgetall_before,
        "no whole hash read"
    );
    assert_eq!(calls(&server, "hmget"), 3, "one HMGET per row");
    // Planted and forged members are not projected.
    let (member, forged) = plant(&server, &db).await;
    let keyed = acme
        .query::<Episode>()
        .order_by_desc(Episode::score())
        .limit(2)
        .values_keyed((Episode::title(),))
        .await
        .unwrap();
    let keys: Vec<String> = keyed.iter().map(|(k, _)| k.redis_key()).collect();
    assert!(!keys.contains(&member) && !keys.contains(&forged));
    assert_eq!(keyed.len(), 2, "a limited page stays full");
    let all = acme
        .query::<Episode>()
        .values((Episode::title(),))
        .await
        .unwrap();
    assert_eq!(all.len(), 8);
    // A missing field: an Option reads None, any other type is a decode error naming it.
    let acme_item = acme
        .create(Item {
            sku: "p-1".into(),
            region: "eu".into(),
            level: 3,
            note: Some("x".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let ikey = Item::key_of("acme", acme_item.sku.clone()).redis_key();
    raw_cmd::<i64>(
        &server,
        redis::cmd("HDEL").arg(&ikey).arg("note").arg("region"),
    );
    let notes = acme
        .query::<Item>()
        .values((Item::note(), Item::level()))
        .await
        .unwrap();
    assert_eq!(notes, [(None, 3)]);
    match acme.query::<Item>().values((Item::region(),)).await {
        Err(Error::Decode { key, field, .. }) => {
            assert_eq!((key, field.as_str()), (ikey, "region"))
        }
        other => panic!("{other:?}"),
    }
    // A projection cannot run a client-side predicate: refused, not silently ignored.
    assert!(matches!(
        acme.query::<Episode>()
            .matching(|_| true)
            .values((Episode::title(),))
            .await,
        Err(Error::InvalidQuery { .. })
    ));
}
