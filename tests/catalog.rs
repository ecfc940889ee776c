//! The tenant catalog on a real server: changes are compare-and-set (none lost, stale ones
//! refused), lists page by status, corrupt entries are typed errors naming their key, and
//! registries built on one catalog (as two processes would be) place tenants by it, see each
//! other's changes and refuse suspended and destroyed tenants; credentials never show.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use popoto::catalog::{ListQuery, TenantUpdate};
use popoto::registry::Placement;
use popoto::testing::TestRedis;
use popoto::{BackendConfig, Catalog, CatalogPlacement, Db, Error, TenantRegistry, TenantStatus};
use support::{all_keys, count_episodes, hset, raw_cmd, start_server, tid, write_episode, Episode};

fn placement(s: &str) -> CatalogPlacement {
    s.parse().unwrap_or_else(|e| panic!("placement {s:?}: {e}"))
}

fn meta(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn catalog(server: &TestRedis) -> Catalog {
    let db = server.db().await;
    let backend = db
        .admin()
        .backend()
        .await
        .unwrap_or_else(|e| panic!("backend: {e}"));
    Catalog::new(backend)
}

/// A registry on `server` placing tenants by its catalog, reading the change counter on
/// every lookup (what a second process would run).
fn registry(server: &TestRedis) -> TenantRegistry {
    TenantRegistry::with_catalog(BackendConfig::new(server.url()), Duration::ZERO)
        .unwrap_or_else(|e| panic!("registry: {e}"))
}

async fn create(catalog: &Catalog, id: &str, at: &str) {
    if let Err(e) = catalog.create(&tid(id), placement(at), meta(&[])).await {
        panic!("catalog create {id}: {e}");
    }
}

fn ids(entries: &[popoto::TenantEntry]) -> Vec<&str> {
    entries.iter().map(|e| e.id.as_str()).collect()
}

#[tokio::test]
async fn entries_are_created_changed_and_listed_by_status_in_pages() {
    let server = start_server();
    let catalog = catalog(&server).await;
    for id in ["a", "b", "c", "d", "e"] {
        create(&catalog, id, "shared").await;
    }
    for id in ["b", "d"] {
        catalog
            .suspend(&tid(id))
            .await
            .unwrap_or_else(|e| panic!("suspend {id}: {e}"));
    }
    catalog
        .destroy(&tid("e"))
        .await
        .unwrap_or_else(|e| panic!("destroy: {e}"));

    let mut query = ListQuery {
        status: Some(TenantStatus::Active),
        after: None,
        limit: 1,
    };
    let mut active = Vec::new();
    loop {
        let page = catalog
            .list(&query)
            .await
            .unwrap_or_else(|e| panic!("list: {e}"));
        assert!(page.invalid.is_empty(), "{:?}", page.invalid);
        assert!(page.entries.len() <= 1);
        active.extend(page.entries.iter().map(|e| e.id.to_string()));
        match page.next {
            Some(next) => query.after = Some(next),
            None => break,
        }
    }
    assert_eq!(active, ["a", "c"]);
    let all = catalog
        .list_all(None)
        .await
        .unwrap_or_else(|e| panic!("list: {e}"));
    assert_eq!(ids(&all.entries), ["a", "b", "c", "d", "e"]);
    let suspended = catalog
        .list_all(Some(TenantStatus::Suspended))
        .await
        .unwrap_or_else(|e| panic!("list: {e}"));
    assert_eq!(ids(&suspended.entries), ["b", "d"]);
    let destroyed = catalog
        .list_all(Some(TenantStatus::Destroyed))
        .await
        .unwrap_or_else(|e| panic!("list: {e}"));
    assert_eq!(ids(&destroyed.entries), ["e"]);

    // Creating an existing tenant is refused; a destroyed one starts afresh.
    match catalog
        .create(&tid("a"), placement("shared"), meta(&[]))
        .await
    {
        Err(Error::AlreadyExists { key, .. }) => assert_eq!(key, "$PopotoCatalog:entry:a"),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    let again = catalog
        .create(&tid("e"), placement("db:2"), meta(&[("plan", "free")]))
        .await
        .unwrap_or_else(|e| panic!("re-create: {e}"));
    assert_eq!(again.status, TenantStatus::Active);
    assert_eq!(again.version, 3, "created, destroyed, created again");
    // Suspending or updating a destroyed tenant is refused; resuming is idempotent.
    catalog
        .destroy(&tid("c"))
        .await
        .unwrap_or_else(|e| panic!("destroy: {e}"));
    assert!(matches!(
        catalog.suspend(&tid("c")).await,
        Err(Error::TenantDestroyed { .. })
    ));
    let a = catalog
        .resume(&tid("a"))
        .await
        .unwrap_or_else(|e| panic!("resume: {e}"));
    assert_eq!(a.version, 1, "resuming an active tenant writes nothing");
    assert!(matches!(
        catalog.suspend(&tid("nobody")).await,
        Err(Error::NotFound { .. })
    ));

    // An update based on a stale version is refused; one on the current version applies.
    let update = TenantUpdate {
        set: meta(&[("plan", "gold")]),
        expected_version: Some(3),
        ..Default::default()
    };
    let updated = catalog
        .update(&tid("e"), &update)
        .await
        .unwrap_or_else(|e| panic!("update: {e}"));
    assert_eq!(updated.metadata, meta(&[("plan", "gold")]));
    assert_eq!(updated.version, 4);
    assert!(updated.updated_ms >= updated.created_ms);
    match catalog.update(&tid("e"), &update).await {
        Err(Error::CatalogConflict {
            expected, found, ..
        }) => assert_eq!((expected, found), (3, 4)),
        other => panic!("expected a conflict, got {other:?}"),
    }
    let got = catalog
        .get(&tid("e"))
        .await
        .unwrap_or_else(|e| panic!("get: {e}"));
    assert_eq!(got, Some(updated));
}

#[tokio::test]
async fn concurrent_changes_are_never_lost() {
    let server = start_server();
    let catalog = catalog(&server).await;
    create(&catalog, "acme", "shared").await;
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let catalog = catalog.clone();
            tokio::spawn(async move {
                let update = TenantUpdate {
                    set: meta(&[(&format!("k{i}"), "v")]),
                    ..Default::default()
                };
                catalog.update(&tid("acme"), &update).await
            })
        })
        .collect();
    for t in tasks {
        match t.await {
            Ok(Ok(_)) => {}
            other => panic!("concurrent update: {other:?}"),
        }
    }
    let e = catalog
        .get(&tid("acme"))
        .await
        .unwrap_or_else(|e| panic!("get: {e}"))
        .unwrap_or_else(|| panic!("acme vanished"));
    assert_eq!(e.metadata.len(), 16, "{:?}", e.metadata);
    assert_eq!(e.version, 17);
    let version = catalog
        .version()
        .await
        .unwrap_or_else(|e| panic!("version: {e}"));
    assert_eq!(version, 17, "one change counter step per change");
}

