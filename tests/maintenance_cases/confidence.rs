//! Migrations of confidence fields into their partitions: every entry moved, non-key
//! partitions read from the instance, missing instances reported, dry runs, refusals.

use super::*;

#[tokio::test]
async fn confidence_migration_moves_every_entry_into_its_partition() {
    let (server, db) = setup().await;
    let all = seed_legacy_memories(&db, 4).await;
    // One entry exactly as popoto's Lua script writes it.
    raw_cmd::<i64>(
        &server,
        redis::cmd("HSET")
            .arg(LEGACY_MEMORY)
            .arg("Memory:k1_0:zeus")
            .arg(unhex(POPOTO_LUA_07)),
    );
    let legacy = hgetall(&server, LEGACY_MEMORY);
    assert_eq!(legacy.len(), 20);
    assert!(legacy.iter().any(|(_, v)| hex(v) == POPOTO_INITIAL));

    let mut seen = Vec::new();
    let report = db
        .admin()
        .migrate_to_partitioned(Memory::certainty(), DryRun::No, |p| seen.push(p))
        .await
        .unwrap();
    assert_eq!(
        report,
        MigrationReport {
            total: 20,
            migrated: 20,
            errors: vec![],
            partitions: partitions(&[
                ("a*", 4),
                ("atlas", 4),
                ("hera", 4),
                ("umbrella:eu-1", 4),
                ("zeus", 4)
            ]),
            kept_existing: 0,
        }
    );
    assert!(!exists(&server, LEGACY_MEMORY), "the legacy hash is gone");
    let last = seen.last().copied().unwrap();
    assert_eq!((last.moved, last.total, last.errors), (20, 20, 0));
    // Every entry, byte for byte, in the hash of its (unescaped) partition.
    for m in &all {
        let member = Memory::key_of(m.project.clone(), m.key.clone()).redis_key();
        let before = &legacy.iter().find(|(k, _)| *k == member).unwrap().1;
        let partition = format!("{LEGACY_MEMORY}:{}", m.project);
        assert_eq!(hget(&server, &partition, &member).as_ref(), Some(before));
    }
    // And the partitioned model reads them.
    let zeus = db.tenant("zeus").unwrap();
    let fact = memory_of(&all.iter().find(|m| m.key == "k1_0").cloned().unwrap());
    assert_eq!(
        zeus.confidence(&fact, Memory::certainty())
            .unwrap()
            .state()
            .await
            .unwrap(),
        ConfidenceState {
            confidence: 0.7,
            evidence_count: 1,
            corroborations: 1,
            contradictions: 0
        }
    );
    // A second run finds nothing to do.
    let again = db
        .admin()
        .migrate_to_partitioned(Memory::certainty(), DryRun::No, |_| {})
        .await
        .unwrap();
    assert_eq!(again, MigrationReport::default());
}

#[tokio::test]
async fn confidence_migration_reads_non_key_partitions_from_the_instance() {
    let (server, db) = setup().await;
    let p = db.tenant("p").unwrap();
    for (id, topic) in [("c1", "sky"), ("c2", "sea"), ("c3", "sky"), ("c4", "a:b*")] {
        let c = p
            .create(LegacyClaim {
                id: id.into(),
                topic: topic.into(),
                belief: 0.5,
                ..Default::default()
            })
            .await
            .unwrap();
        p.confidence(&c, LegacyClaim::belief())
            .unwrap()
            .update(0.8)
            .await
            .unwrap();
    }
    // c4's topic is missing from its hash: its partition is unknown, so it stays.
    raw_cmd::<i64>(&server, redis::cmd("HDEL").arg("Claim:c4:p").arg("topic"));
    let report = db
        .admin()
        .migrate_to_partitioned_with(
            Claim::belief(),
            MigrationOptions::new(DryRun::No).batch(1),
            |_| {},
        )
        .await
        .unwrap();
    assert_eq!(report.total, 4);
    assert_eq!(report.migrated, 3);
    assert_eq!(report.partitions, partitions(&[("sea", 1), ("sky", 2)]));
    assert_eq!(report.errors.len(), 1);
    assert_eq!(report.errors[0].member_key, "Claim:c4:p");
    assert!(report.errors[0].error.contains("topic"), "{report:?}");
    assert_eq!(hlen(&server, "$ConfidencF:Claim:belief:data:sky"), 2);
    assert_eq!(
        hgetall(&server, "$ConfidencF:Claim:belief:data")
            .into_iter()
            .map(|(k, _)| k)
            .collect::<Vec<_>>(),
        ["Claim:c4:p"]
    );
}

