//! `--dry-run` prints the exact Redis commands a real run sends, and sends no write.
//!
//! Two servers are seeded alike. The dry run goes to the first (watched with `redis-cli
//! monitor`: it receives no write, and its data is unchanged); the real run goes to the second,
//! whose monitor records the commands it received. The printed commands must equal the real
//! run's writes, in order (creation and update times aside), and, executed on the first server,
//! must leave it exactly as the real run left the second.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use common::{catalog_db, json, plant, start, text};
use popoto::testing::{Monitored, TestRedis};
use popoto::{Model, ModelSet};

/// Notes of a tenant.
#[derive(Model, Debug, Clone, PartialEq, Default)]
struct Note {
    #[popoto(key, tenant)]
    org: String,
    #[popoto(key)]
    id: String,
    text: String,
    #[popoto(sorted, partition_by = "org")]
    rank: f64,
}

/// `Note` before `partition_by`: one zset of ranks for every tenant.
#[derive(Model, Debug, Clone, PartialEq, Default)]
#[popoto(name = "Note")]
struct LegacyNote {
    #[popoto(key, tenant)]
    org: String,
    #[popoto(key)]
    id: String,
    text: String,
    #[popoto(sorted)]
    rank: f64,
}

/// Commands that write nothing: reads, and what a client sends to set up its connection.
const NOT_WRITES: &[&str] = &[
    "CLIENT",
    "DBSIZE",
    "ECHO",
    "EXEC",
    "EXISTS",
    "GET",
    "HELLO",
    "HEXISTS",
    "HGET",
    "HGETALL",
    "HKEYS",
    "HLEN",
    "HMGET",
    "HSCAN",
    "INFO",
    "MULTI",
    "PING",
    "SCAN",
    "SCARD",
    "SELECT",
    "SISMEMBER",
    "SMEMBERS",
    "SSCAN",
    "TYPE",
    "ZCARD",
    "ZRANGEBYLEX",
    "ZSCAN",
    "ZSCORE",
];

/// A command: its database and arguments.
type Sent = (u8, Vec<Vec<u8>>);

fn models() -> ModelSet {
    ModelSet::new().with::<Note>()
}

/// The application's binary (the library entry point with its models and a migration).
async fn app(args: &[&str]) -> (u8, String, String) {
    let migrations = vec![popoto_cli::Migration::new(
        "Note.rank by org",
        |admin: popoto::Admin, dry_run| async move {
            admin
                .migrate_sorted_to_partitioned(Note::rank(), dry_run, |_| {})
                .await
        },
    )];
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut argv = vec!["popoto"];
    argv.extend_from_slice(args);
    let code = popoto_cli::run_with(argv, &models(), &migrations, &mut out, &mut err).await;
    (code, text(&out), text(&err))
}

async fn app_ok(args: &[&str]) -> String {
    let (code, out, err) = app(args).await;
    assert_eq!(code, 0, "{args:?}: {err}");
    out
}

/// The generic binary, as a process.
fn generic(url: &str, args: &[&str]) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_popoto"))
        .env("REDIS_URL", url)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running popoto {args:?}: {e}"));
    assert_eq!(
        o.status.code(),
        Some(0),
        "popoto {args:?}: {}",
        text(&o.stderr)
    );
    text(&o.stdout)
}

/// The same tenants and data on a server: acme in database 2 with notes (and an orphan entry;
/// key fields go in name order: `Note:<id>:<org>`),
/// globex on the shared keyspace, initech suspended.
async fn seed(server: &TestRedis) {
    let url = server.url();
    app_ok(&[
        "--url",
        url,
        "tenants",
        "create",
        "acme",
        "--placement",
        "db:2",
    ])
    .await;
    app_ok(&["--url", url, "tenants", "create", "globex"]).await;
    app_ok(&["--url", url, "tenants", "create", "initech"]).await;
    app_ok(&["--url", url, "tenants", "suspend", "initech"]).await;
    let db = catalog_db(url);
    for (t, n) in [("acme", 3), ("globex", 2)] {
        let session = db.tenant(t).unwrap_or_else(|e| panic!("{e}"));
        for i in 0..n {
            session
                .create(Note {
                    id: format!("n{i}"),
                    text: format!("note {i} of {t}"),
                    rank: f64::from(i),
                    ..Default::default()
                })
                .await
                .unwrap_or_else(|e| panic!("create: {e}"));
        }
    }
    plant(server, 2, "$KeyF:Note:org:acme", "Note:ghost:acme");
}

