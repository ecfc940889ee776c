//! Shared models and grants: the host shares instances outside every tenant and grants READ or
//! WRITE; tenants read and write by their grant, checked in the same script call; refusals are
//! typed, change nothing and name no other tenant; unsubscribe, unshare and tenant destruction
//! remove grants on both sides; the audit covers the shared keyspace.

mod shared_common;
mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use popoto::feed::FeedSource;
use popoto::shared::{Access, Merge, Patch, SharedId};
use popoto::{Error, ModelSet};
use shared_common::*;
use support::*;

/// Every key under `$Shared` or `$Feed`, with its content.
fn shared_state(server: &popoto::testing::TestRedis) -> Vec<(String, String)> {
    dump(server)
        .into_iter()
        .filter(|(k, _)| k.contains(" $Shared:") || k.contains(" $Feed:"))
        .collect()
}

#[tokio::test]
async fn subscribed_tenants_read_and_write_by_their_grant_and_refusals_change_nothing() {
    let (server, db) = setup().await;
    let id = share_with(
        &db,
        &doc("v1"),
        Merge::LastWriteWins,
        &[("acme", Access::Write), ("globex", Access::Read)],
    )
    .await;
    // Shared instances live outside every tenant: no key names a tenant but the grants.
    for key in all_keys(&server) {
        assert!(
            key.starts_with("$Shared:") || key.starts_with("$Feed:"),
            "{key}"
        );
        if key.contains("acme") || key.contains("globex") {
            assert!(key.starts_with("$Shared:grants:"), "{key}");
        }
    }
    let acme = db.tenant("acme").unwrap();
    let globex = db.tenant("globex").unwrap();
    let initech = db.tenant("initech").unwrap();
    let read = acme.shared::<Doc>().get(&id).await.unwrap();
    assert_eq!((read.value.clone(), read.version), (doc("v1"), 1));
    assert_eq!(read.access, Some(Access::Write));
    let read = globex.shared::<Doc>().get(&id).await.unwrap();
    assert_eq!(read.access, Some(Access::Read));
    assert_eq!(read.value, doc("v1"));

    // A writer with WRITE: merged, versioned.
    let edited = Doc {
        title: "v2".into(),
        ..doc("v1")
    };
    let patch = Patch::diff(&doc("v1"), &edited).unwrap();
    let w = acme.shared::<Doc>().patch(&id, &patch).await.unwrap();
    assert_eq!((w.version, w.applied), (2, 1));
    assert!(w.entry.is_some());

    // Refusals: typed, nothing changed, no other tenant named.
    let before = shared_state(&server);
    let other = Patch::all(&doc("hijack")).unwrap();
    match globex.shared::<Doc>().patch(&id, &other).await {
        Err(Error::ReadOnly {
            model: "Doc",
            id: got,
        }) => assert_eq!(got, id.as_str()),
        other => panic!("expected ReadOnly, got {other:?}"),
    }
    for attempt in [
        initech.shared::<Doc>().patch(&id, &other).await.map(drop),
        initech.shared::<Doc>().get(&id).await.map(drop),
        // An id that does not exist is the same refusal (a tenant cannot probe for ids).
        initech
            .shared::<Doc>()
            .get(&SharedId::new("nope").unwrap())
            .await
            .map(drop),
    ] {
        let err = attempt.unwrap_err();
        assert!(matches!(err, Error::NotSubscribed { .. }), "{err:?}");
        let text = err.to_string();
        assert!(!text.contains("acme") && !text.contains("globex"), "{text}");
    }
    assert_eq!(
        shared_state(&server),
        before,
        "a refused call changed something"
    );

    // Lists: the host's subscribers, each tenant's subscriptions.
    let host = db.admin().shared();
    assert_eq!(
        host.subscribers::<Doc>(&id).await.unwrap(),
        vec![(tid("acme"), Access::Write), (tid("globex"), Access::Read)]
    );
    let mine = acme.shared::<Doc>().list().await.unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(
        (mine[0].id.clone(), mine[0].access),
        (id.clone(), Access::Write)
    );
    assert!(initech.shared_subscriptions().await.unwrap().is_empty());
    assert_eq!(host.ids::<Doc>().await.unwrap(), vec![id.clone()]);
    assert_eq!(host.get::<Doc>(&id).await.unwrap().value.title, "v2");

    // Only tenant handles reach shared instances.
    assert!(matches!(
        db.unscoped().shared::<Doc>().get(&id).await,
        Err(Error::SharedScope { .. })
    ));
}

