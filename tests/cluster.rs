//! A real local Redis Cluster (3 masters started and joined by the harness): the backend
//! routes each command to its slot's node, scripts run when their keys share a slot, and a
//! write whose keys span slots (popoto's own layout) fails closed, writing nothing anywhere.

mod support;

use popoto::testing::TestCluster;
use popoto::{Backend, BackendConfig, Db, Error};
use support::{spawn_blocking_read, Episode};

fn cluster() -> TestCluster {
    TestCluster::start(3).unwrap_or_else(|e| panic!("{e}"))
}

/// Keys on every node whose name starts with `prefix`.
fn keys_everywhere(cluster: &TestCluster) -> Vec<String> {
    let mut all = Vec::new();
    for node in cluster.nodes() {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("*")
            .query(&mut node.raw())
            .unwrap_or_else(|e| panic!("KEYS on {}: {e}", node.url()));
        all.extend(keys);
    }
    all.sort();
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_backend_routes_by_slot_and_refuses_cross_slot_scripts() {
    let cluster = cluster();
    let backend = Backend::new(BackendConfig::cluster(cluster.urls())).unwrap();
    // Keys in many slots land on their own nodes and read back.
    for i in 0..30 {
        let mut set = redis::cmd("SET");
        set.arg(format!("k{i}")).arg(i);
        backend.query::<()>("set", "-", &set).await.unwrap();
    }
    for i in 0..30 {
        let mut get = redis::cmd("GET");
        get.arg(format!("k{i}"));
        assert_eq!(backend.query::<i64>("get", "-", &get).await.unwrap(), i);
    }
    let spread: Vec<usize> = cluster
        .nodes()
        .iter()
        .map(|n| redis::cmd("DBSIZE").query::<usize>(&mut n.raw()).unwrap())
        .collect();
    assert_eq!(spread.iter().sum::<usize>(), 30);
    assert!(spread.iter().all(|n| *n > 0), "{spread:?}");

    // A script whose keys share a hash tag runs on that slot's node; one spanning slots is
    // refused before it runs.
    let script = "redis.call('SET', KEYS[1], 'a') redis.call('SET', KEYS[2], 'b') return 1";
    let mut same = redis::cmd("EVAL");
    same.arg(script).arg(2).arg("{t}a").arg("{t}b");
    assert_eq!(backend.query::<i64>("eval", "-", &same).await.unwrap(), 1);
    let mut cross = redis::cmd("EVAL");
    cross.arg(script).arg(2).arg("x1").arg("x2");
    let err = backend.query::<i64>("eval", "-", &cross).await.unwrap_err();
    assert!(
        err.to_string().to_lowercase().contains("crossslot"),
        "{err}"
    );
    assert!(!keys_everywhere(&cluster).iter().any(|k| k.starts_with('x')));
}

/// popoto's layout puts an instance and its index keys in different slots: on a cluster its
/// create is refused whole (`CROSSSLOT`), never written in part.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_popoto_layout_write_on_a_cluster_fails_closed() {
    let cluster = cluster();
    let db = Db::with_config(BackendConfig::cluster(cluster.urls())).unwrap();
    let acme = db.tenant("acme").unwrap();
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
    assert_eq!(keys_everywhere(&cluster), Vec::<String>::new());
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
