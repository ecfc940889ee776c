//! The cluster backend itself and the cluster layout's tenants, on the shared cluster: the
//! backend routes each command to its slot's node, scripts run when their keys share a slot, a
//! write whose keys span slots (popoto's own layout) fails closed, a blocking read waits on a
//! connection of its own, tenants write and read in their slots, per-tenant ACL users work on
//! every node, and tenants move between layouts and back.

use popoto::maintenance::DryRun;
use popoto::testing::TestCluster;
use popoto::testing::TestRedis;
use popoto::Layout;
use popoto::{Backend, BackendConfig, Db, Error, ModelSet, Sweep, TenantId};
use popoto_core::keys::tag;

use crate::common::*;
use crate::support::{dump, spawn_blocking_read, Episode, Memory};

fn cluster() -> &'static TestCluster {
    TestCluster::shared()
}

/// Keys of the cluster's masters matching `pattern`.
fn keys_matching(cluster: &TestCluster, pattern: &str) -> Vec<String> {
    cluster
        .keys(pattern)
        .unwrap_or_else(|e| panic!("KEYS {pattern}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_backend_routes_by_slot_and_refuses_cross_slot_scripts() {
    let cluster = cluster();
    let backend = Backend::new(BackendConfig::cluster(cluster.urls())).unwrap();
    // Keys in many slots land on their own nodes and read back.
    for i in 0..30 {
        let mut set = redis::cmd("SET");
        set.arg(format!("route-k{i}")).arg(i);
        backend.query::<()>("set", "-", &set).await.unwrap();
    }
    for i in 0..30 {
        let mut get = redis::cmd("GET");
        get.arg(format!("route-k{i}"));
        assert_eq!(backend.query::<i64>("get", "-", &get).await.unwrap(), i);
    }
    let spread: Vec<usize> = cluster
        .nodes()
        .iter()
        .map(|n| {
            redis::cmd("KEYS")
                .arg("route-k*")
                .query::<Vec<String>>(&mut n.raw())
                .unwrap()
                .len()
        })
        .collect();
    assert_eq!(spread.iter().sum::<usize>(), 30);
    assert!(spread.iter().all(|n| *n > 0), "{spread:?}");

    // A script whose keys share a hash tag runs on that slot's node; one spanning slots is
    // refused before it runs.
    let script = "redis.call('SET', KEYS[1], 'a') redis.call('SET', KEYS[2], 'b') return 1";
    let mut same = redis::cmd("EVAL");
    same.arg(script).arg(2).arg("{route}a").arg("{route}b");
    assert_eq!(backend.query::<i64>("eval", "-", &same).await.unwrap(), 1);
    let mut cross = redis::cmd("EVAL");
    cross.arg(script).arg(2).arg("route-x1").arg("route-x2");
    let err = backend.query::<i64>("eval", "-", &cross).await.unwrap_err();
    assert!(
        err.to_string().to_lowercase().contains("crossslot"),
        "{err}"
    );
    assert_eq!(keys_matching(cluster, "route-x*"), Vec::<String>::new());
}

/// popoto's layout puts an instance and its index keys in different slots: on a cluster its
/// create is refused whole (`CROSSSLOT`), never written in part.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_popoto_layout_write_on_a_cluster_fails_closed() {
    let cluster = cluster();
    let config = BackendConfig::cluster(cluster.urls()).with_layout(Layout::Popoto);
    let db = Db::with_config(config).unwrap();
    let acme = db.tenant("basic-refused").unwrap();
    for i in 0..5 {
        let ep = Episode {
            title: format!("t{i}"),
            ..Default::default()
        };
        match acme.create(ep).await {
            Err(Error::Redis { source, .. }) => {
                assert!(
                    source.to_string().to_lowercase().contains("crossslot"),
                    "{source}"
                )
            }
            other => panic!("expected a CROSSSLOT refusal, got {other:?}"),
        }
    }
    assert_eq!(
        keys_matching(cluster, "*basic-refused*"),
        Vec::<String>::new()
    );
}

/// A blocking read on a cluster runs on a connection of its own and ends when the stream gets
/// an entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_read_on_a_cluster_waits_on_its_own_connection() {
    let cluster = cluster();
    let backend = Backend::new(BackendConfig::cluster(cluster.urls())).unwrap();
    let reader = spawn_blocking_read(&backend).await;
    // Shared calls go on while the read waits.
    let mut ping = redis::cmd("GET");
    ping.arg("jobs-other");
    assert_eq!(
        backend
            .query::<Option<String>>("get", "-", &ping)
            .await
            .unwrap(),
        None
    );
    let mut add = redis::cmd("XADD");
    add.arg("jobs").arg("*").arg("f").arg("v");
    // The entry may land before the read blocks: either way the read returns it.
    backend.query::<String>("xadd", "-", &add).await.unwrap();
    let read = reader.await.unwrap().unwrap();
    assert!(
        matches!(read, redis::Value::Array(ref s) if s.len() == 1),
        "{read:?}"
    );
}

