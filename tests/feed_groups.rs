//! Consumer groups on change feeds and the Redis Streams traps: entries handled once per group
//! (skipped when already done), dead-lettered after repeated failures, pending and lag per
//! group; trimming never drops what a live group still needs, a dead group does not hold it
//! back, streams without groups stay bounded, and a reader resumed past trimmed entries is told.

mod shared_common;
mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use popoto::feed::{FeedSource, GroupStart, Retention};
use popoto::shared::{Access, Merge, Patch};
use popoto::{Error, Session};
use shared_common::*;
use support::*;

async fn tasks(acme: &Session, from: usize, n: usize) {
    for i in from..from + n {
        acme.create(Task {
            id: format!("t{i:03}"),
            ..Default::default()
        })
        .await
        .unwrap();
    }
}

/// Entry ids of a stream.
fn ids(server: &popoto::testing::TestRedis, stream: &str) -> Vec<String> {
    xrange(server, stream)
        .into_iter()
        .map(|(id, _)| id)
        .collect()
}

#[tokio::test]
async fn a_group_handles_each_entry_once_dead_letters_repeated_failures_and_reports_pending_and_lag(
) {
    let (server, db) = setup().await;
    let acme = db.tenant("acme").unwrap();
    let source = FeedSource::Tenant(tid("acme"));
    let group = acme
        .feed_group(&source, "index", GroupStart::Beginning)
        .await
        .unwrap()
        .block(Duration::ZERO)
        .claim_after(Duration::ZERO)
        .limits(16, 2);
    tasks(&acme, 0, 5).await;
    let stats = group.stats().await.unwrap();
    assert_eq!(
        (stats.pending, stats.lag, stats.stream_len),
        (0, Some(5), 5)
    );

    // The third entry fails every time; the others are done once.
    let poison = Task::key_of("acme", "t002").redis_key();
    let handle = |e: popoto::feed::ChangeEvent| {
        let fail = e.key == poison;
        async move {
            if fail {
                Err("cannot index")
            } else {
                Ok(())
            }
        }
    };
    let r = group.poll("w1", handle).await.unwrap();
    assert_eq!((r.done.len(), r.failed.len()), (4, 1));
    let stats = group.stats().await.unwrap();
    assert_eq!((stats.pending, stats.lag), (1, Some(0)));
    // Redelivered (taken over by another consumer), failing again, then given up.
    let r = group.poll("w2", handle).await.unwrap();
    assert_eq!((r.done.len(), r.failed.len()), (0, 1));
    let r = group.poll("w2", handle).await.unwrap();
    assert_eq!(r.dead_lettered.len(), 1, "{r:?}");
    let dead = group.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (dead[0].deliveries, dead[0].reason.as_str()),
        (3, "delivered 3 times")
    );
    assert_eq!(dead[0].event.as_ref().unwrap().key, poison);
    let stats = group.stats().await.unwrap();
    assert_eq!(
        (stats.pending, stats.lag, stats.dead_letters),
        (0, Some(0), 1)
    );

    // Replayed from the start (an operator rewinds the group): every entry is already done, so
    // none is handled again.
    raw_cmd::<String>(
        &server,
        redis::cmd("XGROUP")
            .arg("SETID")
            .arg(source.stream_key())
            .arg("index")
            .arg("0"),
    );
    let mut handled = 0;
    let r = group
        .poll("w3", |_| {
            handled += 1;
            async { Ok::<(), String>(()) }
        })
        .await
        .unwrap();
    assert_eq!((handled, r.duplicates.len()), (0, 5));

    // Another tenant cannot open a group on acme's stream; a shared stream needs a grant.
    let globex = db.tenant("globex").unwrap();
    assert!(matches!(
        globex
            .feed_group(&source, "spy", GroupStart::Beginning)
            .await,
        Err(Error::NotSubscribed { .. })
    ));
    let id = share_with(
        &db,
        &doc("d"),
        Merge::LastWriteWins,
        &[("globex", Access::Read)],
    )
    .await;
    let shared = FeedSource::shared::<Doc>(&id);
    assert!(acme
        .feed_group(&shared, "x", GroupStart::Beginning)
        .await
        .is_err());
    let g = globex
        .feed_group(&shared, "mirror", GroupStart::Beginning)
        .await
        .unwrap()
        .block(Duration::ZERO);
    // Revoked: the next poll delivers nothing.
    db.admin()
        .shared()
        .patch(&id, &Patch::all(&doc("e")).unwrap())
        .await
        .unwrap();
    db.admin()
        .shared()
        .unsubscribe::<Doc>(&tid("globex"), &id)
        .await
        .unwrap();
    let mut leaked = 0;
    let r = g
        .poll("m", |_| {
            leaked += 1;
            async { Ok::<(), String>(()) }
        })
        .await;
    assert!(matches!(r, Err(Error::NotSubscribed { .. })), "{r:?}");
    assert_eq!(leaked, 0);
}

