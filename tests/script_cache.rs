//! Writes when Redis loses its script cache (`SCRIPT FLUSH`, a failover to a replica that never
//! ran the scripts): one flush at a varying point of a bulk save, a flush loop from another
//! connection, and a loop that flushes and reloads the scripts (another client's `SCRIPT LOAD`
//! between two queued calls). Every write succeeds, every instance ends with the last value
//! written (hash and index entries agreeing), and nothing is applied out of order or twice.
//!
//! The adversary is a thread on its own connection that runs until the writer signals done (a
//! flag set on drop, so a failing writer stops it too); nothing sleeps to synchronise.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use popoto::testing::{assert_isolated, TestRedis};
use popoto::{Db, Model, Session};

/// Key-partitioned: bulk writes take the batched path (`lua/insert_many.lua`).
#[derive(Model, Debug, Clone, PartialEq, Default)]
struct Ledger {
    #[popoto(key, tenant)]
    tenant: String,
    #[popoto(key)]
    id: String,
    value: i64,
    #[popoto(sorted, partition_by = "tenant")]
    rank: i64,
}

/// Partitioned by a plain field: bulk writes pipeline `lua/apply.lua` batches (`eval_many`).
#[derive(Model, Debug, Clone, PartialEq, Default)]
struct Parcel {
    #[popoto(key, tenant)]
    tenant: String,
    #[popoto(key)]
    id: String,
    region: String,
    value: i64,
    #[popoto(sorted, partition_by("tenant", "region"))]
    rank: i64,
}

/// A confidence field (`lua/confidence.lua`).
#[derive(Model, Debug, Clone, PartialEq, Default)]
struct Fact {
    #[popoto(key, tenant)]
    tenant: String,
    #[popoto(key)]
    name: String,
    #[popoto(
        confidence(initial = 0.5, evidence_cap = 1000),
        partition_by = "tenant"
    )]
    belief: f64,
}

/// The scripts this test's writes send, as the crate sends them, for the adversary that
/// reloads them.
fn scripts() -> Vec<&'static str> {
    [
        "insert_many.lua",
        "apply.lua",
        "create.lua",
        "confidence.lua",
    ]
    .iter()
    .map(|n| popoto_core::testing::script_source(n).unwrap_or_else(|| panic!("{n}")))
    .collect()
}

const TENANT: &str = "acme";
/// Values of the three versions of a row: the first write, then a save of a batch holding
/// each key twice, an intermediate value and (later in the batch) the last one.
const FIRST: i64 = 0;
const MIDDLE: i64 = 1_000_000;
const LAST: i64 = 2_000_000;
/// The adversary's loop bound (it stops as soon as the writer is done; the bound only keeps a
/// broken test from spinning forever, and the test checks the loop did not reach it).
const STORM_LIMIT: u64 = 100_000_000;

fn connect(url: &str) -> redis::Connection {
    redis::Client::open(url)
        .and_then(|c| c.get_connection())
        .unwrap_or_else(|e| panic!("raw connection to {url}: {e}"))
}

fn run_cmd<T: redis::FromRedisValue>(conn: &mut redis::Connection, cmd: &redis::Cmd) -> T {
    cmd.query(conn)
        .unwrap_or_else(|e| panic!("{:?}: {e}", cmd.args_iter().next()))
}

fn script_flush(conn: &mut redis::Connection) {
    run_cmd::<()>(conn, redis::cmd("SCRIPT").arg("FLUSH"));
}

/// How many script calls the server refused with `NOSCRIPT` so far (`INFO errorstats`).
fn noscript_count(conn: &mut redis::Connection) -> u64 {
    let info: String = run_cmd(conn, redis::cmd("INFO").arg("errorstats"));
    info.lines()
        .find_map(|l| l.strip_prefix("errorstat_NOSCRIPT:count="))
        .map(|n| {
            n.trim()
                .parse()
                .unwrap_or_else(|e| panic!("errorstat {n:?}: {e}"))
        })
        .unwrap_or(0)
}

/// Sets the flag when dropped: the writer's end (or its panic) stops the adversary.
struct Done(Arc<AtomicBool>);

impl Drop for Done {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// What the adversary does in its loop.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Storm {
    /// `SCRIPT FLUSH`, again and again.
    Flush,
    /// `SCRIPT FLUSH`, then `SCRIPT LOAD` of every script: a refused call can be followed by
    /// one that runs.
    FlushAndReload,
}