#[tokio::test]
async fn a_corrupt_entry_is_a_typed_error_naming_its_key_and_is_refused() {
    let server = start_server();
    let catalog = catalog(&server).await;
    create(&catalog, "good", "shared").await;
    create(&catalog, "bad", "shared").await;
    hset(&server, "$PopotoCatalog:entry:bad", b"status", b"paused");
    let key = "$PopotoCatalog:entry:bad";
    match catalog.get(&tid("bad")).await {
        Err(Error::CorruptCatalog { key: k, reason }) => {
            assert_eq!(k, key);
            assert!(reason.contains("paused"), "{reason}");
        }
        other => panic!("expected CorruptCatalog, got {other:?}"),
    }
    let page = catalog
        .list_all(None)
        .await
        .unwrap_or_else(|e| panic!("list: {e}"));
    assert_eq!(ids(&page.entries), ["good"]);
    assert!(
        matches!(&page.invalid[..], [Error::CorruptCatalog { key: k, .. }] if k == key),
        "{:?}",
        page.invalid
    );
    // A planted id in the index without an entry, and an entry copied under another id.
    raw_cmd::<i64>(
        &server,
        redis::cmd("ZADD")
            .arg("$PopotoCatalog:status:active")
            .arg(0)
            .arg("ghost"),
    );
    raw_cmd::<()>(
        &server,
        redis::cmd("COPY")
            .arg("$PopotoCatalog:entry:good")
            .arg("$PopotoCatalog:entry:twin"),
    );
    let active = catalog
        .list_all(Some(TenantStatus::Active))
        .await
        .unwrap_or_else(|e| panic!("list: {e}"));
    assert_eq!(ids(&active.entries), ["good"]);
    let invalid: Vec<&str> = active
        .invalid
        .iter()
        .map(|e| match e {
            Error::CorruptCatalog { key, .. } => key.as_str(),
            other => panic!("expected CorruptCatalog, got {other:?}"),
        })
        .collect();
    assert_eq!(
        invalid,
        ["$PopotoCatalog:entry:bad", "$PopotoCatalog:entry:ghost"]
    );
    assert!(matches!(
        catalog.get(&tid("twin")).await,
        Err(Error::CorruptCatalog { .. })
    ));
    // Changes refuse to build on a corrupt entry; registries fail closed.
    assert!(matches!(
        catalog.suspend(&tid("bad")).await,
        Err(Error::CorruptCatalog { .. })
    ));
    let db = Db::with_registry(registry(&server));
    match write_episode(&db, "bad", "x").await {
        Err(Error::CorruptCatalog { key: k, .. }) => assert_eq!(k, key),
        other => panic!("expected CorruptCatalog, got {other:?}"),
    }
    // A catalog key of the wrong type is named too.
    raw_cmd::<()>(
        &server,
        redis::cmd("SET").arg("$PopotoCatalog:version").arg("x"),
    );
    assert!(matches!(
        catalog.version().await,
        Err(Error::CorruptCatalog { key, .. }) if key == "$PopotoCatalog:version"
    ));
}

