//! Migrations of sorted fields into their partitions: members moved with their scores.

use super::*;

#[tokio::test]
async fn sorted_migration_moves_members_with_their_scores() {
    let (server, db) = setup().await;
    let mut eps = Vec::new();
    for (i, p) in ["acme", "globex", "umbrella:eu-1", "acme", "a*"]
        .into_iter()
        .enumerate()
    {
        eps.push(
            db.admin()
                .create(legacy_episode(p, i, 0.5 + i as f64))
                .await
                .unwrap(),
        );
    }
    let ghost = "Episode:000000000000000000000000000000ff:acme";
    raw_cmd::<i64>(
        &server,
        redis::cmd("ZADD").arg(LEGACY_SCORE).arg(7).arg(ghost),
    );
    let rank_before = zrange(&server, "$SortF:Episode:rank");
    let mut progress = Vec::new();
    let report = db
        .admin()
        .migrate_sorted_to_partitioned_with(
            Episode::score(),
            MigrationOptions::new(DryRun::No).batch(2),
            |p| progress.push(p),
        )
        .await
        .unwrap();
    assert_eq!(
        report,
        MigrationReport {
            total: 6,
            migrated: 5,
            errors: vec![err(ghost)],
            partitions: partitions(&[
                ("a/*", 1),
                ("acme", 2),
                ("globex", 1),
                ("umbrella{&#58;}eu/-1", 1)
            ]),
            kept_existing: 0,
        }
    );
    assert_eq!(progress.last().map(|p| (p.moved, p.total)), Some((5, 6)));
    for e in &eps {
        let member = Episode::key_of(e.project_id.clone(), e.episode_id.clone()).redis_key();
        let zset = popoto_core::keys::sorted_key(
            Episode::META,
            Episode::score().index(),
            &[&e.project_id],
        );
        assert_eq!(zscore(&server, &zset, &member), Some(e.score));
    }
    assert_eq!(zrange(&server, LEGACY_SCORE), [(ghost.to_owned(), 7.0)]);
    assert_eq!(
        zrange(&server, "$SortF:Episode:rank"),
        rank_before,
        "other fields untouched"
    );
    // The partitioned model queries them.
    let acme = db.tenant("acme").unwrap();
    let hits = acme
        .query::<Episode>()
        .filter(Episode::score().gte(0.0))
        .fetch()
        .await
        .unwrap();
    assert_eq!(hits.len(), 2);
}

#[tokio::test]
async fn sorted_migration_reads_non_key_partitions_and_keeps_newer_members() {
    let (server, db) = setup().await;
    let admin = db.admin();
    for (sku, tenant, region, level) in [
        ("s1", "t1", "eu", 1),
        ("s2", "t1", "us-east", 2),
        ("s3", "t2", "eu", 3),
    ] {
        admin
            .create(LegacyItem {
                tenant: tenant.into(),
                sku: sku.into(),
                region: region.into(),
                level,
                note: None,
            })
            .await
            .unwrap();
    }
    // s3 already sits in its partition with a newer score.
    raw_cmd::<i64>(
        &server,
        redis::cmd("ZADD")
            .arg("$SortF:Item:level:t2:eu")
            .arg(30)
            .arg("Item:s3:t2"),
    );
    let dry = admin
        .migrate_sorted_to_partitioned(Item::level(), DryRun::Yes, |_| {})
        .await
        .unwrap();
    let report = admin
        .migrate_sorted_to_partitioned(Item::level(), DryRun::No, |_| {})
        .await
        .unwrap();
    assert_eq!(
        report,
        MigrationReport {
            total: 3,
            migrated: 3,
            errors: vec![],
            partitions: partitions(&[("t1:eu", 1), ("t1:us/-east", 1), ("t2:eu", 1)]),
            kept_existing: 1,
        }
    );
    assert_eq!(
        dry,
        MigrationReport {
            migrated: 0,
            ..report
        }
    );
    assert_eq!(
        zscore(&server, "$SortF:Item:level:t1:us/-east", "Item:s2:t1"),
        Some(2.0)
    );
    assert_eq!(
        zscore(&server, "$SortF:Item:level:t2:eu", "Item:s3:t2"),
        Some(30.0)
    );
    assert!(!exists(&server, "$SortF:Item:level"));
}

#[tokio::test]
async fn a_sorted_dry_run_writes_nothing() {
    let (server, db) = setup().await;
    for i in 0..10 {
        db.admin()
            .create(legacy_episode(["p", "q"][i % 2], i, i as f64))
            .await
            .unwrap();
    }
    let before = dump(&server);
    let dry = db
        .admin()
        .migrate_sorted_to_partitioned(Episode::score(), DryRun::Yes, |_| {})
        .await
        .unwrap();
    assert_eq!(dump(&server), before);
    assert_eq!(
        dry,
        MigrationReport {
            total: 10,
            migrated: 0,
            errors: vec![],
            partitions: partitions(&[("p", 5), ("q", 5)]),
            kept_existing: 0,
        }
    );
}

/// The sorted twin: several script calls, a member already in its partition (its score kept),
/// a partition of another type, a missing instance.
#[tokio::test]
async fn large_sorted_pages_move_only_what_they_can() {
    let (server, db) = setup().await;
    let values: Vec<LegacyEpisode> = (0..2_100)
        .map(|i| legacy_episode(["acme", "globex", "initech"][i % 3], i, i as f64))
        .collect();
    let created = db.admin().create_many(values).await.unwrap();
    let member =
        |i: usize| Episode::key_of(created[i].project_id.clone(), created[i].episode_id.clone());
    raw_cmd::<()>(
        &server,
        redis::cmd("SET")
            .arg(format!("{LEGACY_SCORE}:globex"))
            .arg("x"),
    );
    raw_cmd::<i64>(
        &server,
        redis::cmd("ZADD")
            .arg(format!("{LEGACY_SCORE}:acme"))
            .arg(-1)
            .arg(member(0).redis_key()),
    );
    raw_cmd::<i64>(&server, redis::cmd("DEL").arg(member(3).redis_key()));
    let report = db
        .admin()
        .migrate_sorted_to_partitioned_with(
            Episode::score(),
            MigrationOptions::new(DryRun::No).batch(5_000),
            |_| {},
        )
        .await
        .unwrap();
    assert_eq!(report.total, 2_100);
    assert_eq!(report.migrated, 1_400 - 1);
    assert_eq!(report.kept_existing, 1);
    assert_eq!(report.errors.len(), 700 + 1);
    assert_eq!(
        report.partitions,
        partitions(&[("acme", 699), ("initech", 700)])
    );
    let left = zrange(&server, LEGACY_SCORE);
    assert_eq!(left.len(), 701);
    assert!(left
        .iter()
        .any(|(m, s)| *m == member(3).redis_key() && *s == 3.0));
    for (i, e) in created.iter().enumerate() {
        let zset = popoto_core::keys::sorted_key(
            Episode::META,
            Episode::score().index(),
            &[&e.project_id],
        );
        let want = match e.project_id.as_str() {
            "globex" => continue,
            _ if i == 0 => Some(-1.0),
            _ if i == 3 => None,
            _ => Some(e.score),
        };
        assert_eq!(zscore(&server, &zset, &member(i).redis_key()), want, "{i}");
    }
}
