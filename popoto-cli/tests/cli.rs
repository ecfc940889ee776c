//! The `popoto` tool end to end against real redis-servers: the generic binary (run as a
//! process) manages the catalog and refuses what needs models with exit code 2; the library
//! entry point an application calls with its models exports, imports, audits and destroys.
//! Exit codes follow popoto-transfer's contract; credentials are never printed.

mod common;

use std::path::PathBuf;

use common::*;
use popoto::testing::TestRedis;
use popoto::{Db, ModelSet};

#[test]
fn the_generic_binary_manages_the_catalog() {
    let server = start();
    let url = Some(server.url());
    let created = expect(
        url,
        &[
            "tenants",
            "create",
            "acme",
            "--placement",
            "db:3",
            "--meta",
            "plan=gold",
            "--json",
        ],
        0,
    );
    let created = json(&created);
    assert_eq!(created["status"], "active");
    assert_eq!(created["placement"], serde_json::json!({"database": 3}));
    assert_eq!(created["metadata"]["plan"], "gold");
    expect(url, &["tenants", "create", "globex"], 0);
    expect(url, &["tenants", "suspend", "globex"], 0);

    let listed = json(&expect(url, &["tenants", "list", "--json"], 0));
    let ids: Vec<&str> = listed["entries"]
        .as_array()
        .unwrap_or_else(|| panic!("{listed}"))
        .iter()
        .filter_map(|e| e["id"].as_str())
        .collect();
    assert_eq!(ids, ["acme", "globex"]);
    let suspended = json(&expect(
        url,
        &["tenants", "list", "--status", "suspended", "--json"],
        0,
    ));
    assert_eq!(suspended["entries"][0]["id"], "globex");
    assert_eq!(suspended["entries"].as_array().map(Vec::len), Some(1));
    let page = json(&expect(
        url,
        &["tenants", "list", "--limit", "1", "--json"],
        0,
    ));
    assert_eq!(page["next"], "acme");
    let table = expect(url, &["tenants", "list"], 0);
    assert!(table.contains("globex\tsuspended\tshared"), "{table}");
    let shown = json(&expect(url, &["tenants", "show", "globex", "--json"], 0));
    assert_eq!(shown["status"], "suspended");
    expect(url, &["tenants", "resume", "globex"], 0);

    // Operational failures: 1; usage errors: 2.
    expect(url, &["tenants", "create", "acme"], 1);
    expect(url, &["tenants", "show", "nobody"], 1);
    expect(url, &["tenants", "create", "x", "--placement", "moon"], 2);
    expect(url, &["tenants", "list", "--status", "sleeping"], 2);
    expect(url, &["tenants", "frobnicate"], 2);
    expect(None, &["tenants", "list"], 2);
    // What needs the application's models is refused by the generic binary.
    for args in [
        &["export", "acme"][..],
        &["import", "acme"],
        &["audit"],
        &["tenants", "destroy", "acme"],
    ] {
        let o = popoto(url, args);
        assert_eq!(code(&o), 2, "{args:?}: {}", text(&o.stderr));
        assert!(text(&o.stderr).contains("models"), "{}", text(&o.stderr));
    }
    let destroyed = json(&expect(
        url,
        &["tenants", "destroy", "acme", "--keep-data", "--json"],
        0,
    ));
    assert_eq!(destroyed["status"], "destroyed");
    expect(url, &["tenants", "suspend", "acme"], 1);
    // Per-backend stats need no model: database 0 (globex) and database 3 (acme, destroyed:
    // not counted).
    let mut conn = server.raw();
    redis::cmd("SET")
        .arg("somekey")
        .arg("x")
        .exec(&mut conn)
        .unwrap_or_else(|e| panic!("SET: {e}"));
    let stats = json(&expect(url, &["stats", "--json"], 0));
    let backends = stats["backends"]
        .as_array()
        .unwrap_or_else(|| panic!("{stats}"));
    assert_eq!(backends.len(), 1, "{stats}");
    assert_eq!(backends[0]["tenants"], 1);
    let dbsize: u64 = redis::cmd("DBSIZE")
        .query(&mut conn)
        .unwrap_or_else(|e| panic!("DBSIZE: {e}"));
    assert_eq!(backends[0]["keys"].as_u64(), Some(dbsize));
    assert!(backends[0]["used_memory_bytes"]
        .as_u64()
        .is_some_and(|n| n > 0));
    assert_eq!(
        stats["tenants"].as_array().map(Vec::len),
        Some(0),
        "no models, no counts"
    );
    // A server that is not there: an operational failure.
    expect(Some("redis://127.0.0.1:1/0"), &["tenants", "list"], 1);
    // --help is not an error.
    assert!(expect(None, &["--help"], 0).contains("tenants"));
}

