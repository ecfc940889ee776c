//! The change feed: every write of a shared instance, and of a private model that opts in,
//! appends its event in the same script call (no event without its write, no write without its
//! event, even with connections killed mid-workload); a tenant's reader gets its own stream and
//! the shared streams it may read, re-checked at every batch, and resumes without loss or
//! duplication; blocking reads never hold up the shared connections.

mod shared_common;
mod support;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use popoto::feed::{ChangeOp, FeedSource};
use popoto::shared::{Access, Merge, Patch, Replica};
use popoto::{Error, Model};
use shared_common::*;
use support::*;

#[tokio::test]
async fn every_shared_write_appends_its_event_and_refused_or_stale_writes_none() {
    let (server, db) = setup().await;
    let id = share_with(
        &db,
        &doc("v1"),
        Merge::LwwMapCrdt,
        &[("acme", Access::Write), ("globex", Access::Read)],
    )
    .await;
    let stream = FeedSource::shared::<Doc>(&id).stream_key();
    let acme = db.tenant("acme").unwrap();
    let editor = acme
        .shared::<Doc>()
        .replica(Replica::new("editor-1").unwrap());
    let edited = Doc {
        title: "v2".into(),
        ..doc("v1")
    };
    editor
        .patch(&id, &Patch::diff(&doc("v1"), &edited).unwrap())
        .await
        .unwrap();
    // Refused and stale writes append nothing.
    let globex = db.tenant("globex").unwrap();
    assert!(globex
        .shared::<Doc>()
        .patch(&id, &Patch::all(&doc("x")).unwrap())
        .await
        .is_err());
    let old = popoto::shared::Tag {
        millis: 1,
        counter: 0,
        replica: "old".into(),
    };
    let stale = editor
        .patch_tagged(&id, &Patch::all(&doc("x")).unwrap(), &old)
        .await
        .unwrap();
    assert_eq!(stale.entry, None);
    let entries = xrange(&server, &stream);
    assert_eq!(entries.len(), 2);
    for (_, fields) in &entries {
        for (k, v) in fields {
            // Subscribers see the instance's events, never which tenant wrote them.
            assert!(!String::from_utf8_lossy(v).contains("acme"), "{k}");
        }
    }
    assert_eq!(field(&entries[0].1, "op"), Some(&b"share"[..]));
    assert_eq!(field(&entries[0].1, "version"), Some(&b"1"[..]));
    assert_eq!(field(&entries[1].1, "origin"), Some(&b"editor-1"[..]));
    assert_eq!(field(&entries[1].1, "by"), Some(&b"tenant"[..]));

    // A reader with READ gets what was written since its subscription, verified and typed,
    // even resumed from before it: not the share that came first.
    let mut reader = globex
        .feed()
        .unwrap()
        .from(popoto::feed::FeedPosition {
            tenant: None,
            shared: [(format!("Doc:{id}"), popoto::feed::StreamPos::after("0-0"))].into(),
        })
        .block(Duration::ZERO)
        .open()
        .await
        .unwrap();
    let batch = reader.next().await.unwrap();
    assert_eq!(batch.events.len(), 1, "{batch:?}");
    let patch = &batch.events[0];
    assert_eq!(
        (patch.op, patch.version, patch.full),
        (ChangeOp::Patch, 2, false)
    );
    // The host's own group reads the stream from its beginning: the share is a full value.
    let group = db
        .admin()
        .feed_group(
            &FeedSource::shared::<Doc>(&id),
            "host",
            popoto::feed::GroupStart::Beginning,
        )
        .await
        .unwrap()
        .block(Duration::ZERO);
    let mut seen = Vec::new();
    let report = group
        .poll("h1", |e| {
            seen.push(e);
            async { Ok::<(), String>(()) }
        })
        .await
        .unwrap();
    assert_eq!(report.done.len(), 2);
    let share = &seen[0];
    assert_eq!(
        (share.op, share.version, share.by_host, share.full),
        (ChangeOp::Share, 1, true, true)
    );
    assert_eq!(share.value::<Doc>().unwrap(), doc("v1"));
    assert_eq!(patch.origin, "editor-1");
    assert_eq!(patch.fields.len(), 1);
    assert_eq!(patch.tags.len(), 1);
    assert_eq!(patch.apply_to(&doc("v1")).unwrap(), edited);
    assert!(patch.value::<Doc>().is_err(), "a patch is not a full value");
}