/// Starts the adversary; it returns how many flushes it sent once `done` is set.
fn storm(url: &str, kind: Storm, done: Arc<AtomicBool>) -> JoinHandle<u64> {
    let mut conn = connect(url);
    std::thread::spawn(move || {
        for flushes in 0..STORM_LIMIT {
            if done.load(Ordering::Acquire) {
                return flushes;
            }
            script_flush(&mut conn);
            if kind == Storm::FlushAndReload {
                for s in scripts() {
                    run_cmd::<String>(&mut conn, redis::cmd("SCRIPT").arg("LOAD").arg(s));
                }
            }
        }
        STORM_LIMIT
    })
}

/// Joins the adversary and checks it ran the whole time the writer did.
fn stop(storm: JoinHandle<u64>) -> u64 {
    let flushes = storm
        .join()
        .unwrap_or_else(|_| panic!("the adversary thread panicked"));
    assert!(flushes > 0, "the adversary never flushed");
    assert!(
        flushes < STORM_LIMIT,
        "the adversary stopped before the writer"
    );
    flushes
}

/// The channel on which the writer tells a [`flush_after`] thread that its batch is done.
const DONE_CHANNEL: &str = "script-cache-test:done";

/// Publishes on [`DONE_CHANNEL`] when dropped: the end of a batch (or the writer's panic).
struct Published(String);

impl Drop for Published {
    fn drop(&mut self) {
        let published = redis::Client::open(self.0.as_str())
            .and_then(|c| c.get_connection())
            .and_then(|mut c| {
                redis::cmd("PUBLISH")
                    .arg(DONE_CHANNEL)
                    .arg(1)
                    .query::<u64>(&mut c)
            });
        if let Err(e) = published {
            if !std::thread::panicking() {
                panic!("publish on {DONE_CHANNEL}: {e}");
            }
        }
    }
}

/// Starts a thread that sends one `SCRIPT FLUSH` right after the `events`-th write of `zset`
/// (keyspace notifications: one per `insert_many` call, one per `apply.lua` plan), or
/// returns when the batch is done first. Returns once the thread listens; the thread returns
/// the number of writes seen before its flush.
fn flush_after(url: &str, zset: &str, events: usize) -> JoinHandle<Option<usize>> {
    let mut conn = connect(url);
    let writes = format!("__keyspace@0__:{zset}");
    let (ready, listening) = std::sync::mpsc::channel();
    let flusher = std::thread::spawn(move || {
        let seen = {
            let mut pubsub = conn.as_pubsub();
            pubsub
                .subscribe(&[writes.as_str(), DONE_CHANNEL])
                .unwrap_or_else(|e| panic!("subscribe: {e}"));
            ready
                .send(())
                .unwrap_or_else(|e| panic!("the writer stopped waiting: {e}"));
            let mut seen = 0;
            while seen < events {
                let message = pubsub
                    .get_message()
                    .unwrap_or_else(|e| panic!("keyspace notification: {e}"));
                if message.get_channel_name() == DONE_CHANNEL {
                    return None;
                }
                seen += 1;
            }
            seen
        };
        script_flush(&mut conn);
        Some(seen)
    });
    listening
        .recv()
        .unwrap_or_else(|e| panic!("the flusher did not start listening: {e}"));
    flusher
}

/// One model under test: how its rows are built, named and probed.
trait Subject: Model + Clone + PartialEq + std::fmt::Debug + Send + Sync {
    /// Rows of the save batch per version chunk: the batch alternates chunks of intermediate
    /// and last values, so that a key's last value is written by a later script call than its
    /// intermediate one (a repeated key starts an `insert_many` call; `eval_many` calls hold
    /// 100 plans).
    const CHUNK: usize;
    /// Rows per run.
    const ROWS: usize;
    /// Row `i` holding `version` (its value and sorted score are `version + i`).
    fn row(i: usize, version: i64) -> Self;
    /// Its value, which is also its sorted score.
    fn value(&self) -> i64;
    /// Its instance key.
    fn key(&self) -> String;
    /// Its sorted field's zset (all rows share one partition).
    fn zset() -> String;
}

