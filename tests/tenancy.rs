//! Tenancy: ambient scope, per-tenant backends, the lazy registry and its health states.

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use popoto::registry::{Health, Placement};
use popoto::testing::TestRedis;
use popoto::{Backend, BackendConfig, Db, Error, TenantId, TenantRegistry};
use support::*;

fn keys_in(server: &TestRedis, db: u8) -> Vec<String> {
    let mut conn = redis::Client::open(server.url_db(db))
        .unwrap()
        .get_connection()
        .unwrap();
    let mut keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut conn).unwrap();
    keys.sort();
    keys
}

/// The core operations through one tenant handle, asserted through the API: run on every
/// backend kind (shared keyspace, own logical database, own server).
async fn scenario(db: &Db, tenant: &str) {
    let t = db.tenant(tenant).unwrap();
    let a = t.create(episode("", "a", 0.95, 1)).await.unwrap();
    t.create_many(
        (0..10)
            .map(|i| episode("", &format!("e{i}"), i as f64 / 10.0, i))
            .collect(),
    )
    .await
    .unwrap();
    let key = Episode::key_of(tenant, a.episode_id.clone());
    assert_eq!(t.get(&key).await.unwrap(), Some(a.clone()));
    assert!(t.exists(&key).await.unwrap());
    assert!(matches!(
        t.create(a.clone()).await,
        Err(Error::AlreadyExists { .. })
    ));
    let hot = t
        .query::<Episode>()
        .filter(Episode::score().gte(0.85))
        .order_by_desc(Episode::score())
        .fetch()
        .await
        .unwrap();
    assert_eq!(
        hot.iter().map(|e| e.title.as_str()).collect::<Vec<_>>(),
        ["a", "e9"]
    );
    let page = t
        .query::<Episode>()
        .order_by(Episode::score())
        .offset(2)
        .limit(3)
        .fetch()
        .await
        .unwrap();
    assert_eq!(
        page.iter().map(|e| e.title.as_str()).collect::<Vec<_>>(),
        ["e2", "e3", "e4"]
    );
    assert_eq!(
        t.query::<Episode>()
            .filter(Episode::rank().between(1, 2))
            .count()
            .await
            .unwrap(),
        3
    );
    assert_eq!(t.query::<Episode>().count().await.unwrap(), 11);
    let sku = format!("{tenant}-sku");
    let mut item = t
        .create(Item {
            sku: sku.clone(),
            region: "eu".into(),
            level: 1,
            note: None,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(matches!(
        t.create(Item {
            sku: sku.clone(),
            region: "us".into(),
            ..Default::default()
        })
        .await,
        Err(Error::AlreadyExists { .. } | Error::UniqueViolation { .. })
    ));
    item.region = "us".into();
    t.save(&item).await.unwrap();
    assert_eq!(
        t.query::<Item>()
            .partition(Item::region(), "us")
            .filter(Item::level().gte(0))
            .count()
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        t.query::<Item>()
            .partition(Item::region(), "eu")
            .filter(Item::level().gte(0))
            .count()
            .await
            .unwrap(),
        0
    );
    let moved = t
        .move_key(
            &item,
            Item {
                sku: format!("{sku}-2"),
                ..item.clone()
            },
        )
        .await
        .unwrap();
    assert!(t
        .get(&Item::key_of(tenant, sku.clone()))
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        t.get(&Item::key_of(tenant, moved.sku.clone()))
            .await
            .unwrap(),
        Some(moved)
    );
    let m = t
        .create(Memory {
            key: format!("{tenant}-m"),
            certainty: 0.5,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        t.confidence(&m, Memory::certainty())
            .unwrap()
            .update(0.9)
            .await
            .unwrap()
            .confidence,
        0.7
    );
    assert_eq!(
        t.confidence_scan(Memory::certainty())
            .fetch_all()
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(t.delete(&a).await.unwrap());
    let rest = t.query::<Episode>().fetch_keys().await.unwrap();
    assert_eq!(t.delete_many(&rest).await.unwrap(), 10);
    assert_eq!(t.query::<Episode>().count().await.unwrap(), 0);
}

async fn run_on(placement: impl FnOnce(&TestRedis, &TestRedis) -> Placement) {
    let shared = start_server();
    let own = start_server();
    let registry = TenantRegistry::new(BackendConfig::new(shared.url())).unwrap();
    let placement = placement(&shared, &own);
    registry.set_policy(move |_| Some(placement.clone()));
    let db = Db::with_registry(registry);
    for tenant in ["acme", "umbrella:eu-1", "a*"] {
        scenario(&db, tenant).await;
    }
}

#[tokio::test]
async fn core_operations_on_the_shared_keyspace() {
    run_on(|_, _| Placement::Shared).await;
}

#[tokio::test]
async fn core_operations_on_an_own_logical_database() {
    run_on(|_, _| Placement::Database(9)).await;
}

#[tokio::test]
async fn core_operations_on_an_own_server() {
    run_on(|_, own| Placement::Server(BackendConfig::new(own.url()))).await;
}

#[tokio::test]
async fn hybrid_placement_keeps_each_tenant_on_its_backend() {
    let shared = start_server();
    let own = start_server();
    let registry = TenantRegistry::new(BackendConfig::new(shared.url())).unwrap();
    assert_eq!(
        registry
            .register(&tid("premium"), Placement::Database(5))
            .await,
        Health::Healthy
    );
    assert_eq!(
        registry
            .register(
                &tid("whale"),
                Placement::Server(BackendConfig::new(own.url()))
            )
            .await,
        Health::Healthy
    );
    // The rest share the keyspace: registered as such (an unknown tenant is refused).
    for t in ["acme", "umbrella:eu-1"] {
        assert_eq!(
            registry.register(&tid(t), Placement::Shared).await,
            Health::Healthy
        );
    }
    registry.set_policy(|t| {
        t.as_str()
            .starts_with("gold-")
            .then_some(Placement::Database(7))
    });
    let db = Db::with_registry(registry);
    for tenant in ["acme", "premium", "whale", "gold-1", "umbrella:eu-1"] {
        scenario(&db, tenant).await;
    }
    let shared0 = keys_in(&shared, 0);
    let has = |keys: &[String], t: &str| {
        keys.iter()
            .any(|k| k.ends_with(&format!(":{t}")) || k.contains(&format!(":{t}:")))
    };
    assert!(has(&shared0, "acme") && has(&shared0, "umbrella{&#58;}eu/-1"));
    assert!(!has(&shared0, "premium") && !has(&shared0, "whale") && !has(&shared0, "gold/-1"));
    let db5 = keys_in(&shared, 5);
    assert!(has(&db5, "premium") && !has(&db5, "acme") && !has(&db5, "whale"));
    let db7 = keys_in(&shared, 7);
    assert!(has(&db7, "gold/-1") && !has(&db7, "acme"));
    let other = keys_in(&own, 0);
    assert!(has(&other, "whale") && !has(&other, "acme") && !has(&other, "premium"));
}

#[tokio::test]
async fn the_ambient_scope_serves_code_that_cannot_pass_the_handle() {
    let (_server, db) = setup().await;
    assert!(matches!(db.current(), Err(Error::NoAmbientTenant)));
    let acme = tid("acme");
    let created = popoto::tenant::with_tenant(acme.clone(), async {
        let s = db.current().unwrap();
        s.create(episode("", "ambient", 1.0, 1)).await.unwrap()
    })
    .await;
    assert_eq!(created.project_id, "acme");
    // A spawned task starts without the scope; the tenant travels in the payload, explicitly.
    let payload = serde_json::to_string(&acme).unwrap();
    let db2 = db.clone();
    let n = popoto::tenant::with_tenant(acme.clone(), async move {
        tokio::spawn(async move {
            assert!(matches!(db2.current(), Err(Error::NoAmbientTenant)));
            let tenant: TenantId = serde_json::from_str(&payload).unwrap();
            popoto::tenant::with_tenant(tenant, async {
                db2.current()
                    .unwrap()
                    .query::<Episode>()
                    .count()
                    .await
                    .unwrap()
            })
            .await
        })
        .await
        .unwrap()
    })
    .await;
    assert_eq!(n, 1);
}

/// A lazily built backend on logical database `db` of `server`, counting factory calls.
fn counting_factory(
    server: &TestRedis,
    db: u8,
    calls: Arc<AtomicUsize>,
    fail: Arc<AtomicBool>,
) -> impl Fn(
    TenantId,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = popoto::Result<Backend>> + Send>>
       + Send
       + Sync
       + 'static {
    let url = server.url_db(db);
    move |_t| {
        calls.fetch_add(1, Ordering::SeqCst);
        let url = url.clone();
        let fail = fail.load(Ordering::SeqCst);
        Box::pin(async move {
            if fail {
                Err(Error::Config("factory refused".into()))
            } else {
                Backend::new(BackendConfig::new(url))
            }
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cold_tenant_is_built_exactly_once_under_100_concurrent_hits() {
    let server = start_server();
    let registry = TenantRegistry::new(BackendConfig::new(server.url())).unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    registry.register_lazy(
        &tid("cold"),
        counting_factory(&server, 3, calls.clone(), Arc::new(AtomicBool::new(false))),
    );
    assert_eq!(registry.health(&tid("cold")).await, Some(Health::Pending));
    let db = Db::with_registry(registry.clone());
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let db = db.clone();
            tokio::spawn(async move {
                db.tenant("cold")
                    .unwrap()
                    .create(episode("", &format!("t{i}"), 0.5, i))
                    .await
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(registry.health(&tid("cold")).await, Some(Health::Healthy));
    assert_eq!(
        db.tenant("cold")
            .unwrap()
            .query::<Episode>()
            .count()
            .await
            .unwrap(),
        100
    );
    assert!(
        keys_in(&server, 0).is_empty(),
        "nothing went to the shared database"
    );
    assert!(!keys_in(&server, 3).is_empty());
}

#[tokio::test]
async fn a_failed_factory_disables_the_tenant_until_recheck() {
    let server = start_server();
    let registry = TenantRegistry::new(BackendConfig::new(server.url())).unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let fail = Arc::new(AtomicBool::new(true));
    registry.register_lazy(
        &tid("flaky"),
        counting_factory(&server, 2, calls.clone(), fail.clone()),
    );
    let db = Db::with_registry(registry.clone());
    let flaky = db.tenant("flaky").unwrap();
    for _ in 0..3 {
        assert!(matches!(
            flaky.query::<Episode>().count().await,
            Err(Error::TenantDisabled { .. })
        ));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1, "not retried silently");
    assert!(matches!(
        registry.health(&tid("flaky")).await,
        Some(Health::Disabled(_))
    ));
    fail.store(false, Ordering::SeqCst);
    assert_eq!(registry.recheck(&tid("flaky")).await, Some(Health::Healthy));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(flaky.query::<Episode>().count().await.unwrap(), 0);
}

#[tokio::test]
async fn rechecks_move_between_healthy_and_unverified() {
    let server = start_server();
    let registry = TenantRegistry::new(BackendConfig::new(server.url())).unwrap();
    let down = Arc::new(AtomicBool::new(false));
    let flag = down.clone();
    registry.set_validator(move |b: Backend| {
        let down = flag.load(Ordering::SeqCst);
        async move {
            if down {
                Err(Error::Config("validator says down".into()))
            } else {
                let _: String = b.query("validate", "-", &redis::cmd("PING")).await?;
                Ok(())
            }
        }
    });
    assert_eq!(
        registry.register(&tid("t"), Placement::Database(1)).await,
        Health::Healthy
    );
    down.store(true, Ordering::SeqCst);
    assert_eq!(registry.recheck(&tid("t")).await, Some(Health::Unverified));
    let db = Db::with_registry(registry.clone());
    assert_eq!(
        db.tenant("t")
            .unwrap()
            .query::<Episode>()
            .count()
            .await
            .unwrap(),
        0,
        "unverified is still used"
    );
    down.store(false, Ordering::SeqCst);
    assert_eq!(registry.recheck(&tid("t")).await, Some(Health::Healthy));
    assert_eq!(registry.list().await, [(tid("t"), Health::Healthy)]);
    assert_eq!(registry.recheck(&tid("unknown")).await, None);
}

#[tokio::test]
async fn unregister_during_a_build_leaves_nothing_behind() {
    let server = start_server();
    let registry = TenantRegistry::new(BackendConfig::new(server.url())).unwrap();
    let (started_rx, release) = register_gated(&registry, "slow", server.url_db(4));
    let db = Db::with_registry(registry.clone());
    let db2 = db.clone();
    let pending =
        tokio::spawn(async move { db2.tenant("slow").unwrap().query::<Episode>().count().await });
    started_rx.await.unwrap();
    assert!(registry.unregister(&tid("slow")));
    release.notify_one();
    assert!(matches!(
        pending.await.unwrap(),
        Err(Error::TenantUnregistered { .. })
    ));
    assert!(registry.list().await.is_empty());
    assert_eq!(registry.open_count().await, 0);
    // An unregistered tenant is unknown: refused, not sent to the shared keyspace.
    assert!(matches!(
        db.tenant("slow").unwrap().query::<Episode>().count().await,
        Err(Error::UnknownTenant { .. })
    ));
}

#[tokio::test]
async fn the_open_backend_cap_reaps_the_least_recently_used() {
    let server = start_server();
    let registry = TenantRegistry::new(BackendConfig::new(server.url())).unwrap();
    registry.set_max_open(Some(2));
    let counters: Vec<Arc<AtomicUsize>> = (0..3).map(|_| Arc::new(AtomicUsize::new(0))).collect();
    for (i, c) in counters.iter().enumerate() {
        registry.register_lazy(
            &tid(&format!("t{i}")),
            counting_factory(
                &server,
                1 + i as u8,
                c.clone(),
                Arc::new(AtomicBool::new(false)),
            ),
        );
    }
    let db = Db::with_registry(registry.clone());
    for i in 0..3 {
        db.tenant(format!("t{i}"))
            .unwrap()
            .create(episode("", "x", 1.0, 1))
            .await
            .unwrap();
    }
    assert_eq!(registry.open_count().await, 2);
    assert_eq!(
        registry.health(&tid("t0")).await,
        Some(Health::Pending),
        "t0 was least recently used"
    );
    // Its data is intact on its database; using it again rebuilds it once.
    assert_eq!(
        db.tenant("t0")
            .unwrap()
            .query::<Episode>()
            .count()
            .await
            .unwrap(),
        1
    );
    assert_eq!(counters[0].load(Ordering::SeqCst), 2);
    assert_eq!(registry.open_count().await, 2);
    let states = registry.list().await;
    assert_eq!(states.len(), 3);
    assert_eq!(
        states.iter().filter(|(_, h)| *h == Health::Pending).count(),
        1
    );
}