#[tokio::test]
async fn private_models_that_opt_in_append_an_event_for_every_write() {
    let (server, db) = setup().await;
    let acme = db.tenant("acme").unwrap().with_origin("conn-7");
    let task = |id: &str, title: &str| Task {
        id: id.into(),
        title: title.into(),
        ..Default::default()
    };
    let t1 = acme.create(task("t1", "a")).await.unwrap();
    acme.save(&Task {
        title: "b".into(),
        ..t1.clone()
    })
    .await
    .unwrap();
    let many = acme
        .create_many(vec![task("t2", "c"), task("t3", "d")])
        .await
        .unwrap();
    acme.save_many(many.clone()).await.unwrap();
    let moved = acme.move_key(&t1, task("t9", "b")).await.unwrap();
    acme.delete(&many[0]).await.unwrap();
    acme.delete_many(&[Task::key_of("acme", "t3")])
        .await
        .unwrap();
    db.admin()
        .save(&Task {
            org: "acme".into(),
            ..moved.clone()
        })
        .await
        .unwrap();
    // A model without the feed, and another tenant's write, append nothing here.
    acme.create(Quiet {
        id: "q".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    db.tenant("globex")
        .unwrap()
        .create(task("g1", "x"))
        .await
        .unwrap();

    let stream = FeedSource::Tenant(tid("acme")).stream_key();
    let entries = xrange(&server, &stream);
    let ops: Vec<String> = entries
        .iter()
        .map(|(_, f)| String::from_utf8_lossy(field(f, "op").unwrap()).into_owned())
        .collect();
    assert_eq!(
        ops,
        [
            "create", "save", "create", "create", "save", "save", "move", "delete", "delete",
            "save"
        ]
    );
    let mut reader = acme
        .feed()
        .unwrap()
        .from(popoto::feed::FeedPosition {
            tenant: Some(popoto::feed::StreamPos::after("0-0")),
            ..Default::default()
        })
        .block(Duration::ZERO)
        .open()
        .await
        .unwrap();
    let events = reader.next().await.unwrap().events;
    assert_eq!(events.len(), 10);
    let versions: Vec<u64> = events.iter().map(|e| e.version).collect();
    assert_eq!(versions, (1..=10).collect::<Vec<_>>());
    assert_eq!(
        events[0].value::<Task>().unwrap(),
        Task {
            org: "acme".into(),
            ..task("t1", "a")
        }
    );
    assert_eq!(events[0].origin, "conn-7");
    assert_eq!(
        events[6].from.as_deref(),
        Some(Task::key_of("acme", "t1").redis_key().as_str())
    );
    assert_eq!(
        events[6].instance_key::<Task>().unwrap(),
        Task::key_of("acme", "t9")
    );
    assert!(!events[7].full && events[7].fields.is_empty());
    assert!(events[9].by_host && !events[0].by_host);
    // The other tenant's write went to its own stream.
    assert_eq!(
        xrange(&server, &FeedSource::Tenant(tid("globex")).stream_key()).len(),
        1
    );
    popoto::testing::assert_isolated::<Task>(&db).await;
}

#[tokio::test]
async fn a_reader_gets_its_own_stream_and_granted_shared_streams_only_and_resumes_exactly() {
    let (server, db) = setup().await;
    let host = db.admin().shared();
    let s1 = host.share(&doc("s1"), Merge::LastWriteWins).await.unwrap();
    let acme = db.tenant("acme").unwrap();
    let globex = db.tenant("globex").unwrap();
    let mut reader = acme
        .feed()
        .unwrap()
        .block(Duration::ZERO)
        .open()
        .await
        .unwrap();
    let task = |id: &str| Task {
        id: id.into(),
        ..Default::default()
    };
    let bump = |n: i64| {
        Patch::all(&Doc {
            votes: n,
            ..doc("s1")
        })
        .unwrap()
    };

    // Another tenant's private write and a shared instance acme may not read: nothing.
    globex.create(task("g")).await.unwrap();
    host.patch(&s1, &bump(1)).await.unwrap();
    acme.create(task("a1")).await.unwrap();
    let batch = reader.next().await.unwrap();
    assert_eq!(batch.events.len(), 1);
    assert_eq!(batch.events[0].key, Task::key_of("acme", "a1").redis_key());

    // Granted: events from the subscription on (not the one before it).
    host.subscribe::<Doc>(&tid("acme"), &s1, Access::Read)
        .await
        .unwrap();
    let batch = reader.next().await.unwrap();
    assert_eq!(batch.granted.len(), 1);
    assert!(batch.events.is_empty());
    host.patch(&s1, &bump(2)).await.unwrap();
    let batch = reader.next().await.unwrap();
    assert_eq!(batch.events.len(), 1);
    assert_eq!(batch.events[0].version, 3);

    // Resume: a reader started from the saved position gets exactly what followed.
    let saved = reader.position().clone();
    let json = serde_json::to_string(&saved).unwrap();
    acme.create(task("a2")).await.unwrap();
    host.patch(&s1, &bump(3)).await.unwrap();
    host.patch(&s1, &bump(4)).await.unwrap();
    let mut resumed = acme
        .feed()
        .unwrap()
        .from(serde_json::from_str(&json).unwrap())
        .block(Duration::ZERO)
        .open()
        .await
        .unwrap();
    let mut got = Vec::new();
    for r in [&mut reader, &mut resumed] {
        let mut seen: Vec<(String, String)> = Vec::new();
        for _ in 0..3 {
            for e in r.next().await.unwrap().events {
                seen.push((e.source.stream_key(), e.entry.clone()));
            }
        }
        got.push(seen);
    }
    assert_eq!(got[0].len(), 3, "{got:?}");
    assert_eq!(got[0], got[1]);
    let unique: BTreeSet<_> = got[0].iter().collect();
    assert_eq!(unique.len(), 3);

    // Revoked: ended at the next batch, and nothing written after the revoke is delivered.
    host.unsubscribe::<Doc>(&tid("acme"), &s1).await.unwrap();
    host.patch(&s1, &bump(5)).await.unwrap();
    let batch = reader.next().await.unwrap();
    assert_eq!(batch.revoked.len(), 1);
    assert!(batch.events.is_empty(), "{:?}", batch.events);
    host.patch(&s1, &bump(6)).await.unwrap();
    assert!(reader.next().await.unwrap().events.is_empty());

    // A planted entry in acme's stream (another tenant's event) is rejected, not delivered.
    raw_cmd::<String>(
        &server,
        redis::cmd("XADD")
            .arg(FeedSource::Tenant(tid("acme")).stream_key())
            .arg("*")
            .arg(&[
                "op",
                "create",
                "model",
                "Task",
                "key",
                "Task:g:globex",
                "scope",
                "tenant",
            ])
            .arg(&[
                "tenant", "globex", "version", "1", "origin", "", "by", "tenant", "full", "0",
            ]),
    );
    let batch = reader.next().await.unwrap();
    assert_eq!((batch.events.len(), batch.rejected), (0, 1));
}

/// A blocking read waits on a dedicated connection: calls issued meanwhile are answered on the
/// shared ones, and the read returns as soon as an event is appended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_read_never_holds_up_the_shared_connections() {
    let (_server, db) = setup().await;
    let acme = db.tenant("acme").unwrap();
    let mut reader = acme
        .feed()
        .unwrap()
        .block(Duration::from_secs(20))
        .open()
        .await
        .unwrap();
    let waiting = tokio::spawn(async move { reader.next().await });
    for i in 0..50 {
        acme.create(Quiet {
            id: format!("q{i}"),
            ..Default::default()
        })
        .await
        .unwrap();
        assert_eq!(acme.query::<Quiet>().count().await.unwrap(), i + 1);
    }
    assert!(
        !waiting.is_finished(),
        "the reader returned without an event"
    );
    acme.create(Task {
        id: "wake".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let batch = waiting.await.unwrap().unwrap();
    assert_eq!(batch.events.len(), 1);
}

/// `CLIENT KILL` of every connection, three times, while writers patch a shared instance and
/// create private instances: each instance's stream holds exactly one event per applied write
/// (versions 1..=n, none missing, none extra), and the private creates in Redis are exactly
/// those with a create event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_event_without_its_write_and_no_write_without_its_event_under_client_kills() {
    let (server, db) = setup().await;
    let id = share_with(
        &db,
        &doc("0"),
        Merge::LastWriteWins,
        &[("acme", Access::Write)],
    )
    .await;
    let shared_stream = FeedSource::shared::<Doc>(&id).stream_key();
    let tenant_stream = FeedSource::Tenant(tid("acme")).stream_key();
    let done = Arc::new(AtomicBool::new(false));
    let killer = {
        let url = server.url().to_owned();
        let stream = shared_stream.clone();
        let done = done.clone();
        std::thread::spawn(move || {
            let mut conn = redis::Client::open(url.as_str())
                .and_then(|c| c.get_connection())
                .unwrap();
            let mut kills = 0;
            for threshold in [150u64, 400, 700] {
                while !done.load(Ordering::SeqCst) {
                    let n: u64 = redis::cmd("XLEN").arg(&stream).query(&mut conn).unwrap();
                    if n >= threshold {
                        support::faults::kill_others(&mut conn);
                        kills += 1;
                        break;
                    }
                }
            }
            kills
        })
    };
    let mut tasks = Vec::new();
    for w in 0..4 {
        let acme = db.tenant("acme").unwrap();
        let id = id.clone();
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut cut) = (0, 0);
            for i in 0..250 {
                let r = if w % 2 == 0 {
                    let p = Patch::all(&doc(&format!("{w}-{i}"))).unwrap();
                    acme.shared::<Doc>().patch(&id, &p).await.map(drop)
                } else {
                    let t = Task {
                        id: format!("{w}-{i}"),
                        ..Default::default()
                    };
                    acme.create(t).await.map(drop)
                };
                match r {
                    Ok(()) => ok += 1,
                    Err(e) if e.is_connection_error() => cut += 1,
                    Err(e) => panic!("writer {w}: {e}"),
                }
            }
            (ok, cut)
        }));
    }
    let mut cut = 0;
    for t in tasks {
        cut += t.await.unwrap().1;
    }
    done.store(true, Ordering::SeqCst);
    let kills = killer.join().unwrap();
    assert!(kills >= 2, "only {kills} kills");
    assert!(cut > 0, "no write was cut by the kills");

    let host = db.admin().shared();
    let version = host.get::<Doc>(&id).await.unwrap().version;
    let events = xrange(&server, &shared_stream);
    assert_eq!(versions(&events), (1..=version).collect::<Vec<_>>());
    let last = events.last().unwrap();
    let title = host.get::<Doc>(&id).await.unwrap().value.title;
    let want = Doc { title, ..doc("0") }.to_record().unwrap().values[0].clone();
    assert_eq!(field(&last.1, "f:title"), Some(want.as_slice()));

    let created: BTreeSet<String> = xrange(&server, &tenant_stream)
        .iter()
        .map(|(_, f)| String::from_utf8_lossy(field(f, "key").unwrap()).into_owned())
        .collect();
    let stored: BTreeSet<String> = smembers(&server, "$Class:Task").into_iter().collect();
    assert_eq!(created, stored);
    let seqs = versions(&xrange(&server, &tenant_stream));
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    popoto::testing::assert_isolated::<Task>(&db).await;
    // And the same Db goes on.
    assert!(matches!(
        db.tenant("nobody").unwrap().shared::<Doc>().get(&id).await,
        Err(Error::NotSubscribed { .. })
    ));
}