/// Retention 10 entries. A live group keeps one entry pending: nothing from it on is trimmed,
/// by trims or by appends. A dead group (no activity within `dead_after`) holds nothing back:
/// what it held is dead-lettered first. Once the live group is done, the stream is cut to its
/// retention.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trimming_keeps_what_live_groups_need_and_dead_groups_do_not_hold_it_back() {
    let (server, db) = setup().await;
    let acme = db.tenant("acme").unwrap();
    let source = FeedSource::Tenant(tid("acme"));
    let stream = source.stream_key();
    let retention = Retention {
        max_len: 10,
        max_age: None,
        // Long enough that a busy machine pausing the test does not make the polled group
        // look dead.
        dead_after: Duration::from_secs(3),
    };
    db.admin()
        .set_feed_retention(&source, retention)
        .await
        .unwrap();
    let live = acme
        .feed_group(&source, "live", GroupStart::Beginning)
        .await
        .unwrap()
        .block(Duration::ZERO)
        .trim_every(Duration::from_secs(3600))
        .limits(100, 1000);
    let dead = acme
        .feed_group(&source, "dead", GroupStart::Beginning)
        .await
        .unwrap()
        .block(Duration::ZERO)
        .limits(5, 1000);
    tasks(&acme, 0, 30).await;
    let all = ids(&server, &stream);
    assert_eq!(
        all.len(),
        30,
        "appends trimmed while groups exist but no trim ran"
    );
    // The dead group takes 5 entries and never acknowledges them.
    let r = dead.poll("d1", |_| async { Err("crashed") }).await.unwrap();
    assert_eq!(r.failed.len(), 5);
    // The live group handles everything but the third entry.
    let keep = Task::key_of("acme", "t002").redis_key();
    let live_handler = |e: popoto::feed::ChangeEvent| {
        let fail = e.key == keep;
        async move {
            if fail {
                Err("later")
            } else {
                Ok(())
            }
        }
    };
    live.poll("l1", live_handler).await.unwrap();
    // Both groups are alive: nothing either needs is trimmed.
    let t = live.trim().await.unwrap();
    assert_eq!(t.trimmed, 0, "{t:?}");
    // Until the dead group is found dead (polling the live one keeps it alive).
    let deadline = Instant::now() + Duration::from_secs(30);
    let report = loop {
        live.poll("l1", live_handler).await.unwrap();
        let t = live.trim().await.unwrap();
        if !t.dead_groups.is_empty() {
            break t;
        }
        assert!(
            Instant::now() < deadline,
            "the dead group was never found dead"
        );
        tokio::task::yield_now().await;
    };
    assert_eq!(report.dead_groups, vec!["dead".to_owned()]);
    assert_eq!(report.dead_lettered, 5);
    // Trimmed up to the live group's pending entry, not past it.
    assert_eq!(report.trimmed, 2);
    assert_eq!(ids(&server, &stream), all[2..].to_vec());
    assert_eq!(dead.stats().await.unwrap().dead_letters, 5);
    // Appends trim to that floor only: the pending entry survives many of them.
    tasks(&acme, 30, 40).await;
    assert_eq!(ids(&server, &stream).first(), Some(&all[2]));
    // The live group finishes it (taken over, handled): now the retention applies.
    let live = live.claim_after(Duration::ZERO);
    let r = live
        .poll("l2", |_| async { Ok::<(), String>(()) })
        .await
        .unwrap();
    assert!(r.done.len() >= 41, "{r:?}");
    let t = live.trim().await.unwrap();
    assert!(t.trimmed > 0);
    assert_eq!(ids(&server, &stream).len(), 10);
    // The done sets lose what was trimmed (to the millisecond of the oldest entry kept).
    let first_ms: f64 = ids(&server, &stream)[0]
        .split('-')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let done: Vec<(String, f64)> = zrange(&server, "$Feed:done:live:tenant:acme");
    assert!(
        done.len() < 70 && done.iter().all(|(_, ms)| *ms >= first_ms),
        "{done:?}"
    );
}

#[tokio::test]
async fn streams_without_groups_stay_bounded_and_a_resumed_reader_is_told_of_a_gap() {
    let (server, db) = setup().await;
    let acme = db.tenant("acme").unwrap();
    let source = FeedSource::Tenant(tid("acme"));
    db.admin()
        .set_feed_retention(
            &source,
            Retention {
                max_len: 50,
                ..Retention::default()
            },
        )
        .await
        .unwrap();
    let mut reader = acme
        .feed()
        .unwrap()
        .block(Duration::ZERO)
        .count(100)
        .open()
        .await
        .unwrap();
    tasks(&acme, 0, 3).await;
    assert_eq!(reader.next().await.unwrap().events.len(), 3);
    let saved = reader.position().clone();
    // This reader keeps up (reads every 40 writes, within the retention of 50).
    let mut kept_up = 3;
    for chunk in 0..15 {
        tasks(&acme, 3 + chunk * 40, 40).await;
        let batch = reader.next().await.unwrap();
        assert!(batch.gaps.is_empty(), "{:?}", batch.gaps);
        kept_up += batch.events.len();
    }
    assert_eq!(kept_up, 603);
    let len: u64 = raw_cmd(&server, redis::cmd("XLEN").arg(source.stream_key()));
    // Approximate trimming removes whole nodes (100 entries by default).
    assert!((50..=150).contains(&len), "{len}");
    let mut resumed = acme
        .feed()
        .unwrap()
        .from(saved)
        .block(Duration::ZERO)
        .open()
        .await
        .unwrap();
    let batch = resumed.next().await.unwrap();
    assert_eq!(batch.gaps, vec![source.clone()]);

    // Age: entries older than the retention go at the next trim.
    let group = acme
        .feed_group(&source, "g", GroupStart::New)
        .await
        .unwrap()
        .block(Duration::ZERO);
    db.admin()
        .set_feed_retention(
            &source,
            Retention {
                max_len: 100_000,
                max_age: Some(Duration::from_millis(50)),
                ..Retention::default()
            },
        )
        .await
        .unwrap();
    let before: BTreeSet<String> = ids(&server, &source.stream_key()).into_iter().collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        group.trim().await.unwrap();
        let now: BTreeSet<String> = ids(&server, &source.stream_key()).into_iter().collect();
        if now.is_disjoint(&before) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "old entries were never trimmed by age"
        );
        tokio::task::yield_now().await;
    }
}
