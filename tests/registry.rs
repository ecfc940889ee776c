//! The registry fails closed: never-registered, unregistered and destroyed tenants are refused
//! with a typed error and write nothing anywhere; a policy or an explicit default placement opts
//! in; logical database placements keep the shared URL's server and credentials and never show
//! them.

mod support;

use popoto::registry::{Health, Placement};
use popoto::testing::TestRedis;
use popoto::{BackendConfig, Db, Error, ModelSet, TenantRegistry};
use support::{count_episodes, episode, register_gated, start_server, tid, Episode};

fn registry(url: &str) -> TenantRegistry {
    TenantRegistry::new(BackendConfig::new(url)).unwrap_or_else(|e| panic!("registry: {e}"))
}

/// `host:port` of a private server (its URL is `redis://host:port/0`).
fn authority(server: &TestRedis) -> String {
    server
        .url()
        .strip_prefix("redis://")
        .and_then(|u| u.strip_suffix("/0"))
        .unwrap_or_else(|| panic!("unexpected test server URL {}", server.url()))
        .to_owned()
}

/// Every key of logical database `db`, sorted.
fn keys_in(server: &TestRedis, db: u8) -> Vec<String> {
    let url = server.url_db(db);
    let mut conn = redis::Client::open(url.as_str())
        .and_then(|c| c.get_connection())
        .unwrap_or_else(|e| panic!("raw connection to database {db}: {e}"));
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query(&mut conn)
        .unwrap_or_else(|e| panic!("KEYS on database {db}: {e}"));
    keys.sort();
    keys
}

/// The keys of every logical database (0..16) of the server.
fn everything(server: &TestRedis) -> Vec<Vec<String>> {
    (0..16).map(|db| keys_in(server, db)).collect()
}

/// Whether any key of `keys` belongs to tenant `t` (alphanumeric: its key segment is `t`).
fn mentions(keys: &[String], t: &str) -> bool {
    keys.iter()
        .any(|k| k.ends_with(&format!(":{t}")) || k.contains(&format!(":{t}:")))
}

async fn create(db: &Db, tenant: &str, title: &str) {
    let t = db
        .tenant(tenant)
        .unwrap_or_else(|e| panic!("{tenant}: {e}"));
    if let Err(e) = t.create(episode("", title, 0.5, 1)).await {
        panic!("create {title} for {tenant}: {e}");
    }
}

async fn count(db: &Db, tenant: &str) -> usize {
    count_episodes(db, tenant)
        .await
        .unwrap_or_else(|e| panic!("count of {tenant}: {e}"))
}

fn unknown(e: &Error) -> bool {
    matches!(e, Error::UnknownTenant { .. })
}

fn destroyed(e: &Error) -> bool {
    matches!(e, Error::TenantDestroyed { .. })
}

/// Creates (one and many), gets, counts and fetches through `db.tenant(tenant)`: every call
/// must fail with an error `expected` accepts, naming the tenant and no URL.
async fn assert_refused(db: &Db, tenant: &str, expected: fn(&Error) -> bool) {
    let t = db
        .tenant(tenant)
        .unwrap_or_else(|e| panic!("{tenant}: {e}"));
    let key = Episode::key_of(tenant, "e1".to_string());
    let outcomes: Vec<(&str, Result<(), Error>)> = vec![
        (
            "create",
            t.create(episode("", "late", 0.1, 1)).await.map(drop),
        ),
        (
            "create_many",
            // Every record comes back refused with the call's own error.
            t.create_many(vec![episode("", "a", 0.1, 1), episode("", "b", 0.2, 2)])
                .await
                .map(drop)
                .map_err(|mut e| {
                    assert!(e.written.is_empty());
                    assert_eq!(e.failed.len(), 2);
                    e.failed.swap_remove(0).2
                }),
        ),
        ("get", t.get(&key).await.map(drop)),
        ("count", t.query::<Episode>().count().await.map(drop)),
        ("fetch", t.query::<Episode>().fetch().await.map(drop)),
    ];
    for (op, outcome) in outcomes {
        match outcome {
            Err(e) if expected(&e) => {
                let msg = e.to_string();
                assert!(msg.contains(tenant), "{op}: {msg} does not name {tenant}");
                assert!(!msg.contains("redis://"), "{op}: {msg} shows a URL");
            }
            other => panic!("{op} for {tenant}: expected a refusal, got {other:?}"),
        }
    }
}

/// A policy that places tenants whose id starts with `gold` on database 7, and no other.
fn gold_on_database_7(registry: &TenantRegistry) {
    registry.set_policy(|t| {
        t.as_str()
            .starts_with("gold")
            .then_some(Placement::Database(7))
    });
}