#[tokio::test]
async fn entries_of_missing_instances_are_reported_and_kept() {
    let (server, db) = setup().await;
    seed_legacy_memories(&db, 2).await;
    // popoto's verified scenario: legacy entries whose instance hash is gone.
    for member in ["Memory:k1_0:zeus", "Memory:k0_1:atlas"] {
        raw_cmd::<i64>(&server, redis::cmd("DEL").arg(member));
    }
    raw_cmd::<i64>(
        &server,
        redis::cmd("HSET")
            .arg(LEGACY_MEMORY)
            .arg("Memory:ghost:atlas")
            .arg(unhex(POPOTO_INITIAL)),
    );
    let report = sorted_errors(
        db.admin()
            .migrate_to_partitioned(Memory::certainty(), DryRun::No, |_| {})
            .await
            .unwrap(),
    );
    let errors = vec![
        err("Memory:ghost:atlas"),
        err("Memory:k0_1:atlas"),
        err("Memory:k1_0:zeus"),
    ];
    assert_eq!(
        report,
        MigrationReport {
            total: 11,
            migrated: 8,
            errors: errors.clone(),
            partitions: partitions(&[
                ("a*", 2),
                ("atlas", 1),
                ("hera", 2),
                ("umbrella:eu-1", 2),
                ("zeus", 1)
            ]),
            kept_existing: 0,
        }
    );
    // Unlike popoto, the legacy hash keeps exactly the entries it could not move.
    let kept: Vec<String> = hgetall(&server, LEGACY_MEMORY)
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        kept,
        [
            "Memory:ghost:atlas",
            "Memory:k0_1:atlas",
            "Memory:k1_0:zeus"
        ]
    );
    // Re-running reports the same errors and moves nothing.
    let again = sorted_errors(
        db.admin()
            .migrate_to_partitioned(Memory::certainty(), DryRun::No, |_| {})
            .await
            .unwrap(),
    );
    assert_eq!(
        again,
        MigrationReport {
            total: 3,
            migrated: 0,
            errors,
            partitions: BTreeMap::new(),
            kept_existing: 0,
        }
    );
}

#[tokio::test]
async fn an_entry_already_in_its_partition_is_not_overwritten() {
    let (server, db) = setup().await;
    let atlas = db.tenant("atlas").unwrap();
    let old = atlas.create(legacy_memory("atlas", "fact1")).await.unwrap();
    let c = atlas.confidence(&old, LegacyMemory::certainty()).unwrap();
    for _ in 0..3 {
        c.update(0.1).await.unwrap();
    }
    atlas.create(legacy_memory("atlas", "fact2")).await.unwrap();
    // New code already wrote fact1's partition entry (one newer signal).
    let newer = atlas
        .confidence(&memory_of(&old), Memory::certainty())
        .unwrap();
    newer.update(1.0).await.unwrap();
    let partition = format!("{LEGACY_MEMORY}:atlas");
    let newer_bytes = hget(&server, &partition, "Memory:fact1:atlas").unwrap();

    let report = db
        .admin()
        .migrate_to_partitioned(Memory::certainty(), DryRun::No, |_| {})
        .await
        .unwrap();
    assert_eq!(
        report,
        MigrationReport {
            total: 2,
            migrated: 2,
            errors: vec![],
            partitions: partitions(&[("atlas", 2)]),
            kept_existing: 1,
        }
    );
    assert_eq!(
        hget(&server, &partition, "Memory:fact1:atlas"),
        Some(newer_bytes),
        "the partition's entry wins"
    );
    assert_eq!(newer.state().await.unwrap().evidence_count, 1);
    assert_eq!(
        hget(&server, &partition, "Memory:fact2:atlas").map(|b| hex(&b)),
        Some(POPOTO_INITIAL.to_owned())
    );
    assert!(!exists(&server, LEGACY_MEMORY));
}

