//! Typed queries against a private redis-server.

mod support;

use popoto::Error;
use support::*;

async fn seeded() -> (popoto::testing::TestRedis, popoto::Db) {
    let (server, db) = setup().await;
    for (tenant, n) in [("acme", 30), ("globex", 20), ("umbrella:eu-1", 10)] {
        let t = db.tenant(tenant).unwrap();
        let eps: Vec<Episode> = (0..n)
            .map(|i| episode("", &format!("{tenant}-{i}"), i as f64 / 10.0, i % 7))
            .collect();
        t.create_many(eps).await.unwrap();
        let items: Vec<Item> = (0..n)
            .map(|i| Item {
                sku: format!("{tenant}/{i}"),
                region: if i % 2 == 0 { "eu".into() } else { "us".into() },
                level: i,
                ..Default::default()
            })
            .collect();
        t.create_many(items).await.unwrap();
    }
    (server, db)
}

fn titles(eps: &[Episode]) -> Vec<String> {
    eps.iter().map(|e| e.title.clone()).collect()
}

#[tokio::test]
async fn tenant_handles_see_only_their_tenant() {
    let (_server, db) = seeded().await;
    for (tenant, n) in [("acme", 30), ("globex", 20), ("umbrella:eu-1", 10)] {
        let t = db.tenant(tenant).unwrap();
        let all = t.query::<Episode>().fetch().await.unwrap();
        assert_eq!(all.len(), n);
        assert!(all.iter().all(|e| e.project_id == tenant));
        assert_eq!(t.query::<Episode>().count().await.unwrap(), n);
        let ranged = t
            .query::<Episode>()
            .filter(Episode::score().gte(0.5))
            .fetch()
            .await
            .unwrap();
        assert_eq!(ranged.len(), n - 5);
        assert!(ranged
            .iter()
            .all(|e| e.project_id == tenant && e.score >= 0.5));
    }
    assert_eq!(db.admin().query::<Episode>().count().await.unwrap(), 60);
}

#[tokio::test]
async fn sorted_ranges_bounds_and_order() {
    let (_server, db) = seeded().await;
    let acme = db.tenant("acme").unwrap();
    let q = || acme.query::<Episode>();
    assert_eq!(
        q().filter(Episode::score().gt(2.5)).count().await.unwrap(),
        4
    );
    assert_eq!(
        q().filter(Episode::score().gte(2.5)).count().await.unwrap(),
        5
    );
    assert_eq!(
        q().filter(Episode::score().lt(0.3)).count().await.unwrap(),
        3
    );
    assert_eq!(
        q().filter(Episode::score().lte(0.3)).count().await.unwrap(),
        4
    );
    assert_eq!(
        q().filter(Episode::score().between(1.0, 1.5))
            .count()
            .await
            .unwrap(),
        6
    );
    assert_eq!(
        q().filter(Episode::score().eq(1.2)).fetch().await.unwrap()[0].title,
        "acme-12"
    );

    let top = q()
        .filter(Episode::score().gte(0.0))
        .order_by_desc(Episode::score())
        .limit(3)
        .fetch()
        .await
        .unwrap();
    assert_eq!(titles(&top), ["acme-29", "acme-28", "acme-27"]);
    let page2 = q()
        .order_by(Episode::score())
        .offset(3)
        .limit(2)
        .fetch()
        .await
        .unwrap();
    assert_eq!(titles(&page2), ["acme-3", "acme-4"]);
    let asc = q().filter(Episode::score().lt(0.3)).fetch().await.unwrap();
    assert_eq!(
        titles(&asc),
        ["acme-0", "acme-1", "acme-2"],
        "a range without order_by is ascending"
    );
}

