//! Shared test models and helpers.
#![allow(dead_code)]

pub mod faults;

use popoto::testing::TestRedis;
use popoto::{Db, Error, Model, TenantId};

/// Episodes of a project: tenant key, auto key, a per-tenant sorted score and a global rank.
#[derive(Model, Debug, Clone, PartialEq, Default)]
pub struct Episode {
    #[popoto(key, tenant)]
    pub project_id: String,
    #[popoto(auto_key)]
    pub episode_id: String,
    pub title: String,
    #[popoto(sorted, partition_by = "project_id")]
    pub score: f64,
    #[popoto(sorted)]
    pub rank: i64,
}

/// Items with a unique sku and a sorted level partitioned by tenant and a plain region field.
#[derive(Model, Debug, Clone, PartialEq, Default)]
pub struct Item {
    #[popoto(key, tenant)]
    pub tenant: String,
    #[popoto(unique_key)]
    pub sku: String,
    pub region: String,
    #[popoto(sorted, partition_by("tenant", "region"))]
    pub level: i64,
    pub note: Option<String>,
}

/// Members of an organisation: an e-mail unique within the organisation (`per_tenant`).
#[derive(Model, Debug, Clone, PartialEq, Default)]
pub struct Member {
    #[popoto(key, tenant)]
    pub org: String,
    #[popoto(auto_key)]
    pub id: String,
    #[popoto(unique_key, per_tenant)]
    pub email: String,
    pub name: String,
}

/// A versioned page: saves of a stale copy are refused.
#[derive(Model, Debug, Clone, PartialEq, Default)]
pub struct Page {
    #[popoto(key, tenant)]
    pub org: String,
    #[popoto(key)]
    pub slug: String,
    pub body: String,
    #[popoto(version)]
    pub version: u64,
}

/// Tickets expire a day after each write, or at a time of their own (`expire_at`).
#[derive(Model, Debug, Clone, PartialEq, Default)]
#[popoto(ttl = 86400)]
pub struct Ticket {
    #[popoto(key, tenant)]
    pub org: String,
    #[popoto(key)]
    pub id: String,
    #[popoto(sorted, partition_by = "org")]
    pub at: i64,
    #[popoto(expire_at)]
    pub expires: Option<chrono::DateTime<chrono::Utc>>,
}

/// An untenanted model without key fields: Popoto's hidden `_auto_key`.
#[derive(Model, Debug, Clone, PartialEq, Default)]
pub struct Note {
    pub text: String,
    pub stars: u8,
}

/// Starts a private server.
pub fn start_server() -> TestRedis {
    TestRedis::start().unwrap_or_else(|e| panic!("{e}"))
}

/// Starts a private server and connects a `Db` to it.
pub async fn setup() -> (TestRedis, Db) {
    let server = start_server();
    let db = server.db().await;
    (server, db)
}

/// A `Db` on `server` whose calls all go on the shared lanes: a `CLIENT KILL` between two calls
/// then fails the next one, as tests that cut a run that way need (the solo connection is
/// replaced before it is used again, `connections.rs`).
pub fn lanes_only(server: &TestRedis) -> Db {
    let mut config = popoto::BackendConfig::new(server.url());
    config.solo_connection = false;
    Db::with_config(config).unwrap_or_else(|e| panic!("{e}"))
}

/// A configuration of `url` with 300 ms timeouts, so that calls to a server that is down fail
/// fast.
pub fn fast_failing(url: &str) -> popoto::BackendConfig {
    let mut c = popoto::BackendConfig::new(url);
    c.connect_timeout = std::time::Duration::from_millis(300);
    c.response_timeout = std::time::Duration::from_millis(300);
    c
}

/// A current-thread runtime, for tests that drive async code from synchronous code (a
/// proptest runner, a subscriber installed for the whole test).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"))
}

/// A valid tenant id (an invalid one panics naming it).
pub fn tid(s: &str) -> TenantId {
    TenantId::new(s).unwrap_or_else(|e| panic!("tenant id {s:?}: {e}"))
}

/// Proptest's configuration for `cases` cases, without failure persistence files.
pub fn proptest_config(cases: u32) -> proptest::test_runner::Config {
    proptest::test_runner::Config {
        cases,
        failure_persistence: None,
        ..proptest::test_runner::Config::default()
    }
}

/// Runs `cmd` (described as `what`) on `conn`; an error panics naming the command, the server
/// and its log.
fn query<T: redis::FromRedisValue>(
    server: &TestRedis,
    conn: &mut redis::Connection,
    what: &str,
    cmd: &redis::Cmd,
) -> T {
    cmd.query(conn).unwrap_or_else(|e| {
        panic!(
            "{what} on {}: {e}\n--- server log ---\n{}",
            server.url(),
            server.log()
        )
    })
}