/// The database of a recorded command's backend URL (`redis://host:port/N`).
fn db_of(backend: &str) -> u8 {
    backend
        .rsplit('/')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no database in {backend}"))
}

/// Creation, update and journal times differ between two runs: replaced by `T`.
fn normalized(args: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut out = args.to_vec();
    for i in 0..out.len().saturating_sub(1) {
        if out[i] == b"created" || out[i] == b"updated" {
            out[i + 1] = b"T".to_vec();
        }
    }
    if out.first().map(Vec::as_slice) == Some(b"HSET")
        && out
            .get(1)
            .is_some_and(|k| k.starts_with(b"$PopotoCatalog:run:"))
    {
        if let Some(t) = out.get_mut(3) {
            *t = b"T".to_vec();
        }
    }
    out
}

/// The commands of a dry run's JSON output.
fn printed(out: &str) -> Vec<Sent> {
    let v = json(out);
    assert_eq!(v["dry_run"], true, "{v}");
    let commands: Vec<popoto::RecordedCommand> = serde_json::from_value(v["commands"].clone())
        .unwrap_or_else(|e| panic!("commands of {v}: {e}"));
    commands
        .into_iter()
        .map(|c| (db_of(&c.backend), c.args))
        .collect()
}

/// The writes among what clients sent (scripts that only read left out).
fn writes(lines: &[Monitored], read_only_shas: &[String]) -> Vec<Sent> {
    lines
        .iter()
        .filter(|m| m.client != "lua")
        .filter(|m| !NOT_WRITES.contains(&m.name().as_str()))
        .filter(|m| {
            !(m.name() == "EVALSHA"
                && m.args
                    .get(1)
                    .is_some_and(|sha| read_only_shas.iter().any(|r| r.as_bytes() == sha)))
        })
        .map(|m| (m.db, m.args.clone()))
        .collect()
}

fn same_commands(dry: &[Sent], real: &[Sent]) {
    let norm = |c: &[Sent]| -> Vec<(u8, Vec<String>)> {
        c.iter()
            .map(|(db, a)| (*db, normalized(a).iter().map(|x| text(x)).collect()))
            .collect()
    };
    assert_eq!(
        norm(dry),
        norm(real),
        "printed commands differ from the real run's"
    );
}

/// Runs `commands` on `server`, each in its database.
fn execute(server: &TestRedis, commands: &[Sent]) {
    let mut conns: BTreeMap<u8, redis::Connection> = BTreeMap::new();
    for (db, args) in commands {
        let conn = conns.entry(*db).or_insert_with(|| {
            redis::Client::open(server.url_db(*db))
                .and_then(|c| c.get_connection())
                .unwrap_or_else(|e| panic!("{e}"))
        });
        let mut cmd = redis::Cmd::new();
        for a in args {
            cmd.arg(a.as_slice());
        }
        cmd.query::<redis::Value>(conn)
            .unwrap_or_else(|e| panic!("{}: {e}", text(&args[0])));
    }
}

/// The data of a server, every catalog time shown as `T` (they differ between servers).
fn data(server: &TestRedis) -> BTreeMap<String, String> {
    let mut out = server.snapshot();
    let mut conn = server.raw();
    for (name, content) in out.iter_mut() {
        let Some(key) = name.strip_prefix("0 hash ") else {
            continue;
        };
        if !key.starts_with("$PopotoCatalog:") {
            continue;
        }
        let mut fields: Vec<(String, String)> = redis::cmd("HGETALL")
            .arg(key)
            .query(&mut conn)
            .unwrap_or_else(|e| panic!("HGETALL {key}: {e}"));
        fields.sort();
        for (f, v) in fields.iter_mut() {
            if key.starts_with("$PopotoCatalog:run:") || f == "created" || f == "updated" {
                *v = "T".into();
            }
        }
        *content = format!("{fields:?}");
    }
    out
}