#[tokio::test]
async fn catalog_placements_reach_their_backends_lazily() {
    let shared = start_server();
    let own = start_server();
    let catalog = catalog(&shared).await;
    create(&catalog, "on-shared", "shared").await;
    create(&catalog, "on-db", "db:5").await;
    create(&catalog, "on-server", &format!("server:{}", own.url())).await;
    create(&catalog, "on-tier", "tier:gold").await;
    let before = all_keys(&shared);

    // Nothing is read or dialed at boot: a registry on a server that is not there builds.
    let nowhere = TenantRegistry::with_catalog(
        BackendConfig::new("redis://127.0.0.1:1/0"),
        Duration::from_secs(1),
    );
    assert!(nowhere.is_ok());

    let reg = registry(&shared);
    reg.set_tier("gold", Placement::Database(7));
    assert!(reg.list().await.is_empty());
    let db = Db::with_registry(reg.clone());
    for t in ["on-shared", "on-db", "on-server", "on-tier"] {
        write_episode(&db, t, "hello")
            .await
            .unwrap_or_else(|e| panic!("write for {t}: {e}"));
        assert_eq!(count_episodes(&db, t).await.ok(), Some(1), "{t}");
    }
    let in_db = |server: &TestRedis, n: u8, t: &str| {
        let mut conn = redis::Client::open(server.url_db(n))
            .and_then(|c| c.get_connection())
            .unwrap_or_else(|e| panic!("db {n}: {e}"));
        let key = format!("$KeyF:Episode:project_id:{}", popoto_core::keys::escape(t));
        let n: u64 = redis::cmd("SCARD")
            .arg(&key)
            .query(&mut conn)
            .unwrap_or_else(|e| panic!("SCARD: {e}"));
        n
    };
    assert_eq!(in_db(&shared, 0, "on-shared"), 1);
    assert_eq!(in_db(&shared, 5, "on-db"), 1);
    assert_eq!(in_db(&shared, 0, "on-db"), 0);
    assert_eq!(in_db(&own, 0, "on-server"), 1);
    assert_eq!(in_db(&shared, 0, "on-server"), 0);
    assert_eq!(in_db(&shared, 7, "on-tier"), 1);
    // Catalog tenants are listed with their health once used.
    let listed: Vec<String> = reg
        .list()
        .await
        .into_iter()
        .map(|(t, _)| t.to_string())
        .collect();
    assert_eq!(listed, ["on-db", "on-server", "on-shared", "on-tier"]);
    assert!(all_keys(&shared).len() > before.len());

    // Tenants the catalog does not know are refused as before; an undefined tier is an error.
    assert!(matches!(
        write_episode(&db, "stranger", "x").await,
        Err(Error::UnknownTenant { .. })
    ));
    create(&catalog, "on-silver", "tier:silver").await;
    match write_episode(&db, "on-silver", "x").await {
        Err(Error::Config(msg)) => assert!(msg.contains("silver"), "{msg}"),
        other => panic!("expected a Config error, got {other:?}"),
    }
}