/// Pages larger than one script call, with every outcome an entry can have: moved, kept (the
/// partition already holds it), instance missing, partition of another type. Only moved and
/// kept entries leave the legacy hash, with their bytes. An instance key holding another type
/// still names the entry's partition: that entry moves.
#[tokio::test]
async fn large_pages_report_every_kind_of_entry_and_move_only_what_they_can() {
    let (server, db) = setup().await;
    let projects = ["atlas", "zeus", "hera"];
    let values: Vec<LegacyMemory> = (0..2_400)
        .map(|i| legacy_memory(projects[i % 3], &format!("m{i}")))
        .collect();
    let created = db.admin().create_many(values).await.unwrap();
    let member = |i: usize| {
        LegacyMemory::key_of(created[i].project.clone(), created[i].key.clone()).redis_key()
    };
    let admin = db.admin();
    for i in [3, 30, 300] {
        admin
            .confidence(&created[i], LegacyMemory::certainty())
            .unwrap()
            .update(0.9)
            .await
            .unwrap();
    }
    let before: BTreeMap<String, Vec<u8>> = hgetall(&server, LEGACY_MEMORY).into_iter().collect();
    // zeus' partition holds a string: none of its entries can move.
    raw_cmd::<()>(
        &server,
        redis::cmd("SET")
            .arg(format!("{LEGACY_MEMORY}:zeus"))
            .arg("x"),
    );
    // atlas' m0 is already in its partition (newer bytes); m6's instance is gone; m9's
    // instance key holds a list.
    raw_cmd::<i64>(
        &server,
        redis::cmd("HSET")
            .arg(format!("{LEGACY_MEMORY}:atlas"))
            .arg(member(0))
            .arg(unhex(POPOTO_LUA_07)),
    );
    raw_cmd::<i64>(&server, redis::cmd("DEL").arg(member(6)));
    raw_cmd::<i64>(&server, redis::cmd("DEL").arg(member(9)));
    raw_cmd::<i64>(&server, redis::cmd("RPUSH").arg(member(9)).arg("x"));

    let report = admin
        .migrate_to_partitioned_with(
            Memory::certainty(),
            MigrationOptions::new(DryRun::No).batch(5_000),
            |_| {},
        )
        .await
        .unwrap();
    let zeus: Vec<usize> = (0..2_400).filter(|i| i % 3 == 1).collect();
    assert_eq!(report.total, 2_400);
    assert_eq!(report.migrated, 2_400 - zeus.len() as u64 - 1);
    assert_eq!(report.kept_existing, 1);
    assert_eq!(
        report.partitions,
        partitions(&[("atlas", 799), ("hera", 800)])
    );
    let errors: BTreeMap<String, String> = report
        .errors
        .iter()
        .map(|e| (e.member_key.clone(), e.error.clone()))
        .collect();
    assert_eq!(errors.len(), zeus.len() + 1);
    assert_eq!(errors[&member(6)], INSTANCE_NOT_FOUND);
    assert!(
        zeus.iter()
            .all(|&i| errors[&member(i)].contains("partition key holds a string")),
        "{:?}",
        errors.get(&member(1))
    );
    // The legacy hash keeps exactly the failed entries, with their bytes.
    let left: BTreeMap<String, Vec<u8>> = hgetall(&server, LEGACY_MEMORY).into_iter().collect();
    let expected_left: BTreeMap<String, Vec<u8>> = errors
        .keys()
        .map(|m| (m.clone(), before[m].clone()))
        .collect();
    assert_eq!(left, expected_left);
    // Moved entries carry their bytes; the kept one keeps the partition's.
    for (i, m) in created.iter().enumerate() {
        let key = member(i);
        let partition = format!("{LEGACY_MEMORY}:{}", m.project);
        let moved = m.project != "zeus" && i != 6;
        let want = match i {
            0 => Some(unhex(POPOTO_LUA_07)),
            _ if moved => Some(before[&key].clone()),
            _ => None,
        };
        if m.project != "zeus" {
            assert_eq!(hget(&server, &partition, &key), want, "{key}");
        }
    }
}