/// Two servers seeded alike, with their script caches loaded (calls go as `EVALSHA`); the SHAs
/// of the scripts that only read.
async fn pair() -> (TestRedis, TestRedis, Vec<String>) {
    let (dry, real) = (start(), start());
    seed(&dry).await;
    seed(&real).await;
    let shas = real.load_scripts();
    dry.load_scripts();
    let read_only = ["select.lua", "project.lua", "window.lua"]
        .iter()
        .map(|n| shas[n].clone())
        .collect();
    (dry, real, read_only)
}

/// Runs `args` as a dry run on `dry` (which must receive no write and keep its data) and for
/// real on `real`; checks that the printed commands are the real run's writes and that,
/// executed on `dry`, they leave it as the real run left `real`. Returns the dry run's output.
async fn compare(
    dry: &TestRedis,
    real: &TestRedis,
    read_only: &[String],
    args: &[&str],
    run: impl AsyncFn(&str, Vec<&str>) -> String,
) -> serde_json::Value {
    let before = dry.snapshot();
    let mut watch = dry.monitor().unwrap_or_else(|e| panic!("{e}"));
    let mut dry_args = args.to_vec();
    dry_args.extend(["--dry-run", "--json"]);
    let out = run(dry.url(), dry_args).await;
    dry.mark("dry-done");
    let seen = watch.until("dry-done");
    assert_eq!(
        writes(&seen, read_only),
        Vec::<Sent>::new(),
        "the dry run wrote"
    );
    assert_eq!(dry.snapshot(), before, "the dry run changed the data");
    let commands = printed(&out);
    assert!(!commands.is_empty(), "{out}");

    let mut watch = real.monitor().unwrap_or_else(|e| panic!("{e}"));
    run(real.url(), args.to_vec()).await;
    real.mark("real-done");
    let sent = writes(&watch.until("real-done"), read_only);
    same_commands(&commands, &sent);

    execute(dry, &commands);
    assert_eq!(
        data(dry),
        data(real),
        "the printed commands did not do what the real run did"
    );
    json(&out)
}

async fn in_app(url: &str, args: Vec<&str>) -> String {
    let mut argv = vec!["--url", url];
    argv.extend(args);
    app_ok(&argv).await
}

#[tokio::test]
async fn catalog_changes_print_what_they_would_send_and_send_nothing() {
    let (dry, real, read_only) = pair().await;
    let generic_run = async |url: &str, args: Vec<&str>| generic(url, &args);
    let out = compare(
        &dry,
        &real,
        &read_only,
        &[
            "tenants",
            "create",
            "newco",
            "--placement",
            "db:4",
            "--meta",
            "plan=gold",
        ],
        generic_run,
    )
    .await;
    assert_eq!(out["result"]["status"], "active", "{out}");
    compare(
        &dry,
        &real,
        &read_only,
        &["tenants", "suspend", "globex"],
        generic_run,
    )
    .await;
    compare(
        &dry,
        &real,
        &read_only,
        &["tenants", "resume", "initech"],
        generic_run,
    )
    .await;
    // The printed form is what redis-cli reads: one command per line after its backend.
    let lines = generic(dry.url(), &["tenants", "suspend", "acme", "--dry-run"]);
    let mut lines = lines.lines();
    assert_eq!(lines.next(), Some(format!("# {}", dry.url()).as_str()));
    let call = lines.next().unwrap_or_else(|| panic!("no command printed"));
    assert!(call.starts_with("EVALSHA "), "{call}");
    assert!(call.contains("$PopotoCatalog:entry:acme"), "{call}");
}

