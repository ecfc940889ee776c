//! Index checks and rebuilds: a healthy database checks clean, every injected defect is found
//! and repaired, a key that disagrees with its tenant field is reported, not repaired.

use super::*;

/// A healthy database: Memory with confidence data, Episodes, Claims, Items.
pub(crate) async fn seed_models(db: &Db) -> (Vec<Memory>, Vec<Episode>) {
    let mut memories = Vec::new();
    let mut episodes = Vec::new();
    for t in ["acme", "globex", "a*"] {
        let s = db.tenant(t).unwrap();
        for i in 0..3 {
            let m = s
                .create(Memory {
                    key: format!("{t}_{i}"),
                    content: "c".into(),
                    certainty: 0.5,
                    ..Default::default()
                })
                .await
                .unwrap();
            s.confidence(&m, Memory::certainty())
                .unwrap()
                .update(0.9)
                .await
                .unwrap();
            memories.push(m);
            episodes.push(
                s.create(episode("", &format!("e{i}"), i as f64, i))
                    .await
                    .unwrap(),
            );
        }
        s.create(Claim {
            id: "c1".into(),
            topic: "sky".into(),
            belief: 0.5,
            ..Default::default()
        })
        .await
        .unwrap();
        s.create(Item {
            sku: format!("{t}-sku"),
            region: "eu".into(),
            level: 3,
            ..Default::default()
        })
        .await
        .unwrap();
    }
    (memories, episodes)
}

pub(crate) async fn check_all(db: &Db) -> Vec<IndexReport> {
    let a = db.admin();
    let o = IndexOptions::default().batch(2);
    vec![
        a.check_indexes_with::<Memory>(o).await.unwrap(),
        a.check_indexes_with::<Episode>(o).await.unwrap(),
        a.check_indexes_with::<Claim>(o).await.unwrap(),
        a.check_indexes_with::<Item>(o).await.unwrap(),
    ]
}