#[tokio::test]
async fn a_dry_run_writes_nothing_and_reports_what_a_run_would_do() {
    let (server, db) = setup().await;
    let all = seed_legacy_memories(&db, 3).await;
    raw_cmd::<i64>(
        &server,
        redis::cmd("DEL").arg(Memory::key_of("umbrella:eu-1", "k2_1").redis_key()),
    );
    let first = memory_of(&all[0]);
    db.admin()
        .confidence(&first, Memory::certainty())
        .unwrap()
        .update(0.3)
        .await
        .unwrap();
    let before = dump(&server);
    let mut calls = 0;
    let dry = db
        .admin()
        .migrate_to_partitioned_with(
            Memory::certainty(),
            MigrationOptions::new(DryRun::Yes).batch(2),
            |p| {
                calls += 1;
                assert_eq!(p.moved, 0);
            },
        )
        .await
        .unwrap();
    assert!(calls >= 1);
    assert_eq!(dump(&server), before, "a dry run writes nothing");
    let sorted_dry = dry.clone();
    assert_eq!(dry.migrated, 0);
    assert_eq!(dry.total, 15);
    let real = db
        .admin()
        .migrate_to_partitioned(Memory::certainty(), DryRun::No, |_| {})
        .await
        .unwrap();
    assert_eq!(real.migrated, 14);
    assert_eq!(real.kept_existing, 1);
    assert_eq!(
        MigrationReport {
            migrated: 0,
            ..real
        },
        sorted_dry,
        "the dry run's report is the real one with migrated = 0"
    );
}

#[tokio::test]
async fn migrations_refuse_fields_without_partitions() {
    let (_server, db) = setup().await;
    // Tenant and unscoped handles have no maintenance methods at all (tests/ui/admin).
    let admin = db.admin();
    match admin
        .migrate_to_partitioned(Belief::strength(), DryRun::No, |_| {})
        .await
    {
        Err(Error::NotPartitioned {
            model: "Belief",
            field: "strength",
        }) => {}
        other => panic!("{other:?}"),
    }
    match admin
        .migrate_sorted_to_partitioned(Episode::rank(), DryRun::No, |_| {})
        .await
    {
        Err(Error::NotPartitioned {
            model: "Episode",
            field: "rank",
        }) => {}
        other => panic!("{other:?}"),
    }
    // Handles built by hand (only `__private` can) on fields of another kind.
    let content = Memory::META
        .fields
        .iter()
        .position(|f| f.name == "content")
        .unwrap();
    match admin
        .migrate_to_partitioned(
            popoto::__private::confidence_field::<Memory, f64>(content),
            DryRun::No,
            |_| {},
        )
        .await
    {
        Err(Error::WrongFieldKind {
            field: "content",
            expected: "confidence",
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    let certainty = Memory::certainty().index();
    match admin
        .migrate_sorted_to_partitioned(
            popoto::__private::sorted_field::<Memory, f64>(certainty),
            DryRun::No,
            |_| {},
        )
        .await
    {
        Err(Error::WrongFieldKind {
            field: "certainty",
            expected: "sorted",
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
}
