//! The feed hub: one pump per backend serves every reader of the process from one dedicated
//! connection, each reader getting exactly its tenant's stream and the shared streams it may
//! read; a reader behind the pump catches up alone without loss or duplication; a reader that
//! falls behind its buffer is dropped without holding the others up and resumes from its
//! position; a stream added while the pump waits cuts the wait short; resumed positions a
//! server never gave are refused.

mod shared_common;
mod support;

use std::time::Duration;

use popoto::feed::{FeedBatch, FeedHub, FeedPosition, FeedSource, HubConfig, HubReader, StreamPos};
use popoto::shared::{Access, Merge, Patch, SharedId};
use popoto::{BackendConfig, Db, Error, Session};
use shared_common::*;
use support::*;

/// Batches until `done` holds for what was gathered (each stream's events in order), with a
/// deadline; every batch's events are checked against `allowed`.
async fn gather(
    reader: &mut HubReader,
    allowed: impl Fn(&FeedSource) -> bool,
    done: impl Fn(&[FeedBatch]) -> bool,
) -> Vec<FeedBatch> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !done(&seen) {
        let batch = tokio::time::timeout_at(deadline, reader.next())
            .await
            .unwrap_or_else(|_| panic!("not done; saw {seen:#?}"))
            .unwrap_or_else(|e| panic!("{e}"));
        for e in &batch.events {
            assert!(allowed(&e.source), "{e:?} leaked");
        }
        seen.push(batch);
    }
    seen
}

/// Versions of the events of shared `id` in `batches`, in order.
fn versions(batches: &[FeedBatch], id: &SharedId) -> Vec<u64> {
    batches
        .iter()
        .flat_map(|b| &b.events)
        .filter(|e| matches!(&e.source, FeedSource::Shared(_, i) if i == id))
        .map(|e| e.version)
        .collect()
}

fn votes(n: i64) -> Patch<Doc> {
    Patch::of(&Doc {
        votes: n,
        ..Doc::default()
    })
    .unwrap()
    .with(Doc::votes())
}

/// A document acme and globex may read.
async fn shared_with_acme_and_globex(db: &Db) -> SharedId {
    let subs = [("acme", Access::Read), ("globex", Access::Read)];
    share_with(db, &doc("d"), Merge::LastWriteWins, &subs).await
}

async fn open(hub: &FeedHub, session: &Session, from: Option<FeedPosition>) -> HubReader {
    let mut r = hub.reader(session).unwrap_or_else(|e| panic!("{e}"));
    if let Some(p) = from {
        r = r.from(p);
    }
    r.open().await.unwrap_or_else(|e| panic!("{e}"))
}

