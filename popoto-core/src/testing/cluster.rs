//! A private Redis Cluster for tests: `masters` nodes started with `--cluster-enabled yes` on
//! free loopback ports and joined with `redis-cli --cluster create`, as redis-rs's own test
//! harness does; ready once every node reports `cluster_state:ok` and the same slot map.

use std::process::Command;
use std::time::{Duration, Instant};

use super::{err, TestRedis, TestServerError};

/// A private Redis Cluster of masters only (no replicas), killed on drop.
#[derive(Debug)]
pub struct TestCluster {
    nodes: Vec<TestRedis>,
}

/// How long the cluster may take to agree on its slots.
const READY_WITHIN: Duration = Duration::from_secs(30);

impl TestCluster {
    /// Starts `masters` nodes (at least 3, as `redis-cli --cluster create` requires) and joins
    /// them into one cluster covering every slot.
    pub fn start(masters: usize) -> Result<TestCluster, TestServerError> {
        if masters < 3 {
            return Err(err(
                format!("a Redis Cluster needs at least 3 masters, not {masters}"),
                "",
            ));
        }
        let nodes = (0..masters)
            .map(|_| {
                TestRedis::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "2000",
                ])
            })
            .collect::<Result<Vec<_>, _>>()?;
        let cluster = TestCluster { nodes };
        let cli = std::env::var_os("POPOTO_REDIS_CLI").unwrap_or_else(|| "redis-cli".into());
        let out = Command::new(&cli)
            .arg("--cluster")
            .arg("create")
            .args(
                cluster
                    .nodes
                    .iter()
                    .map(|n| format!("127.0.0.1:{}", n.port())),
            )
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .map_err(|e| err(format!("cannot run {cli:?}: {e}"), ""))?;
        if !out.status.success() {
            return Err(err(
                format!(
                    "redis-cli --cluster create failed: {}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
                &cluster.log(),
            ));
        }
        cluster.wait_ready()?;
        Ok(cluster)
    }

    /// Polls every node until all report `cluster_state:ok` and the same slot map.
    fn wait_ready(&self) -> Result<(), TestServerError> {
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            match self.agreed() {
                Ok(true) => return Ok(()),
                Ok(false) if Instant::now() < deadline => {
                    // Gossip runs on the nodes' own clock (100 ms ticks): poll, don't spin.
                    std::thread::sleep(Duration::from_millis(20));
                }
                Ok(false) => {
                    return Err(err(
                        format!("the cluster did not agree on its slots within {READY_WITHIN:?}"),
                        &self.log(),
                    ))
                }
                Err(e) => return Err(err(format!("asking the cluster: {e}"), &self.log())),
            }
        }
    }

    /// Whether every node is `cluster_state:ok` with the same `CLUSTER SLOTS`.
    fn agreed(&self) -> redis::RedisResult<bool> {
        let mut first: Option<redis::Value> = None;
        for node in &self.nodes {
            let mut conn = redis::Client::open(node.url())?.get_connection()?;
            let info: String = redis::cmd("CLUSTER").arg("INFO").query(&mut conn)?;
            if !info.lines().any(|l| l.trim() == "cluster_state:ok") {
                return Ok(false);
            }
            let slots = normalized(redis::cmd("CLUSTER").arg("SLOTS").query(&mut conn)?);
            match &first {
                None => first = Some(slots),
                Some(f) if *f != slots => return Ok(false),
                Some(_) => {}
            }
        }
        Ok(true)
    }

    /// The nodes' URLs (`redis://127.0.0.1:port`), the seeds for a cluster client.
    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("redis://127.0.0.1:{}", n.port()))
            .collect()
    }

    /// The nodes.
    pub fn nodes(&self) -> &[TestRedis] {
        &self.nodes
    }

    /// Every node's log, one after the other.
    pub fn log(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("--- node {} ---\n{}", n.port(), n.log()))
            .collect()
    }
}

/// `CLUSTER SLOTS` with its ranges sorted, so that two nodes' answers compare equal.
fn normalized(slots: redis::Value) -> redis::Value {
    match slots {
        redis::Value::Array(mut ranges) => {
            ranges.sort_by_key(|r| format!("{r:?}"));
            redis::Value::Array(ranges)
        }
        other => other,
    }
}
