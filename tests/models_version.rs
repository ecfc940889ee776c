//! Optimistic versioning (`#[popoto(version)]`) and `Session::update`: a stale copy is never
//! written, the check runs inside the write script, and concurrent writers lose no update.

mod support;

use std::sync::Arc;

use popoto::{Error, Model};
use support::*;
use tokio::sync::Barrier;

/// A document with a version.
#[derive(Model, Debug, Clone, PartialEq, Default)]
struct Doc {
    #[popoto(key, tenant)]
    org: String,
    #[popoto(key)]
    slug: String,
    body: String,
    #[popoto(sorted, partition_by = "org")]
    words: i64,
    #[popoto(version)]
    version: u64,
}

/// A counter without a version: `update` checks every stored byte instead.
#[derive(Model, Debug, Clone, PartialEq, Default)]
struct Counter {
    #[popoto(key, tenant)]
    org: String,
    #[popoto(key)]
    name: String,
    n: i64,
    region: String,
    #[popoto(sorted, partition_by("org", "region"))]
    level: i64,
}

fn doc(slug: &str, body: &str) -> Doc {
    Doc {
        slug: slug.into(),
        body: body.into(),
        words: body.split_whitespace().count() as i64,
        ..Default::default()
    }
}

fn stored_version(server: &popoto::testing::TestRedis, key: &str) -> u64 {
    let raw: Option<Vec<u8>> = raw_cmd(server, redis::cmd("HGET").arg(key).arg("version"));
    let raw = raw.unwrap_or_else(|| panic!("{key} has no version"));
    rmp_serde::from_slice(&raw).unwrap()
}

