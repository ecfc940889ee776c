//! Connections: concurrent calls share a few multiplexed sockets (and are pipelined on them), a
//! lone call goes on the solo connection, and a blocking command runs on a dedicated connection
//! and holds up nobody.

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
    // The raw connections of two `stat` calls (the second above, the one below) and at most
    // the two shared lanes: the first create dialed the solo connection, not a lane.
    let dialed = stat(&server, "total_connections_received") - dialed;
    assert!(dialed <= 4, "{dialed} connections dialed for 2,048 creates");
    let reads = stat(&server, "total_reads_processed") - reads;
    assert!(
        reads < 2048,
        "{reads} socket reads for 2,048 creates: calls were not pipelined"
    );
}

/// A caller that waits for each reply keeps to one socket (the solo connection: nothing else is
/// outstanding when it calls).
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
    // The solo connection, and the raw connection of the `stat` call below.
    let dialed = stat(&server, "total_connections_received") - dialed;
    assert_eq!(
        dialed, 2,
        "{dialed} connections dialed by one sequential caller"
    );
}

/// Polls `INFO clients` until the server has `n` blocked clients (bounded).
fn await_blocked(server: &popoto::testing::TestRedis, n: usize) {
    let want = format!("blocked_clients:{n}");
    for _ in 0..100_000 {
        let info: String = redis::cmd("INFO")
            .arg("clients")
            .query(&mut server.raw())
            .unwrap_or_else(|e| panic!("INFO clients: {e}"));
        if info.lines().any(|l| l.trim() == want) {
            return;
        }
        std::thread::yield_now();
    }
    panic!("never {want}");
}

/// A call on the wire when its connection is cut fails with a connection error (its outcome
/// is unknown), and the next call dials anew.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_on_the_wire_when_its_connection_is_cut_fails_and_the_next_redials() {
    let (server, _) = setup().await;
    let backend = Backend::new(BackendConfig::new(server.url())).unwrap();
    // Nothing else in flight: the pop waits on the solo connection.
    let waiting = {
        let backend = backend.clone();
        tokio::spawn(async move {
            let mut pop = redis::cmd("BLPOP");
            pop.arg("nothing").arg(0);
            backend.query::<redis::Value>("blpop", "-", &pop).await
        })
    };
    await_blocked(&server, 1);
    assert_eq!(support::faults::kill_clients(server.url()), 1);
    let err = waiting.await.unwrap().unwrap_err();
    assert!(err.is_connection_error(), "{err}");
    assert_eq!(backend.consecutive_failures(), 1);
    let pong: String = backend
        .query("ping", "-", &redis::cmd("PING"))
        .await
        .unwrap();
    assert_eq!(pong, "PONG");
    assert_eq!(backend.consecutive_failures(), 0);
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
    // Once the server has the blocked client, call on the shared connection.
    await_blocked(&server, 1);
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