/// Every key on the server, sorted.
pub fn all_keys(server: &TestRedis) -> Vec<String> {
    let mut keys: Vec<String> = query(
        server,
        &mut server.raw(),
        "KEYS *",
        redis::cmd("KEYS").arg("*"),
    );
    keys.sort();
    keys
}

/// Members of a set, sorted.
pub fn smembers(server: &TestRedis, key: &str) -> Vec<String> {
    let what = format!("SMEMBERS {key}");
    let mut m: Vec<String> = query(
        server,
        &mut server.raw(),
        &what,
        redis::cmd("SMEMBERS").arg(key),
    );
    m.sort();
    m
}

/// Members of a zset with scores, by score.
pub fn zrange(server: &TestRedis, key: &str) -> Vec<(String, f64)> {
    let what = format!("ZRANGE {key} 0 -1 WITHSCORES");
    query(
        server,
        &mut server.raw(),
        &what,
        redis::cmd("ZRANGE")
            .arg(key)
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES"),
    )
}

/// A hash as (field, raw bytes), sorted by field.
pub fn hgetall(server: &TestRedis, key: &str) -> Vec<(String, Vec<u8>)> {
    let what = format!("HGETALL {key}");
    let mut h: Vec<(String, Vec<u8>)> = query(
        server,
        &mut server.raw(),
        &what,
        redis::cmd("HGETALL").arg(key),
    );
    h.sort();
    h
}

/// HLEN of `key`.
pub fn hlen(server: &TestRedis, key: &str) -> u64 {
    raw_cmd(server, redis::cmd("HLEN").arg(key))
}

/// Runs a raw command on the server.
pub fn raw_cmd<T: redis::FromRedisValue>(server: &TestRedis, cmd: &redis::Cmd) -> T {
    query(server, &mut server.raw(), "a raw command", cmd)
}

/// Commands the server has run of `name` (`INFO commandstats`; scripts' commands included).
pub fn calls(server: &TestRedis, name: &str) -> u64 {
    let info: String = raw_cmd(server, redis::cmd("INFO").arg("commandstats"));
    // Redis lists only the commands it has run: absent is 0 calls.
    info.lines()
        .find(|l| l.starts_with(&format!("cmdstat_{name}:")))
        .map_or(0, |l| {
            l.split("calls=")
                .nth(1)
                .and_then(|s| s.split(',').next())
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("no call count in {l:?}"))
        })
}

/// Sets one raw hash field on the server.
pub fn hset(server: &TestRedis, key: &str, field: &[u8], value: &[u8]) {
    raw_cmd::<i64>(server, redis::cmd("HSET").arg(key).arg(field).arg(value));
}

/// Creates an episode titled `title` through `tenant`'s handle (whose errors it returns, so a
/// caller can expect a refusal).
pub async fn write_episode(db: &Db, tenant: &str, title: &str) -> Result<(), Error> {
    db.tenant(tenant)?
        .create(episode("", title, 0.5, 1))
        .await
        .map(drop)
}

/// The number of `tenant`'s episodes (or why it cannot be read).
pub async fn count_episodes(db: &Db, tenant: &str) -> Result<usize, Error> {
    db.tenant(tenant)?.query::<Episode>().count().await
}

/// Creates `n` episodes of `tenant` in bulk: titles `<tenant>-<i>`, scores `i / 4` (ties of
/// four), ranks `i % 5`.
pub async fn seed_episodes(db: &Db, tenant: &str, n: usize) {
    let t = db.tenant(tenant).unwrap_or_else(|e| panic!("{e}"));
    let eps: Vec<Episode> = (0..n)
        .map(|i| episode("", &format!("{tenant}-{i}"), (i / 4) as f64, (i % 5) as i64))
        .collect();
    t.create_many(eps)
        .await
        .unwrap_or_else(|e| panic!("seed {tenant}: {e}"));
}

/// An episode of `project` (the tenant field is filled by a tenant handle when left empty).
pub fn episode(project: &str, title: &str, score: f64, rank: i64) -> Episode {
    Episode {
        project_id: project.into(),
        title: title.into(),
        score,
        rank,
        ..Default::default()
    }
}

/// Popoto's Memory: a unique key and a confidence field partitioned by tenant.
#[derive(Model, Debug, Clone, PartialEq, Default)]
pub struct Memory {
    #[popoto(key, tenant)]
    pub project: String,
    #[popoto(unique_key)]
    pub key: String,
    pub content: String,
    #[popoto(confidence(initial = 0.5, evidence_cap = 20), partition_by = "project")]
    pub certainty: f64,
}

/// A confidence field without partition (one companion hash for all tenants), odd parameters.
#[derive(Model, Debug, Clone, PartialEq, Default)]
pub struct Belief {
    #[popoto(key, tenant)]
    pub owner: String,
    #[popoto(key)]
    pub name: String,
    #[popoto(confidence(initial = 0.25, evidence_cap = 3))]
    pub strength: f64,
}