/// The server's client connections (`CLIENT LIST`, one line each).
fn clients(server: &popoto::testing::TestRedis) -> Vec<String> {
    let list: String = raw_cmd(server, redis::cmd("CLIENT").arg("LIST"));
    list.lines().map(str::to_owned).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_pump_serves_many_readers_on_one_dedicated_connection_each_its_own_streams() {
    let server = popoto::testing::TestRedis::start().unwrap_or_else(|e| panic!("{e}"));
    let mut config = BackendConfig::new(server.url());
    config.max_dedicated_connections = 1;
    let db = Db::with_config(config).unwrap();
    let tenants: Vec<String> = (0..20).map(|i| format!("t{i}")).collect();
    let subs: Vec<(&str, Access)> = tenants.iter().map(|t| (t.as_str(), Access::Read)).collect();
    // Even tenants follow the first document, every tenant the second.
    let d1 = share_with(&db, &doc("one"), Merge::LastWriteWins, &subs[..1]).await;
    for t in tenants.iter().step_by(2).skip(1) {
        db.admin()
            .shared()
            .subscribe::<Doc>(&tid(t), &d1, Access::Read)
            .await
            .unwrap();
    }
    let d2 = share_with(&db, &doc("two"), Merge::LastWriteWins, &subs).await;
    let hub = FeedHub::new(HubConfig::default().block(Duration::from_millis(500)));
    // Two readers per tenant: 40 readers, more than the dedicated pool's one connection.
    let mut readers = Vec::new();
    for t in &tenants {
        let session = db.tenant(t).unwrap();
        readers.push((t.clone(), open(&hub, &session, None).await));
        readers.push((t.clone(), open(&hub, &session, None).await));
    }
    assert_eq!(hub.streams(), 20 + 2);
    db.admin().shared().patch(&d1, &votes(1)).await.unwrap();
    db.admin().shared().patch(&d2, &votes(2)).await.unwrap();
    for t in &tenants {
        db.tenant(t)
            .unwrap()
            .create(Task {
                id: format!("x{t}y"),
                ..Task::default()
            })
            .await
            .unwrap();
    }
    for (i, (t, reader)) in readers.iter_mut().enumerate() {
        let follows_d1 = i / 2 % 2 == 0;
        let own = tid(t);
        let allowed = |s: &FeedSource| match s {
            FeedSource::Tenant(x) => *x == own,
            FeedSource::Shared(_, id) => *id == d2 || (follows_d1 && *id == d1),
        };
        let seen = gather(reader, allowed, |b| {
            let events: Vec<_> = b.iter().flat_map(|b| &b.events).collect();
            events.iter().any(|e| e.key.contains(&format!("x{t}y")))
                && events.iter().any(|e| e.key == d2.as_str())
                && (!follows_d1 || events.iter().any(|e| e.key == d1.as_str()))
        })
        .await;
        assert_eq!(versions(&seen, &d2), [2], "{t}");
    }
    // Two shared lanes, the solo connection, the pump's one dedicated connection, and this
    // test's own.
    let list = clients(&server);
    assert!(list.len() <= 5, "{list:#?}");
    drop(readers);
    // The last reader gone, the pump follows nothing.
    assert_eq!(hub.streams(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_behind_the_pump_catches_up_alone_without_loss_or_duplication() {
    let (_server, db) = setup().await;
    let id = shared_with_acme_and_globex(&db).await;
    let host = db.admin().shared();
    let hub = FeedHub::new(HubConfig::default().block(Duration::from_millis(200)));
    let acme = db.tenant("acme").unwrap();
    let mut live = open(&hub, &db.tenant("globex").unwrap(), None).await;
    let mut away = open(&hub, &acme, None).await;
    host.patch(&id, &votes(1)).await.unwrap();
    gather(&mut away, |_| true, |b| versions(b, &id) == [2]).await;
    let saved = away.position().clone();
    drop(away);
    for n in 2..=4 {
        host.patch(&id, &votes(n)).await.unwrap();
    }
    // The pump is past them for the live reader: the resumed one reads them alone.
    gather(&mut live, |_| true, |b| versions(b, &id) == [2, 3, 4, 5]).await;
    let mut back = open(&hub, &acme, Some(saved)).await;
    let caught = gather(&mut back, |_| true, |b| versions(b, &id).len() >= 3).await;
    assert_eq!(versions(&caught, &id), [3, 4, 5]);
    host.patch(&id, &votes(5)).await.unwrap();
    let next = gather(&mut back, |_| true, |b| !versions(b, &id).is_empty()).await;
    assert_eq!(versions(&next, &id), [6], "live again, nothing twice");
    // A tenant subscribed while the pump follows the stream: from its subscription on.
    let mut initech = open(&hub, &db.tenant("initech").unwrap(), None).await;
    host.subscribe::<Doc>(&tid("initech"), &id, Access::Read)
        .await
        .unwrap();
    host.patch(&id, &votes(6)).await.unwrap();
    let granted = gather(&mut initech, |_| true, |b| !versions(b, &id).is_empty()).await;
    assert!(granted.iter().any(|b| b.granted.iter().any(|s| s.id == id)));
    assert_eq!(versions(&granted, &id), [7]);
    // A revoke: the revoked tenant gets nothing after it, the others go on.
    host.unsubscribe::<Doc>(&tid("initech"), &id).await.unwrap();
    host.patch(&id, &votes(7)).await.unwrap();
    gather(&mut live, |_| true, |b| versions(b, &id).contains(&8)).await;
    let after = gather(
        &mut initech,
        |_| true,
        |b| b.iter().any(|b| b.revoked.iter().any(|s| s.id == id)),
    )
    .await;
    assert_eq!(versions(&after, &id), Vec::<u64>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_falls_behind_is_dropped_without_holding_the_others_up() {
    let (_server, db) = setup().await;
    let id = shared_with_acme_and_globex(&db).await;
    let host = db.admin().shared();
    let hub = FeedHub::new(HubConfig::default().buffer(2));
    let acme = db.tenant("acme").unwrap();
    let mut slow = open(&hub, &acme, None).await;
    let start = slow.position().clone();
    let mut fast = open(&hub, &db.tenant("globex").unwrap(), None).await;
    // One write at a time, each seen by the fast reader: one delivery each to the slow one.
    for n in 1..=5 {
        host.patch(&id, &votes(n)).await.unwrap();
        let want = n as u64 + 1;
        gather(&mut fast, |_| true, |b| versions(b, &id).contains(&want)).await;
    }
    match slow.next().await {
        Err(Error::FeedOverflow { buffer, .. }) => assert_eq!(buffer, 2),
        other => panic!("expected an overflow, got {other:?}"),
    }
    drop(slow);
    // Resumed from where it was: everything, once.
    let mut again = open(&hub, &acme, Some(start)).await;
    let all = gather(&mut again, |_| true, |b| versions(b, &id).len() >= 5).await;
    assert_eq!(versions(&all, &id), [2, 3, 4, 5, 6]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_added_while_the_pump_waits_cuts_the_wait_short() {
    let server = popoto::testing::TestRedis::start().unwrap_or_else(|e| panic!("{e}"));
    let mut config = BackendConfig::new(server.url());
    config.response_timeout = Duration::from_secs(600);
    let db = Db::with_config(config).unwrap();
    // The pump would wait five minutes on the first tenant's stream alone.
    let hub = FeedHub::new(HubConfig::default().block(Duration::from_secs(300)));
    let _acme = open(&hub, &db.tenant("acme").unwrap(), None).await;
    // Once the pump's read waits on the server (a condition, polled)...
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !clients(&server)
        .iter()
        .any(|c| c.contains("cmd=xread") && c.contains("flags=b"))
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the pump never waited"
        );
        tokio::task::yield_now().await;
    }
    let before = calls(&server, "client|unblock");
    let mut globex = open(&hub, &db.tenant("globex").unwrap(), None).await;
    db.tenant("globex")
        .unwrap()
        .create(Task {
            id: "g1".into(),
            ..Task::default()
        })
        .await
        .unwrap();
    gather(
        &mut globex,
        |_| true,
        |b| b.iter().any(|b| !b.events.is_empty()),
    )
    .await;
    assert!(calls(&server, "client|unblock") > before);
}

#[tokio::test]
async fn resumed_positions_a_server_never_gave_are_refused() {
    let (_server, db) = setup().await;
    let hub = FeedHub::default();
    let acme = db.tenant("acme").unwrap();
    acme.create(Task {
        id: "a1".into(),
        ..Task::default()
    })
    .await
    .unwrap();
    for entry in ["99999999999999-0", "not-an-id", ""] {
        let bad = FeedPosition {
            tenant: Some(StreamPos::after(entry)),
            ..FeedPosition::default()
        };
        let hub_err = hub.reader(&acme).unwrap().from(bad.clone()).open().await;
        assert!(
            matches!(
                hub_err,
                Err(Error::InvalidValue {
                    field: "position",
                    ..
                })
            ),
            "{entry:?}: {hub_err:?}"
        );
        let own = acme.feed().unwrap().from(bad).open().await;
        assert!(matches!(own, Err(Error::InvalidValue { .. })), "{entry:?}");
    }
    assert_eq!(hub.streams(), 0);
}