#[tokio::test]
async fn a_never_registered_tenant_is_refused_and_writes_nothing() {
    let server = start_server();
    let registry = registry(server.url());
    registry.register(&tid("known"), Placement::Shared).await;
    let db = Db::with_registry(registry.clone());
    create(&db, "known", "k").await;
    let before = everything(&server);
    assert!(mentions(&before[0], "known"));

    assert_refused(&db, "stranger", unknown).await;
    assert!(matches!(
        registry.backend_for(&tid("stranger")).await,
        Err(Error::UnknownTenant { .. })
    ));
    assert_eq!(
        everything(&server),
        before,
        "a refused tenant wrote something"
    );
    assert_eq!(count(&db, "known").await, 1);
}

#[tokio::test]
async fn an_unregistered_tenant_is_refused_and_its_data_left_alone() {
    let server = start_server();
    let registry = registry(server.url());
    registry.register(&tid("leaving"), Placement::Shared).await;
    let db = Db::with_registry(registry.clone());
    create(&db, "leaving", "a").await;
    create(&db, "leaving", "b").await;
    assert!(registry.unregister(&tid("leaving")));
    let before = everything(&server);
    assert!(mentions(&before[0], "leaving"));

    assert_refused(&db, "leaving", unknown).await;
    assert_eq!(everything(&server), before);
    // Registering it again serves its data, untouched.
    registry.register(&tid("leaving"), Placement::Shared).await;
    assert_eq!(count(&db, "leaving").await, 2);
}

#[tokio::test]
async fn a_policy_places_only_the_tenants_it_names() {
    let server = start_server();
    let registry = registry(server.url());
    gold_on_database_7(&registry);
    let db = Db::with_registry(registry);
    create(&db, "gold1", "g").await;
    assert_eq!(count(&db, "gold1").await, 1);
    let before = everything(&server);
    assert!(mentions(&before[7], "gold1") && before[0].is_empty());

    assert_refused(&db, "silver", unknown).await;
    assert_eq!(everything(&server), before);
}

#[tokio::test]
async fn the_default_placement_is_an_explicit_opt_in() {
    let server = start_server();
    let registry = registry(server.url());
    gold_on_database_7(&registry);
    registry.set_default_placement(Some(Placement::Shared));
    let db = Db::with_registry(registry.clone());
    create(&db, "walkin", "w").await;
    create(&db, "gold1", "g").await;
    assert_eq!(count(&db, "walkin").await, 1);
    let keys = everything(&server);
    assert!(mentions(&keys[0], "walkin") && !mentions(&keys[0], "gold1"));
    assert!(mentions(&keys[7], "gold1") && !mentions(&keys[7], "walkin"));

    // Withdrawn: refused again, and the policy still places its tenants.
    registry.set_default_placement(None);
    assert_refused(&db, "walkin", unknown).await;
    assert_eq!(everything(&server), keys);
    assert_eq!(count(&db, "gold1").await, 1);
}

#[tokio::test]
async fn a_destroyed_tenant_is_refused_even_where_placed_until_registered_again() {
    let server = start_server();
    let registry = registry(server.url());
    // Everything would be placed: by the policy, and by the default.
    registry.set_policy(|_| Some(Placement::Shared));
    registry.set_default_placement(Some(Placement::Shared));
    registry
        .register(&tid("premium"), Placement::Database(5))
        .await;
    let db = Db::with_registry(registry.clone());
    for tenant in ["acme", "premium", "other"] {
        create(&db, tenant, "a").await;
        create(&db, tenant, "b").await;
    }
    let models = ModelSet::new().with::<Episode>();
    for tenant in ["acme", "premium"] {
        let report = db
            .admin()
            .destroy_tenant(&tid(tenant), &models)
            .await
            .unwrap_or_else(|e| panic!("destroy {tenant}: {e}"));
        assert_eq!(report.instances.get("Episode"), Some(&2), "{tenant}");
        assert!(registry.is_destroyed(&tid(tenant)));
    }
    assert_eq!(registry.tombstones(), [tid("acme"), tid("premium")]);
    assert_eq!(registry.health(&tid("premium")).await, None);
    let before = everything(&server);
    assert!(!mentions(&before[0], "acme") && before[5].is_empty());
    assert!(mentions(&before[0], "other"));

    for tenant in ["acme", "premium"] {
        assert_refused(&db, tenant, destroyed).await;
    }
    let mut export = Vec::new();
    let late_export = db
        .admin()
        .export_tenant(&tid("acme"), &models, &mut export)
        .await;
    assert!(
        matches!(late_export, Err(Error::TenantDestroyed { .. })),
        "{late_export:?}"
    );
    assert_eq!(
        everything(&server),
        before,
        "a late request re-created data"
    );
    assert_eq!(count(&db, "other").await, 2);

    // Registering again re-creates the tenant, empty, on the placement given.
    assert_eq!(
        registry.register(&tid("acme"), Placement::Shared).await,
        Health::Healthy
    );
    assert_eq!(
        registry
            .register(&tid("premium"), Placement::Database(5))
            .await,
        Health::Healthy
    );
    assert!(registry.tombstones().is_empty());
    for tenant in ["acme", "premium"] {
        assert_eq!(count(&db, tenant).await, 0);
        create(&db, tenant, "new").await;
        assert_eq!(count(&db, tenant).await, 1);
    }
    assert!(mentions(&keys_in(&server, 5), "premium"));
}