/// A confidence field partitioned by a plain field that can change on save.
#[derive(Model, Debug, Clone, PartialEq, Default)]
pub struct Claim {
    #[popoto(key, tenant)]
    pub project: String,
    #[popoto(key)]
    pub id: String,
    pub topic: String,
    #[popoto(confidence, partition_by = "topic")]
    pub belief: f64,
}

/// A confidence field partitioned by two fields: Popoto's unescaped segments are ambiguous.
#[derive(Model, Debug, Clone, PartialEq, Default)]
pub struct Poll {
    #[popoto(key, tenant)]
    pub project: String,
    #[popoto(key)]
    pub id: String,
    pub region: String,
    #[popoto(confidence, partition_by("project", "region"))]
    pub trust: f64,
}

/// The whole database as text, byte for byte (hash fields, set members, zset scores).
pub fn dump(server: &TestRedis) -> std::collections::BTreeMap<String, String> {
    let mut conn = server.raw();
    let keys: Vec<Vec<u8>> = query(server, &mut conn, "KEYS *", redis::cmd("KEYS").arg("*"));
    let mut out = std::collections::BTreeMap::new();
    for k in keys {
        let name = String::from_utf8_lossy(&k).into_owned();
        let ty: String = query(
            server,
            &mut conn,
            &format!("TYPE {name}"),
            redis::cmd("TYPE").arg(&k),
        );
        let content = match ty.as_str() {
            "hash" => {
                let mut h: Vec<(Vec<u8>, Vec<u8>)> = query(
                    server,
                    &mut conn,
                    &format!("HGETALL {name}"),
                    redis::cmd("HGETALL").arg(&k),
                );
                h.sort();
                format!("{h:?}")
            }
            "set" => {
                let mut m: Vec<Vec<u8>> = query(
                    server,
                    &mut conn,
                    &format!("SMEMBERS {name}"),
                    redis::cmd("SMEMBERS").arg(&k),
                );
                m.sort();
                format!("{m:?}")
            }
            "zset" => {
                let z: Vec<(Vec<u8>, String)> = query(
                    server,
                    &mut conn,
                    &format!("ZRANGE {name} 0 -1 WITHSCORES"),
                    redis::cmd("ZRANGE")
                        .arg(&k)
                        .arg(0)
                        .arg(-1)
                        .arg("WITHSCORES"),
                );
                format!("{z:?}")
            }
            other => format!("<{other}>"),
        };
        out.insert(format!("{ty} {name}"), content);
    }
    out
}

/// Registers `tenant` as a lazy tenant whose build waits: its factory signals the returned
/// receiver when it starts, then opens a backend of `url` once the returned gate is notified.
pub fn register_gated(
    registry: &popoto::TenantRegistry,
    tenant: &str,
    url: String,
) -> (
    tokio::sync::oneshot::Receiver<()>,
    std::sync::Arc<tokio::sync::Notify>,
) {
    let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
    let started_tx = std::sync::Mutex::new(Some(started_tx));
    let release = std::sync::Arc::new(tokio::sync::Notify::new());
    let gate = release.clone();
    registry.register_lazy(&tid(tenant), move |_t| {
        if let Some(tx) = started_tx.lock().ok().and_then(|mut g| g.take()) {
            let _ = tx.send(());
        }
        let gate = gate.clone();
        let url = url.clone();
        async move {
            gate.notified().await;
            popoto::Backend::new(popoto::BackendConfig::new(url))
        }
    });
    (started_rx, release)
}

/// Creates consumer group `g` on stream `jobs` through `backend`, then spawns a blocking
/// `XREADGROUP` of it (60 s) on a dedicated connection: the task ends when `jobs` gets an entry.
pub async fn spawn_blocking_read(
    backend: &popoto::Backend,
) -> tokio::task::JoinHandle<popoto::Result<redis::Value>> {
    let mut group = redis::cmd("XGROUP");
    group
        .arg("CREATE")
        .arg("jobs")
        .arg("g")
        .arg("$")
        .arg("MKSTREAM");
    backend
        .query::<()>("xgroup", "-", &group)
        .await
        .unwrap_or_else(|e| panic!("XGROUP CREATE: {e}"));
    let backend = backend.clone();
    tokio::spawn(async move {
        let mut read = redis::cmd("XREADGROUP");
        read.arg("GROUP")
            .arg("g")
            .arg("c")
            .arg("BLOCK")
            .arg(60_000)
            .arg("STREAMS")
            .arg("jobs")
            .arg(">");
        backend
            .query_blocking::<redis::Value>("xreadgroup", "-", &read)
            .await
    })
}
