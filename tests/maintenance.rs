//! Maintenance: partition migrations of confidence and sorted fields, index checks and
//! rebuilds, tenant-isolation audits. Every test starts its own private redis-server.

mod support;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Poll;

use popoto::maintenance::INSTANCE_NOT_FOUND;
use popoto::testing::TestRedis;
use popoto::{
    ConfidenceState, Db, DryRun, Error, FindingKind, IndexOptions, IndexReport, MigrationError,
    MigrationOptions, MigrationReport, Model, Progress,
};
use support::*;

// ------------------------------------------------------------------------------- twin models

/// `Memory` as it was before `partition_by` was added: one companion hash for everyone.
#[derive(Model, Debug, Clone, PartialEq, Default)]
#[popoto(name = "Memory")]
struct LegacyMemory {
    #[popoto(key, tenant)]
    project: String,
    #[popoto(unique_key)]
    key: String,
    content: String,
    #[popoto(confidence(initial = 0.5, evidence_cap = 20))]
    certainty: f64,
}

/// `Claim` (partitioned by the plain field `topic`) before `partition_by` was added.
#[derive(Model, Debug, Clone, PartialEq, Default)]
#[popoto(name = "Claim")]
struct LegacyClaim {
    #[popoto(key, tenant)]
    project: String,
    #[popoto(key)]
    id: String,
    topic: String,
    #[popoto(confidence)]
    belief: f64,
}

/// `Episode` before `score` was partitioned by project.
#[derive(Model, Debug, Clone, PartialEq, Default)]
#[popoto(name = "Episode")]
struct LegacyEpisode {
    #[popoto(key, tenant)]
    project_id: String,
    #[popoto(auto_key)]
    episode_id: String,
    title: String,
    #[popoto(sorted)]
    score: f64,
    #[popoto(sorted)]
    rank: i64,
}

/// `Item` before `level` was partitioned by tenant and the plain field `region`.
#[derive(Model, Debug, Clone, PartialEq, Default)]
#[popoto(name = "Item")]
struct LegacyItem {
    #[popoto(key, tenant)]
    tenant: String,
    #[popoto(unique_key)]
    sku: String,
    region: String,
    #[popoto(sorted)]
    level: i64,
    note: Option<String>,
}

// ------------------------------------------------------------------------------- helpers

const LEGACY_MEMORY: &str = "$ConfidencF:Memory:certainty:data";
const LEGACY_SCORE: &str = "$SortF:Episode:score";
/// popoto's initial entry (confidence 0.5), as `on_save` writes it.
const POPOTO_INITIAL: &str = "84aa636f6e666964656e6365cb3fe0000000000000ae65766964656e63655f636f756e7400ae636f72726f626f726174696f6e7300ae636f6e74726164696374696f6e7300";
/// popoto's Lua-written entry after signal 0.9 (section 8 of the layout facts).
const POPOTO_LUA_07: &str = "84ae636f72726f626f726174696f6e7301aa636f6e666964656e6365cb3fe6666666666666ae636f6e74726164696374696f6e7300ae65766964656e63655f636f756e7401";

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn hget(server: &TestRedis, key: &str, field: &str) -> Option<Vec<u8>> {
    raw_cmd(server, redis::cmd("HGET").arg(key).arg(field))
}

fn exists(server: &TestRedis, key: &str) -> bool {
    raw_cmd::<i64>(server, redis::cmd("EXISTS").arg(key)) == 1
}

fn zscore(server: &TestRedis, key: &str, member: &str) -> Option<f64> {
    raw_cmd(server, redis::cmd("ZSCORE").arg(key).arg(member))
}

/// Every key with its type and full content, values in hex: equal dumps = equal databases.
fn dump(server: &TestRedis) -> BTreeMap<String, String> {
    let mut conn = server.raw();
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut conn).unwrap();
    let mut out = BTreeMap::new();
    for k in keys {
        let ty: String = redis::cmd("TYPE").arg(&k).query(&mut conn).unwrap();
        let content = match ty.as_str() {
            "hash" => {
                let mut h: Vec<(Vec<u8>, Vec<u8>)> =
                    redis::cmd("HGETALL").arg(&k).query(&mut conn).unwrap();
                h.sort();
                h.iter()
                    .map(|(f, v)| format!("{}={}", String::from_utf8_lossy(f), hex(v)))
                    .collect::<Vec<_>>()
                    .join(",")
            }
            "set" => {
                let mut m: Vec<String> = redis::cmd("SMEMBERS").arg(&k).query(&mut conn).unwrap();
                m.sort();
                m.join(",")
            }
            "zset" => {
                let z: Vec<(String, String)> = redis::cmd("ZRANGE")
                    .arg(&k)
                    .arg(0)
                    .arg(-1)
                    .arg("WITHSCORES")
                    .query(&mut conn)
                    .unwrap();
                z.iter()
                    .map(|(m, s)| format!("{m}={s}"))
                    .collect::<Vec<_>>()
                    .join(",")
            }
            other => format!("<{other}>"),
        };
        out.insert(k, format!("{ty}:{content}"));
    }
    out
}

