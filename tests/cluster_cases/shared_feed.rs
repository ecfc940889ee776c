//! Change feeds of shared instances on a cluster, and the audit of grants cut between their two
//! calls: a subscriber's reader (its own stream and shared streams of several slots, one
//! `XREAD` per slot) and a feed hub's reader (a pump per hash tag, grants checked per slot)
//! deliver the events of the instances it may read and stop at a revoke; a consumer group runs
//! on a shared stream in the instance's slot; a subscribe or unsubscribe cut after its
//! instance's side is reported by the audit and repaired, never granting more than that side.

use std::time::Duration;

use popoto::feed::{FeedHub, FeedSource, GroupStart, HubConfig};
use popoto::shared::{Access, Merge, Patch, SharedId};
use popoto::testing::TestCluster;
use popoto::{Db, Error, FindingKind, Layout, ModelSet};
use popoto_core::keys::{shared_grant_field, FeedOf};

use crate::common::{db_on, raw, shared_db};
use crate::shared::{sheet, Sheet};
use crate::support::tid;

/// Patches the title of `id` as tenant `t`.
async fn edit(db: &Db, t: &str, id: &SharedId, title: &str) {
    let patch = Patch::of(&sheet(title)).unwrap().with(Sheet::title());
    db.tenant(t)
        .unwrap()
        .shared::<Sheet>()
        .patch(id, &patch)
        .await
        .unwrap_or_else(|e| panic!("{t} patch {id}: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscribers_readers_follow_shared_instances_of_several_slots() {
    let db = shared_db();
    let host = db.admin().shared();
    let (reader_t, writer_t) = ("sh-feed-r", "sh-feed-w");
    // Two instances whose streams are in different slots (ids with braces too).
    let a = SharedId::new("feed}{a").unwrap();
    let b = SharedId::new("feed-b").unwrap();
    for id in [&a, &b] {
        host.share_as(id, &sheet("0"), Merge::LastWriteWins)
            .await
            .unwrap();
        host.subscribe::<Sheet>(&tid(reader_t), id, Access::Read)
            .await
            .unwrap();
        host.subscribe::<Sheet>(&tid(writer_t), id, Access::Write)
            .await
            .unwrap();
    }
    let reader = db.tenant(reader_t).unwrap();
    let hub = FeedHub::new(HubConfig::default().block(Duration::from_millis(200)));
    let mut direct = reader
        .feed()
        .unwrap()
        .block(Duration::from_millis(200))
        .open()
        .await
        .unwrap();
    let mut via_hub = hub.reader(&reader).unwrap().open().await.unwrap();
    assert_eq!(direct.subscriptions().len(), 2);
    for n in 1..=3 {
        edit(&db, writer_t, &a, &format!("a{n}")).await;
        edit(&db, writer_t, &b, &format!("b{n}")).await;
    }
    // Each reader gets both instances' events, each stream's in order, nothing else.
    let want = |source: &FeedSource| {
        if *source == FeedSource::shared::<Sheet>(&a) {
            "a"
        } else {
            "b"
        }
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut seen_direct: Vec<(String, u64)> = Vec::new();
    while seen_direct.len() < 6 {
        let batch = tokio::time::timeout_at(deadline, direct.next())
            .await
            .expect("the direct reader saw too little")
            .unwrap();
        for e in &batch.events {
            seen_direct.push((want(&e.source).to_owned(), e.version));
        }
    }
    let mut seen_hub: Vec<(String, u64)> = Vec::new();
    while seen_hub.len() < 6 {
        let batch = tokio::time::timeout_at(deadline, via_hub.next())
            .await
            .unwrap_or_else(|_| panic!("the hub reader saw only {seen_hub:?}"))
            .unwrap();
        for e in &batch.events {
            assert!(!e.by_host);
            seen_hub.push((want(&e.source).to_owned(), e.version));
        }
    }
    for seen in [&mut seen_direct, &mut seen_hub] {
        seen.sort();
        assert_eq!(
            *seen,
            [("a", 2), ("a", 3), ("a", 4), ("b", 2), ("b", 3), ("b", 4)]
                .map(|(s, v)| (s.to_owned(), v))
        );
    }
    // A pump per hash tag: the two shared streams and the tenant's own.
    assert_eq!(hub.streams(), 3);

    // A revoke ends delivery of that instance; the other goes on.
    host.unsubscribe::<Sheet>(&tid(reader_t), &a).await.unwrap();
    edit(&db, writer_t, &a, "after").await;
    edit(&db, writer_t, &b, "b4").await;
    for (name, next) in [("direct", 0), ("hub", 1)] {
        let mut revoked = false;
        let mut got_b = false;
        while !(revoked && got_b) {
            let batch = match next {
                0 => tokio::time::timeout_at(deadline, direct.next()).await,
                _ => tokio::time::timeout_at(deadline, via_hub.next()).await,
            }
            .unwrap_or_else(|_| panic!("{name}: no revoke or no event"))
            .unwrap();
            revoked |= batch.revoked.iter().any(|s| s.id == a);
            for e in &batch.events {
                assert_ne!(
                    e.source,
                    FeedSource::shared::<Sheet>(&a),
                    "{name}: an event after the revoke"
                );
                got_b |= e.version == 5;
            }
        }
    }

    // A consumer group of the tenant on a shared stream, in the instance's slot.
    let group = reader
        .feed_group(
            &FeedSource::shared::<Sheet>(&b),
            "indexer",
            GroupStart::Beginning,
        )
        .await
        .unwrap();
    let mut versions = Vec::new();
    let report = group
        .poll("w1", |e| {
            versions.push(e.version);
            async { Ok::<(), String>(()) }
        })
        .await
        .unwrap();
    assert_eq!(versions, [1, 2, 3, 4, 5]);
    assert_eq!(report.done.len(), 5);
    group.trim().await.unwrap();
    let of = FeedOf::Shared("Sheet", b.as_str());
    let done = Layout::Cluster.feed_done_key(of, "indexer");
    let done_len: u64 = raw(&db, redis::cmd("ZCARD").arg(&done)).await;
    assert_eq!(done_len, 5);
    // Unshare removes the group's keys with the instance.
    for id in [&a, &b] {
        host.unshare::<Sheet>(id).await.unwrap();
    }
    let left: u64 = raw(&db, redis::cmd("EXISTS").arg(&done)).await;
    assert_eq!(left, 0);
}

/// Runs the instance's half of a grants operation only (what a crash between the two calls
/// leaves): `shared_grants.lua` itself, with the instance's keys.
async fn first_half(db: &Db, keys: &[String], args: &[&str]) {
    let src = popoto::testing::script_source("shared_grants.lua").unwrap();
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(src).arg(keys.len()).arg(keys).arg(args);
    let reply: redis::Value = raw(db, &cmd).await;
    assert!(format!("{reply:?}").contains("ok"), "{reply:?}");
}

/// On a cluster of its own (the audit and its repair read every shared key).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_reports_and_repairs_a_grant_change_cut_between_its_two_calls() {
    let cluster = TestCluster::start(3).unwrap_or_else(|e| panic!("{e}"));
    let db = db_on(&cluster);
    let host = db.admin().shared();
    let models = ModelSet::new().with::<Sheet>();
    let id = host.share(&sheet("a"), Merge::LastWriteWins).await.unwrap();
    host.subscribe::<Sheet>(&tid("acme"), &id, Access::Write)
        .await
        .unwrap();
    let report = db.admin().audit_shared(&models).await.unwrap();
    assert!(report.is_clean(), "{report}");
    assert!(report.instances == 1, "{report}");
    let l = Layout::Cluster;
    let (m, i) = ("Sheet", id.as_str());
    let field = shared_grant_field(m, i);

    // A subscribe cut after the instance's side: the tenant may read (that side is the
    // authority) but does not list it; the audit reports it; the repair undoes it.
    first_half(
        &db,
        &[
            l.shared_meta_key(m, i),
            l.shared_subs_key(m, i),
            l.feed_stream_key(FeedOf::Shared(m, i)),
        ],
        &["subscribe", m, i, "globex", &field, "r", ""],
    )
    .await;
    let globex = db.tenant("globex").unwrap();
    assert!(globex.shared::<Sheet>().get(&id).await.is_ok());
    assert!(globex.shared_subscriptions().await.unwrap().is_empty());
    let report = db.admin().audit_shared(&models).await.unwrap();
    let found: Vec<_> = report.of_kind(FindingKind::GrantMismatch).collect();
    assert_eq!(found.len(), 1, "{report}");
    assert_eq!(found[0].tenant.as_deref(), Some("globex"));
    let repaired = db.admin().repair_shared_grants(&models).await.unwrap();
    assert_eq!(repaired.repaired(), 1, "{repaired}");
    assert!(matches!(
        globex.shared::<Sheet>().get(&id).await,
        Err(Error::NotSubscribed { .. })
    ));
    assert!(db.admin().audit_shared(&models).await.unwrap().is_clean());

    // An unsubscribe cut after the instance's side: refused at once, not listed (the tenant's
    // leftover grant is not confirmed); the audit reports it and the repair completes it.
    first_half(
        &db,
        &[l.shared_subs_key(m, i)],
        &["unsubscribe", "", "", "acme", &field],
    )
    .await;
    let acme = db.tenant("acme").unwrap();
    assert!(matches!(
        acme.shared::<Sheet>().get(&id).await,
        Err(Error::NotSubscribed { .. })
    ));
    assert!(acme.shared_subscriptions().await.unwrap().is_empty());
    let grants: Vec<String> = raw(&db, redis::cmd("HKEYS").arg(l.shared_grants_key("acme"))).await;
    assert_eq!(grants, std::slice::from_ref(&field));
    let report = db.admin().audit_shared(&models).await.unwrap();
    assert_eq!(report.count(FindingKind::GrantMismatch), 1, "{report}");
    let repaired = db.admin().repair_shared_grants(&models).await.unwrap();
    assert_eq!(repaired.repaired(), 1, "{repaired}");
    let left: u64 = raw(&db, redis::cmd("EXISTS").arg(l.shared_grants_key("acme"))).await;
    assert_eq!(left, 0);
    assert!(db.admin().audit_shared(&models).await.unwrap().is_clean());

    // An unshare cut after the instance's side leaves the subscribers' grants naming nothing:
    // reported as orphans and removed.
    host.subscribe::<Sheet>(&tid("acme"), &id, Access::Read)
        .await
        .unwrap();
    let of = FeedOf::Shared(m, i);
    first_half(
        &db,
        &[
            l.shared_value_key(m, i),
            l.shared_meta_key(m, i),
            l.shared_tags_key(m, i),
            l.shared_subs_key(m, i),
            l.feed_stream_key(of),
            l.feed_meta_key(of),
        ],
        &["unshare", m, i, "instance", &field, "0", "0"],
    )
    .await;
    assert!(acme.shared_subscriptions().await.unwrap().is_empty());
    let report = db.admin().audit_shared(&models).await.unwrap();
    assert_eq!(report.count(FindingKind::Orphan), 1, "{report}");
    let repaired = db.admin().repair_shared_grants(&models).await.unwrap();
    assert_eq!(repaired.repaired(), 1, "{repaired}");
    assert!(db.admin().audit_shared(&models).await.unwrap().is_clean());
    assert!(
        cluster.keys("*").unwrap().is_empty(),
        "{:?}",
        cluster.keys("*")
    );
}
