//! Concurrency: racing creates, saves, deletes, key moves and confidence updates on one instance
//! lose nothing and leave the indexes exactly consistent (the audit finds nothing).
//!
//! Tasks start together behind a barrier and run a bounded number of operations each; several
//! `Db` handles (several connection pools) race so the server really interleaves them.

mod support;

use std::sync::Arc;

use popoto::testing::assert_isolated;
use popoto::{Db, Error};
use support::*;
use tokio::sync::Barrier;

/// Independent handles on one server: separate pools, separate connections.
async fn handles(server: &popoto::testing::TestRedis, n: usize) -> Vec<Db> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(server.db().await);
    }
    out
}

/// A small deterministic generator (no sleeps, no shared state between tasks).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

fn is_contention(e: &Error) -> bool {
    matches!(e, Error::Contention { .. })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_of_one_unique_value_have_exactly_one_winner() {
    let (server, db) = setup().await;
    let dbs = handles(&server, 4).await;
    const RACERS: usize = 16;
    for round in 0..25 {
        // Every racer is another tenant, so the keys differ and only the unique sku collides.
        let sku = format!("sku:{round}-*[x]");
        let barrier = Arc::new(Barrier::new(RACERS));
        let mut tasks = Vec::new();
        for i in 0..RACERS {
            let (db, barrier, sku) = (dbs[i % dbs.len()].clone(), barrier.clone(), sku.clone());
            tasks.push(tokio::spawn(async move {
                let t = db.tenant(format!("tenant-{i}")).unwrap();
                barrier.wait().await;
                t.create(Item {
                    sku,
                    region: "eu".into(),
                    level: i as i64,
                    ..Default::default()
                })
                .await
            }));
        }
        let mut winners = Vec::new();
        let mut losers = Vec::new();
        for t in tasks {
            match t.await.unwrap() {
                Ok(item) => winners.push(item),
                Err(e) => losers.push(e),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: {winners:?} {losers:?}");
        let winner_key = Item::key_of(winners[0].tenant.clone(), sku.clone()).redis_key();
        for e in &losers {
            match e {
                Error::UniqueViolation {
                    model,
                    field,
                    value,
                    existing,
                } => {
                    assert_eq!(
                        (*model, *field, value.as_str()),
                        ("Item", "sku", sku.as_str())
                    );
                    // The winner is another tenant: a tenant handle does not show its key.
                    assert_eq!(existing, popoto::OTHER_TENANT);
                }
                other => panic!("round {round}: expected UniqueViolation, got {other:?}"),
            }
        }
        // The admin handle names the holder.
        match db
            .admin()
            .create(Item {
                tenant: "admin-probe".into(),
                sku: sku.clone(),
                ..Default::default()
            })
            .await
        {
            Err(Error::UniqueViolation { existing, .. }) => assert_eq!(existing, winner_key),
            other => panic!("{other:?}"),
        }
        let set = format!("$UniqueKeyF:Item:sku:{}", popoto_core::keys::escape(&sku));
        assert_eq!(smembers(&server, &set), [winner_key]);
    }
    // Racing creates of one whole key: one winner, the others AlreadyExists.
    let barrier = Arc::new(Barrier::new(RACERS));
    let mut tasks = Vec::new();
    for i in 0..RACERS {
        let (db, barrier) = (dbs[i % dbs.len()].clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            db.tenant("acme")
                .unwrap()
                .create(Item {
                    sku: "same".into(),
                    level: i as i64,
                    ..Default::default()
                })
                .await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(Error::AlreadyExists { model: "Item", .. }) => {}
            Err(e) => panic!("expected AlreadyExists, got {e:?}"),
        }
    }
    assert_eq!(ok, 1);
    assert_isolated::<Item>(&db).await;
    assert_eq!(
        db.admin().query::<Item>().count().await.unwrap(),
        26,
        "25 unique winners and one whole-key winner"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_saves_deletes_and_creates_of_one_instance_leave_the_indexes_clean() {
    let (server, db) = setup().await;
    let dbs = handles(&server, 4).await;
    const TASKS: usize = 6;
    const OPS: usize = 150;
    let barrier = Arc::new(Barrier::new(TASKS));
    let mut tasks = Vec::new();
    for i in 0..TASKS {
        let (db, barrier) = (dbs[i % dbs.len()].clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            let t = db.tenant("acme").unwrap();
            let mut rng = Lcg(i as u64 + 1);
            let mut contended = 0;
            barrier.wait().await;
            for _ in 0..OPS {
                // Item: a unique key and a sorted field partitioned by a plain (movable) field.
                let item = Item {
                    tenant: "acme".into(),
                    sku: "hot".into(),
                    region: ["eu", "us", "ap"][(rng.next() % 3) as usize].into(),
                    level: (rng.next() % 100) as i64,
                    ..Default::default()
                };
                // Claim: a confidence entry partitioned by a plain (movable) field.
                let claim = Claim {
                    project: "acme".into(),
                    id: "hot".into(),
                    topic: ["sky", "sea"][(rng.next() % 2) as usize].into(),
                    belief: 0.5,
                };
                let r = match rng.next() % 6 {
                    0 => t.delete(&item).await.map(drop),
                    1 => match t.create(item).await {
                        Err(Error::AlreadyExists { .. }) => Ok(()),
                        other => other.map(drop),
                    },
                    2 => t.delete(&claim).await.map(drop),
                    3 => t.save(&claim).await,
                    4 => match t
                        .confidence(&claim, Claim::belief())
                        .unwrap()
                        .update(0.8)
                        .await
                    {
                        Err(Error::NotFound { .. }) => Ok(()),
                        other => other.map(drop),
                    },
                    _ => t.save(&item).await,
                };
                match r {
                    Ok(()) => {}
                    Err(e) if is_contention(&e) => contended += 1,
                    Err(e) => panic!("task {i}: {e:?}"),
                }
            }
            contended
        }));
    }
    let mut contended = 0;
    for t in tasks {
        contended += t.await.unwrap();
    }
    assert!(contended < TASKS * OPS / 10, "{contended} gave up");
    assert_isolated::<Item>(&db).await;
    assert_isolated::<Claim>(&db).await;
    // Whatever the last writer did, the instance is wholly there or wholly gone.
    let key = Item::key_of("acme", "hot").redis_key();
    let hash = hgetall(&server, &key);
    let level_members: usize = ["eu", "us", "ap"]
        .iter()
        .map(|r| {
            zrange(&server, &format!("$SortF:Item:level:acme:{r}"))
                .iter()
                .filter(|(m, _)| *m == key)
                .count()
        })
        .sum();
    assert_eq!(level_members, usize::from(!hash.is_empty()));
    assert_eq!(
        smembers(&server, "$UniqueKeyF:Item:sku:hot").len(),
        usize::from(!hash.is_empty())
    );
    let claim_key = Claim::key_of("acme", "hot").redis_key();
    let entries: usize = ["sky", "sea"]
        .iter()
        .map(|t| {
            hgetall(&server, &format!("$ConfidencF:Claim:belief:data:{t}"))
                .iter()
                .filter(|(m, _)| *m == claim_key)
                .count()
        })
        .sum();
    assert_eq!(
        entries,
        usize::from(!hgetall(&server, &claim_key).is_empty())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_confidence_updates_lose_none() {
    let (server, db) = setup().await;
    let dbs = handles(&server, 4).await;
    const TASKS: usize = 8;
    const UPDATES: usize = 60;
    let m = db
        .tenant("acme")
        .unwrap()
        .create(Memory {
            key: "fact".into(),
            certainty: 0.5,
            ..Default::default()
        })
        .await
        .unwrap();
    let barrier = Arc::new(Barrier::new(TASKS));
    let mut tasks = Vec::new();
    for i in 0..TASKS {
        let (db, barrier, m) = (dbs[i % dbs.len()].clone(), barrier.clone(), m.clone());
        tasks.push(tokio::spawn(async move {
            let t = db.tenant("acme").unwrap();
            let c = t.confidence(&m, Memory::certainty()).unwrap();
            barrier.wait().await;
            for _ in 0..UPDATES {
                c.update(if i % 2 == 0 { 0.9 } else { 0.1 }).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let s = db
        .tenant("acme")
        .unwrap()
        .confidence(&m, Memory::certainty())
        .unwrap()
        .state()
        .await
        .unwrap();
    let n = (TASKS * UPDATES) as u64;
    assert_eq!(
        (s.evidence_count, s.corroborations, s.contradictions),
        (n, n / 2, n / 2)
    );
    assert!((0.0..=1.0).contains(&s.confidence));
    assert_isolated::<Memory>(&db).await;
}

/// Updates through handles built from a stale value (its partition field changed since) still
/// land on the instance's one entry, wherever concurrent saves moved it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confidence_updates_follow_concurrent_partition_moves() {
    let (server, db) = setup().await;
    let dbs = handles(&server, 3).await;
    let t = db.tenant("acme").unwrap();
    let original = t
        .create(Claim {
            id: "c1".into(),
            topic: "sky".into(),
            belief: 0.5,
            ..Default::default()
        })
        .await
        .unwrap();
    const UPDATERS: usize = 4;
    const UPDATES: usize = 50;
    const MOVES: usize = 60;
    let barrier = Arc::new(Barrier::new(UPDATERS + 1));
    let mut tasks = Vec::new();
    for i in 0..UPDATERS {
        let (db, barrier, stale) = (
            dbs[i % dbs.len()].clone(),
            barrier.clone(),
            original.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let t = db.tenant("acme").unwrap();
            barrier.wait().await;
            let mut applied = 0u64;
            for _ in 0..UPDATES {
                // The handle is built from the value as first read (topic "sky").
                match t
                    .confidence(&stale, Claim::belief())
                    .unwrap()
                    .update(1.0)
                    .await
                {
                    Ok(_) => applied += 1,
                    // Told, not lost: the caller knows this signal was not applied.
                    Err(Error::Contention { .. }) => {}
                    Err(e) => panic!("{e:?}"),
                }
            }
            applied
        }));
    }
    let mover = {
        let (db, barrier, mut claim) = (dbs[0].clone(), barrier.clone(), original.clone());
        tokio::spawn(async move {
            let t = db.tenant("acme").unwrap();
            barrier.wait().await;
            for i in 0..MOVES {
                claim.topic = ["sea", "sky", "land"][i % 3].into();
                t.save(&claim).await.unwrap();
            }
            claim
        })
    };
    let mut applied = 0;
    for t in tasks {
        applied += t.await.unwrap();
    }
    assert!(
        applied * 10 >= (UPDATERS * UPDATES) as u64 * 9,
        "{applied} applied"
    );
    let last = mover.await.unwrap();
    let key = Claim::key_of("acme", "c1").redis_key();
    let mut entries = Vec::new();
    for topic in ["sky", "sea", "land"] {
        for (m, v) in hgetall(&server, &format!("$ConfidencF:Claim:belief:data:{topic}")) {
            if m == key {
                entries.push((topic, v));
            }
        }
    }
    assert_eq!(
        entries.len(),
        1,
        "one entry, in the current partition: {entries:?}"
    );
    assert_eq!(entries[0].0, last.topic);
    let state = popoto::ConfidenceState::decode(&entries[0].1, 0.5).unwrap();
    assert_eq!(state.evidence_count, applied, "no applied update lost");
    assert_isolated::<Claim>(&db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_key_moves_move_an_instance_once() {
    let (server, db) = setup().await;
    let dbs = handles(&server, 4).await;
    for round in 0..10 {
        let t = db.tenant("acme").unwrap();
        let m = t
            .create(Memory {
                key: format!("old{round}"),
                content: "payload".into(),
                certainty: 0.5,
                ..Default::default()
            })
            .await
            .unwrap();
        t.confidence(&m, Memory::certainty())
            .unwrap()
            .update(0.9)
            .await
            .unwrap();
        const MOVERS: usize = 8;
        let barrier = Arc::new(Barrier::new(MOVERS));
        let mut tasks = Vec::new();
        for i in 0..MOVERS {
            let (db, barrier, old) = (dbs[i % dbs.len()].clone(), barrier.clone(), m.clone());
            tasks.push(tokio::spawn(async move {
                let t = db.tenant("acme").unwrap();
                let new = Memory {
                    key: format!("new{round}-{i}"),
                    ..old.clone()
                };
                barrier.wait().await;
                t.move_key(&old, new).await
            }));
        }
        let mut moved = Vec::new();
        for t in tasks {
            match t.await.unwrap() {
                Ok(m) => moved.push(m),
                Err(Error::NotFound { .. }) => {}
                Err(e) => panic!("round {round}: {e:?}"),
            }
        }
        assert_eq!(moved.len(), 1, "round {round}");
        let s = t
            .confidence(&moved[0], Memory::certainty())
            .unwrap()
            .state()
            .await
            .unwrap();
        assert_eq!(s.evidence_count, 1, "the confidence entry moved with it");
    }
    assert_eq!(
        db.tenant("acme")
            .unwrap()
            .query::<Memory>()
            .count()
            .await
            .unwrap(),
        10
    );
    assert_isolated::<Memory>(&db).await;
    drop(server);
}

/// Racing bulk creates (the batched path: partitions in the key) whose unique values overlap
/// across tenants: every value has exactly one winner, the losers are listed per instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_bulk_creates_with_overlapping_unique_values_have_one_winner_each() {
    let (server, db) = setup().await;
    let dbs = handles(&server, 4).await;
    const TASKS: usize = 4;
    const N: usize = 1_499; // prime: every `j * (2i + 1) % N` walk is a permutation
    let barrier = Arc::new(Barrier::new(TASKS));
    let mut tasks = Vec::new();
    for (i, db) in dbs.iter().enumerate().take(TASKS) {
        let (db, barrier) = (db.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            let t = db.tenant(format!("bulk-{i}")).unwrap();
            // Each task walks the values in another order, so the races interleave.
            let memories: Vec<Memory> = (0..N)
                .map(|j| Memory {
                    key: format!("k{}", (j * (2 * i + 1)) % N),
                    content: format!("from {i}"),
                    certainty: 0.5,
                    ..Default::default()
                })
                .collect();
            barrier.wait().await;
            match t.create_many(memories).await.map_err(Error::from) {
                Ok(written) => (written.len(), 0),
                Err(Error::Bulk { total, failed, .. }) => {
                    for (_, e) in &failed {
                        assert!(
                            matches!(e, Error::UniqueViolation { field: "key", .. }),
                            "{e:?}"
                        );
                    }
                    (total - failed.len(), failed.len())
                }
                Err(e) => panic!("{e:?}"),
            }
        }));
    }
    let (mut won, mut lost) = (0, 0);
    for t in tasks {
        let (w, l) = t.await.unwrap();
        won += w;
        lost += l;
    }
    assert_eq!((won, lost), (N, N * (TASKS - 1)));
    for j in (0..N).step_by(97) {
        assert_eq!(
            smembers(&server, &format!("$UniqueKeyF:Memory:key:k{j}")).len(),
            1
        );
    }
    assert_eq!(db.admin().query::<Memory>().count().await.unwrap(), N);
    assert_isolated::<Memory>(&db).await;
}