#[tokio::test]
async fn unsubscribe_unshare_and_tenant_destruction_remove_grants_on_both_sides() {
    let (server, db) = setup().await;
    let host = db.admin().shared();
    let a = share_with(
        &db,
        &doc("a"),
        Merge::LwwMapCrdt,
        &[("acme", Access::Write), ("globex", Access::Read)],
    )
    .await;
    let b = share_with(
        &db,
        &doc("b"),
        Merge::LastWriteWins,
        &[("acme", Access::Read)],
    )
    .await;
    let acme = db.tenant("acme").unwrap();
    let globex = db.tenant("globex").unwrap();

    // Unsubscribe: both sides, at once.
    assert!(host.unsubscribe::<Doc>(&tid("globex"), &a).await.unwrap());
    assert!(!host.unsubscribe::<Doc>(&tid("globex"), &a).await.unwrap());
    assert!(matches!(
        globex.shared::<Doc>().get(&a).await,
        Err(Error::NotSubscribed { .. })
    ));
    assert!(!all_keys(&server).contains(&"$Shared:grants:globex".to_owned()));

    // Access can change; the subscription stays one.
    host.subscribe::<Doc>(&tid("acme"), &b, Access::Write)
        .await
        .unwrap();
    let subs = acme.shared_subscriptions().await.unwrap();
    assert_eq!(subs.len(), 2);
    assert!(subs.iter().all(|s| s.access == Access::Write), "{subs:?}");

    // Unshare: the instance, its feed and every subscription.
    assert!(host.unshare::<Doc>(&a).await.unwrap());
    assert!(!host.unshare::<Doc>(&a).await.unwrap());
    assert!(matches!(
        host.get::<Doc>(&a).await,
        Err(Error::SharedNotFound { .. })
    ));
    let subs = acme.shared_subscriptions().await.unwrap();
    assert_eq!(
        subs.iter().map(|s| s.id.clone()).collect::<Vec<_>>(),
        vec![b.clone()]
    );
    for key in all_keys(&server) {
        assert!(!key.contains(a.as_str()), "{key} survived the unshare");
    }
    let grants = hgetall(&server, "$Shared:grants:acme");
    assert_eq!(grants.len(), 1, "{grants:?}");

    // Destroying a tenant removes its grants and its change feed.
    acme.create(Task {
        id: "t1".into(),
        title: "x".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    assert!(all_keys(&server).contains(&"$Feed:tenant:acme".to_owned()));
    let models = ModelSet::new().with::<Task>().with::<Doc>();
    let report = db
        .admin()
        .destroy_tenant(&tid("acme"), &models)
        .await
        .unwrap();
    assert_eq!(report.grants, 1);
    assert!(report.feed_keys >= 2, "{report:?}");
    for key in all_keys(&server) {
        assert!(!key.contains("acme"), "{key} survived the tenant");
    }
    assert!(host.subscribers::<Doc>(&b).await.unwrap().is_empty());
    assert_eq!(host.get::<Doc>(&b).await.unwrap().value, doc("b"));
    popoto::testing::assert_db_isolated(&db, &models).await;
}

/// A revoke racing writes: every write the server applied came before the revoke (its version
/// is at most the version the instance had when the revoke returned), and nothing is written
/// after it. The grant is checked in the write's own script call, so there is no window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoke_racing_writes_never_lets_a_write_through_after_it() {
    let (server, db) = setup().await;
    let id = share_with(
        &db,
        &doc("0"),
        Merge::LastWriteWins,
        &[("acme", Access::Write)],
    )
    .await;
    let revoked = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..4 {
        let acme = db.tenant("acme").unwrap();
        let id = id.clone();
        let revoked = revoked.clone();
        writers.push(tokio::spawn(async move {
            let access = acme.shared::<Doc>();
            let mut applied = Vec::new();
            let mut refused_after = 0;
            for i in 0..100_000u64 {
                let patch = Patch::all(&doc(&format!("{w}-{i}"))).unwrap();
                let seen_revoked = revoked.load(Ordering::SeqCst);
                match access.patch(&id, &patch).await {
                    Ok(written) => {
                        assert!(
                            !seen_revoked,
                            "a write started after the revoke returned was applied"
                        );
                        applied.push(written.version);
                    }
                    Err(Error::NotSubscribed { .. }) => {
                        refused_after += 1;
                        if refused_after == 20 {
                            return applied;
                        }
                    }
                    Err(e) => panic!("writer {w}: {e}"),
                }
            }
            panic!("writer {w} never saw the revoke");
        }));
    }
    // Revoke once writes are flowing.
    let host = db.admin().shared();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while host.get::<Doc>(&id).await.unwrap().version < 50 {
        assert!(std::time::Instant::now() < deadline, "writes never flowed");
        tokio::task::yield_now().await;
    }
    host.unsubscribe::<Doc>(&tid("acme"), &id).await.unwrap();
    revoked.store(true, Ordering::SeqCst);
    let at_revoke = host.get::<Doc>(&id).await.unwrap().version;
    let mut all = Vec::new();
    for w in writers {
        all.extend(w.await.unwrap());
    }
    all.sort_unstable();
    // Every applied write has its own version, all before the revoke, none after it.
    assert!(
        all.iter().all(|&v| v <= at_revoke),
        "max {:?} > {at_revoke}",
        all.last()
    );
    assert_eq!(all, (2..=at_revoke).collect::<Vec<_>>());
    let end = host.get::<Doc>(&id).await.unwrap().version;
    assert_eq!(end, at_revoke);
    // One change event per applied write (and the share): no event without its write.
    let stream = FeedSource::shared::<Doc>(&id).stream_key();
    let events = xrange(&server, &stream);
    assert_eq!(events.len() as u64, at_revoke);
}

#[tokio::test]
async fn the_audit_covers_shared_keys_and_grants_and_reads_verify_them() {
    let (server, db) = setup().await;
    let id = share_with(
        &db,
        &doc("a"),
        Merge::LwwMapCrdt,
        &[("acme", Access::Write)],
    )
    .await;
    let models = ModelSet::new().with::<Doc>();
    popoto::testing::assert_db_isolated(&db, &models).await;
    let reports = db.admin().audit_all(&models).await.unwrap();
    assert_eq!(reports.len(), 2);
    assert!(reports.iter().all(|r| r.is_clean()));
    let subs = format!("$Shared:subs:Doc:{id}");
    let meta = format!("$Shared:meta:Doc:{id}");

    // A subscriber entry planted without the tenant's grant: the script trusts the subscriber
    // entry (the grant exists), so the audit reports it as an isolation finding.
    raw_cmd::<i64>(
        &server,
        redis::cmd("HSET").arg(&subs).arg("globex").arg("w"),
    );
    // A grant planted without a subscriber entry: no access, reported.
    raw_cmd::<i64>(
        &server,
        redis::cmd("HSET")
            .arg("$Shared:grants:initech")
            .arg(format!("Doc:{id}"))
            .arg("w:0-0"),
    );
    // A grant of an instance that does not exist.
    raw_cmd::<i64>(
        &server,
        redis::cmd("HSET")
            .arg("$Shared:grants:initech")
            .arg("Doc:ghost")
            .arg("r:0-0"),
    );
    let report = db.admin().audit_shared(&models).await.unwrap();
    let isolation: Vec<_> = report.isolation_violations().collect();
    assert_eq!(isolation.len(), 2, "{report}");
    let tenants: Vec<_> = isolation.iter().filter_map(|f| f.tenant.clone()).collect();
    assert_eq!(tenants, vec!["globex".to_owned(), "initech".to_owned()]);
    assert_eq!(report.count(popoto::FindingKind::Orphan), 1, "{report}");
    // The planted grant gives initech nothing: its grants are confirmed by the subscribers.
    let initech = db.tenant("initech").unwrap();
    assert!(initech.shared_subscriptions().await.unwrap().is_empty());
    assert!(matches!(
        initech.shared::<Doc>().get(&id).await,
        Err(Error::NotSubscribed { .. })
    ));
    raw_cmd::<i64>(&server, redis::cmd("HDEL").arg(&subs).arg("globex"));
    raw_cmd::<i64>(&server, redis::cmd("DEL").arg("$Shared:grants:initech"));

    // Corrupt data is refused, not trusted.
    raw_cmd::<i64>(
        &server,
        redis::cmd("HSET")
            .arg(format!("$Shared:tags:Doc:{id}"))
            .arg("title")
            .arg("soon:0:x"),
    );
    let host = db.admin().shared();
    assert!(matches!(
        host.get::<Doc>(&id).await,
        Err(Error::CorruptShared { .. })
    ));
    let report = db.admin().audit_shared(&models).await.unwrap();
    assert_eq!(report.count(popoto::FindingKind::Unreadable), 1, "{report}");
    raw_cmd::<i64>(
        &server,
        redis::cmd("HSET").arg(&meta).arg("model").arg("Other"),
    );
    assert!(matches!(
        host.get::<Doc>(&id).await,
        Err(Error::CorruptShared { .. })
    ));
    // A tenant learns nothing from it.
    assert!(matches!(
        db.tenant("acme").unwrap().shared::<Doc>().get(&id).await,
        Err(Error::NotSubscribed { .. })
    ));
    // A write to it is refused before anything is written.
    let before = shared_state(&server);
    let patch = Patch::all(&doc("x")).unwrap();
    assert!(matches!(
        host.patch(&id, &patch).await,
        Err(Error::CorruptShared { .. })
    ));
    assert_eq!(shared_state(&server), before);
}

#[tokio::test]
async fn share_refuses_a_taken_id_and_a_key_of_another_type() {
    let (server, db) = setup().await;
    let host = db.admin().shared();
    let id = SharedId::new("roadmap").unwrap();
    host.share_as(&id, &doc("a"), Merge::LastWriteWins)
        .await
        .unwrap();
    assert!(matches!(
        host.share_as(&id, &doc("b"), Merge::LastWriteWins).await,
        Err(Error::SharedExists { .. })
    ));
    // A leftover subscriber hash of an id also blocks it: a new instance never inherits
    // someone's grant.
    raw_cmd::<i64>(
        &server,
        redis::cmd("HSET")
            .arg("$Shared:subs:Doc:old")
            .arg("acme")
            .arg("w"),
    );
    assert!(matches!(
        host.share_as(
            &SharedId::new("old").unwrap(),
            &doc("b"),
            Merge::LastWriteWins
        )
        .await,
        Err(Error::SharedExists { .. })
    ));
    // A key of another type: refused with nothing written.
    raw_cmd::<()>(
        &server,
        redis::cmd("SET").arg("$Feed:shared:Doc:s").arg("x"),
    );
    let before = dump(&server);
    assert!(matches!(
        host.share_as(
            &SharedId::new("s").unwrap(),
            &doc("b"),
            Merge::LastWriteWins
        )
        .await,
        Err(Error::WrongType { .. })
    ));
    assert_eq!(dump(&server), before);
    assert!(SharedId::new("").is_err() && SharedId::new("a\u{0}b").is_err());
}

#[test]
fn patches_name_their_fields_and_apply_over_a_value() {
    let before = doc("a");
    let after = Doc {
        title: "A".into(),
        votes: 3,
        ..before.clone()
    };
    let diff = Patch::diff(&before, &after).unwrap();
    assert_eq!(diff.field_names().collect::<Vec<_>>(), ["title", "votes"]);
    assert_eq!(diff.apply_to(&before).unwrap(), after);
    let named = Patch::of(&after).unwrap().with(Doc::body());
    assert_eq!(named.len(), 1);
    assert_eq!(named.apply_to(&doc("x")).unwrap().body, "b");
    assert!(Patch::of(&after).unwrap().is_empty());
    assert_eq!(Patch::all(&after).unwrap().value().unwrap(), after);
}
