//! Interrupted migrations (confidence and sorted) resume to the state of an uninterrupted run.

use super::*;
use crate::support::faults::kill_others;

/// Seeds 5000 legacy entries (and 20 whose instance is missing), identically on any server.
pub(crate) async fn seed_large(server: &TestRedis, db: &Db) {
    let values: Vec<LegacyMemory> = (0..5000)
        .map(|i| {
            legacy_memory(
                ["atlas", "zeus", "hera", "a:b", "x"][i % 5],
                &format!("m{i}"),
            )
        })
        .collect();
    let created = db.admin().create_many(values).await.unwrap();
    let admin = db.admin();
    for m in created.iter().step_by(97) {
        admin
            .confidence(m, LegacyMemory::certainty())
            .unwrap()
            .update(0.25)
            .await
            .unwrap();
    }
    for m in created.iter().skip(13).step_by(250) {
        raw_cmd::<i64>(
            server,
            redis::cmd("DEL")
                .arg(LegacyMemory::key_of(m.project.clone(), m.key.clone()).redis_key()),
        );
    }
}

#[tokio::test]
async fn an_interrupted_confidence_migration_resumes_to_the_same_state() {
    // Reference: one uninterrupted run.
    let (reference, ref_db) = setup().await;
    seed_large(&reference, &ref_db).await;
    let full = sorted_errors(
        ref_db
            .admin()
            .migrate_to_partitioned_with(
                Memory::certainty(),
                MigrationOptions::new(DryRun::No).batch(100),
                |_| {},
            )
            .await
            .unwrap(),
    );
    assert_eq!(full.total, 5000);
    assert_eq!(full.migrated, 4980);
    assert_eq!(full.errors.len(), 20);
    assert_eq!(hlen(&reference, LEGACY_MEMORY), 20);

    let (server, db) = setup().await;
    seed_large(&server, &db).await;
    assert_ne!(dump(&server), dump(&reference));
    let opts = MigrationOptions::new(DryRun::No).batch(100);
    // Dropped at various await points after a few batches: between batches and mid-batch
    // (some with the batch's scripts already sent: they run, but the run never counts them).
    for (n, after) in [
        (2, 0),
        (3, 1),
        (1, 2),
        (4, 3),
        (2, 4),
        (1, 5),
        (2, 6),
        (1, 8),
    ] {
        let (flag, progress) = stop_after(n);
        let before = hlen(&server, LEGACY_MEMORY);
        let admin = db.admin();
        let fut = admin.migrate_to_partitioned_with(Memory::certainty(), opts, progress);
        let out = interrupt(fut, flag, after).await;
        assert!(out.is_none(), "the run was interrupted");
        assert!(hlen(&server, LEGACY_MEMORY) < before, "it moved something");
    }
    // Killed by the server: every client connection dropped during a batch.
    let mut killed = false;
    let mut calls = 0;
    let outcome = db
        .admin()
        .migrate_to_partitioned_with(Memory::certainty(), opts, |_| {
            calls += 1;
            if calls == 2 {
                kill_others(&mut server.raw());
                killed = true;
            }
        })
        .await;
    assert!(killed);
    match outcome {
        Err(e) => assert!(e.is_connection_error(), "{e}"),
        Ok(r) => panic!("the run survived a killed connection: {r:?}"),
    }
    // The final run finishes the job.
    let remaining = hlen(&server, LEGACY_MEMORY);
    assert!(remaining > 20, "runs were interrupted before the end");
    let last = sorted_errors(
        db.admin()
            .migrate_to_partitioned_with(Memory::certainty(), opts, |_| {})
            .await
            .unwrap(),
    );
    assert_eq!(last.total, remaining);
    assert_eq!(
        last.migrated,
        remaining - 20,
        "nothing lost, nothing doubled"
    );
    assert_eq!(last.errors, full.errors);
    assert_eq!(
        last.partitions.values().sum::<u64>(),
        last.migrated,
        "each moved entry counted once"
    );
    assert_eq!(
        dump(&server),
        dump(&reference),
        "same state as one uninterrupted run"
    );
    // At this scale, the index check pages through big sets: the only defects are the
    // deleted instances' entries ($Class, $KeyF, $UniqueKeyF, legacy companion hash).
    let admin = db.admin();
    let small = IndexOptions::default().batch(50);
    let report = admin.check_indexes_with::<Memory>(small).await.unwrap();
    assert_eq!(report.instances, 4980);
    assert_eq!(report.index_entries, 4 * 4980 + 4 * 20);
    assert_eq!(report.count(FindingKind::Orphan), 80, "{report}");
    assert_eq!(report.findings.len(), 80, "{report}");
    let rebuilt = admin.rebuild_indexes_with::<Memory>(small).await.unwrap();
    assert_eq!(rebuilt.repaired(), 80, "{rebuilt}");
    assert!(!exists(&server, LEGACY_MEMORY));
    assert!(admin.check_indexes::<Memory>().await.unwrap().is_clean());
}

pub(crate) async fn seed_large_sorted(server: &TestRedis, db: &Db) {
    let values: Vec<LegacyEpisode> = (0..5000)
        .map(|i| legacy_episode(["acme", "globex", "a-b", "x:y"][i % 4], i, (i as f64) / 7.0))
        .collect();
    db.admin().create_many(values).await.unwrap();
    for i in (5..5000).step_by(500) {
        let member =
            LegacyEpisode::key_of(["acme", "globex", "a-b", "x:y"][i % 4], format!("{i:032x}"))
                .redis_key();
        raw_cmd::<i64>(server, redis::cmd("DEL").arg(member));
    }
}

#[tokio::test]
async fn an_interrupted_sorted_migration_resumes_to_the_same_state() {
    let (reference, ref_db) = setup().await;
    seed_large_sorted(&reference, &ref_db).await;
    let opts = MigrationOptions::new(DryRun::No).batch(150);
    let full = ref_db
        .admin()
        .migrate_sorted_to_partitioned_with(Episode::score(), opts, |_| {})
        .await
        .unwrap();
    assert_eq!(
        (full.total, full.migrated, full.errors.len()),
        (5000, 4990, 10)
    );

    let (server, db) = setup().await;
    seed_large_sorted(&server, &db).await;
    for (n, after) in [(1, 0), (2, 2), (3, 1), (1, 4)] {
        let (flag, progress) = stop_after(n);
        let admin = db.admin();
        let fut = admin.migrate_sorted_to_partitioned_with(Episode::score(), opts, progress);
        assert!(interrupt(fut, flag, after).await.is_none());
    }
    let remaining: u64 = raw_cmd(&server, redis::cmd("ZCARD").arg(LEGACY_SCORE));
    assert!(remaining > 10);
    let last = sorted_errors(
        db.admin()
            .migrate_sorted_to_partitioned_with(Episode::score(), opts, |_| {})
            .await
            .unwrap(),
    );
    assert_eq!(last.total, remaining);
    assert_eq!(last.migrated, remaining - 10);
    assert_eq!(last.errors, sorted_errors(full).errors);
    assert_eq!(dump(&server), dump(&reference));
}