#[tokio::test]
async fn a_stale_copy_is_refused_naming_key_and_both_versions() {
    let (server, db) = setup().await;
    let acme = db.tenant("acme").unwrap();
    let created = acme.create(doc("intro", "hello")).await.unwrap();
    assert_eq!(created.version, 1);
    let key = Doc::key_of("acme", "intro");
    assert_eq!(stored_version(&server, &key.redis_key()), 1);
    let mut a = acme.get(&key).await.unwrap().unwrap();
    let mut b = a.clone();
    assert_eq!(a.version, 1);
    a.body = "hello world".into();
    a.words = 2;
    acme.save(&a).await.unwrap();
    assert_eq!(stored_version(&server, &key.redis_key()), 2);
    // `b` was read at version 1: refused, and nothing of it written (hash and indexes).
    let before = dump(&server);
    b.body = "bye".into();
    b.words = 9;
    match acme.save(&b).await {
        Err(Error::Conflict {
            model: "Doc",
            key: k,
            expected: 1,
            found: 2,
        }) => assert_eq!(k, key.redis_key()),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(dump(&server), before);
    // delete and move_key through the stale copy are refused the same way.
    assert!(matches!(
        acme.delete(&b).await,
        Err(Error::Conflict {
            expected: 1,
            found: 2,
            ..
        })
    ));
    let moved = Doc {
        slug: "intro2".into(),
        ..b.clone()
    };
    assert!(matches!(
        acme.move_key(&b, moved).await,
        Err(Error::Conflict {
            expected: 1,
            found: 2,
            ..
        })
    ));
    assert_eq!(dump(&server), before);
    // A fresh copy saves, moves (returning the next version) and deletes.
    let fresh = acme.get(&key).await.unwrap().unwrap();
    assert_eq!((fresh.version, fresh.body.as_str()), (2, "hello world"));
    let moved = acme
        .move_key(
            &fresh,
            Doc {
                slug: "intro2".into(),
                ..fresh.clone()
            },
        )
        .await
        .unwrap();
    assert_eq!(moved.version, 3);
    assert_eq!(
        stored_version(&server, &Doc::key_of("acme", "intro2").redis_key()),
        3
    );
    assert!(acme.delete(&moved).await.unwrap());
    assert_eq!(acme.query::<Doc>().count().await.unwrap(), 0);
}

#[tokio::test]
async fn version_zero_means_not_stored_yet() {
    let (server, db) = setup().await;
    let acme = db.tenant("acme").unwrap();
    // A save of a new value (version 0) inserts version 1; the same copy again is stale.
    let new = doc("a", "x");
    acme.save(&new).await.unwrap();
    let key = Doc::key_of("acme", "a").redis_key();
    assert_eq!(stored_version(&server, &key), 1);
    assert!(matches!(
        acme.save(&new).await,
        Err(Error::Conflict {
            expected: 0,
            found: 1,
            ..
        })
    ));
    // An instance written without the field (by popoto, or before the field existed) is at
    // version 0: a copy read from it saves once.
    raw_cmd::<i64>(&server, redis::cmd("HDEL").arg(&key).arg("version"));
    let old = acme.get(&Doc::key_of("acme", "a")).await.unwrap().unwrap();
    assert_eq!(old.version, 0);
    acme.save(&old).await.unwrap();
    assert_eq!(stored_version(&server, &key), 1);
    // A stored version that is not an unsigned int is a decode error naming the field.
    hset(&server, &key, b"version", &[0xa1, b'x']);
    match acme.save(&old).await {
        Err(Error::Decode { field, .. }) => assert_eq!(field, "version"),
        other => panic!("expected a decode error, got {other:?}"),
    }
}

#[tokio::test]
async fn concurrent_savers_have_exactly_one_winner_per_version() {
    let (server, db) = setup().await;
    let acme = db.tenant("acme").unwrap();
    acme.create(doc("hot", "start")).await.unwrap();
    let key = Doc::key_of("acme", "hot");
    const TASKS: usize = 6;
    const ROUNDS: usize = 10;
    let barrier = Arc::new(Barrier::new(TASKS));
    let mut handles = Vec::new();
    for t in 0..TASKS {
        let (s, key, barrier) = (acme.clone(), key.clone(), barrier.clone());
        handles.push(tokio::spawn(async move {
            let mut wins = Vec::new();
            for round in 0..ROUNDS {
                // Every task reads, then all save at once: one of them wins the version.
                let mut d = s.get(&key).await.unwrap().unwrap();
                barrier.wait().await;
                let read_at = d.version;
                d.body = format!("task {t} round {round}");
                match s.save(&d).await {
                    Ok(()) => wins.push(read_at + 1),
                    Err(Error::Conflict {
                        expected, found, ..
                    }) => {
                        assert_eq!(expected, read_at);
                        assert!(found > expected, "{found} after {expected}");
                    }
                    Err(e) => panic!("{e}"),
                }
                barrier.wait().await;
            }
            wins
        }));
    }
    let mut versions = Vec::new();
    for h in handles {
        versions.extend(h.await.unwrap());
    }
    versions.sort_unstable();
    // All tasks read the same version each round: exactly one of them wrote the next.
    let want: Vec<u64> = (2..2 + ROUNDS as u64).collect();
    assert_eq!(versions, want);
    assert_eq!(stored_version(&server, &key.redis_key()), 1 + ROUNDS as u64);
    popoto::testing::assert_isolated::<Doc>(&db).await;
}

#[tokio::test]
async fn concurrent_updates_lose_nothing_with_or_without_a_version() {
    let (server, db) = setup().await;
    let acme = db.tenant("acme").unwrap();
    acme.create(doc("c", "")).await.unwrap();
    acme.create(Counter {
        name: "c".into(),
        region: "eu".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    const TASKS: i64 = 5;
    const EACH: i64 = 8;
    let mut handles = Vec::new();
    for t in 0..TASKS {
        let s = acme.clone();
        handles.push(tokio::spawn(async move {
            for i in 0..EACH {
                let d = s
                    .update(&Doc::key_of("acme", "c"), |d| {
                        d.words += 1;
                        d.body.push('x');
                    })
                    .await
                    .unwrap()
                    .unwrap();
                assert!(d.version >= 2);
                // The counter also moves between partitions of its level (a non-key field).
                s.update(&Counter::key_of("acme", "c"), |c| {
                    c.n += 1;
                    c.level = c.n;
                    c.region = ["eu", "us"][((t + i) % 2) as usize].into();
                })
                .await
                .unwrap()
                .unwrap();
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    let d = acme.get(&Doc::key_of("acme", "c")).await.unwrap().unwrap();
    assert_eq!(d.words, TASKS * EACH);
    assert_eq!(d.body.len() as i64, TASKS * EACH);
    assert_eq!(d.version, 1 + (TASKS * EACH) as u64);
    let c = acme
        .get(&Counter::key_of("acme", "c"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.n, TASKS * EACH);
    // The counter's level sits in exactly one partition: the one its stored region selects.
    let zset = format!("$SortF:Counter:level:acme:{}", c.region);
    assert_eq!(
        zrange(&server, &zset),
        [(
            Counter::key_of("acme", "c").redis_key(),
            (TASKS * EACH) as f64
        )]
    );
    popoto::testing::assert_isolated::<Doc>(&db).await;
    popoto::testing::assert_isolated::<Counter>(&db).await;
}

#[tokio::test]
async fn update_refuses_key_changes_and_reports_absent_instances() {
    let (server, db) = setup().await;
    let acme = db.tenant("acme").unwrap();
    acme.create(doc("a", "x")).await.unwrap();
    let before = dump(&server);
    let e = acme
        .update(&Doc::key_of("acme", "a"), |d| d.slug = "b".into())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::InvalidValue { model: "Doc", .. }), "{e}");
    let e = acme
        .update(&Doc::key_of("acme", "a"), |d| d.org = "globex".into())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::TenantMismatch { .. }), "{e}");
    assert_eq!(dump(&server), before);
    assert!(acme
        .update(&Doc::key_of("acme", "nope"), |d| d.words = 1)
        .await
        .unwrap()
        .is_none());
    // Another tenant's key is refused before anything is read.
    assert!(matches!(
        acme.update(&Doc::key_of("globex", "a"), |d| d.words = 1)
            .await,
        Err(Error::TenantMismatch { .. })
    ));
}

#[tokio::test]
async fn bulk_saves_check_each_version_and_return_the_next() {
    let (server, db) = setup().await;
    let acme = db.tenant("acme").unwrap();
    let docs = acme
        .create_many((0..5).map(|i| doc(&format!("d{i}"), "a b")).collect())
        .await
        .unwrap();
    assert!(docs.iter().all(|d| d.version == 1));
    // d2 is saved by someone else first: its copy is stale.
    acme.save(&docs[2]).await.unwrap();
    let mut batch = docs.clone();
    for d in &mut batch {
        d.body = "changed".into();
    }
    let err = acme.save_many(batch).await.unwrap_err();
    assert_eq!(err.failed.len(), 1);
    let (i, _, e) = &err.failed[0];
    assert_eq!(*i, 2);
    assert!(
        matches!(
            e,
            Error::Conflict {
                expected: 1,
                found: 2,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(err.written.len(), 4);
    assert!(err.written.iter().all(|(_, d)| d.version == 2));
    for (i, d) in &err.written {
        let key = Doc::key_of("acme", format!("d{i}")).redis_key();
        assert_eq!(stored_version(&server, &key), d.version);
    }
    // The values that came back save again without a conflict.
    let again: Vec<Doc> = err.written.into_iter().map(|(_, d)| d).collect();
    let saved = acme.save_many(again).await.unwrap();
    assert!(saved.iter().all(|d| d.version == 3));
}
