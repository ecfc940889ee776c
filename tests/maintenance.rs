//! Maintenance: partition migrations of confidence and sorted fields, index checks and
//! rebuilds, tenant-isolation audits. Every test starts its own private redis-server.
//!
//! This file holds the helpers the tests share (the legacy models are in
//! `tests/legacy_common/`); the tests are modules in `tests/maintenance_cases/`, one per job.

mod legacy_common;
mod support;

#[path = "maintenance_cases/confidence.rs"]
mod confidence;
#[path = "maintenance_cases/indexes.rs"]
mod indexes;
#[path = "maintenance_cases/resume.rs"]
mod resume;
#[path = "maintenance_cases/sorted.rs"]
mod sorted;

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

use legacy_common::*;
use support::*;

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

fn legacy_episode(project: &str, i: usize, score: f64) -> LegacyEpisode {
    LegacyEpisode {
        project_id: project.into(),
        episode_id: format!("{i:032x}"),
        title: format!("e{i}"),
        score,
        rank: i as i64,
    }
}
