//! Destruction through the catalog is durable across processes: `Admin::destroy_tenant` on a
//! `Db` whose registry has a catalog marks the tenant destroyed there (adding an entry for a
//! tenant the catalog did not know), so every other process (a second `Db` with its own
//! registry on the same server) and every later one refuses it.

mod support;

use std::time::Duration;

use popoto::registry::Placement;
use popoto::testing::TestRedis;
use popoto::{
    BackendConfig, Catalog, CatalogPlacement, Db, Error, ModelSet, TenantRegistry, TenantStatus,
};
use support::{count_episodes, episode, start_server, tid, write_episode, Episode};

/// One process: its own registry on the shared server's catalog.
fn process(server: &TestRedis) -> (TenantRegistry, Db) {
    let registry = TenantRegistry::with_catalog(BackendConfig::new(server.url()), Duration::ZERO)
        .unwrap_or_else(|e| panic!("registry: {e}"));
    (registry.clone(), Db::with_registry(registry))
}

fn keys_in(server: &TestRedis, db: u8) -> Vec<String> {
    server
        .snapshot()
        .into_keys()
        .filter(|k| k.starts_with(&format!("{db} ")))
        .collect()
}

/// Waits until the server sees connections to at most 2 tenant databases (closed backends
/// disconnect).
async fn at_most_two_databases_connected(server: &TestRedis) {
    eventually(
        Duration::from_secs(10),
        "closed backends disconnected",
        || async {
            let dbs = connected_databases(server);
            if dbs.len() <= 2 {
                Ok(())
            } else {
                Err(format!("connected to databases {dbs:?}"))
            }
        },
    )
    .await;
}

#[tokio::test]
async fn a_destroy_through_one_process_is_refused_by_every_other() {
    let server = start_server();
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
        write_episode(&a, t, "x")
            .await
            .unwrap_or_else(|e| panic!("write {t}: {e}"));
        assert_eq!(count_episodes(&b, t).await.ok(), Some(1), "{t} through b");
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
            match write_episode(db, t, "x").await {
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
        assert_eq!(count_episodes(db, "acme").await.ok(), Some(0));
    }
    write_episode(&b, "acme", "x")
        .await
        .unwrap_or_else(|e| panic!("write: {e}"));
    assert_eq!(count_episodes(&a, "acme").await.ok(), Some(1));
}