#[tokio::test]
async fn two_registries_on_one_catalog_see_each_others_changes() {
    let shared = start_server();
    let other = start_server();
    let catalog = catalog(&shared).await;
    create(&catalog, "acme", "db:3").await;
    // Two processes: each its own registry on the same catalog.
    let (a, b) = (registry(&shared), registry(&shared));
    let (db_a, db_b) = (Db::with_registry(a.clone()), Db::with_registry(b.clone()));
    write_episode(&db_a, "acme", "one")
        .await
        .unwrap_or_else(|e| panic!("write through a: {e}"));
    assert_eq!(count_episodes(&db_b, "acme").await.ok(), Some(1));

    // Suspended by an operator (here: the catalog itself, as another process would).
    catalog
        .suspend(&tid("acme"))
        .await
        .unwrap_or_else(|e| panic!("suspend: {e}"));
    for db in [&db_a, &db_b] {
        match write_episode(db, "acme", "late").await {
            Err(Error::TenantSuspended { tenant }) => assert_eq!(tenant, "acme"),
            other => panic!("expected TenantSuspended, got {other:?}"),
        }
        assert!(matches!(
            count_episodes(db, "acme").await,
            Err(Error::TenantSuspended { .. })
        ));
    }
    // Even a tenant registered in the process is refused while suspended.
    a.register(&tid("acme"), Placement::Database(3)).await;
    assert!(matches!(
        write_episode(&db_a, "acme", "late").await,
        Err(Error::TenantSuspended { .. })
    ));
    a.unregister(&tid("acme"));

    catalog
        .resume(&tid("acme"))
        .await
        .unwrap_or_else(|e| panic!("resume: {e}"));
    assert_eq!(count_episodes(&db_b, "acme").await.ok(), Some(1));

    // Moved to its own server (after copying its data, here: none): both follow.
    let moved = TenantUpdate {
        placement: Some(placement(&format!("server:{}", other.url()))),
        ..Default::default()
    };
    catalog
        .update(&tid("acme"), &moved)
        .await
        .unwrap_or_else(|e| panic!("move: {e}"));
    assert_eq!(count_episodes(&db_a, "acme").await.ok(), Some(0));
    write_episode(&db_b, "acme", "two")
        .await
        .unwrap_or_else(|e| panic!("write through b: {e}"));
    assert_eq!(count_episodes(&db_a, "acme").await.ok(), Some(1));

    // Destroyed: a durable tombstone both refuse (and every new process too).
    catalog
        .destroy(&tid("acme"))
        .await
        .unwrap_or_else(|e| panic!("destroy: {e}"));
    let db_c = Db::with_registry(registry(&shared));
    for db in [&db_a, &db_b, &db_c] {
        assert!(matches!(
            write_episode(db, "acme", "late").await,
            Err(Error::TenantDestroyed { .. })
        ));
    }
}