/// (kind, index, member) of every finding, sorted.
pub(crate) fn summary(r: &IndexReport) -> Vec<(FindingKind, String, String)> {
    let mut v: Vec<_> = r
        .findings
        .iter()
        .map(|f| (f.kind, f.index.clone(), f.member.clone()))
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn a_healthy_database_checks_clean() {
    let (_server, db) = setup().await;
    seed_models(&db).await;
    for r in check_all(&db).await {
        assert!(r.is_clean(), "{r}");
        assert!(
            r.instances > 0 && r.index_keys > 0 && r.index_entries > 0,
            "{r}"
        );
    }
    let memory = db.admin().check_indexes::<Memory>().await.unwrap();
    assert_eq!(memory.instances, 9);
    // $Class + 3 $KeyF + 9 $UniqueKeyF + 3 companion hashes.
    assert_eq!(memory.index_keys, 16);
    assert_eq!(memory.index_entries, 9 * 4);
    popoto::testing::assert_isolated::<Memory>(&db).await;
    popoto::testing::assert_isolated::<Episode>(&db).await;
}

#[tokio::test]
async fn check_finds_and_rebuild_repairs_every_injected_defect() {
    let (server, db) = setup().await;
    let (memories, episodes) = seed_models(&db).await;
    let ep = Episode::key_of("acme", episodes[0].episode_id.clone()).redis_key();
    let ep2 = Episode::key_of("acme", episodes[1].episode_id.clone()).redis_key();
    let cmds: Vec<redis::Cmd> = vec![
        // (a) orphans in a set, a zset and a companion hash
        redis::cmd("SADD")
            .arg("$Class:Memory")
            .arg("Memory:ghost:acme")
            .clone(),
        redis::cmd("SADD")
            .arg("$KeyF:Memory:project:acme")
            .arg("Memory:ghost:acme")
            .clone(),
        redis::cmd("ZADD")
            .arg("$SortF:Episode:score:acme")
            .arg(1)
            .arg("Episode:ffffffffffffffffffffffffffffffff:acme")
            .clone(),
        redis::cmd("HSET")
            .arg("$ConfidencF:Memory:certainty:data:acme")
            .arg("Memory:ghost:acme")
            .arg(unhex(POPOTO_INITIAL))
            .clone(),
        // (b) missing: a zset member, a class member, a wrong score, a confidence entry
        redis::cmd("ZREM")
            .arg("$SortF:Episode:score:acme")
            .arg(&ep)
            .clone(),
        redis::cmd("SREM").arg("$Class:Episode").arg(&ep2).clone(),
        redis::cmd("ZADD")
            .arg("$SortF:Episode:rank")
            .arg(999)
            .arg(&ep2)
            .clone(),
        redis::cmd("HDEL")
            .arg("$ConfidencF:Memory:certainty:data:acme")
            .arg("Memory:acme_0:acme")
            .clone(),
        // (c) outside their partition: a zset member, a value-set member, a confidence entry
        // (its own partition emptied: the rebuild must move it there, data intact), and a
        // confidence entry partitioned by a plain field
        redis::cmd("ZADD")
            .arg("$SortF:Episode:score:globex")
            .arg(0.5)
            .arg(&ep2)
            .clone(),
        redis::cmd("SADD")
            .arg("$KeyF:Memory:project:globex")
            .arg("Memory:acme_1:acme")
            .clone(),
        redis::cmd("HSET")
            .arg("$ConfidencF:Memory:certainty:data:globex")
            .arg("Memory:acme_2:acme")
            .arg(unhex(POPOTO_LUA_07))
            .clone(),
        redis::cmd("HDEL")
            .arg("$ConfidencF:Memory:certainty:data:acme")
            .arg("Memory:acme_2:acme")
            .clone(),
        redis::cmd("HSET")
            .arg("$ConfidencF:Claim:belief:data:sea")
            .arg("Claim:c1:globex")
            .arg(unhex(POPOTO_LUA_07))
            .clone(),
    ];
    for c in &cmds {
        raw_cmd::<i64>(&server, c);
    }
    let confidence_acme = "$ConfidencF:Memory:certainty:data:acme";
    use FindingKind::*;
    let s = |x: &str| x.to_owned();
    let expect_memory = vec![
        (Orphan, s("$Class:Memory"), s("Memory:ghost:acme")),
        (Orphan, s(confidence_acme), s("Memory:ghost:acme")),
        (
            Orphan,
            s("$KeyF:Memory:project:acme"),
            s("Memory:ghost:acme"),
        ),
        (Missing, s(confidence_acme), s("Memory:acme_0:acme")),
        (Missing, s(confidence_acme), s("Memory:acme_2:acme")),
        (
            Misplaced,
            s("$ConfidencF:Memory:certainty:data:globex"),
            s("Memory:acme_2:acme"),
        ),
        (
            Misplaced,
            s("$KeyF:Memory:project:globex"),
            s("Memory:acme_1:acme"),
        ),
    ];
    let mut expect_memory = expect_memory;
    expect_memory.sort();
    let mut expect_episode = vec![
        (
            Orphan,
            s("$SortF:Episode:score:acme"),
            s("Episode:ffffffffffffffffffffffffffffffff:acme"),
        ),
        (Missing, s("$SortF:Episode:score:acme"), ep.clone()),
        (Missing, s("$Class:Episode"), ep2.clone()),
        (Missing, s("$SortF:Episode:rank"), ep2.clone()),
        (Misplaced, s("$SortF:Episode:score:globex"), ep2.clone()),
    ];
    expect_episode.sort();
    let expect_claim = vec![(
        Misplaced,
        s("$ConfidencF:Claim:belief:data:sea"),
        s("Claim:c1:globex"),
    )];

    let checked = check_all(&db).await;
    assert_eq!(summary(&checked[0]), expect_memory, "{}", checked[0]);
    assert_eq!(summary(&checked[1]), expect_episode, "{}", checked[1]);
    assert_eq!(summary(&checked[2]), expect_claim, "{}", checked[2]);
    assert!(checked[3].is_clean(), "{}", checked[3]);
    assert!(checked.iter().all(|r| r.repaired() == 0 && !r.rebuilt));
    let wrong_score = checked[1]
        .findings
        .iter()
        .find(|f| f.index == "$SortF:Episode:rank")
        .unwrap();
    assert!(wrong_score.detail.contains("999"), "{wrong_score}");
    assert_eq!(wrong_score.tenant.as_deref(), Some("acme"));
    assert_eq!(checked[0].isolation_violations().count(), 2);
    assert_eq!(
        checked[0].tenants().into_iter().collect::<Vec<_>>(),
        ["acme"]
    );

    let a = db.admin();
    let o = IndexOptions::default().batch(2);
    let rebuilt = [
        a.rebuild_indexes_with::<Memory>(o).await.unwrap(),
        a.rebuild_indexes_with::<Episode>(o).await.unwrap(),
        a.rebuild_indexes_with::<Claim>(o).await.unwrap(),
    ];
    // The rebuild moves acme_2's misplaced entry home before looking for missing ones.
    let moved_home = (Missing, s(confidence_acme), s("Memory:acme_2:acme"));
    let expect_rebuilt_memory: Vec<_> = expect_memory
        .iter()
        .filter(|f| **f != moved_home)
        .cloned()
        .collect();
    assert_eq!(
        summary(&rebuilt[0]),
        expect_rebuilt_memory,
        "{}",
        rebuilt[0]
    );
    assert_eq!(summary(&rebuilt[1]), expect_episode, "{}", rebuilt[1]);
    assert_eq!(summary(&rebuilt[2]), expect_claim, "{}", rebuilt[2]);
    for r in &rebuilt {
        assert!(r.rebuilt);
        assert_eq!(r.repaired(), r.findings.len(), "{r}");
    }
    for r in check_all(&db).await {
        assert!(r.is_clean(), "after the rebuild: {r}");
    }
    // Repairs went where they belong, and confidence data survived.
    assert_eq!(zscore(&server, "$SortF:Episode:score:acme", &ep), Some(0.0));
    assert_eq!(zscore(&server, "$SortF:Episode:rank", &ep2), Some(1.0));
    assert_eq!(zscore(&server, "$SortF:Episode:score:globex", &ep2), None);
    let acme = db.tenant("acme").unwrap();
    let state = |m: &Memory| acme.confidence(m, Memory::certainty()).unwrap();
    assert_eq!(
        state(&memories[0]).state().await.unwrap(),
        ConfidenceState::initial(0.5),
        "a lost entry is re-initialised"
    );
    assert_eq!(state(&memories[1]).state().await.unwrap().evidence_count, 1);
    assert_eq!(
        hget(&server, confidence_acme, "Memory:acme_2:acme").map(|b| hex(&b)),
        Some(POPOTO_LUA_07.to_owned()),
        "a misplaced entry is moved with its data"
    );
    assert!(!exists(
        &server,
        "$ConfidencF:Memory:certainty:data:globex:x"
    ));
    assert_eq!(
        hget(
            &server,
            "$ConfidencF:Claim:belief:data:sky",
            "Claim:c1:globex"
        )
        .map(|b| hex(&b)),
        Some(POPOTO_INITIAL.to_owned()),
        "the claim's own partition entry was kept; the misplaced copy dropped"
    );
    assert!(!exists(&server, "$ConfidencF:Claim:belief:data:sea"));
    // Idempotent: a second rebuild finds nothing.
    assert!(a.rebuild_indexes::<Memory>().await.unwrap().is_clean());
    popoto::testing::assert_isolated::<Memory>(&db).await;
    popoto::testing::assert_isolated::<Episode>(&db).await;
}

#[tokio::test]
async fn a_key_that_disagrees_with_its_tenant_field_is_reported_not_repaired() {
    let (server, db) = setup().await;
    seed_models(&db).await;
    // The acme instance's tenant field now says globex.
    raw_cmd::<i64>(
        &server,
        redis::cmd("HSET")
            .arg("Memory:acme_1:acme")
            .arg("project")
            .arg(b"\xa6globex".as_slice()),
    );
    let before = dump(&server);
    let report = db.admin().audit::<Memory>().await.unwrap();
    assert_eq!(report.findings.len(), 1, "{report}");
    let f = &report.findings[0];
    assert_eq!(f.kind, FindingKind::KeyMismatch);
    assert_eq!(f.member, "Memory:acme_1:acme");
    assert_eq!(f.field.as_deref(), Some("project"));
    assert_eq!(f.tenant.as_deref(), Some("acme"));
    assert!(f.detail.contains("globex"), "{f}");
    assert_eq!(report.isolation_violations().count(), 1);
    let text = report.to_string();
    assert!(text.contains("key disagrees with stored values"), "{text}");
    let rebuilt = db.admin().rebuild_indexes::<Memory>().await.unwrap();
    assert_eq!(summary(&rebuilt), summary(&report));
    assert_eq!(rebuilt.repaired(), 0);
    assert_eq!(dump(&server), before, "reported, not repaired");
    // The test helper panics with the report.
    let db2 = db.clone();
    let joined = tokio::spawn(async move {
        popoto::testing::assert_isolated::<Memory>(&db2).await;
    })
    .await;
    let panic = joined.expect_err("assert_isolated panics").into_panic();
    let msg = panic
        .downcast_ref::<String>()
        .cloned()
        .expect("the panic message is a formatted String");
    assert!(
        msg.contains("Memory:acme_1:acme") && msg.contains("globex"),
        "{msg}"
    );
}

#[tokio::test]
async fn rebuild_moves_an_unmigrated_legacy_confidence_hash_without_losing_data() {
    let (server, db) = setup().await;
    let all = seed_legacy_memories(&db, 2).await;
    let legacy = hgetall(&server, LEGACY_MEMORY);
    let report = db.admin().check_indexes::<Memory>().await.unwrap();
    // Each legacy entry is outside its partition, and each partition entry is missing.
    assert_eq!(report.count(FindingKind::Misplaced), 10, "{report}");
    assert_eq!(report.count(FindingKind::Missing), 10, "{report}");
    db.admin().rebuild_indexes::<Memory>().await.unwrap();
    assert!(db
        .admin()
        .check_indexes::<Memory>()
        .await
        .unwrap()
        .is_clean());
    assert!(!exists(&server, LEGACY_MEMORY));
    for m in &all {
        let member = Memory::key_of(m.project.clone(), m.key.clone()).redis_key();
        let bytes = &legacy.iter().find(|(k, _)| *k == member).unwrap().1;
        assert_eq!(
            hget(&server, &format!("{LEGACY_MEMORY}:{}", m.project), &member).as_ref(),
            Some(bytes)
        );
    }
}
