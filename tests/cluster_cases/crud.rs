//! Writes of one instance on the cluster layout: create, get, save, delete, auto keys, key and
//! partition moves, unique values, versions, expiry; each write one script in its tenant's slot.

use std::time::{Duration, Instant};

use popoto::testing::TestCluster;
use popoto::Error;

use crate::common::*;
use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_get_save_delete_keep_every_key_under_the_tenants_tag() {
    let (cluster, db) = (TestCluster::shared(), shared_db());
    let t = "crud-basic";
    let s = db.tenant(t).unwrap();
    let (key, ep) = s
        .create_keyed(episode("", "kickoff", 0.8, 3))
        .await
        .unwrap();
    assert_eq!(ep.project_id, t, "the tenant handle fills the tenant field");
    assert_eq!(ep.episode_id.len(), 32, "an auto key: {}", ep.episode_id);
    assert_eq!(s.get(&key).await.unwrap(), Some(ep.clone()));
    assert!(s.exists(&key).await.unwrap());
    let keys = tenant_keys(cluster, t);
    assert_eq!(
        keys.len(),
        5,
        "hash, class, value set, two sorted sets: {keys:?}"
    );
    let slots: std::collections::BTreeSet<u16> =
        keys.iter().map(|k| cluster.slot_of(k).unwrap()).collect();
    assert_eq!(slots.len(), 1, "one slot for all of {t}'s keys: {keys:?}");
    assert_all_or_nothing(cluster, &db, t, "Episode", true).await;

    let mut changed = ep.clone();
    changed.title = "renamed".into();
    changed.score = 0.1;
    s.save(&changed).await.unwrap();
    assert_eq!(s.get(&key).await.unwrap(), Some(changed.clone()));
    assert_eq!(
        s.query::<Episode>()
            .filter(Episode::score().lt(0.5))
            .fetch()
            .await
            .unwrap(),
        [changed.clone()]
    );
    assert!(s.delete(&changed).await.unwrap());
    assert!(
        !s.delete(&changed).await.unwrap(),
        "deleting twice reports absence"
    );
    assert_eq!(s.get(&key).await.unwrap(), None);
    assert_eq!(tenant_keys(cluster, t), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_move_and_a_key_move_stay_in_the_slot() {
    let (cluster, db) = (TestCluster::shared(), shared_db());
    let t = "crud-moves";
    let s = db.tenant(t).unwrap();
    let mut item = s
        .create(Item {
            sku: "s1".into(),
            region: "eu".into(),
            level: 3,
            note: Some("n".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let level_in = |region: &'static str| {
        let s = s.clone();
        async move {
            s.query::<Item>()
                .partition(Item::region(), region)
                .filter(Item::level().gte(0))
                .fetch()
                .await
                .unwrap()
                .into_iter()
                .map(|i| (i.sku, i.level))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(level_in("eu").await, [("s1".to_string(), 3)]);
    item.region = "us".into();
    item.level = 7;
    s.save(&item).await.unwrap();
    assert_eq!(level_in("eu").await, []);
    assert_eq!(level_in("us").await, [("s1".to_string(), 7)]);
    let moved = s
        .move_key(
            &item,
            Item {
                sku: "s2".into(),
                ..item.clone()
            },
        )
        .await
        .unwrap();
    assert_eq!(s.get(&Item::key_of(t, "s1")).await.unwrap(), None);
    assert_eq!(
        s.get(&Item::key_of(t, "s2")).await.unwrap(),
        Some(moved.clone())
    );
    assert_eq!(level_in("us").await, [("s2".to_string(), 7)]);
    // Moving onto an existing key is refused and changes nothing.
    s.create(Item {
        sku: "s3".into(),
        region: "eu".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let before = tenant_keys(cluster, t);
    let onto = Item {
        sku: "s3".into(),
        ..moved.clone()
    };
    match s.move_key(&moved, onto).await {
        Err(Error::AlreadyExists { .. }) => {}
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    assert_eq!(tenant_keys(cluster, t), before);
    assert_all_or_nothing(cluster, &db, t, "Item", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unique_values_are_refused_within_a_tenant_and_free_in_another() {
    let (cluster, db) = (TestCluster::shared(), shared_db());
    let (a, b) = ("crud-unique-a", "crud-unique-b");
    let sa = db.tenant(a).unwrap();
    let item = |sku: &str| Item {
        sku: sku.into(),
        region: "eu".into(),
        ..Default::default()
    };
    sa.create(item("sku-1")).await.unwrap();
    let m = sa
        .create(Member {
            email: "x@y.io".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let before = tenant_keys(cluster, a);
    match sa
        .create(Member {
            email: "x@y.io".into(),
            ..Default::default()
        })
        .await
    {
        Err(Error::UniqueViolation { field, .. }) => assert_eq!(field, "email"),
        other => panic!("expected a unique violation, got {other:?}"),
    }
    assert_eq!(
        tenant_keys(cluster, a),
        before,
        "a refused create writes nothing"
    );
    // A save taking another instance's unique value is refused too.
    let other = sa
        .create(Member {
            email: "z@y.io".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let taken = Member {
        email: m.email.clone(),
        ..other.clone()
    };
    assert!(matches!(
        sa.save(&taken).await,
        Err(Error::UniqueViolation { .. })
    ));
    // The cluster layout keeps unique indexes per tenant: another tenant may hold the value.
    let sb = db.tenant(b).unwrap();
    sb.create(item("sku-1")).await.unwrap();
    assert_eq!(
        sb.query::<Item>()
            .filter(Item::sku().eq("sku-1"))
            .count()
            .await
            .unwrap(),
        1
    );
    assert_all_or_nothing(cluster, &db, a, "Member", false).await;
    assert_all_or_nothing(cluster, &db, b, "Item", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_copy_is_refused_with_a_conflict() {
    let (cluster, db) = (TestCluster::shared(), shared_db());
    let t = "crud-version";
    let s = db.tenant(t).unwrap();
    let created = s
        .create(Page {
            slug: "intro".into(),
            body: "hello".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(created.version, 1);
    let key = Page::key_of(t, "intro");
    let mut a = s.get(&key).await.unwrap().unwrap();
    let mut b = a.clone();
    a.body = "hello world".into();
    s.save(&a).await.unwrap();
    let before = tenant_keys(cluster, t);
    b.body = "bye".into();
    match s.save(&b).await {
        Err(Error::Conflict {
            expected: 1,
            found: 2,
            ..
        }) => {}
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert!(matches!(s.delete(&b).await, Err(Error::Conflict { .. })));
    assert_eq!(tenant_keys(cluster, t), before);
    let stored = s.get(&key).await.unwrap().unwrap();
    assert_eq!((stored.body.as_str(), stored.version), ("hello world", 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiring_instances_vanish_and_their_entries_are_swept() {
    let (cluster, db) = (TestCluster::shared(), shared_db());
    let t = "crud-expiry";
    let s = db.tenant(t).unwrap();
    let lasting = s
        .create(Ticket {
            id: "lasting".into(),
            at: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    let soon = chrono::Utc::now() + chrono::Duration::milliseconds(300);
    for i in 0..3 {
        s.create(Ticket {
            id: format!("soon{i}"),
            at: 2 + i,
            expires: Some(soon),
            ..Default::default()
        })
        .await
        .unwrap();
    }
    // The model's ttl is set on the hash by the write's own script.
    let hash = tenant_keys(cluster, t)
        .into_iter()
        .find(|k| k.contains("Ticket:lasting"))
        .expect("the lasting ticket's hash");
    let ttl: i64 = raw(&db, redis::cmd("TTL").arg(&hash)).await;
    assert!((86_000..=86_400).contains(&ttl), "TTL {ttl}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.query::<Ticket>().count().await.unwrap() != 1 {
        assert!(
            Instant::now() < deadline,
            "the expired tickets are still read"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rows = s.query::<Ticket>().fetch().await.unwrap();
    assert_eq!(
        rows.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["lasting"]
    );
    s.sweep_expired::<Ticket>().await.unwrap();
    let left = assert_all_or_nothing(cluster, &db, t, "Ticket", false).await;
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(s
        .get(&Ticket::key_of(t, lasting.id))
        .await
        .unwrap()
        .is_some());
}

/// Concurrent read-modify-writes of one instance lose no increment: each write is one script
/// that checks the instance is still what was read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_updates_of_one_instance_lose_nothing() {
    let (cluster, db) = (TestCluster::shared(), shared_db());
    let t = "crud-update";
    let s = db.tenant(t).unwrap();
    let (key, _) = s
        .create_keyed(episode("", "counter", 0.0, 0))
        .await
        .unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (s, key) = (s.clone(), key.clone());
            tokio::spawn(async move {
                for _ in 0..5 {
                    s.update(&key, |e| e.rank += 1)
                        .await
                        .unwrap()
                        .expect("present");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let got = s.get(&key).await.unwrap().unwrap();
    assert_eq!(got.rank, 40);
    assert_eq!(
        s.query::<Episode>()
            .filter(Episode::rank().eq(40))
            .count()
            .await
            .unwrap(),
        1
    );
    assert_all_or_nothing(cluster, &db, t, "Episode", true).await;
}