/// Polls `check` until it holds or `within` has passed (then fails with `what`).
async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match check().await {
            Ok(()) => return,
            Err(last) if tokio::time::Instant::now() >= deadline => {
                panic!("{what} not within {within:?}: {last}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// The logical databases other than 0 that clients of `server` are connected to.
fn connected_databases(server: &TestRedis) -> std::collections::BTreeSet<u8> {
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query(&mut server.raw())
        .unwrap_or_else(|e| panic!("CLIENT LIST: {e}"));
    list.lines()
        .filter_map(|l| l.split(' ').find_map(|f| f.strip_prefix("db=")))
        .filter_map(|d| d.parse().ok())
        .filter(|d| *d != 0)
        .collect()
}

#[tokio::test]
async fn at_most_the_cap_of_tenant_backends_stay_open_and_closed_ones_reopen() {
    let server = start_server();
    let (registry, db) = process(&server);
    registry.set_max_open(Some(2));
    let catalog = registry.catalog().unwrap_or_else(|| panic!("no catalog"));
    let tenants: Vec<String> = (1..=5).map(|i| format!("t{i}")).collect();
    for (i, t) in tenants.iter().enumerate() {
        catalog
            .create(
                &tid(t),
                CatalogPlacement::Database(1 + i as u8),
                Default::default(),
            )
            .await
            .unwrap_or_else(|e| panic!("create {t}: {e}"));
    }
    // Each tenant in its own database: a count of 1 means it reads its own.
    for round in 0..2 {
        for t in &tenants {
            if round == 0 {
                write_episode(&db, t, "x")
                    .await
                    .unwrap_or_else(|e| panic!("write {t}: {e}"));
            }
            assert_eq!(
                count_episodes(&db, t).await.ok(),
                Some(1),
                "{t}, round {round}"
            );
            let open = registry.open_backends().await;
            assert!(open <= 2, "{open} backends open after {t}");
        }
    }
    // Closed pools disconnect: the server sees connections to at most 2 tenant databases.
    at_most_two_databases_connected(&server).await;
    let pending = registry
        .list()
        .await
        .into_iter()
        .filter(|(_, h)| *h == popoto::Health::Pending)
        .count();
    assert_eq!(pending, 3, "{:?}", registry.list().await);
    // Concurrent requests over every tenant: each reopened as needed, each reads its own.
    let tasks: Vec<_> = (0..60)
        .map(|i| {
            let db = db.clone();
            let t = tenants[i % tenants.len()].clone();
            tokio::spawn(async move { count_episodes(&db, &t).await })
        })
        .collect();
    for task in tasks {
        let n = task.await.unwrap_or_else(|e| panic!("task: {e}"));
        assert_eq!(n.as_ref().ok(), Some(&1), "{n:?}");
    }
    // Backends in use are never closed, so a burst over more tenants than the cap may leave
    // more open; the next request closes the idle ones.
    assert_eq!(count_episodes(&db, "t1").await.ok(), Some(1));
    let open = registry.open_backends().await;
    assert!(open <= 2, "{open} backends open after the burst");
    at_most_two_databases_connected(&server).await;
}

/// Polls `db`'s count of `tenant` until `expected` says yes.
async fn until_count(
    db: &Db,
    tenant: &str,
    what: &str,
    expected: fn(&Result<usize, Error>) -> bool,
) {
    eventually(Duration::from_secs(10), what, || async {
        let r = count_episodes(db, tenant).await;
        if expected(&r) {
            Ok(())
        } else {
            Err(format!("{r:?}"))
        }
    })
    .await;
}

#[tokio::test]
async fn a_watching_process_obeys_another_process_change_at_once() {
    let server = start_server();
    // A polls the counter once an hour: only the notifications can tell it in time.
    let a_registry =
        TenantRegistry::with_catalog(BackendConfig::new(server.url()), Duration::from_secs(3600))
            .unwrap_or_else(|e| panic!("registry: {e}"));
    let a = Db::with_registry(a_registry.clone());
    let watcher = a_registry
        .watch_catalog()
        .unwrap_or_else(|e| panic!("watch: {e}"));
    let (b_registry, b) = process(&server);
    let catalog = b_registry.catalog().unwrap_or_else(|| panic!("no catalog"));
    catalog
        .create(
            &tid("acme"),
            CatalogPlacement::Database(2),
            Default::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("create: {e}"));
    write_episode(&b, "acme", "x")
        .await
        .unwrap_or_else(|e| panic!("write: {e}"));
    tokio::time::timeout(Duration::from_secs(10), watcher.subscribed(1))
        .await
        .unwrap_or_else(|_| panic!("the watcher did not subscribe within 10 s"));
    assert_eq!(count_episodes(&a, "acme").await.ok(), Some(1));
    let generation = a_registry.catalog_generation();

    // Suspended through b: a refuses it on its next requests.
    catalog
        .suspend(&tid("acme"))
        .await
        .unwrap_or_else(|e| panic!("suspend: {e}"));
    until_count(&a, "acme", "a refuses the suspended tenant", |r| {
        matches!(r, Err(Error::TenantSuspended { .. }))
    })
    .await;
    assert!(a_registry.catalog_generation() > generation);
    catalog
        .resume(&tid("acme"))
        .await
        .unwrap_or_else(|e| panic!("resume: {e}"));
    until_count(&a, "acme", "a serves the resumed tenant", |r| {
        r.as_ref().ok() == Some(&1)
    })
    .await;

    // Moved to database 4 (its data copied first): a follows.
    let copy = Db::from_backend(
        popoto::Backend::new(BackendConfig::new(server.url_db(4)))
            .unwrap_or_else(|e| panic!("{e}")),
    );
    copy.tenant("acme")
        .unwrap_or_else(|e| panic!("{e}"))
        .create(episode("", "copied", 0.5, 1))
        .await
        .unwrap_or_else(|e| panic!("copy: {e}"));
    copy.tenant("acme")
        .unwrap_or_else(|e| panic!("{e}"))
        .create(episode("", "new", 0.5, 1))
        .await
        .unwrap_or_else(|e| panic!("copy: {e}"));
    let moved = popoto::catalog::TenantUpdate {
        placement: Some(CatalogPlacement::Database(4)),
        ..Default::default()
    };
    catalog
        .update(&tid("acme"), &moved)
        .await
        .unwrap_or_else(|e| panic!("move: {e}"));
    until_count(&a, "acme", "a follows the move", |r| {
        r.as_ref().ok() == Some(&2)
    })
    .await;

    // The subscription is cut: the watcher subscribes again, and a change made meanwhile is
    // obeyed all the same.
    redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query::<i64>(&mut server.raw())
        .unwrap_or_else(|e| panic!("CLIENT KILL: {e}"));
    catalog
        .destroy(&tid("acme"))
        .await
        .unwrap_or_else(|e| panic!("destroy: {e}"));
    until_count(&a, "acme", "a refuses the destroyed tenant", |r| {
        matches!(r, Err(Error::TenantDestroyed { .. }))
    })
    .await;
    tokio::time::timeout(Duration::from_secs(10), watcher.subscribed(2))
        .await
        .unwrap_or_else(|_| panic!("the watcher did not subscribe within 10 s"));
    assert!(watcher.subscriptions() >= 2);
}