impl Subject for Ledger {
    const CHUNK: usize = 25;
    const ROWS: usize = 100;
    fn row(i: usize, version: i64) -> Self {
        Ledger {
            tenant: TENANT.into(),
            id: format!("id-{i:05}"),
            value: version + i as i64,
            rank: version + i as i64,
        }
    }
    fn value(&self) -> i64 {
        self.value
    }
    fn key(&self) -> String {
        Ledger::key_of(self.tenant.clone(), self.id.clone()).redis_key()
    }
    fn zset() -> String {
        format!("$SortF:Ledger:rank:{TENANT}")
    }
}

impl Subject for Parcel {
    const CHUNK: usize = 100;
    const ROWS: usize = 100;
    fn row(i: usize, version: i64) -> Self {
        Parcel {
            tenant: TENANT.into(),
            id: format!("id-{i:05}"),
            region: "eu".into(),
            value: version + i as i64,
            rank: version + i as i64,
        }
    }
    fn value(&self) -> i64 {
        self.value
    }
    fn key(&self) -> String {
        Parcel::key_of(self.tenant.clone(), self.id.clone()).redis_key()
    }
    fn zset() -> String {
        format!("$SortF:Parcel:rank:{TENANT}:eu")
    }
}

/// The save batch: chunks of intermediate values, each followed by the same keys' last values.
fn second_write<M: Subject>(n: usize) -> Vec<M> {
    let mut out = Vec::with_capacity(2 * n);
    for start in (0..n).step_by(M::CHUNK) {
        let end = (start + M::CHUNK).min(n);
        out.extend((start..end).map(|i| M::row(i, MIDDLE)));
        out.extend((start..end).map(|i| M::row(i, LAST)));
    }
    out
}

/// Every one of the `n` rows holds its last value, in its hash and in every index: the
/// tenant's rows read back, the zset scores, `$Class` and the tenant's value set.
async fn assert_last_values<M: Subject>(
    conn: &mut redis::Connection,
    tenant: &Session,
    n: usize,
    what: &str,
) {
    let rows = tenant
        .query::<M>()
        .fetch()
        .await
        .unwrap_or_else(|e| panic!("{what}: fetch: {e}"));
    assert_eq!(rows.len(), n, "{what}: rows read back");
    let expected: HashMap<String, M> = (0..n)
        .map(|i| M::row(i, LAST))
        .map(|row| (row.key(), row))
        .collect();
    for row in &rows {
        assert_eq!(
            Some(row),
            expected.get(&row.key()),
            "{what}: a row read back"
        );
    }
    let scores: Vec<(String, i64)> = run_cmd(
        conn,
        redis::cmd("ZRANGE")
            .arg(M::zset())
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES"),
    );
    assert_eq!(scores.len(), n, "{what}: members of {}", M::zset());
    for (member, score) in scores {
        assert_eq!(
            Some(score),
            expected.get(&member).map(M::value),
            "{what}: score of {member} in {}",
            M::zset()
        );
    }
    let name = M::META.name;
    for set in [
        format!("$Class:{name}"),
        format!("$KeyF:{name}:tenant:{TENANT}"),
    ] {
        let members: u64 = run_cmd(conn, redis::cmd("SCARD").arg(&set));
        assert_eq!(members, n as u64, "{what}: members of {set}");
    }
}

/// One run: `n` rows created, then saved in a batch holding each key twice (intermediate then
/// last value); fails on any error and checks every row ends with its last value.
async fn write_twice<M: Subject>(conn: &mut redis::Connection, tenant: &Session, what: &str) {
    let n = M::ROWS;
    run_cmd::<()>(conn, &redis::cmd("FLUSHDB"));
    let created = tenant
        .create_many((0..n).map(|i| M::row(i, FIRST)).collect())
        .await
        .unwrap_or_else(|e| panic!("{what}: create_many: {e}"));
    assert_eq!(created.len(), n, "{what}: created");
    let saved = tenant
        .save_many(second_write::<M>(n))
        .await
        .unwrap_or_else(|e| panic!("{what}: save_many: {e}"));
    assert_eq!(saved.len(), 2 * n, "{what}: saved");
    assert_last_values::<M>(conn, tenant, n, what).await;
}