#[tokio::test]
async fn filters_intersect_and_order_by_another_sorted_field() {
    let (_server, db) = seeded().await;
    let acme = db.tenant("acme").unwrap();
    // rank is global (unpartitioned): intersected with the tenant's score range.
    let rows = acme
        .query::<Episode>()
        .filter(Episode::rank().eq(3))
        .filter(Episode::score().gte(1.0))
        .order_by_desc(Episode::score())
        .fetch()
        .await
        .unwrap();
    assert_eq!(titles(&rows), ["acme-24", "acme-17", "acme-10"]);
    let by_rank = acme
        .query::<Episode>()
        .filter(Episode::score().lt(0.9))
        .order_by(Episode::rank())
        .fetch()
        .await
        .unwrap();
    let ranks: Vec<i64> = by_rank.iter().map(|e| e.rank).collect();
    assert_eq!(ranks, [0, 0, 1, 1, 2, 3, 4, 5, 6]);
    assert_eq!(
        acme.query::<Episode>()
            .filter(Episode::rank().eq(3))
            .count()
            .await
            .unwrap(),
        4
    );
}

#[tokio::test]
async fn key_equality_and_in() {
    let (_server, db) = seeded().await;
    let admin = db.admin();
    let n = admin
        .query::<Episode>()
        .filter(Episode::project_id().is_in(["acme", "umbrella:eu-1"]))
        .count()
        .await
        .unwrap();
    assert_eq!(n, 40);
    let none: Vec<&str> = Vec::new();
    assert_eq!(
        admin
            .query::<Episode>()
            .filter(Episode::project_id().is_in(none))
            .count()
            .await
            .unwrap(),
        0
    );
    let one = admin
        .query::<Item>()
        .filter(Item::sku().eq("globex/7"))
        .fetch()
        .await
        .unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!((one[0].tenant.as_str(), one[0].level), ("globex", 7));
    let acme = db.tenant("acme").unwrap();
    assert_eq!(
        acme.query::<Item>()
            .filter(Item::sku().eq("globex/7"))
            .count()
            .await
            .unwrap(),
        0
    );
    let keys = acme
        .query::<Item>()
        .filter(Item::sku().is_in(["acme/1", "acme/2", "x"]))
        .fetch_keys()
        .await
        .unwrap();
    let mut redis_keys: Vec<String> = keys.iter().map(|k| k.redis_key()).collect();
    redis_keys.sort();
    assert_eq!(redis_keys, ["Item:acme//1:acme", "Item:acme//2:acme"]);
}

#[tokio::test]
async fn partitioned_ranges_need_every_partition_value() {
    let (_server, db) = seeded().await;
    let acme = db.tenant("acme").unwrap();
    match acme
        .query::<Item>()
        .filter(Item::level().gte(0))
        .fetch()
        .await
    {
        Err(Error::MissingPartition {
            model,
            field,
            partition_field,
        }) => {
            assert_eq!((model, field, partition_field), ("Item", "level", "region"));
        }
        other => panic!("expected MissingPartition, got {other:?}"),
    }
    let eu = acme
        .query::<Item>()
        .partition(Item::region(), "eu")
        .filter(Item::level().gte(10))
        .order_by_desc(Item::level())
        .fetch()
        .await
        .unwrap();
    let levels: Vec<i64> = eu.iter().map(|i| i.level).collect();
    assert_eq!(levels, [28, 26, 24, 22, 20, 18, 16, 14, 12, 10]);
    // The admin handle must name the tenant partition too.
    let admin = db.admin();
    assert!(matches!(
        admin
            .query::<Episode>()
            .filter(Episode::score().gte(0.0))
            .count()
            .await,
        Err(Error::MissingPartition {
            partition_field: "project_id",
            ..
        })
    ));
    let n = admin
        .query::<Episode>()
        .filter(Episode::project_id().eq("globex"))
        .filter(Episode::score().gte(1.0))
        .count()
        .await
        .unwrap();
    assert_eq!(n, 10);
}