/// A private model with a change feed and a confidence field.
#[derive(Model, Debug, Clone, PartialEq, Default)]
#[popoto(change_feed)]
pub struct Claim {
    /// The tenant.
    #[popoto(key, tenant)]
    pub org: String,
    /// Its id.
    #[popoto(key)]
    pub id: String,
    /// How much it is believed.
    #[popoto(confidence(initial = 0.5, evidence_cap = 20), partition_by = "org")]
    pub belief: f64,
}

#[tokio::test]
async fn confidence_updates_of_a_model_with_a_change_feed_append_their_event_in_the_same_call() {
    let (server, db) = setup().await;
    let acme = db.tenant("acme").unwrap().with_origin("scorer");
    let claim = Claim {
        org: "acme".into(),
        id: "c1".into(),
        ..Default::default()
    };
    acme.create(claim.clone()).await.unwrap();
    let mut reader = acme
        .feed()
        .unwrap()
        .block(Duration::ZERO)
        .open()
        .await
        .unwrap();
    let belief = acme.confidence(&claim, Claim::belief()).unwrap();
    let states = [
        belief.update(0.9).await.unwrap(),
        belief.update(0.2).await.unwrap(),
    ];
    let batch = reader.next().await.unwrap();
    assert_eq!(batch.events.len(), 2, "{batch:?}");
    for ((e, state), version) in batch.events.iter().zip(states).zip([2, 3]) {
        assert_eq!(
            (e.op, e.full, e.version),
            (ChangeOp::Confidence, false, version)
        );
        assert_eq!(e.origin, "scorer");
        assert_eq!(e.key, Claim::key_of("acme", "c1").redis_key());
        assert_eq!(e.fields.len(), 1);
        // The field's new confidence, as a value of the model.
        assert_eq!(e.apply_to(&claim).unwrap().belief, state.confidence);
    }
    // A refused update (no such instance) appends nothing.
    let ghost = Claim {
        id: "ghost".into(),
        ..claim.clone()
    };
    let refused = acme.confidence(&ghost, Claim::belief()).unwrap();
    assert!(matches!(
        refused.update(0.5).await,
        Err(Error::NotFound { .. })
    ));
    let stream = FeedSource::Tenant(tid("acme")).stream_key();
    assert_eq!(xrange(&server, &stream).len(), 3);

    // A stream key of another type: the update is refused whole, its entry left as it was.
    let globex = db.tenant("globex").unwrap();
    let theirs = Claim {
        org: "globex".into(),
        id: "c2".into(),
        ..Default::default()
    };
    globex.create(theirs.clone()).await.unwrap();
    let stream = FeedSource::Tenant(tid("globex")).stream_key();
    raw_cmd::<i64>(&server, redis::cmd("DEL").arg(&stream));
    raw_cmd::<String>(&server, redis::cmd("SET").arg(&stream).arg("x"));
    let handle = globex.confidence(&theirs, Claim::belief()).unwrap();
    assert!(matches!(
        handle.update(0.9).await,
        Err(Error::WrongType { .. })
    ));
    assert_eq!(handle.state().await.unwrap().evidence_count, 0);
}