/// `runs` runs of [`write_twice`], each with one `SCRIPT FLUSH` at a different point of the
/// save batch: after its first `k` writes of the model's zset, `k` spread from 0 (before the
/// batch) to `events` (after it). Returns in how many runs the flush came before the
/// batch's last write.
async fn one_flush_per_run<M: Subject>(
    server: &TestRedis,
    db: &Db,
    runs: usize,
    events: usize,
) -> usize {
    let mut conn = connect(server.url());
    run_cmd::<()>(
        &mut conn,
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("notify-keyspace-events")
            .arg("Kz"),
    );
    let tenant = db.tenant(TENANT).unwrap_or_else(|e| panic!("{e}"));
    let n = M::ROWS;
    let mut mid_batch = 0;
    for run in 0..runs {
        let what = format!("{} run {run}", M::META.name);
        run_cmd::<()>(&mut conn, &redis::cmd("FLUSHDB"));
        tenant
            .create_many((0..n).map(|i| M::row(i, FIRST)).collect())
            .await
            .unwrap_or_else(|e| panic!("{what}: create_many: {e}"));
        let flusher = flush_after(server.url(), &M::zset(), run * 37 % (events + 1));
        let saved = {
            let _done = Published(server.url().to_owned());
            tenant.save_many(second_write::<M>(n)).await
        };
        let seen = flusher
            .join()
            .unwrap_or_else(|_| panic!("{what}: the flusher panicked"));
        let saved = saved.unwrap_or_else(|e| panic!("{what}: save_many: {e}"));
        assert_eq!(saved.len(), 2 * n, "{what}: saved");
        mid_batch += usize::from(seen.is_some_and(|k| k < events));
        assert_last_values::<M>(&mut conn, &tenant, n, &what).await;
    }
    assert_isolated::<M>(db).await;
    mid_batch
}

/// (a) One `SCRIPT FLUSH` during a bulk save, at a varying point (100 runs per write path):
/// every save succeeds and every instance ends with the last value written, hash and indexes
/// agreeing.
#[tokio::test]
async fn one_flush_during_a_bulk_save_loses_and_reorders_nothing() {
    let server = TestRedis::start().unwrap_or_else(|e| panic!("{e}"));
    let db = server.db().await;
    // Ledger's batch is 5 `insert_many` calls (one ZADD each), Parcel's 200 plans.
    let batched = one_flush_per_run::<Ledger>(&server, &db, 100, 5).await;
    let pipelined = one_flush_per_run::<Parcel>(&server, &db, 100, 200).await;
    // The runs exercised what they claim to: most flushes came before the batch's end.
    assert!(
        batched >= 80,
        "{batched} of 100 flushes landed in the batch"
    );
    assert!(
        pipelined >= 80,
        "{pipelined} of 100 flushes landed in the batch"
    );
}

/// `runs` runs of [`write_twice`] for both write paths while `kind` rages on another
/// connection; returns how many calls the server refused with `NOSCRIPT` meanwhile.
async fn under_storm(server: &TestRedis, db: &Db, kind: Storm, runs: usize) -> u64 {
    let mut conn = connect(server.url());
    let tenant = db.tenant(TENANT).unwrap_or_else(|e| panic!("{e}"));
    let refused_before = noscript_count(&mut conn);
    let done = Arc::new(AtomicBool::new(false));
    let adversary = storm(server.url(), kind, done.clone());
    {
        let _done = Done(done);
        for run in 0..runs {
            let what = format!("{kind:?} run {run}");
            write_twice::<Ledger>(&mut conn, &tenant, &format!("Ledger {what}")).await;
            write_twice::<Parcel>(&mut conn, &tenant, &format!("Parcel {what}")).await;
        }
    }
    stop(adversary);
    assert_isolated::<Ledger>(db).await;
    assert_isolated::<Parcel>(db).await;
    noscript_count(&mut conn) - refused_before
}

/// (b) `SCRIPT FLUSH` in a loop from another connection throughout 100 runs of bulk creates
/// and saves: every one succeeds and ends with the last values.
#[tokio::test]
async fn bulk_writes_succeed_while_the_script_cache_is_flushed_in_a_loop() {
    let server = TestRedis::start().unwrap_or_else(|e| panic!("{e}"));
    let db = server.db().await;
    let refused = under_storm(&server, &db, Storm::Flush, 100).await;
    assert!(refused > 0, "no call was refused: the flushes never hit");
}

