//! Destruction through the catalog is durable across processes: `Admin::destroy_tenant` on a
//! `Db` whose registry has a catalog marks the tenant destroyed there (adding an entry for a
//! tenant the catalog did not know), so every other process (a second `Db` with its own
//! registry on the same server) and every later one refuses it.

mod support;

use std::time::Duration;

use popoto::registry::Placement;
use popoto::testing::TestRedis;
use popoto::{
    BackendConfig, Catalog, CatalogPlacement, Db, Error, ModelSet, TenantId, TenantRegistry,
    TenantStatus,
};
use support::{episode, Episode};

fn tid(s: &str) -> TenantId {
    TenantId::new(s).unwrap_or_else(|e| panic!("tenant id {s:?}: {e}"))
}

fn start() -> TestRedis {
    TestRedis::start().unwrap_or_else(|e| panic!("{e}"))
}

/// One process: its own registry on the shared server's catalog.
fn process(server: &TestRedis) -> (TenantRegistry, Db) {
    let registry = TenantRegistry::with_catalog(BackendConfig::new(server.url()), Duration::ZERO)
        .unwrap_or_else(|e| panic!("registry: {e}"));
    (registry.clone(), Db::with_registry(registry))
}

async fn write(db: &Db, tenant: &str) -> Result<(), Error> {
    db.tenant(tenant)?
        .create(episode("", "x", 0.5, 1))
        .await
        .map(drop)
}

async fn count(db: &Db, tenant: &str) -> Result<usize, Error> {
    db.tenant(tenant)?.query::<Episode>().count().await
}

fn keys_in(server: &TestRedis, db: u8) -> Vec<String> {
    server
        .snapshot()
        .into_keys()
        .filter(|k| k.starts_with(&format!("{db} ")))
        .collect()
}

#[tokio::test]
async fn a_destroy_through_one_process_is_refused_by_every_other() {
    let server = start();
    let (registry_a, a) = process(&server);
    let (registry_b, b) = process(&server);
    let catalog: Catalog = registry_a.catalog().unwrap_or_else(|| panic!("no catalog"));
    catalog
        .create(
            &tid("acme"),
            CatalogPlacement::Database(3),
            Default::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("create: {e}"));
    // `local` is not in the catalog: each process registers it itself.
    for r in [&registry_a, &registry_b] {
        r.register(&tid("local"), Placement::Database(5)).await;
    }
    for t in ["acme", "local"] {
        write(&a, t)
            .await
            .unwrap_or_else(|e| panic!("write {t}: {e}"));
        assert_eq!(count(&b, t).await.ok(), Some(1), "{t} through b");
    }
    let models = ModelSet::new().with::<Episode>();

    // A suspended catalog tenant can be destroyed; the other process refuses it at once.
    catalog
        .suspend(&tid("acme"))
        .await
        .unwrap_or_else(|e| panic!("suspend: {e}"));
    let report = a
        .admin()
        .destroy_tenant(&tid("acme"), &models)
        .await
        .unwrap_or_else(|e| panic!("destroy acme: {e}"));
    assert_eq!(report.instances.get("Episode"), Some(&1));
    assert!(keys_in(&server, 3).is_empty(), "{:?}", keys_in(&server, 3));
    // A tenant the catalog did not know gets a destroyed entry where its data was.
    a.admin()
        .destroy_tenant(&tid("local"), &models)
        .await
        .unwrap_or_else(|e| panic!("destroy local: {e}"));
    assert!(keys_in(&server, 5).is_empty(), "{:?}", keys_in(&server, 5));
    let entry = catalog
        .get(&tid("local"))
        .await
        .unwrap_or_else(|e| panic!("get: {e}"))
        .unwrap_or_else(|| panic!("no entry for local"));
    assert_eq!(entry.status, TenantStatus::Destroyed);
    assert_eq!(entry.placement, CatalogPlacement::Database(5));

    // b registered `local` itself and never heard of the destruction but through the catalog;
    // a process started afterwards refuses both too.
    let (_, c) = process(&server);
    for db in [&a, &b, &c] {
        for t in ["acme", "local"] {
            match write(db, t).await {
                Err(Error::TenantDestroyed { tenant }) => assert_eq!(tenant, t),
                other => panic!("{t}: expected TenantDestroyed, got {other:?}"),
            }
        }
    }
    assert!(keys_in(&server, 3).is_empty() && keys_in(&server, 5).is_empty());

    // Created again in the catalog: served afresh everywhere.
    catalog
        .create(
            &tid("acme"),
            CatalogPlacement::Database(3),
            Default::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("create again: {e}"));
    for db in [&a, &b, &c] {
        assert_eq!(count(db, "acme").await.ok(), Some(0));
    }
    write(&b, "acme")
        .await
        .unwrap_or_else(|e| panic!("write: {e}"));
    assert_eq!(count(&a, "acme").await.ok(), Some(1));
}
