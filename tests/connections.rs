//! Connections: concurrent calls share a few multiplexed sockets (and are pipelined on them);
//! a blocking command runs on a dedicated connection and holds up nobody.

mod support;

use popoto::{Backend, BackendConfig};
use support::{setup, spawn_blocking_read, Episode};

/// `INFO stats` field `name` of the server.
fn stat(server: &popoto::testing::TestRedis, name: &str) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("stats")
        .query(&mut server.raw())
        .unwrap_or_else(|e| panic!("INFO stats: {e}"));
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in INFO stats"))
}

/// 256 tasks creating at once dial no more than the shared connections (two by default), and
/// their calls are batched: fewer socket reads by the server than calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_share_two_sockets() {
    let (server, db) = setup().await;
    let acme = db.tenant("acme").unwrap();
    acme.create(Episode::default()).await.unwrap();
    let dialed = stat(&server, "total_connections_received");
    let reads = stat(&server, "total_reads_processed");
    let tasks: Vec<_> = (0..256)
        .map(|i| {
            let acme = acme.clone();
            tokio::spawn(async move {
                for j in 0..8 {
                    let ep = Episode {
                        title: format!("t{i}-{j}"),
                        score: f64::from(j),
                        ..Default::default()
                    };
                    acme.create(ep).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(acme.query::<Episode>().count().await.unwrap(), 1 + 256 * 8);
    // One raw connection per `stat` call above and below, at most one more shared lane.
    let dialed = stat(&server, "total_connections_received") - dialed;
    assert!(dialed <= 3, "{dialed} connections dialed for 2,048 creates");
    let reads = stat(&server, "total_reads_processed") - reads;
    assert!(
        reads < 2048,
        "{reads} socket reads for 2,048 creates: calls were not pipelined"
    );
}

/// A caller that waits for each reply keeps to one socket (the lane with nothing outstanding),
/// as with a connection of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sequential_caller_keeps_to_one_socket() {
    let (server, _) = setup().await;
    let dialed = stat(&server, "total_connections_received");
    // Two lanes (the default), neither dialed yet.
    let db = popoto::Db::with_config(BackendConfig::new(server.url())).unwrap();
    let acme = db.tenant("acme").unwrap();
    for i in 0..32 {
        let ep = Episode {
            title: format!("s{i}"),
            ..Default::default()
        };
        acme.create(ep).await.unwrap();
        acme.query::<Episode>().count().await.unwrap();
    }
    assert_eq!(acme.query::<Episode>().count().await.unwrap(), 32);
    // One shared lane, and the raw connection of the `stat` call below.
    let dialed = stat(&server, "total_connections_received") - dialed;
    assert_eq!(
        dialed, 2,
        "{dialed} connections dialed by one sequential caller"
    );
}

/// A blocking read waits on a dedicated connection while shared calls go on; writing to the
/// stream ends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_read_holds_up_no_shared_call() {
    let (server, db) = setup().await;
    let mut config = BackendConfig::new(server.url());
    config.shared_connections = 1;
    let backend = Backend::new(config).unwrap();
    let blocked = spawn_blocking_read(&backend).await;
    // Wait until the server has the blocked client, then call on the shared connection.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let info: String = redis::cmd("INFO")
            .arg("clients")
            .query(&mut server.raw())
            .unwrap();
        if info.contains("blocked_clients:1") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never blocked");
        tokio::task::yield_now().await;
    }
    let pong: String = backend
        .query("ping", "-", &redis::cmd("PING"))
        .await
        .unwrap();
    assert_eq!(pong, "PONG");
    db.tenant("acme")
        .unwrap()
        .create(Episode::default())
        .await
        .unwrap();
    assert!(!blocked.is_finished(), "the blocking read is still waiting");
    let mut add = redis::cmd("XADD");
    add.arg("jobs").arg("*").arg("f").arg("v");
    backend.query::<String>("xadd", "-", &add).await.unwrap();
    let read = blocked.await.unwrap().unwrap();
    assert!(
        matches!(read, redis::Value::Array(ref s) if s.len() == 1),
        "{read:?}"
    );
}