/// The cluster layout on a real cluster: two tenants (one whose id holds braces and a colon)
/// create, read, save, query, count, bulk-create, update confidence and delete; every key a
/// tenant's data holds carries that tenant's hash tag, and the other tenant sees none of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_layout_runs_a_tenants_writes_and_reads_in_its_slot() {
    let cluster = cluster();
    let db = Db::with_config(BackendConfig::cluster(cluster.urls())).unwrap();
    let tenants = ["basic-acme", "basic-a}b{c:d"];
    for t in tenants {
        let s = db.tenant(t).unwrap();
        let mut keys = Vec::new();
        for i in 0..4 {
            let ep = Episode {
                title: format!("{t}-{i}"),
                score: f64::from(i),
                rank: i64::from(i),
                ..Default::default()
            };
            let (key, _) = s
                .create_keyed(ep)
                .await
                .unwrap_or_else(|e| panic!("{t}: {e}"));
            keys.push(key);
        }
        let mut first = s.get(&keys[0]).await.unwrap().expect("created");
        first.score = 10.0;
        s.save(&first).await.unwrap();
        let hot = s
            .query::<Episode>()
            .filter(Episode::score().gte(2.0))
            .order_by_desc(Episode::score())
            .fetch()
            .await
            .unwrap();
        let titles: Vec<&str> = hot.iter().map(|e| e.title.as_str()).collect();
        assert_eq!(
            titles,
            [format!("{t}-0"), format!("{t}-3"), format!("{t}-2")]
        );
        assert_eq!(s.query::<Episode>().count().await.unwrap(), 4);
        let bulk: Vec<Episode> = (0..20)
            .map(|i| Episode {
                title: format!("bulk{i}"),
                ..Default::default()
            })
            .collect();
        s.create_many(bulk).await.unwrap();
        assert_eq!(s.query::<Episode>().count().await.unwrap(), 24);
        assert!(s.delete(&first).await.unwrap());
        assert_eq!(s.get(&keys[0]).await.unwrap(), None);
        let m = s
            .create(Memory {
                key: "m1".into(),
                content: "c".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        let state = s
            .confidence(&m, Memory::certainty())
            .unwrap()
            .update(0.9)
            .await
            .unwrap();
        assert!(state.confidence > 0.5, "{state:?}");
    }
    // Each tenant's keys all carry its tag: none is left outside them.
    for t in tenants {
        assert!(!tenant_keys(cluster, t).is_empty());
        let escaped = tag("", Some(t));
        let loose = keys_matching(cluster, &format!("*{escaped}*"))
            .into_iter()
            .filter(|k| !k.starts_with(&format!("{{{escaped}}}")))
            .collect::<Vec<_>>();
        assert_eq!(loose, Vec::<String>::new(), "{t}");
    }
    // Each tenant counts only its own.
    for t in tenants {
        let s = db.tenant(t).unwrap();
        assert_eq!(s.query::<Episode>().count().await.unwrap(), 23);
        assert_eq!(s.query::<Memory>().count().await.unwrap(), 1);
    }
}

/// What has no meaning or no single slot in the cluster layout is refused with a typed error
/// naming the layout, before anything is read or written: popoto's legacy-partition migration
/// (the cluster layout never had unpartitioned keys) and the model-free key check (popoto's
/// patterns). Admin reads across tenants and index checks run per keyspace
/// (`tests/cluster_admin.rs`, `tenancy`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_layout_refuses_popotos_legacy_maintenance() {
    let cluster = cluster();
    let db = Db::with_config(BackendConfig::cluster(cluster.urls())).unwrap();
    let t = "basic-legacy";
    db.tenant(t)
        .unwrap()
        .create(Memory {
            key: "m".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let before = tenant_keys(cluster, t);
    let admin = db.admin();
    match admin
        .migrate_to_partitioned(Memory::certainty(), DryRun::No, |_| {})
        .await
    {
        Err(Error::Layout { layout, model, .. }) => {
            assert_eq!((layout, model), (Layout::Cluster, "Memory"))
        }
        other => panic!("expected a layout refusal, got {other:?}"),
    }
    match admin.check_keys().await {
        Err(Error::Layout { layout, .. }) => assert_eq!(layout, Layout::Cluster),
        other => panic!("expected a layout refusal, got {other:?}"),
    }
    assert_eq!(tenant_keys(cluster, t), before);
}

/// A tenant's ACL user is created on every node: connected as it, the tenant writes and
/// queries across the cluster, and keyspace-wide commands are refused on every node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_user_works_on_every_node_of_a_cluster() {
    let cluster = cluster();
    let db = Db::with_config(BackendConfig::cluster(cluster.urls())).unwrap();
    let acme = popoto::TenantId::new("basic-acl").unwrap();
    let user = db.admin().create_tenant_user(&acme, "pw").await.unwrap();
    let as_user =
        |url: &str| url.replacen("redis://", &format!("redis://{}:pw@", user.username), 1);
    let urls: Vec<String> = cluster.urls().iter().map(|u| as_user(u)).collect();
    let tenant_db = Db::with_config(BackendConfig::cluster(urls.clone())).unwrap();
    let s = tenant_db.tenant("basic-acl").unwrap();
    for i in 0..3 {
        s.create(Episode {
            score: f64::from(i),
            ..Default::default()
        })
        .await
        .unwrap();
    }
    assert_eq!(s.query::<Episode>().count().await.unwrap(), 3);
    for url in &urls {
        let mut conn = redis::Client::open(url.as_str())
            .and_then(|c| c.get_connection())
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        let keys = redis::cmd("KEYS").arg("*").query::<Vec<String>>(&mut conn);
        assert_eq!(
            keys.err()
                .and_then(|e| e.code().map(str::to_owned))
                .as_deref(),
            Some("NOPERM")
        );
    }
}

/// What a tenant's reads return: its episodes by score, its memories with their confidence.
async fn tenant_view(db: &Db, t: &str) -> (Vec<Episode>, Vec<(Memory, f64, u64)>) {
    let s = db.tenant(t).unwrap();
    let episodes = s
        .query::<Episode>()
        .order_by(Episode::score())
        .fetch()
        .await
        .unwrap();
    let mut memories = Vec::new();
    for m in s.query::<Memory>().fetch().await.unwrap() {
        let state = s
            .confidence(&m, Memory::certainty())
            .unwrap()
            .state()
            .await
            .unwrap();
        memories.push((m, state.confidence, state.evidence_count));
    }
    memories.sort_by(|a, b| a.0.key.cmp(&b.0.key));
    (episodes, memories)
}

/// Two tenants move from popoto's layout on one server to the cluster layout on a cluster and
/// back to popoto's layout on another server: every read returns the same rows at each step,
/// a dry run writes nothing, a second run changes nothing, and the round trip ends byte for
/// byte in the original database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_move_between_layouts_and_back_without_a_change() {
    let origin = TestRedis::start().unwrap();
    let source = Db::connect(origin.url()).await.unwrap();
    let tenants = ["move-acme", "move-a}b{c:d"];
    for t in tenants {
        let s = source.tenant(t).unwrap();
        for i in 0..6 {
            s.create(Episode {
                title: format!("{t}-{i}"),
                score: f64::from(i) / 2.0,
                rank: i64::from(i % 3),
                ..Default::default()
            })
            .await
            .unwrap();
        }
        // Unique keys are model-wide in popoto's layout: each tenant its own.
        for k in ["m1", "m2"] {
            let m = s
                .create(Memory {
                    key: format!("{t}-{k}"),
                    content: format!("{t} {k}"),
                    ..Default::default()
                })
                .await
                .unwrap();
            s.confidence(&m, Memory::certainty())
                .unwrap()
                .update(0.9)
                .await
                .unwrap();
        }
    }
    let models = ModelSet::new().with::<Episode>().with::<Memory>();
    let before: Vec<_> = views_of(&source, &tenants).await;
    let original = dump(&origin);

    let cluster = cluster();
    let clustered = Db::with_config(BackendConfig::cluster(cluster.urls())).unwrap();
    let id = |t: &str| TenantId::new(t).unwrap();
    // A dry run reads and counts, and writes nothing.
    let dry = source
        .admin()
        .migrate_tenant_layout(
            &id("move-acme"),
            &models,
            &clustered.admin(),
            Sweep::Keyspace,
            DryRun::Yes,
        )
        .await
        .unwrap();
    assert_eq!((dry.instances, dry.dry_run), (8, true));
    assert!(dry.entries > 8, "{dry:?}");
    for t in tenants {
        assert_eq!(tenant_keys(cluster, t), Vec::<String>::new());
    }
    for t in tenants {
        for _ in 0..2 {
            // The second run finds everything in place and changes nothing.
            let r = source
                .admin()
                .migrate_tenant_layout(
                    &id(t),
                    &models,
                    &clustered.admin(),
                    Sweep::Keyspace,
                    DryRun::No,
                )
                .await
                .unwrap();
            assert_eq!(
                (r.from, r.to, r.instances),
                (Layout::Popoto, Layout::Cluster, 8)
            );
        }
    }
    assert_eq!(views_of(&clustered, &tenants).await, before);
    for t in tenants {
        assert!(
            !tenant_keys(cluster, t).is_empty(),
            "{t} moved under its tag"
        );
    }

    // And back, from the cluster (its SCAN reaches one node: the indexes find the data).
    let back_server = TestRedis::start().unwrap();
    let back = Db::connect(back_server.url()).await.unwrap();
    for t in tenants {
        clustered
            .admin()
            .migrate_tenant_layout(&id(t), &models, &back.admin(), Sweep::Indexes, DryRun::No)
            .await
            .unwrap();
    }
    assert_eq!(views_of(&back, &tenants).await, before);
    assert_eq!(dump(&back_server), original);
}

async fn views_of(db: &Db, tenants: &[&str]) -> Vec<(Vec<Episode>, Vec<(Memory, f64, u64)>)> {
    let mut out = Vec::new();
    for t in tenants {
        out.push(tenant_view(db, t).await);
    }
    out
}