#[test]
fn corrupt_entries_complete_with_exit_3_and_secrets_are_never_printed() {
    let server = start();
    let url = Some(server.url());
    let secret_url = "server:redis://admin:hunter2-pw@10.1.2.3:6380/0";
    let out = expect(
        url,
        &["tenants", "create", "vault", "--placement", secret_url],
        0,
    );
    assert!(out.contains("10.1.2.3"), "{out}");
    expect(url, &["tenants", "create", "fine"], 0);
    let mut conn = server.raw();
    redis::cmd("HSET")
        .arg("$PopotoCatalog:entry:fine")
        .arg("version")
        .arg("oops")
        .exec(&mut conn)
        .unwrap_or_else(|e| panic!("HSET: {e}"));
    let outputs = [
        popoto(url, &["tenants", "list"]),
        popoto(url, &["tenants", "list", "--json"]),
        popoto(url, &["tenants", "show", "vault"]),
        popoto(url, &["tenants", "show", "vault", "--json"]),
        // A dry run prints the command a real run sends, the password hidden.
        popoto(
            url,
            &[
                "tenants",
                "create",
                "vault2",
                "--placement",
                secret_url,
                "--dry-run",
            ],
        ),
        popoto(
            url,
            &[
                "tenants",
                "create",
                "vault2",
                "--placement",
                secret_url,
                "--dry-run",
                "--json",
            ],
        ),
        // A bad placement that holds a password is refused without repeating it.
        popoto(
            url,
            &[
                "tenants",
                "create",
                "y",
                "--placement",
                "server:hunter2-pw not a url",
            ],
        ),
    ];
    for o in &outputs {
        let all = format!("{}{}", text(&o.stdout), text(&o.stderr));
        assert!(!all.contains("hunter2-pw"), "{all}");
    }
    assert_eq!(code(&outputs[0]), 3, "{}", text(&outputs[0].stderr));
    assert!(
        text(&outputs[0].stderr).contains("$PopotoCatalog:entry:fine"),
        "{}",
        text(&outputs[0].stderr)
    );
    let listed = json(&text(&outputs[1].stdout));
    assert_eq!(listed["entries"][0]["id"], "vault");
    assert_eq!(listed["invalid"].as_array().map(Vec::len), Some(1));
    // The dry runs printed the catalog call, its placement with the user hidden.
    for o in &outputs[4..6] {
        assert_eq!(code(o), 0, "{}", text(&o.stderr));
        assert!(
            text(&o.stdout).contains("server:redis://***@10.1.2.3:6380/0"),
            "{}",
            text(&o.stdout)
        );
    }
    assert_eq!(code(&outputs[6]), 2);
}

async fn notes(db: &Db, tenant: &str) -> usize {
    db.tenant(tenant)
        .unwrap_or_else(|e| panic!("{e}"))
        .query::<Note>()
        .count()
        .await
        .unwrap_or_else(|e| panic!("count: {e}"))
}

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("cli-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    dir
}

