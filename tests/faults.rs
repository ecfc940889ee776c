//! Faults against real redis-server processes: connections killed with `CLIENT KILL` in the
//! middle of bulk writes and migrations, a server restart under load. Every instance stays
//! all-or-nothing, errors are connection errors, and the same `Db` recovers.
//!
//! Cut points are chosen by progress callbacks or by racing killer threads whose loops are
//! bounded in count; nothing sleeps to synchronise.

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

use popoto::testing::{assert_isolated, TestRedis};
use popoto::{Db, DryRun, Error, MigrationOptions};
use serde::Serialize;
use support::faults::*;
use support::*;

fn items(n: usize) -> Vec<Item> {
    (0..n)
        .map(|i| Item {
            tenant: "acme".into(),
            sku: format!("sku-{i}"),
            region: ["eu", "us", "ap"][i % 3].into(),
            level: i as i64,
            note: Some(format!("note {i}")),
        })
        .collect()
}

fn memory_probes(m: &Memory) -> (String, Vec<redis::Cmd>) {
    let key = Memory::key_of(m.project.clone(), m.key.clone()).redis_key();
    let key_set = format!(
        "$UniqueKeyF:Memory:key:{}",
        popoto_core::keys::escape(&m.key)
    );
    let probes = vec![
        redis::cmd("EXISTS").arg(&key).clone(),
        redis::cmd("SISMEMBER")
            .arg("$Class:Memory")
            .arg(&key)
            .clone(),
        redis::cmd("SISMEMBER")
            .arg("$KeyF:Memory:project:acme")
            .arg(&key)
            .clone(),
        redis::cmd("SISMEMBER").arg(key_set).arg(&key).clone(),
        redis::cmd("HEXISTS")
            .arg("$ConfidencF:Memory:certainty:data:acme")
            .arg(&key)
            .clone(),
    ];
    (key, probes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_killed_mid_bulk_write_leaves_every_instance_all_or_nothing() {
    let (server, db) = setup().await;
    const N: usize = 6_000;
    let all = items(N);
    let memories: Vec<Memory> = (0..N)
        .map(|i| Memory {
            project: "acme".into(),
            key: format!("m-{i}"),
            content: format!("content {i}"),
            certainty: 0.5,
        })
        .collect();
    let mut interrupted = 0;
    for round in 0..6 {
        redis::cmd("FLUSHDB").exec(&mut server.raw()).unwrap();
        // Items (a movable partition: one script per instance) and memories (partitions in the
        // key: the batched path), created or saved; killed a third or two thirds of the way.
        let (class, save) = match round {
            0 => ("$Class:Item", false),
            1 => ("$Class:Item", true),
            2 | 4 => ("$Class:Memory", false),
            _ => ("$Class:Memory", true),
        };
        let threshold = (N / 3 * (1 + round % 2)) as u64;
        let k = killer(
            server.url().to_owned(),
            redis::cmd("SCARD").arg(class).clone(),
            threshold,
        );
        let t = db.tenant("acme").unwrap();
        let result = match (class, save) {
            ("$Class:Item", false) => t
                .create_many(all.clone())
                .await
                .map(drop)
                .map_err(Error::from),
            ("$Class:Item", true) => t
                .save_many(all.clone())
                .await
                .map(drop)
                .map_err(Error::from),
            (_, false) => t
                .create_many(memories.clone())
                .await
                .map(drop)
                .map_err(Error::from),
            (_, true) => t
                .save_many(memories.clone())
                .await
                .map(drop)
                .map_err(Error::from),
        };
        let seen = k.join().unwrap();
        if let Err(e) = &result {
            assert!(e.is_connection_error(), "round {round}: {e}");
        }
        let present = if class == "$Class:Item" {
            all_or_nothing(&server, &all, item_probes)
        } else {
            all_or_nothing(&server, &memories, memory_probes)
        };
        if result.is_err() && present < N {
            interrupted += 1;
        }
        assert!(seen.is_some(), "round {round}: the killer never fired");
        if round < 3 {
            assert_isolated::<Item>(&db).await;
            assert_isolated::<Memory>(&db).await;
        }
        // The same Db recovers: a second run completes what the first left out.
        if class == "$Class:Item" {
            t.save_many(all.clone()).await.unwrap();
            assert_eq!(all_or_nothing(&server, &all, item_probes), N);
        } else {
            t.save_many(memories.clone()).await.unwrap();
            assert_eq!(all_or_nothing(&server, &memories, memory_probes), N);
        }
    }
    assert_isolated::<Item>(&db).await;
    assert_isolated::<Memory>(&db).await;
    assert!(
        interrupted >= 5,
        "only {interrupted} of 6 rounds were cut mid-way"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_idle_connections_fail_at_most_once_and_the_pool_redials() {
    let (server, db) = setup().await;
    let t = db.tenant("acme").unwrap();
    // Warm the pool: several connections, all idle afterwards.
    let warm: Vec<_> = (0..8)
        .map(|i| {
            let t = t.clone();
            tokio::spawn(async move {
                t.create(Item {
                    sku: format!("warm{i}"),
                    ..Default::default()
                })
                .await
            })
        })
        .collect();
    for w in warm {
        w.await.unwrap().unwrap();
    }
    kill_clients(server.url());
    let mut failures = 0;
    let mut ok = 0;
    for i in 0..40 {
        match t.get(&Item::key_of("acme", format!("warm{}", i % 8))).await {
            Ok(found) => {
                assert!(found.is_some());
                ok += 1;
            }
            Err(e) => {
                assert!(e.is_connection_error(), "{e}");
                assert_eq!(ok, 0, "a failure after a success: {e}");
                failures += 1;
            }
        }
    }
    assert!(
        failures <= 1,
        "{failures} calls failed on dead pooled connections"
    );
    assert_eq!(ok + failures, 40);
}

#[derive(Debug)]
struct Event {
    error: Option<Error>,
    /// The restart generation when the call started (1: after the restart completed).
    generation: u32,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restart_mid_workload_surfaces_connection_errors_and_the_same_db_recovers() {
    let (mut server, db) = setup().await;
    let stop = Arc::new(AtomicBool::new(false));
    let generation = Arc::new(AtomicU32::new(0));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Event>();
    let mut workers = Vec::new();
    for w in 0..4 {
        let (db, stop, generation, tx) = (db.clone(), stop.clone(), generation.clone(), tx.clone());
        workers.push(tokio::spawn(async move {
            let t = db.tenant(format!("t{w}")).unwrap();
            for i in 0..40_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let g = generation.load(Ordering::SeqCst);
                let r = async {
                    let ep = t
                        .create(episode("", &format!("{w}-{i}"), i as f64, 0))
                        .await?;
                    let back = t
                        .get(&Episode::key_of(
                            ep.project_id.clone(),
                            ep.episode_id.clone(),
                        ))
                        .await?;
                    assert_eq!(back.as_ref(), Some(&ep));
                    Ok::<_, Error>(())
                }
                .await;
                if tx
                    .send(Event {
                        error: r.err(),
                        generation: g,
                    })
                    .is_err()
                {
                    break;
                }
            }
        }));
    }
    drop(tx);
    let mut before = 0;
    while before < 200 {
        let e = rx
            .recv()
            .await
            .expect("the workload stopped before the restart");
        assert!(e.error.is_none(), "{:?}", e.error);
        before += 1;
    }
    server = tokio::task::spawn_blocking(move || {
        server.restart().unwrap();
        server
    })
    .await
    .unwrap();
    generation.store(1, Ordering::SeqCst);
    let (mut errors, mut after_ok, mut late_errors) = (0, 0, Vec::new());
    while after_ok < 200 {
        let Some(e) = rx.recv().await else { break };
        match (e.error, e.generation) {
            (None, 1) => after_ok += 1,
            (None, _) => {}
            (Some(err), g) => {
                assert!(err.is_connection_error(), "not a connection error: {err}");
                errors += 1;
                if g == 1 {
                    late_errors.push(err.to_string());
                }
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    while rx.recv().await.is_some() {}
    for w in workers {
        w.await.unwrap();
    }
    assert!(errors > 0, "the restart went unnoticed");
    assert_eq!(after_ok, 200, "the workload did not recover");
    assert!(
        late_errors.len() <= 4,
        "calls started after the restart failed: {late_errors:?}"
    );
    // The same Db, never rebuilt, reads and writes the new server.
    let t = db.tenant("t0").unwrap();
    let ep = t.create(episode("", "after", 1.0, 1)).await.unwrap();
    assert!(t
        .get(&Episode::key_of("t0", ep.episode_id.clone()))
        .await
        .unwrap()
        .is_some());
    assert_isolated::<Episode>(&db).await;
    drop(server);
}

// ------------------------------------------------------------------------ migrations

/// A legacy entry as an older popoto wrote it: a named msgpack map.
#[derive(Serialize)]
struct Entry {
    confidence: f64,
    evidence_count: u64,
    corroborations: u64,
    contradictions: u64,
}

const TENANTS: &[&str] = &["acme", "a:b", "x*[y]"];

/// Creates memories and episodes, then moves their confidence entries and score members into
/// the unpartitioned legacy keys (distinct bytes and scores each). Returns the expectations.
async fn legacy(
    server: &TestRedis,
    db: &Db,
    per_tenant: usize,
) -> (Vec<(String, String, Vec<u8>)>, Vec<(String, String, f64)>) {
    let mut conf = Vec::new();
    let mut sorted = Vec::new();
    for (ti, tenant) in TENANTS.iter().enumerate() {
        let t = db.tenant(*tenant).unwrap();
        let mems: Vec<Memory> = (0..per_tenant)
            .map(|i| Memory {
                key: format!("{tenant}/{i}"),
                certainty: 0.5,
                ..Default::default()
            })
            .collect();
        for m in t.create_many(mems).await.unwrap() {
            let member = Memory::key_of(m.project.clone(), m.key.clone()).redis_key();
            let n = (conf.len() + 1) as u64;
            let bytes = rmp_serde::to_vec_named(&Entry {
                confidence: (n % 997) as f64 / 997.0,
                evidence_count: n,
                corroborations: n / 2,
                contradictions: n - n / 2,
            })
            .unwrap();
            conf.push((
                format!("$ConfidencF:Memory:certainty:data:{tenant}"),
                member,
                bytes,
            ));
        }
        let eps: Vec<Episode> = (0..per_tenant)
            .map(|i| Episode {
                episode_id: format!("{ti:02}{i:030}"),
                ..episode(tenant, "e", i as f64 + ti as f64 / 10.0, 0)
            })
            .collect();
        for e in t.create_many(eps).await.unwrap() {
            let member = Episode::key_of(e.project_id.clone(), e.episode_id.clone()).redis_key();
            let part = format!("$SortF:Episode:score:{}", popoto_core::keys::escape(tenant));
            sorted.push((part, member, e.score));
        }
    }
    let mut conn = server.raw();
    let mut pipe = redis::pipe();
    for (part, member, bytes) in &conf {
        pipe.cmd("HDEL").arg(part).arg(member).ignore();
        pipe.cmd("HSET")
            .arg("$ConfidencF:Memory:certainty:data")
            .arg(member)
            .arg(bytes)
            .ignore();
    }
    for (part, member, score) in &sorted {
        pipe.cmd("ZREM").arg(part).arg(member).ignore();
        pipe.cmd("ZADD")
            .arg("$SortF:Episode:score")
            .arg(*score)
            .arg(member)
            .ignore();
    }
    pipe.exec(&mut conn).unwrap();
    (conf, sorted)
}

/// Every entry is in exactly one place (legacy or its partition) with its original bytes or
/// score; returns how many are still in the legacy keys.
fn nothing_lost_or_doubled(
    server: &TestRedis,
    conf: &[(String, String, Vec<u8>)],
    sorted: &[(String, String, f64)],
) -> (usize, usize) {
    let mut conn = server.raw();
    let mut pipe = redis::pipe();
    for (part, member, _) in conf {
        pipe.cmd("HGET")
            .arg("$ConfidencF:Memory:certainty:data")
            .arg(member);
        pipe.cmd("HGET").arg(part).arg(member);
    }
    let replies: Vec<Option<Vec<u8>>> = pipe.query(&mut conn).unwrap();
    let mut legacy_conf = 0;
    for ((_, member, bytes), r) in conf.iter().zip(replies.chunks(2)) {
        match (&r[0], &r[1]) {
            (Some(v), None) => {
                assert_eq!(v, bytes, "{member}");
                legacy_conf += 1;
            }
            (None, Some(v)) => assert_eq!(v, bytes, "{member}"),
            other => panic!("{member}: entry lost or doubled: {other:?}"),
        }
    }
    let mut pipe = redis::pipe();
    for (part, member, _) in sorted {
        pipe.cmd("ZSCORE").arg("$SortF:Episode:score").arg(member);
        pipe.cmd("ZSCORE").arg(part).arg(member);
    }
    let replies: Vec<Option<f64>> = pipe.query(&mut conn).unwrap();
    let mut legacy_sorted = 0;
    for ((_, member, score), r) in sorted.iter().zip(replies.chunks(2)) {
        match (r[0], r[1]) {
            (Some(v), None) => {
                assert_eq!(v, *score, "{member}");
                legacy_sorted += 1;
            }
            (None, Some(v)) => assert_eq!(v, *score, "{member}"),
            other => panic!("{member}: member lost or doubled: {other:?}"),
        }
    }
    (legacy_conf, legacy_sorted)
}

#[derive(Debug, Clone, Copy)]
enum Cut {
    /// Drop the migration future after this many batches.
    Drop(u32),
    /// `CLIENT KILL` from the progress callback after this many batches.
    Kill(u32),
    /// A racing killer thread fires once this many entries left the legacy key.
    Race(u64),
}

/// Runs one confidence and one sorted migration, each cut as told; returns whether each was
/// cut (an error or a dropped future) rather than completed.
async fn cut_run(server: &TestRedis, db: &Db, cut: Cut) -> (bool, bool) {
    let admin = db.admin();
    let opts = MigrationOptions::new(DryRun::No).batch(50);
    let mut cut_short = Vec::new();
    for sorted in [false, true] {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let mut tx = Some(tx);
        let mut batches = 0;
        let url = server.url().to_owned();
        let progress = move |_p: popoto::Progress| {
            batches += 1;
            match cut {
                Cut::Drop(n) if batches == n => {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(());
                    }
                }
                Cut::Kill(n) if batches == n => {
                    kill_clients(&url);
                }
                _ => {}
            }
        };
        let racer = match cut {
            Cut::Race(moved) => {
                let (key, len) = if sorted {
                    ("$SortF:Episode:score", "ZCARD")
                } else {
                    ("$ConfidencF:Memory:certainty:data", "HLEN")
                };
                // The probe counts how far the legacy key shrank.
                let total: u64 = raw_cmd(server, redis::cmd(len).arg(key));
                let mut eval = redis::cmd("EVAL");
                eval.arg(format!("return {total} - redis.call('{len}', KEYS[1])"))
                    .arg(1)
                    .arg(key);
                Some(killer(server.url().to_owned(), eval, moved.min(total)))
            }
            _ => None,
        };
        let result = if sorted {
            let fut = admin.migrate_sorted_to_partitioned_with(Episode::score(), opts, progress);
            tokio::select! {
                r = fut => Some(r),
                Ok(()) = rx => None,
            }
        } else {
            let fut = admin.migrate_to_partitioned_with(Memory::certainty(), opts, progress);
            tokio::select! {
                r = fut => Some(r),
                Ok(()) = rx => None,
            }
        };
        if let Some(k) = racer {
            k.join().unwrap();
        }
        cut_short.push(match result {
            None => true,
            Some(Err(e)) => {
                assert!(e.is_connection_error(), "{e}");
                true
            }
            Some(Ok(report)) => {
                assert!(report.errors.is_empty(), "{:?}", report.errors);
                false
            }
        });
    }
    (cut_short[0], cut_short[1])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_cut_off_anywhere_and_run_again_loses_and_doubles_nothing() {
    let server = start_server();
    // The kills between two batches must cut the run.
    let db = lanes_only(&server);
    let (conf, sorted) = legacy(&server, &db, 700).await;
    let total = conf.len();
    assert_eq!(
        nothing_lost_or_doubled(&server, &conf, &sorted),
        (total, total)
    );
    let mut cuts = 0;
    let mut left = (total, total);
    for cut in [
        Cut::Drop(1),
        Cut::Kill(2),
        Cut::Race(60),
        Cut::Drop(3),
        Cut::Kill(1),
        Cut::Race(150),
        Cut::Drop(2),
        Cut::Race(25),
    ] {
        let (a, b) = cut_run(&server, &db, cut).await;
        cuts += usize::from(a) + usize::from(b);
        let now = nothing_lost_or_doubled(&server, &conf, &sorted);
        assert!(
            now.0 <= left.0 && now.1 <= left.1,
            "{cut:?}: {left:?} -> {now:?}"
        );
        assert!(now.0 > 0 && now.1 > 0, "{cut:?} ran to the end: {now:?}");
        left = now;
    }
    assert!(cuts >= 14, "only {cuts} of 16 runs were cut short");
    // Run to completion with the same Db: everything moved once, the legacy keys are gone.
    let admin = db.admin();
    let report = admin
        .migrate_to_partitioned(Memory::certainty(), DryRun::No, |_| {})
        .await
        .unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let report = admin
        .migrate_sorted_to_partitioned(Episode::score(), DryRun::No, |_| {})
        .await
        .unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(nothing_lost_or_doubled(&server, &conf, &sorted), (0, 0));
    let keys: HashMap<String, ()> = all_keys(&server).into_iter().map(|k| (k, ())).collect();
    assert!(!keys.contains_key("$ConfidencF:Memory:certainty:data"));
    assert!(!keys.contains_key("$SortF:Episode:score"));
    // Idempotent: a further run finds nothing to do.
    let again = admin
        .migrate_to_partitioned(Memory::certainty(), DryRun::No, |_| {})
        .await
        .unwrap();
    assert_eq!((again.total, again.migrated), (0, 0));
    assert_isolated::<Memory>(&db).await;
    assert_isolated::<Episode>(&db).await;
}
