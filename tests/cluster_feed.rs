//! Change feeds of private models on a real local Redis Cluster in the cluster layout: a
//! tenant's stream and its bookkeeping carry the tenant's hash tag, so a write appends its
//! event in its own script call; readers, consumer groups, trims and destroy work there; a
//! shared instance's keys and feed are under its own tag; one feed hub serves readers of many
//! tenants with a pump per tenant tag.

mod shared_common;
mod support;

use std::time::Duration;

use popoto::feed::{ChangeOp, FeedHub, FeedPosition, FeedSource, GroupStart, HubConfig, StreamPos};
use popoto::shared::Merge;
use popoto::testing::TestCluster;
use popoto::{BackendConfig, Db, Layout, ModelSet};
use shared_common::{doc, Task};
use support::tid;

/// Every key on every master, sorted.
fn keys_everywhere(cluster: &TestCluster) -> Vec<String> {
    cluster.keys("*").unwrap_or_else(|e| panic!("{e}"))
}

fn task(id: &str, rank: i64) -> Task {
    Task {
        id: id.into(),
        title: format!("t{id}"),
        rank,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_change_feed_lives_in_its_slot_on_a_cluster() {
    let cluster = TestCluster::start(3).unwrap_or_else(|e| panic!("{e}"));
    let db = Db::with_config(BackendConfig::cluster(cluster.urls())).unwrap();
    let tenants = ["acme", "x{y}:z"];
    for t in tenants {
        let s = db.tenant(t).unwrap();
        let a = s.create(task("1", 1)).await.unwrap();
        s.save(&Task {
            rank: 5,
            ..a.clone()
        })
        .await
        .unwrap();
        s.create(task("2", 2)).await.unwrap();
        assert!(s.delete(&a).await.unwrap());
    }
    // Every key, the streams included, is under its tenant's tag.
    let all = keys_everywhere(&cluster);
    let acme_stream = FeedSource::Tenant(tid("acme")).stream_key_in(Layout::Cluster);
    assert_eq!(acme_stream, "{acme}$Feed:tenant:acme");
    assert!(all.contains(&acme_stream), "{all:?}");
    for k in &all {
        assert!(
            tenants
                .iter()
                .any(|t| k.starts_with(&format!("{{{}}}", popoto_core::keys::tag("", Some(t))))),
            "{k} carries no tenant's tag"
        );
    }

    // A reader gets its own tenant's events, in order, and nothing of the other's.
    let acme = db.tenant("acme").unwrap();
    let mut reader = acme
        .feed()
        .unwrap()
        .from(FeedPosition {
            tenant: Some(StreamPos::after("0-0")),
            ..Default::default()
        })
        .block(Duration::ZERO)
        .open()
        .await
        .unwrap();
    let events = reader.next().await.unwrap().events;
    let ops: Vec<ChangeOp> = events.iter().map(|e| e.op).collect();
    assert_eq!(
        ops,
        [
            ChangeOp::Create,
            ChangeOp::Save,
            ChangeOp::Create,
            ChangeOp::Delete
        ]
    );
    assert!(events
        .iter()
        .all(|e| e.source == FeedSource::Tenant(tid("acme"))));

    // A consumer group hands each event out once; trimming keeps what it still needs.
    let group = acme
        .feed_group(
            &FeedSource::Tenant(tid("acme")),
            "mailer",
            GroupStart::Beginning,
        )
        .await
        .unwrap();
    let mut seen = Vec::new();
    let report = group
        .poll("w1", |e| {
            seen.push(e.version);
            async { Ok::<(), String>(()) }
        })
        .await
        .unwrap();
    assert_eq!(report.done.len(), 4);
    assert_eq!(seen, [1, 2, 3, 4]);
    let again = group
        .poll("w1", |_| async { Ok::<(), String>(()) })
        .await
        .unwrap();
    assert!(again.done.is_empty());
    group.trim().await.unwrap();

    // A shared instance's keys, its change feed included, are under its own tag.
    let before = keys_everywhere(&cluster);
    let id = db
        .admin()
        .shared()
        .share(&doc("d"), Merge::LastWriteWins)
        .await
        .unwrap();
    let tag = format!("{{{}}}", popoto_core::keys::shared_tag("Doc", id.as_str()));
    let added: Vec<String> = keys_everywhere(&cluster)
        .into_iter()
        .filter(|k| !before.contains(k))
        .collect();
    assert_eq!(added.len(), 3, "{added:?}");
    assert!(added.iter().all(|k| k.starts_with(&tag)), "{added:?}");
    assert!(added
        .contains(&FeedSource::shared::<shared_common::Doc>(&id).stream_key_in(Layout::Cluster)));
    assert!(db
        .admin()
        .shared()
        .unshare::<shared_common::Doc>(&id)
        .await
        .unwrap());
    assert_eq!(keys_everywhere(&cluster), before);

    // Destroying a tenant removes its stream and the group's bookkeeping too.
    let models = ModelSet::new().with::<Task>();
    db.admin()
        .destroy_tenant(&tid("acme"), &models)
        .await
        .unwrap();
    let left = keys_everywhere(&cluster);
    assert!(!left.iter().any(|k| k.starts_with("{acme}")), "{left:?}");
    assert!(
        left.iter().any(|k| k.contains("$Feed:tenant:x")),
        "{left:?}"
    );
}

/// One feed hub serving readers of several tenants on a cluster: a pump per tenant tag (one
/// `XREAD` reaches one slot), each reader getting its own tenant's events only, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_hub_serves_several_tenants_on_a_cluster() {
    let cluster = TestCluster::start(3).unwrap_or_else(|e| panic!("{e}"));
    let db = Db::with_config(BackendConfig::cluster(cluster.urls())).unwrap();
    let hub = FeedHub::new(HubConfig::default().block(Duration::from_millis(200)));
    let tenants = ["acme", "globex", "x{y}:z"];
    let mut readers = Vec::new();
    for t in tenants {
        let s = db.tenant(t).unwrap();
        readers.push(hub.reader(&s).unwrap().open().await.unwrap());
    }
    for round in 0..3 {
        for t in tenants {
            let s = db.tenant(t).unwrap();
            s.create(task(&format!("{round}"), round)).await.unwrap();
        }
    }
    for (t, reader) in tenants.iter().zip(&mut readers) {
        let mut ids = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while ids.len() < 3 {
            let batch = tokio::time::timeout_at(deadline, reader.next())
                .await
                .unwrap_or_else(|_| panic!("{t}: saw only {ids:?}"))
                .unwrap();
            for e in &batch.events {
                assert_eq!(e.source, FeedSource::Tenant(tid(t)), "{e:?} leaked");
                ids.push(e.instance_key::<Task>().unwrap().segments()[0].clone());
            }
        }
        assert_eq!(ids, ["0", "1", "2"], "{t}");
    }
    assert_eq!(hub.streams(), 3);
}
