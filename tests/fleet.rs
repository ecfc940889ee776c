//! Fleet operations over every catalog tenant on every backend (the shared keyspace, a logical
//! database, a second server, and a server that is down): each tenant gets a result, a failed
//! one does not stop the others, concurrency is bounded, reports serialize to JSON, and a rerun
//! of a journaled run skips what is done.

mod legacy_common;
mod support;

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use legacy_common::LegacyEpisode;
use popoto::fleet::{BackendRun, Outcome, TenantResult};
use popoto::testing::TestRedis;
use popoto::{
    BackendConfig, Catalog, Db, DryRun, Error, Fleet, FleetOptions, FleetReport, ModelSet,
    TenantRegistry,
};
use support::{episode, fast_failing, raw_cmd, start_server, tid, Episode, Item};

fn models() -> ModelSet {
    ModelSet::new().with::<Episode>().with::<Item>()
}

/// Servers of the fleet: the shared one (catalog, database 0 and 4), a second one, and one
/// that is stopped (`down`).
struct Fleetish {
    shared: TestRedis,
    other: TestRedis,
    down: TestRedis,
    registry: TenantRegistry,
    db: Db,
}

/// alpha, beta on the shared keyspace; gamma on database 4; delta on the second server;
/// omega on the stopped server; eps suspended; zeta destroyed. Each active one has 2 episodes.
async fn fleet() -> Fleetish {
    let shared = start_server();
    let other = start_server();
    let down = start_server();
    let registry = TenantRegistry::with_catalog(fast_failing(shared.url()), Duration::ZERO)
        .unwrap_or_else(|e| panic!("registry: {e}"));
    let catalog = registry
        .catalog()
        .unwrap_or_else(|| panic!("the registry has no catalog"));
    let placements = [
        ("alpha", "shared".to_string()),
        ("beta", "shared".to_string()),
        ("gamma", "db:4".to_string()),
        ("delta", format!("server:{}", other.url())),
        ("omega", format!("server:{}", down.url())),
        ("eps", "shared".to_string()),
        ("zeta", "shared".to_string()),
    ];
    let db = Db::with_registry(registry.clone());
    for (t, p) in placements {
        let placement = p.parse().unwrap_or_else(|e| panic!("{p}: {e}"));
        catalog
            .create(&tid(t), placement, Default::default())
            .await
            .unwrap_or_else(|e| panic!("catalog create {t}: {e}"));
        let session = db.tenant(t).unwrap_or_else(|e| panic!("{e}"));
        for title in ["one", "two"] {
            session
                .create(episode("", title, 0.5, 1))
                .await
                .unwrap_or_else(|e| panic!("create for {t}: {e}"));
        }
    }
    set_status(&catalog, "eps", "suspend").await;
    set_status(&catalog, "zeta", "destroy").await;
    let mut f = Fleetish {
        shared,
        other,
        down,
        registry,
        db,
    };
    f.down.kill();
    f
}

async fn set_status(catalog: &Catalog, t: &str, what: &str) {
    let r = match what {
        "suspend" => catalog.suspend(&tid(t)).await,
        _ => catalog.destroy(&tid(t)).await,
    };
    r.unwrap_or_else(|e| panic!("{what} {t}: {e}"));
}

fn outcome<'r>(report: &'r FleetReport, t: &str) -> &'r Outcome {
    match report.tenant(t) {
        Some(TenantResult { outcome, .. }) => outcome,
        None => panic!("{t} missing from the report:\n{report}"),
    }
}

fn is_ok(o: &Outcome) -> bool {
    matches!(o, Outcome::Ok { .. })
}

fn failed_with(o: &Outcome, text: &str) -> bool {
    matches!(o, Outcome::Failed { error } if error.contains(text))
}

fn skipped_for(o: &Outcome, text: &str) -> bool {
    matches!(o, Outcome::Skipped { reason } if reason.contains(text))
}

/// A fresh directory under the test target's tmp dir.
fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("fleet-{name}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    dir
}