#[tokio::test]
async fn a_build_in_flight_when_the_tenant_is_destroyed_reports_it_destroyed() {
    let server = start_server();
    let registry = registry(server.url());
    let (started_rx, release) = register_gated(&registry, "slow", server.url_db(4));
    let db = Db::with_registry(registry.clone());
    let db2 = db.clone();
    let pending = tokio::spawn(async move {
        db2.tenant("slow")?
            .create(episode("", "late", 0.1, 1))
            .await
            .map(drop)
    });
    started_rx
        .await
        .unwrap_or_else(|e| panic!("factory never started: {e}"));
    registry.tombstone(&tid("slow"));
    release.notify_one();
    let outcome = pending
        .await
        .unwrap_or_else(|e| panic!("task panicked: {e}"));
    assert!(
        matches!(outcome, Err(Error::TenantDestroyed { .. })),
        "{outcome:?}"
    );
    assert_eq!(registry.open_count().await, 0);
    assert!(everything(&server).iter().all(Vec::is_empty));
}

#[tokio::test]
async fn a_database_placement_on_a_url_without_a_path_uses_that_database() {
    let server = start_server();
    for (shared, tenant, db_index) in [
        (format!("redis://{}", authority(&server)), "bare", 3u8),
        (format!("redis://{}/", authority(&server)), "slash", 4),
        (format!("redis://{}/0", authority(&server)), "zero", 5),
    ] {
        let registry = registry(&shared);
        assert_eq!(
            registry
                .register(&tid(tenant), Placement::Database(db_index))
                .await,
            Health::Healthy,
            "{shared}"
        );
        registry.set_policy(|t| (t.as_str() == "tiered").then_some(Placement::Database(9)));
        let db = Db::with_registry(registry);
        create(&db, tenant, "x").await;
        create(&db, "tiered", tenant).await;
        assert!(mentions(&keys_in(&server, db_index), tenant), "{shared}");
    }
    let keys = everything(&server);
    assert!(
        keys[0].is_empty(),
        "nothing on the shared database: {:?}",
        keys[0]
    );
    assert_eq!(
        keys.iter().filter(|k| mentions(k, "bare")).count(),
        1,
        "{keys:?}"
    );
    assert!(mentions(&keys[9], "tiered"));
    let t = Db::with_registry({
        let r = registry(server.url());
        r.register(&tid("tiered"), Placement::Database(9)).await;
        r
    });
    assert_eq!(count(&t, "tiered").await, 3);
}

#[tokio::test]
async fn credentials_reach_the_database_placement_and_are_never_shown() {
    let server = start_server();
    let secret = "hunter2-reg";
    let mut raw = server.raw();
    redis::cmd("ACL")
        .arg("SETUSER")
        .arg("popoto-reg")
        .arg("on")
        .arg(format!(">{secret}"))
        .arg("~*")
        .arg("+@all")
        .exec(&mut raw)
        .unwrap_or_else(|e| panic!("ACL SETUSER: {e}"));
    let shared = format!("redis://popoto-reg:{secret}@{}", authority(&server));
    let registry = registry(&shared);
    let placement = Placement::Database(2);
    assert_eq!(
        registry.register(&tid("vault"), placement.clone()).await,
        Health::Healthy
    );
    let wrong = Placement::Server(BackendConfig::new(format!(
        "redis://popoto-reg:wrong-{secret}@{}/0",
        authority(&server)
    )));
    let health = registry.register(&tid("locked"), wrong.clone()).await;
    assert!(matches!(health, Health::Disabled(_)), "{health:?}");
    let db = Db::with_registry(registry.clone());
    create(&db, "vault", "v").await;
    assert!(mentions(&keys_in(&server, 2), "vault"));
    let refused = db
        .tenant("locked")
        .unwrap_or_else(|e| panic!("{e}"))
        .query::<Episode>()
        .count()
        .await;
    let err = match refused {
        Err(e @ Error::TenantDisabled { .. }) => e,
        other => panic!("expected TenantDisabled, got {other:?}"),
    };
    let shown = [
        format!("{registry:?}"),
        format!("{placement:?}"),
        format!("{wrong:?}"),
        format!("{:?}", BackendConfig::new(shared.clone())),
        format!("{:?}", registry.list().await),
        format!("{err} / {err:?}"),
        format!("{db:?}"),
        registry.shared().url(),
    ];
    for s in shown {
        assert!(!s.contains(secret), "credential shown: {s}");
        assert!(!s.contains("popoto-reg"), "user shown: {s}");
    }
}