fn legacy_memory(project: &str, key: &str) -> LegacyMemory {
    LegacyMemory {
        project: project.into(),
        key: key.into(),
        content: format!("about {key}"),
        certainty: 0.5,
    }
}

fn memory_of(m: &LegacyMemory) -> Memory {
    Memory {
        project: m.project.clone(),
        key: m.key.clone(),
        content: m.content.clone(),
        certainty: m.certainty,
    }
}

fn err(member: &str) -> MigrationError {
    MigrationError {
        member_key: member.into(),
        error: INSTANCE_NOT_FOUND.into(),
    }
}

fn sorted_errors(mut r: MigrationReport) -> MigrationReport {
    r.errors.sort_by(|a, b| a.member_key.cmp(&b.member_key));
    r
}

fn partitions(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

/// Legacy confidence data in five tenants (odd names included), some entries updated, one
/// written with popoto's Lua bytes by hand. Returns the instances created.
async fn seed_legacy_memories(db: &Db, per_tenant: usize) -> Vec<LegacyMemory> {
    let mut all = Vec::new();
    for (t, project) in ["atlas", "zeus", "umbrella:eu-1", "a*", "hera"]
        .into_iter()
        .enumerate()
    {
        let values: Vec<LegacyMemory> = (0..per_tenant)
            .map(|i| legacy_memory(project, &format!("k{t}_{i}")))
            .collect();
        all.extend(db.admin().create_many(values).await.unwrap());
    }
    let admin = db.admin();
    for (n, m) in all.iter().enumerate().filter(|(n, _)| n % 7 == 0) {
        let c = admin.confidence(m, LegacyMemory::certainty()).unwrap();
        for s in [0.9, 0.2, 1.0].iter().take(1 + n % 3) {
            c.update(*s).await.unwrap();
        }
    }
    all
}

/// Runs `fut`, but drops it once `trigger` is set and it has returned `Pending` `after` more
/// times: an interruption at some await point of the migration (mid-batch when `after > 0`).
async fn interrupt<F: Future>(fut: F, trigger: Arc<AtomicBool>, after: usize) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    let mut pendings = 0;
    std::future::poll_fn(move |cx| match fut.as_mut().poll(cx) {
        Poll::Ready(v) => Poll::Ready(Some(v)),
        Poll::Pending => {
            if trigger.load(Ordering::SeqCst) {
                if pendings >= after {
                    return Poll::Ready(None);
                }
                pendings += 1;
            }
            Poll::Pending
        }
    })
    .await
}

/// A progress callback that sets the returned flag at its `n`-th call.
fn stop_after(n: usize) -> (Arc<AtomicBool>, impl FnMut(Progress)) {
    let flag = Arc::new(AtomicBool::new(false));
    let set = flag.clone();
    let mut calls = 0;
    (flag, move |_p: Progress| {
        calls += 1;
        if calls == n {
            set.store(true, Ordering::SeqCst);
        }
    })
}

// ------------------------------------------------------------------------------- confidence

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

/// Seeds 5000 legacy entries (and 20 whose instance is missing), identically on any server.
async fn seed_large(server: &TestRedis, db: &Db) {
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
                raw_cmd::<i64>(
                    &server,
                    redis::cmd("CLIENT")
                        .arg("KILL")
                        .arg("TYPE")
                        .arg("normal")
                        .arg("SKIPME")
                        .arg("yes"),
                );
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

// ------------------------------------------------------------------------------- sorted

fn legacy_episode(project: &str, i: usize, score: f64) -> LegacyEpisode {
    LegacyEpisode {
        project_id: project.into(),
        episode_id: format!("{i:032x}"),
        title: format!("e{i}"),
        score,
        rank: i as i64,
    }
}

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

async fn seed_large_sorted(server: &TestRedis, db: &Db) {
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

// ------------------------------------------------------------------------------- indexes

/// A healthy database: Memory with confidence data, Episodes, Claims, Items.
async fn seed_models(db: &Db) -> (Vec<Memory>, Vec<Episode>) {
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

async fn check_all(db: &Db) -> Vec<IndexReport> {
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
fn summary(r: &IndexReport) -> Vec<(FindingKind, String, String)> {
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
