//! A private Redis Cluster for tests: nodes started with `--cluster-enabled yes` on free
//! loopback ports and joined with `redis-cli --cluster create`, as redis-rs's own test harness
//! does; ready once every node reports `cluster_state:ok`, the same slot map and, with
//! replicas, every replica attached to its master.
//!
//! [`TestCluster::shared`] starts one cluster per test binary; the fault tests start their own
//! and kill masters or move slots ([`TestCluster::begin_slot_move`], then
//! [`TestCluster::migrate_keys`] and [`TestCluster::end_slot_move`]).

use std::process::Command;
use std::sync::{mpsc, OnceLock};
use std::time::{Duration, Instant};

use super::{err, TestRedis, TestServerError};

/// A private Redis Cluster (masters, optionally with replicas), killed on drop.
#[derive(Debug)]
pub struct TestCluster {
    nodes: Vec<TestRedis>,
    replicas: usize,
}

/// How long the cluster may take to agree on its slots (or on a failover).
const READY_WITHIN: Duration = Duration::from_secs(30);

/// The shared cluster of this process (or why it could not start).
static SHARED: OnceLock<Result<TestCluster, String>> = OnceLock::new();

impl TestCluster {
    /// Starts `masters` nodes and joins them into one cluster covering every slot (with
    /// `redis-cli --cluster create` from 3 masters; fewer are given their slots by hand).
    pub fn start(masters: usize) -> Result<TestCluster, TestServerError> {
        Self::launch(masters, 0, false)
    }

    /// Starts `masters` masters with `replicas` replicas each (`3, 1`: three masters and three
    /// replicas); ready once every replica is attached and in sync with its master.
    pub fn start_with_replicas(
        masters: usize,
        replicas: usize,
    ) -> Result<TestCluster, TestServerError> {
        Self::launch(masters, replicas, false)
    }

