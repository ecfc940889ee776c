//! What the `popoto` tool's tests share: the application's models, running the generic binary
//! as a process and the application's binary through the library entry point.

#![allow(dead_code)]

use std::process::{Command, Output};

use popoto::testing::TestRedis;
use popoto::{Db, Model, ModelSet};

/// An application model: notes of a tenant.
#[derive(Model, Debug, Clone, PartialEq, Default)]
pub struct Note {
    #[popoto(key, tenant)]
    pub org: String,
    #[popoto(key)]
    pub id: String,
    pub text: String,
}

/// Points of a tenant, partitioned by tenant since the last release.
#[derive(Model, Debug, Clone, PartialEq, Default)]
pub struct Score {
    #[popoto(key, tenant)]
    pub org: String,
    #[popoto(key)]
    pub id: String,
    #[popoto(sorted, partition_by = "org")]
    pub points: f64,
}

/// `Score` before `partition_by`: one zset for every tenant.
#[derive(Model, Debug, Clone, PartialEq, Default)]
#[popoto(name = "Score")]
pub struct LegacyScore {
    #[popoto(key, tenant)]
    pub org: String,
    #[popoto(key)]
    pub id: String,
    #[popoto(sorted)]
    pub points: f64,
}

pub fn start() -> TestRedis {
    TestRedis::start().unwrap_or_else(|e| panic!("{e}"))
}

/// A `Db` whose tenants are placed by the tenant catalog at `url`.
pub fn catalog_db(url: &str) -> Db {
    Db::with_registry(
        popoto::TenantRegistry::with_catalog(
            popoto::BackendConfig::new(url),
            std::time::Duration::ZERO,
        )
        .unwrap_or_else(|e| panic!("registry: {e}")),
    )
}

/// Adds `member` to the set `key` in database `db` of `server` (a planted index entry).
pub fn plant(server: &TestRedis, db: u8, key: &str, member: &str) {
    let mut conn = redis::Client::open(server.url_db(db))
        .and_then(|c| c.get_connection())
        .unwrap_or_else(|e| panic!("{e}"));
    redis::cmd("SADD")
        .arg(key)
        .arg(member)
        .exec(&mut conn)
        .unwrap_or_else(|e| panic!("SADD: {e}"));
}

/// Runs the generic binary with `args` on `url` (`None`: no `--url`, no `REDIS_URL`).
pub fn popoto(url: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_popoto"));
    cmd.env_remove("REDIS_URL");
    if let Some(url) = url {
        cmd.env("REDIS_URL", url);
    }
    cmd.args(args)
        .output()
        .unwrap_or_else(|e| panic!("running popoto {args:?}: {e}"))
}

pub fn code(o: &Output) -> i32 {
    o.status
        .code()
        .unwrap_or_else(|| panic!("popoto was killed: {o:?}"))
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs `args` expecting exit `want`; returns stdout.
pub fn expect(url: Option<&str>, args: &[&str], want: i32) -> String {
    let o = popoto(url, args);
    assert_eq!(
        code(&o),
        want,
        "popoto {args:?}\nstdout: {}\nstderr: {}",
        text(&o.stdout),
        text(&o.stderr)
    );
    text(&o.stdout)
}

pub fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

/// The application's own binary: the library entry point with its models.
pub async fn app(args: &[&str]) -> (u8, Vec<u8>, String) {
    app_with(&ModelSet::new().with::<Note>(), args).await
}

/// An application's binary whose models are `models`.
pub async fn app_with(models: &ModelSet, args: &[&str]) -> (u8, Vec<u8>, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut argv = vec!["popoto"];
    argv.extend_from_slice(args);
    let code = popoto_cli::run(argv, models, &mut out, &mut err).await;
    (code, out, text(&err))
}

pub async fn app_ok(args: &[&str]) -> Vec<u8> {
    let (code, out, err) = app(args).await;
    assert_eq!(code, 0, "{args:?}: {err}");
    out
}