/// (d) The loop also reloads the scripts after each flush, so a call refused with `NOSCRIPT`
/// can be followed by a later one of the same batch that runs: resending the refused one then
/// would apply an intermediate value after the last one. Every instance ends with its last.
#[tokio::test]
async fn bulk_writes_stay_in_order_while_the_scripts_are_flushed_and_reloaded() {
    let server = TestRedis::start().unwrap_or_else(|e| panic!("{e}"));
    let db = server.db().await;
    let refused = under_storm(&server, &db, Storm::FlushAndReload, 100).await;
    assert!(refused > 0, "no call was refused: the flushes never hit");
}

/// (c) Single-instance create, save, delete, a bulk delete and confidence updates under the
/// flush loop: all succeed, and the data is what they wrote.
#[tokio::test]
async fn single_writes_and_confidence_updates_succeed_while_the_script_cache_is_flushed() {
    const N: usize = 300;
    let server = TestRedis::start().unwrap_or_else(|e| panic!("{e}"));
    let db = server.db().await;
    let mut conn = connect(server.url());
    let tenant = db.tenant(TENANT).unwrap_or_else(|e| panic!("{e}"));
    let refused_before = noscript_count(&mut conn);
    let fact = tenant
        .create(Fact {
            tenant: TENANT.into(),
            name: "sky".into(),
            belief: 0.5,
        })
        .await
        .unwrap_or_else(|e| panic!("create fact: {e}"));
    let belief = tenant
        .confidence(&fact, Fact::belief())
        .unwrap_or_else(|e| panic!("{e}"));
    let done = Arc::new(AtomicBool::new(false));
    let adversary = storm(server.url(), Storm::Flush, done.clone());
    {
        let _done = Done(done);
        for i in 0..N {
            let created = tenant
                .create(Ledger::row(i, FIRST))
                .await
                .unwrap_or_else(|e| panic!("create {i}: {e}"));
            tenant
                .save(&Ledger::row(i, LAST))
                .await
                .unwrap_or_else(|e| panic!("save {i}: {e}"));
            if i % 2 == 1 {
                let deleted = tenant
                    .delete(&created)
                    .await
                    .unwrap_or_else(|e| panic!("delete {i}: {e}"));
                assert!(deleted, "delete {i}: the instance was there");
            }
            let state = belief
                .update(1.0)
                .await
                .unwrap_or_else(|e| panic!("confidence update {i}: {e}"));
            assert_eq!(state.evidence_count as usize, i + 1, "update {i}");
            tenant
                .save(&Parcel::row(i, LAST))
                .await
                .unwrap_or_else(|e| panic!("save parcel {i}: {e}"));
        }
        let parcels: Vec<_> = (0..N)
            .filter(|i| i % 3 == 0)
            .map(|i| Parcel::key_of(TENANT.to_owned(), Parcel::row(i, LAST).id))
            .collect();
        let deleted = tenant
            .delete_many(&parcels)
            .await
            .unwrap_or_else(|e| panic!("delete_many: {e}"));
        assert_eq!(deleted, parcels.len() as u64, "delete_many");
    }
    stop(adversary);
    let ledgers = tenant
        .query::<Ledger>()
        .fetch()
        .await
        .unwrap_or_else(|e| panic!("fetch: {e}"));
    let mut ids: Vec<&str> = ledgers.iter().map(|l| l.id.as_str()).collect();
    ids.sort_unstable();
    let kept: Vec<String> = (0..N)
        .filter(|i| i % 2 == 0)
        .map(|i| Ledger::row(i, LAST).id)
        .collect();
    assert_eq!(ids, kept.iter().map(String::as_str).collect::<Vec<_>>());
    for l in &ledgers {
        assert_eq!(*l, Ledger::row(index_of(&l.id), LAST), "ledger {}", l.id);
    }
    let parcels = tenant
        .query::<Parcel>()
        .count()
        .await
        .unwrap_or_else(|e| panic!("count: {e}"));
    assert_eq!(parcels, N - N.div_ceil(3), "parcels left");
    let refused = noscript_count(&mut conn) - refused_before;
    assert!(refused > 0, "no call was refused: the flushes never hit");
    assert_isolated::<Ledger>(&db).await;
    assert_isolated::<Parcel>(&db).await;
    assert_isolated::<Fact>(&db).await;
}

/// The row number in an id built by `Subject::row`.
fn index_of(id: &str) -> usize {
    id.strip_prefix("id-")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("id {id}"))
}