    /// The cluster of 3 masters shared by every test of this process, started by the first
    /// call. Its nodes are tied to a thread that lives as long as the process, so they die
    /// with it (`setpriv --pdeathsig`, even when the process is killed). Tests sharing it keep
    /// to tenants of their own. Panics, with the nodes' logs, if it cannot start.
    pub fn shared() -> &'static TestCluster {
        let started = SHARED.get_or_init(|| {
            let (tx, rx) = mpsc::channel();
            let spawned = std::thread::Builder::new()
                .name("popoto-shared-cluster".into())
                .spawn(move || {
                    // A send fails only if the caller is gone: nobody waits for the cluster.
                    let _ = tx.send(Self::launch(3, 0, true).map_err(|e| e.to_string()));
                    // The nodes die when this thread does: it lives until the process exits.
                    loop {
                        std::thread::park();
                    }
                });
            match spawned {
                Ok(_) => rx
                    .recv()
                    .unwrap_or_else(|e| Err(format!("no cluster: {e}"))),
                Err(e) => Err(format!("cannot spawn the cluster's thread: {e}")),
            }
        });
        match started {
            Ok(cluster) => cluster,
            Err(e) => panic!("the shared test cluster did not start: {e}"),
        }
    }

    fn launch(masters: usize, replicas: usize, tied: bool) -> Result<TestCluster, TestServerError> {
        if masters == 0 || (masters < 3 && replicas > 0) {
            return Err(err(
                format!(
                    "cannot build a cluster of {masters} masters with {replicas} replicas each"
                ),
                "",
            ));
        }
        let nodes = (0..masters * (1 + replicas))
            .map(|_| {
                TestRedis::start_private(
                    &[
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--cluster-node-timeout",
                        "2000",
                    ],
                    tied,
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        let cluster = TestCluster { nodes, replicas };
        if masters < 3 {
            cluster.join_by_hand()?;
            cluster.wait_for("the cluster to agree on its slots", |c| c.agreed())?;
            return Ok(cluster);
        }
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
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
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
        cluster.wait_for("the cluster to agree on its slots", |c| {
            Ok(c.agreed()? && c.replicas_attached()?)
        })?;
        Ok(cluster)
    }

    /// Gives each node an even share of the slots and makes them meet (what `redis-cli
    /// --cluster create` refuses to do for fewer than 3 masters).
    fn join_by_hand(&self) -> Result<(), TestServerError> {
        let n = self.nodes.len();
        let failed = |e: redis::RedisError| err(format!("joining the cluster: {e}"), &self.log());
        for (i, node) in self.nodes.iter().enumerate() {
            let (lo, hi) = (16384 * i / n, 16384 * (i + 1) / n - 1);
            redis::cmd("CLUSTER")
                .arg("ADDSLOTSRANGE")
                .arg(lo)
                .arg(hi)
                .query::<()>(&mut node.raw())
                .map_err(failed)?;
            if i > 0 {
                redis::cmd("CLUSTER")
                    .arg("MEET")
                    .arg("127.0.0.1")
                    .arg(self.nodes[0].port())
                    .query::<()>(&mut node.raw())
                    .map_err(failed)?;
            }
        }
        Ok(())
    }

    /// Polls `ready` until it holds, for at most 30 s; an error or the deadline fails with
    /// every node's log (`what` says what was awaited).
    pub fn wait_for(
        &self,
        what: &str,
        mut ready: impl FnMut(&TestCluster) -> redis::RedisResult<bool>,
    ) -> Result<(), TestServerError> {
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            match ready(self) {
                Ok(true) => return Ok(()),
                Ok(false) if Instant::now() < deadline => {
                    // Gossip runs on the nodes' own clock (100 ms ticks): poll, don't spin.
                    std::thread::sleep(Duration::from_millis(20));
                }
                Ok(false) => {
                    return Err(err(
                        format!("waited {READY_WITHIN:?} for {what}"),
                        &self.log(),
                    ))
                }
                Err(e) => return Err(err(format!("waiting for {what}: {e}"), &self.log())),
            }
        }
    }

    /// Whether every running node is `cluster_state:ok` with the same `CLUSTER SLOTS`.
    pub fn agreed(&self) -> redis::RedisResult<bool> {
        let mut first: Option<redis::Value> = None;
        for node in self.running() {
            let mut conn = connect(node)?;
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

    /// Whether every master has its replicas connected and every replica's link is up.
    fn replicas_attached(&self) -> redis::RedisResult<bool> {
        if self.replicas == 0 {
            return Ok(true);
        }
        for node in self.running() {
            let info: String = redis::cmd("INFO")
                .arg("replication")
                .query(&mut connect(node)?)?;
            let has = |line: &str| info.lines().any(|l| l.trim() == line);
            let attached = if has("role:master") {
                has(&format!("connected_slaves:{}", self.replicas))
            } else {
                has("master_link_status:up")
            };
            if !attached {
                return Ok(false);
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

    /// The nodes, to kill or restart one.
    pub fn nodes_mut(&mut self) -> &mut [TestRedis] {
        &mut self.nodes
    }

    /// The nodes still running.
    pub fn running(&self) -> impl Iterator<Item = &TestRedis> {
        self.nodes.iter().filter(|n| n.is_running())
    }

    /// The slot of `key` (`CLUSTER KEYSLOT` on a running node).
    pub fn slot_of(&self, key: &str) -> redis::RedisResult<u16> {
        redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut self.any_conn()?)
    }

    /// The index (in [`TestCluster::nodes`]) of the master serving `slot`, as the first running
    /// node sees the slot map.
    pub fn master_of(&self, slot: u16) -> redis::RedisResult<usize> {
        let ranges: Vec<redis::Value> = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query(&mut self.any_conn()?)?;
        for range in ranges {
            // [start, end, [host, port, id, …] of the master, replicas…]
            let (start, end, port) = match range {
                redis::Value::Array(parts) => match parts.as_slice() {
                    [redis::Value::Int(s), redis::Value::Int(e), redis::Value::Array(m), ..] => {
                        match m.get(1) {
                            Some(redis::Value::Int(p)) => (*s, *e, *p),
                            _ => return Err(protocol(format!("a CLUSTER SLOTS node {m:?}"))),
                        }
                    }
                    other => return Err(protocol(format!("a CLUSTER SLOTS range {other:?}"))),
                },
                other => return Err(protocol(format!("a CLUSTER SLOTS range {other:?}"))),
            };
            if (start..=end).contains(&i64::from(slot)) {
                let port = u16::try_from(port)
                    .map_err(|_| protocol(format!("a CLUSTER SLOTS port {port}")))?;
                return self.index_of(port);
            }
        }
        Err(protocol(format!("no node serves slot {slot}")))
    }

    /// The index of the node listening on `port`.
    fn index_of(&self, port: u16) -> redis::RedisResult<usize> {
        self.nodes
            .iter()
            .position(|n| n.port() == port)
            .ok_or_else(|| protocol(format!("no node of this cluster on port {port}")))
    }

    /// The indexes of the running masters.
    pub fn masters(&self) -> redis::RedisResult<Vec<usize>> {
        let mut out = Vec::new();
        for (i, node) in self.nodes.iter().enumerate() {
            if !node.is_running() {
                continue;
            }
            let role: Vec<redis::Value> = redis::cmd("ROLE").query(&mut connect(node)?)?;
            if matches!(role.first(), Some(redis::Value::BulkString(r)) if r == b"master") {
                out.push(i);
            }
        }
        Ok(out)
    }

    /// Keys matching `pattern` on every running master (`KEYS`; a replica's copies are not
    /// counted), sorted.
    pub fn keys(&self, pattern: &str) -> redis::RedisResult<Vec<String>> {
        let mut all = Vec::new();
        for i in self.masters()? {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(pattern)
                .query(&mut connect(&self.nodes[i])?)?;
            all.extend(keys);
        }
        all.sort();
        Ok(all)
    }

    /// Marks `slot` `IMPORTING` on `to` and `MIGRATING` on `from`: from now on the source
    /// redirects commands whose keys it no longer holds (`ASK`, or `TRYAGAIN` when only some).
    pub fn begin_slot_move(&self, slot: u16, from: usize, to: usize) -> redis::RedisResult<()> {
        let (from_id, to_id) = (self.node_id(from)?, self.node_id(to)?);
        setslot(&self.nodes[to], slot, "IMPORTING", &from_id)?;
        setslot(&self.nodes[from], slot, "MIGRATING", &to_id)
    }

    /// Migrates up to `count` keys of `slot` from `from` to `to` (`MIGRATE … KEYS`); returns how
    /// many were moved (0: the source holds none of the slot's keys any more).
    pub fn migrate_keys(
        &self,
        slot: u16,
        from: usize,
        to: usize,
        count: usize,
    ) -> redis::RedisResult<usize> {
        let mut source = connect(&self.nodes[from])?;
        let keys: Vec<Vec<u8>> = redis::cmd("CLUSTER")
            .arg("GETKEYSINSLOT")
            .arg(slot)
            .arg(count)
            .query(&mut source)?;
        if keys.is_empty() {
            return Ok(0);
        }
        redis::cmd("MIGRATE")
            .arg("127.0.0.1")
            .arg(self.nodes[to].port())
            .arg("")
            .arg(0)
            .arg(5000)
            .arg("KEYS")
            .arg(&keys)
            .exec(&mut source)?;
        Ok(keys.len())
    }

    /// Assigns `slot` to `to` on every running master (the target first, as `redis-cli
    /// --cluster reshard` does), ending a move.
    pub fn end_slot_move(&self, slot: u16, to: usize) -> redis::RedisResult<()> {
        let to_id = self.node_id(to)?;
        setslot(&self.nodes[to], slot, "NODE", &to_id)?;
        for i in self.masters()? {
            if i != to {
                setslot(&self.nodes[i], slot, "NODE", &to_id)?;
            }
        }
        Ok(())
    }

    /// The cluster id of node `i` (`CLUSTER MYID`).
    pub fn node_id(&self, i: usize) -> redis::RedisResult<String> {
        redis::cmd("CLUSTER")
            .arg("MYID")
            .query(&mut connect(&self.nodes[i])?)
    }

    /// A connection to the first running node.
    fn any_conn(&self) -> redis::RedisResult<redis::Connection> {
        match self.running().next() {
            Some(node) => connect(node),
            None => Err(protocol("no node of the cluster is running".into())),
        }
    }

    /// Every node's log, one after the other.
    pub fn log(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("--- node {} ---\n{}", n.port(), n.log()))
            .collect()
    }
}

/// A blocking connection to `node`.
fn connect(node: &TestRedis) -> redis::RedisResult<redis::Connection> {
    redis::Client::open(node.url())?.get_connection()
}

/// `CLUSTER SETSLOT <slot> <how> <node id>` on `node`.
fn setslot(node: &TestRedis, slot: u16, how: &str, id: &str) -> redis::RedisResult<()> {
    redis::cmd("CLUSTER")
        .arg("SETSLOT")
        .arg(slot)
        .arg(how)
        .arg(id)
        .exec(&mut connect(node)?)
}

/// An error for an answer the harness did not expect.
fn protocol(detail: String) -> redis::RedisError {
    redis::RedisError::from((
        redis::ErrorKind::UnexpectedReturnType,
        "test cluster",
        detail,
    ))
}

/// `CLUSTER SLOTS` with its ranges (and each range's replicas) sorted, so that two nodes'
/// answers compare equal.
fn normalized(slots: redis::Value) -> redis::Value {
    match slots {
        redis::Value::Array(mut ranges) => {
            for range in &mut ranges {
                if let redis::Value::Array(parts) = range {
                    if parts.len() > 3 {
                        parts[3..].sort_by_key(|n| format!("{n:?}"));
                    }
                }
            }
            ranges.sort_by_key(|r| format!("{r:?}"));
            redis::Value::Array(ranges)
        }
        other => other,
    }
}