#[tokio::test]
async fn a_destroy_prints_its_tombstone_and_every_deletion_and_sends_none() {
    let (dry, real, read_only) = pair().await;
    let out = compare(
        &dry,
        &real,
        &read_only,
        &["tenants", "destroy", "acme"],
        in_app,
    )
    .await;
    assert_eq!(out["result"]["status"], "destroyed", "{out}");
    assert_eq!(out["result"]["destroyed"]["instances"]["Note"], 3, "{out}");
    // The tombstone on the shared server, then the deletions in acme's database (its change
    // feed's keys last).
    let commands = printed(&out.to_string());
    let dbs: Vec<u8> = commands.iter().map(|(db, _)| *db).collect();
    assert_eq!(
        dbs,
        [0, 2, 2, 2],
        "tombstone, the notes, the orphan entry, the tenant's change feed"
    );
    let orphan = &commands[2].1;
    assert!(
        orphan.iter().any(|a| a == b"Note:ghost:acme"),
        "{:?}",
        text(&orphan.concat())
    );
    // Destroyed on both: nothing of acme is left.
    let left: Vec<String> = data(&dry)
        .keys()
        .filter(|k| k.starts_with("2 "))
        .cloned()
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("dry-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    dir
}

#[tokio::test]
async fn an_import_prints_the_calls_a_real_import_sends() {
    let (dry, real, read_only) = pair().await;
    // An export of globex from a third server.
    let source = start();
    seed(&source).await;
    let file = scratch("import").join("globex.popoto");
    let path = file.to_string_lossy().into_owned();
    app_ok(&["--url", source.url(), "export", "globex", "-o", &path]).await;
    // Into a server whose globex was removed first, so the import writes everything again.
    for s in [&dry, &real] {
        app_ok(&["--url", s.url(), "tenants", "destroy", "globex"]).await;
        app_ok(&["--url", s.url(), "tenants", "create", "globex"]).await;
    }
    let out = compare(
        &dry,
        &real,
        &read_only,
        &["import", "globex", "-i", &path],
        in_app,
    )
    .await;
    assert!(
        out["result"]["records"].as_u64().is_some_and(|n| n > 2),
        "{out}"
    );
    let notes = |s: &TestRedis| {
        let key = "0 set $KeyF:Note:org:globex";
        data(s).get(key).cloned()
    };
    assert!(
        notes(&real).is_some_and(|m| m.contains("n1")),
        "{:?}",
        notes(&real)
    );
}

#[tokio::test]
async fn a_migration_prints_its_page_calls_and_journal_and_sends_none() {
    let (dry, real, read_only) = pair().await;
    // Legacy entries in both backends (acme's database 2, the shared keyspace).
    for s in [&dry, &real] {
        let db = catalog_db(s.url());
        for t in ["acme", "globex"] {
            let session = db.tenant(t).unwrap_or_else(|e| panic!("{e}"));
            for i in 0..2 {
                session
                    .create(LegacyNote {
                        id: format!("old{i}"),
                        rank: f64::from(i),
                        ..Default::default()
                    })
                    .await
                    .unwrap_or_else(|e| panic!("legacy create: {e}"));
            }
        }
    }
    // One backend at a time, so the real run sends in the dry run's order.
    let out = compare(
        &dry,
        &real,
        &read_only,
        &["migrate", "--all", "--run", "r1", "--concurrency", "1"],
        in_app,
    )
    .await;
    let printed = printed(&out.to_string());
    let names: Vec<String> = printed.iter().map(|(_, a)| text(&a[0])).collect();
    assert_eq!(
        names.iter().filter(|n| *n == "EVALSHA").count(),
        2,
        "one page call per backend: {names:?}"
    );
    assert!(names.contains(&"HSET".to_string()), "journal: {names:?}");
    let legacy = "$SortF:Note:rank";
    for s in [&dry, &real] {
        assert!(!data(s).contains_key(&format!("2 zset {legacy}")));
    }
}