#[tokio::test]
async fn an_application_binary_exports_imports_audits_and_destroys() {
    let server = start();
    let other = start();
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
    let db = catalog_db(url);
    let acme = db.tenant("acme").unwrap_or_else(|e| panic!("{e}"));
    for i in 0..3 {
        acme.create(Note {
            id: format!("n{i}"),
            text: "hello".into(),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("create: {e}"));
    }

    // Export to a file, import on another server: the same notes.
    let file = scratch("export").join("acme.popoto");
    let path = file.to_string_lossy().into_owned();
    let summary = app_ok(&["--url", url, "--json", "export", "acme", "-o", &path]).await;
    assert_eq!(
        json(&text(&summary))["records"].as_u64().map(|n| n > 3),
        Some(true)
    );
    app_ok(&["--url", other.url(), "import", "acme", "-i", &path]).await;
    let other_db = other.db().await;
    assert_eq!(notes(&other_db, "acme").await, 3);
    // The stream on stdout is the same as the file.
    let streamed = app_ok(&["--url", url, "export", "acme"]).await;
    let written = std::fs::read(&file).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(streamed, written);
    // Importing the same export again is idempotent: it succeeds and changes nothing.
    let (code, _, err) = app(&["--url", other.url(), "import", "acme", "-i", &path]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(notes(&other_db, "acme").await, 3);

    // The audit: clean (0), then an orphan of acme in database 2 (3).
    let report = json(&text(&app_ok(&["--url", url, "--json", "audit"]).await));
    assert_eq!(report["ok"], 1);
    plant(&server, 2, "$Class:Note", "Note:ghost:acme");
    let (code, out, err) = app(&["--url", url, "--json", "audit"]).await;
    assert_eq!(code, 3, "{err}");
    let report = json(&text(&out));
    assert_eq!(report["failed"], 1);
    assert_eq!(report["tenants"][0]["outcome"]["status"], "failed");
    assert!(err.contains("FAILED acme"), "{err}");

    // Stats with models: instances per tenant.
    let stats = json(&text(&app_ok(&["--url", url, "--json", "stats"]).await));
    assert_eq!(stats["tenants"][0]["instances"]["Note"], 3, "{stats}");
    assert_eq!(stats["backends"][0]["backend"], server.url_db(2));

    // Destroy: tombstone, then the data.
    app_ok(&["--url", url, "tenants", "destroy", "acme"]).await;
    let mut conn = redis::Client::open(server.url_db(2))
        .and_then(|c| c.get_connection())
        .unwrap_or_else(|e| panic!("{e}"));
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("Note:*")
        .query(&mut conn)
        .unwrap_or_else(|e| panic!("KEYS: {e}"));
    assert!(keys.is_empty(), "{keys:?}");
    assert!(matches!(
        acme.query::<Note>().count().await,
        Err(popoto::Error::TenantDestroyed { .. })
    ));
}

/// `popoto migrate` of the application's binary, with one migration.
async fn migrate(args: &[&str]) -> (u8, String, String) {
    let models = ModelSet::new().with::<Score>();
    let migrations = vec![popoto_cli::Migration::new(
        "Score.points by org",
        |admin: popoto::Admin, dry_run| async move {
            admin
                .migrate_sorted_to_partitioned(Score::points(), dry_run, |_| {})
                .await
        },
    )];
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut argv = vec!["popoto"];
    argv.extend_from_slice(args);
    let code = popoto_cli::run_with(argv, &models, &migrations, &mut out, &mut err).await;
    (code, text(&out), text(&err))
}

fn zcard(server: &TestRedis, db: u8, key: &str) -> u64 {
    let mut conn = redis::Client::open(server.url_db(db))
        .and_then(|c| c.get_connection())
        .unwrap_or_else(|e| panic!("{e}"));
    redis::cmd("ZCARD")
        .arg(key)
        .query(&mut conn)
        .unwrap_or_else(|e| panic!("ZCARD {key}: {e}"))
}

#[tokio::test]
async fn migrate_check_gates_on_pending_migrations_on_every_backend() {
    let server = start();
    let url = server.url();
    app_ok(&["--url", url, "tenants", "create", "acme"]).await;
    app_ok(&[
        "--url",
        url,
        "tenants",
        "create",
        "globex",
        "--placement",
        "db:6",
    ])
    .await;
    let db = catalog_db(url);
    for t in ["acme", "globex"] {
        let session = db.tenant(t).unwrap_or_else(|e| panic!("{e}"));
        for i in 0..2 {
            session
                .create(LegacyScore {
                    id: format!("s{i}"),
                    points: i as f64,
                    ..Default::default()
                })
                .await
                .unwrap_or_else(|e| panic!("legacy create: {e}"));
        }
    }
    let legacy = "$SortF:Score:points";
    assert_eq!(
        (zcard(&server, 0, legacy), zcard(&server, 6, legacy)),
        (2, 2)
    );

    // The generic binary does not know the migrations.
    expect(Some(url), &["migrate", "--check"], 2);
    // Pending: exit 4, nothing written (so is a dry run, exit 0).
    let (code, _, err) = migrate(&["--url", url, "migrate", "--check"]).await;
    assert_eq!(code, popoto_cli::EXIT_PENDING, "{err}");
    assert!(err.contains("4 entries still to migrate"), "{err}");
    let (code, out, err) = migrate(&["--url", url, "--json", "migrate", "--dry-run"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("would move 2 of 2"), "{out}");
    assert_eq!(
        (zcard(&server, 0, legacy), zcard(&server, 6, legacy)),
        (2, 2)
    );
    // The real run moves both backends' entries; then the gate is clean.
    let (code, out, err) = migrate(&["--url", url, "--json", "migrate", "--all"]).await;
    assert_eq!(code, 0, "{err}");
    let reports = json(&out);
    assert_eq!(reports[0]["ok"], 2, "{reports}");
    assert_eq!(reports[0]["backends"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        (zcard(&server, 0, legacy), zcard(&server, 6, legacy)),
        (0, 0)
    );
    assert_eq!(zcard(&server, 6, "$SortF:Score:points:globex"), 2);
    let (code, _, err) = migrate(&["--url", url, "migrate", "--check"]).await;
    assert_eq!(code, 0, "{err}");
}