#[tokio::test]
async fn ordering_by_a_partitioned_field_reads_only_that_partition() {
    let (_server, db) = seeded().await;
    let acme = db.tenant("acme").unwrap();
    let eu = acme
        .query::<Item>()
        .partition(Item::region(), "eu")
        .order_by(Item::level())
        .fetch()
        .await
        .unwrap();
    assert_eq!(eu.len(), 15);
    assert!(eu.iter().all(|i| i.region == "eu"), "only the eu partition");
    assert!(eu.windows(2).all(|w| w[0].level < w[1].level));
    assert!(matches!(
        acme.query::<Item>().order_by(Item::level()).fetch().await,
        Err(Error::MissingPartition {
            partition_field: "region",
            ..
        })
    ));
    // A tenant's top rows by its partitioned score: one ranged read with LIMIT, then the rows.
    let before = db.admin().backend().await.unwrap().round_trips();
    let top = acme
        .query::<Episode>()
        .order_by_desc(Episode::score())
        .limit(3)
        .fetch()
        .await
        .unwrap();
    assert_eq!(titles(&top), ["acme-29", "acme-28", "acme-27"]);
    assert_eq!(
        db.admin().backend().await.unwrap().round_trips() - before,
        2
    );
}

#[tokio::test]
async fn client_side_predicates_are_explicit() {
    let (_server, db) = seeded().await;
    let acme = db.tenant("acme").unwrap();
    let rows = acme
        .query::<Episode>()
        .filter(Episode::score().gte(1.0))
        .matching(|e| e.title.ends_with('5'))
        .fetch()
        .await
        .unwrap();
    assert_eq!(titles(&rows), ["acme-15", "acme-25"]);
    let n = acme
        .query::<Episode>()
        .matching(|e| e.rank == 0)
        .count()
        .await
        .unwrap();
    assert_eq!(n, 5);
    let first = acme
        .query::<Episode>()
        .order_by_desc(Episode::score())
        .matching(|e| e.rank == 1)
        .first()
        .await
        .unwrap();
    assert_eq!(first.unwrap().title, "acme-29");
}

#[tokio::test]
async fn limited_ranges_read_only_what_they_return_in_constant_round_trips() {
    let (server, db) = seeded().await;
    let acme = db.tenant("acme").unwrap();
    let stats = |name: &str| calls(&server, name);
    let hget_before = stats("hgetall");
    let trips_before = db.admin().backend().await.unwrap().round_trips();
    let rows = acme
        .query::<Episode>()
        .filter(Episode::score().gte(0.0))
        .order_by_desc(Episode::score())
        .limit(5)
        .fetch()
        .await
        .unwrap();
    assert_eq!(rows.len(), 5);
    assert_eq!(
        stats("hgetall") - hget_before,
        5,
        "only the returned rows are loaded"
    );
    let small = db.admin().backend().await.unwrap().round_trips() - trips_before;

    let trips_before = db.admin().backend().await.unwrap().round_trips();
    let rows = acme
        .query::<Episode>()
        .filter(Episode::score().gte(0.0))
        .order_by_desc(Episode::score())
        .fetch()
        .await
        .unwrap();
    assert_eq!(rows.len(), 30);
    assert_eq!(
        db.admin().backend().await.unwrap().round_trips() - trips_before,
        small,
        "round trips do not grow with rows"
    );
    assert_eq!(small, 2);

    // A count verifies each member server-side (one range read, one script call) and loads no
    // row: stale and foreign members are not counted (tests/boundary.rs).
    let range_before = stats("zrangebyscore");
    let hget_before = stats("hgetall");
    let trips_before = db.admin().backend().await.unwrap().round_trips();
    assert_eq!(
        acme.query::<Episode>()
            .filter(Episode::score().gte(1.0))
            .count()
            .await
            .unwrap(),
        20
    );
    assert_eq!(stats("zrangebyscore") - range_before, 1);
    assert_eq!(
        db.admin().backend().await.unwrap().round_trips() - trips_before,
        2
    );
    assert_eq!(stats("hgetall"), hget_before, "count loads no rows");
}