#[tokio::test]
async fn a_registry_polling_less_often_sees_changes_within_its_interval() {
    let shared = start_server();
    let catalog = catalog(&shared).await;
    create(&catalog, "acme", "shared").await;
    let slow =
        TenantRegistry::with_catalog(BackendConfig::new(shared.url()), Duration::from_secs(3600))
            .unwrap_or_else(|e| panic!("registry: {e}"));
    let db = Db::with_registry(slow.clone());
    assert_eq!(count_episodes(&db, "acme").await.ok(), Some(0));
    catalog
        .suspend(&tid("acme"))
        .await
        .unwrap_or_else(|e| panic!("suspend: {e}"));
    // Within the interval it still serves from its cache...
    assert_eq!(count_episodes(&db, "acme").await.ok(), Some(0));
    // ...and a refresh (what the interval's end does) makes it see the change.
    slow.refresh_catalog();
    assert!(matches!(
        count_episodes(&db, "acme").await,
        Err(Error::TenantSuspended { .. })
    ));
}

#[tokio::test]
async fn server_credentials_are_used_but_never_shown() {
    let shared = start_server();
    let own = start_server();
    raw_cmd::<()>(
        &own,
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("requirepass")
            .arg("s3cret-pw"),
    );
    let url = own.url().replace("redis://", "redis://:s3cret-pw@");
    let catalog = catalog(&shared).await;
    let entry = catalog
        .create(
            &tid("vault"),
            placement(&format!("server:{url}")),
            meta(&[]),
        )
        .await
        .unwrap_or_else(|e| panic!("create: {e}"));
    let page = catalog
        .list_all(None)
        .await
        .unwrap_or_else(|e| panic!("list: {e}"));
    let reg = registry(&shared);
    let db = Db::with_registry(reg.clone());
    write_episode(&db, "vault", "x")
        .await
        .unwrap_or_else(|e| panic!("write with credentials: {e}"));
    let shown = [
        format!("{entry:?}"),
        format!("{page:?}"),
        entry.placement.to_string(),
        serde_json::to_string(&page.entries).unwrap_or_else(|e| panic!("json: {e}")),
        format!("{reg:?}"),
        format!("{:?}", reg.list().await),
    ];
    for s in shown {
        assert!(!s.contains("s3cret-pw"), "{s}");
    }
}

#[tokio::test]
async fn a_durable_destroy_marks_the_tenant_then_removes_its_data() {
    let shared = start_server();
    let own = start_server();
    let catalog = catalog(&shared).await;
    create(&catalog, "acme", &format!("server:{}", own.url())).await;
    create(&catalog, "globex", &format!("server:{}", own.url())).await;
    let db = Db::with_registry(registry(&shared));
    for t in ["acme", "globex"] {
        write_episode(&db, t, "x")
            .await
            .unwrap_or_else(|e| panic!("write for {t}: {e}"));
    }
    let models = popoto::ModelSet::new().with::<Episode>();
    let report = catalog
        .destroy_tenant(&db.admin(), &tid("acme"), &models)
        .await
        .unwrap_or_else(|e| panic!("destroy: {e}"));
    assert_eq!(report.instances.get("Episode"), Some(&1));
    let left = all_keys(&own);
    assert!(!left.iter().any(|k| k.contains("acme")), "{left:?}");
    assert!(left.iter().any(|k| k.contains("globex")), "{left:?}");
    // Every process, including one started afterwards, refuses it.
    for db in [&db, &Db::with_registry(registry(&shared))] {
        assert!(matches!(
            write_episode(db, "acme", "late").await,
            Err(Error::TenantDestroyed { .. })
        ));
    }
    assert_eq!(count_episodes(&db, "globex").await.ok(), Some(1));
}