#[tokio::test]
async fn the_audit_covers_every_backend_and_a_failed_tenant_does_not_stop_the_others() {
    let f = fleet().await;
    // An orphan index entry of beta on the shared keyspace.
    raw_cmd::<i64>(
        &f.shared,
        redis::cmd("SADD")
            .arg("$Class:Episode")
            .arg("Episode:ghost:beta"),
    );
    let fleet = Fleet::new(&f.registry, FleetOptions::default().concurrency(2))
        .unwrap_or_else(|e| panic!("fleet: {e}"));
    let report = fleet
        .audit(&models())
        .await
        .unwrap_or_else(|e| panic!("audit: {e}"));
    for t in ["alpha", "gamma", "delta"] {
        assert!(is_ok(outcome(&report, t)), "{t}:\n{report}");
    }
    assert!(failed_with(outcome(&report, "beta"), "ghost"), "{report}");
    assert!(
        matches!(outcome(&report, "omega"), Outcome::Failed { .. }),
        "{report}"
    );
    assert!(
        skipped_for(outcome(&report, "eps"), "suspended"),
        "{report}"
    );
    assert!(
        skipped_for(outcome(&report, "zeta"), "destroyed"),
        "{report}"
    );
    assert_eq!((report.ok, report.failed, report.skipped), (3, 2, 2));
    assert!(!report.is_success());
    // One audit per backend: shared database 0 and 4, the second server, the stopped one.
    assert_eq!(report.backends.len(), 4, "{report}");

    let json = serde_json::to_string(&report).unwrap_or_else(|e| panic!("json: {e}"));
    let back: FleetReport = serde_json::from_str(&json).unwrap_or_else(|e| panic!("json: {e}"));
    assert_eq!(back, report);
    assert!(json.contains(r#""status":"failed""#), "{json}");

    // Without the planted entry and with the server back, everything is clean.
    raw_cmd::<i64>(
        &f.shared,
        redis::cmd("SREM")
            .arg("$Class:Episode")
            .arg("Episode:ghost:beta"),
    );
    let mut f = f;
    f.down.restart().unwrap_or_else(|e| panic!("restart: {e}"));
    let report = fleet
        .audit(&models())
        .await
        .unwrap_or_else(|e| panic!("audit: {e}"));
    assert!(report.is_success(), "{report}");
    assert_eq!(report.ok, 5, "{report}");
}

#[tokio::test]
async fn a_journaled_export_resumes_where_it_failed_and_its_files_import_exactly() {
    let mut f = fleet().await;
    let dir = scratch("export");
    let options = FleetOptions::default().concurrency(3).run("nightly");
    let fleet = Fleet::new(&f.registry, options).unwrap_or_else(|e| panic!("fleet: {e}"));
    let first = fleet
        .export(&models(), &dir)
        .await
        .unwrap_or_else(|e| panic!("export: {e}"));
    assert_eq!(
        (first.ok, first.failed, first.skipped),
        (4, 1, 2),
        "{first}"
    );
    assert!(matches!(outcome(&first, "omega"), Outcome::Failed { .. }));
    for t in ["alpha", "beta", "gamma", "delta"] {
        assert!(dir.join(format!("{t}.popoto")).is_file(), "{t}");
    }
    assert!(!dir.join("omega.popoto").exists());

    // The rerun skips what the journal says is done and retries the failed tenant.
    f.down.restart().unwrap_or_else(|e| panic!("restart: {e}"));
    // The restarted server is empty: give omega data again.
    let omega = f.db.tenant("omega").unwrap_or_else(|e| panic!("{e}"));
    omega
        .create(episode("", "again", 0.1, 1))
        .await
        .unwrap_or_else(|e| panic!("create for omega: {e}"));
    let second = fleet
        .export(&models(), &dir)
        .await
        .unwrap_or_else(|e| panic!("export: {e}"));
    assert!(is_ok(outcome(&second, "omega")), "{second}");
    for t in ["alpha", "beta", "gamma", "delta"] {
        assert!(
            skipped_for(outcome(&second, t), "nightly"),
            "{t}:\n{second}"
        );
    }
    assert!(second.is_success(), "{second}");

    // gamma's file (from database 4) restores its two episodes on a fresh server.
    let fresh = start_server();
    let fresh_db = fresh.db().await;
    let file = std::fs::File::open(dir.join("gamma.popoto")).unwrap_or_else(|e| panic!("{e}"));
    fresh_db
        .admin()
        .import_tenant(&tid("gamma"), &models(), std::io::BufReader::new(file))
        .await
        .unwrap_or_else(|e| panic!("import: {e}"));
    let n = fresh_db
        .tenant("gamma")
        .unwrap_or_else(|e| panic!("{e}"))
        .query::<Episode>()
        .count()
        .await
        .unwrap_or_else(|e| panic!("count: {e}"));
    assert_eq!(n, 2);
    let _ = (&f.other, &f.shared);
}

#[tokio::test]
async fn concurrency_is_bounded_and_only_selects_tenants() {
    let f = fleet().await;
    let in_flight = AtomicUsize::new(0);
    let peak = AtomicUsize::new(0);
    let options = FleetOptions::default().concurrency(2).only(vec![
        tid("alpha"),
        tid("beta"),
        tid("gamma"),
        tid("delta"),
        tid("nobody"),
    ]);
    let fleet = Fleet::new(&f.registry, options).unwrap_or_else(|e| panic!("fleet: {e}"));
    let report = fleet
        .for_each_tenant("count", |entry, admin| {
            let (in_flight, peak) = (&in_flight, &peak);
            async move {
                let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                let counts = admin.tenant_counts(&entry.id, &models()).await;
                in_flight.fetch_sub(1, Ordering::SeqCst);
                Ok(format!("{:?}", counts?))
            }
        })
        .await
        .unwrap_or_else(|e| panic!("fleet: {e}"));
    assert_eq!(peak.load(Ordering::SeqCst), 2, "{report}");
    assert_eq!(report.ok, 4, "{report}");
    assert!(failed_with(
        outcome(&report, "nobody"),
        "not in the tenant catalog"
    ));
    assert!(report.tenant("omega").is_none(), "not selected");
    match outcome(&report, "gamma") {
        Outcome::Ok { detail } => assert!(detail.contains("\"Episode\": 2"), "{detail}"),
        other => panic!("{other:?}"),
    }
    // A registry without a catalog has no fleet.
    let plain = TenantRegistry::new(BackendConfig::new(f.shared.url()))
        .unwrap_or_else(|e| panic!("registry: {e}"));
    assert!(matches!(
        Fleet::new(&plain, FleetOptions::default()),
        Err(Error::Config(_))
    ));
}

/// ZCARD of `key` on database `n` of `server`.
fn zcard(server: &TestRedis, n: u8, key: &str) -> u64 {
    let mut conn = redis::Client::open(server.url_db(n))
        .and_then(|c| c.get_connection())
        .unwrap_or_else(|e| panic!("database {n}: {e}"));
    redis::cmd("ZCARD")
        .arg(key)
        .query(&mut conn)
        .unwrap_or_else(|e| panic!("ZCARD {key}: {e}"))
}

#[tokio::test]
async fn a_migration_runs_once_on_every_backend_holding_catalog_tenants() {
    let mut f = fleet().await;
    f.down.restart().unwrap_or_else(|e| panic!("restart: {e}"));
    // Legacy, unpartitioned scores of every active tenant, wherever it lives.
    for t in ["alpha", "beta", "gamma", "delta", "omega"] {
        let session = f.db.tenant(t).unwrap_or_else(|e| panic!("{e}"));
        let legacy = LegacyEpisode {
            title: "legacy".into(),
            score: 0.25,
            ..Default::default()
        };
        // omega's pooled connection died with its server: that one call fails, as documented.
        let created = match session.create(legacy.clone()).await {
            Err(e) if t == "omega" && e.is_connection_error() => session.create(legacy).await,
            other => other,
        };
        created.unwrap_or_else(|e| panic!("legacy create for {t}: {e}"));
    }
    let legacy = "$SortF:Episode:score";
    let spots = [(&f.shared, 0), (&f.shared, 4), (&f.other, 0), (&f.down, 0)];
    for (server, n) in spots {
        assert!(zcard(server, n, legacy) > 0, "legacy scores on db {n}");
    }
    let fleet = Fleet::new(&f.registry, FleetOptions::default().run("m1"))
        .unwrap_or_else(|e| panic!("fleet: {e}"));
    let migrate = |dry_run: DryRun| {
        let fleet = fleet.clone();
        async move {
            fleet
                .for_each_backend("migrate", |admin| async move {
                    let r = admin
                        .migrate_sorted_to_partitioned(Episode::score(), dry_run, |_| {})
                        .await?;
                    Ok(BackendRun {
                        detail: format!("{} of {} moved", r.migrated, r.total),
                        other_problems: r.errors.iter().map(|e| e.member_key.clone()).collect(),
                        ..Default::default()
                    })
                })
                .await
                .unwrap_or_else(|e| panic!("migrate: {e}"))
        }
    };
    let report = migrate(DryRun::No).await;
    assert!(report.is_success(), "{report}");
    assert_eq!((report.ok, report.skipped), (5, 2), "{report}");
    assert_eq!(report.backends.len(), 4, "{report}");
    for (server, n) in spots {
        assert_eq!(zcard(server, n, legacy), 0, "legacy scores left on db {n}");
    }
    // Two partitioned from the start, one moved there.
    assert_eq!(zcard(&f.shared, 4, "$SortF:Episode:score:gamma"), 3);
    assert_eq!(zcard(&f.down, 0, "$SortF:Episode:score:omega"), 1);
    // The journaled rerun has nothing left to do.
    let again = migrate(DryRun::No).await;
    assert_eq!((again.ok, again.skipped), (0, 7), "{again}");
    assert!(again.backends.is_empty(), "{again}");
}

#[tokio::test]
async fn index_checks_and_rebuilds_cover_every_backend_and_report_as_data() {
    let mut f = fleet().await;
    f.down.restart().unwrap_or_else(|e| panic!("restart: {e}"));
    // An orphan entry of gamma in its own database.
    let mut conn = redis::Client::open(f.shared.url_db(4))
        .and_then(|c| c.get_connection())
        .unwrap_or_else(|e| panic!("{e}"));
    redis::cmd("SADD")
        .arg("$Class:Episode")
        .arg("Episode:ghost:gamma")
        .exec(&mut conn)
        .unwrap_or_else(|e| panic!("SADD: {e}"));
    let fleet =
        Fleet::new(&f.registry, FleetOptions::default()).unwrap_or_else(|e| panic!("fleet: {e}"));
    let checked = fleet
        .check_indexes(&models())
        .await
        .unwrap_or_else(|e| panic!("check: {e}"));
    assert!(!checked.is_success());
    assert!(
        failed_with(outcome(&checked.report, "gamma"), "ghost"),
        "{}",
        checked.report
    );
    assert!(
        is_ok(outcome(&checked.report, "alpha")),
        "{}",
        checked.report
    );
    let gamma = checked
        .backends
        .iter()
        .find(|b| b.backend == f.shared.url_db(4))
        .unwrap_or_else(|| panic!("no report of database 4: {checked:?}"));
    let finding = &gamma.reports[0].findings[0];
    assert_eq!(finding.kind, popoto::FindingKind::Orphan);
    assert_eq!(finding.tenant.as_deref(), Some("gamma"));
    // The run is data: JSON and back.
    let json = serde_json::to_string(&checked).unwrap_or_else(|e| panic!("json: {e}"));
    assert!(json.contains(r#""kind":"orphan""#), "{json}");
    let back: popoto::fleet::IndexRun =
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("json: {e}"));
    assert_eq!(back, checked);

    let rebuilt = fleet
        .rebuild_indexes(&models())
        .await
        .unwrap_or_else(|e| panic!("rebuild: {e}"));
    assert!(rebuilt.is_success(), "{}", rebuilt.report);
    assert!(
        matches!(outcome(&rebuilt.report, "gamma"), Outcome::Ok { detail } if detail.contains("1 entries repaired")),
        "{}",
        rebuilt.report
    );
    let again = fleet
        .check_indexes(&models())
        .await
        .unwrap_or_else(|e| panic!("check: {e}"));
    assert!(again.is_success(), "{}", again.report);
    assert_eq!(again.report.ok, 5);
}
