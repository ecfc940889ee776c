//! A backend: one Redis server (or logical database), the connections to it, and calls with
//! their error labels, `NOSCRIPT` handling and health counters.
//!
//! Calls share a few multiplexed connections so that concurrent calls pipeline on one socket
//! (`conn.rs`); commands that hold a connection to themselves (blocking reads) use a small pool
//! of dedicated ones. Scripts and their `EVALSHA`/`EVAL` forms are in `exec.rs`.

mod conn;
mod exec;
mod group;
mod held;
mod recording;
mod scan;
mod slots;
mod solo;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use redis::{AsyncConnectionConfig, ErrorKind, RedisError, RedisResult};

pub(crate) use conn::is_connection_error;
pub(crate) use conn::{Conn, Link};
use conn::{Dedicated, Dialer, Failures, Lanes, Target};
pub(crate) use exec::split_batch_replies;
use exec::{
    batch_call, no_reply, round_trip, script_call, send_script, PLANS_PER_CALL,
    PLANS_PER_ROUND_TRIP,
};
pub(crate) use exec::{evalsha, Form, Script, Tries};
pub(crate) use group::{Batched, Batcher};
use group::{Group, Reply, Turn};
pub(crate) use held::Held;
pub(crate) use scan::KeyScan;
use solo::SoloTarget;

use crate::error::{Error, Result};
use crate::keys::Layout;
use crate::record::CommandLog;

/// Connection settings of a backend (its `Debug` hides the URL's credentials).
#[derive(Clone)]
#[non_exhaustive]
pub struct BackendConfig {
    /// Redis URL (`redis://host:port/db`); for a cluster, the first seed node.
    pub url: String,
    /// Seed nodes of a Redis Cluster (`redis://host:port` each); empty for one server.
    pub cluster_nodes: Vec<String>,
    /// Shared multiplexed connections that concurrent calls pipeline on (one keeps a single
    /// Redis server busy in most services; more spread the client's socket work).
    pub shared_connections: usize,
    /// Maximum number of dedicated connections, for commands that hold one to themselves
    /// (blocking stream reads).
    pub max_dedicated_connections: usize,
    /// Whether a call issued while no other is in flight goes on a connection of its own,
    /// written and read in the caller's task (`solo.rs`): lower latency for callers that wait
    /// for each reply; concurrent calls pipeline on the shared connections either way.
    pub solo_connection: bool,
    /// Whether creates issued while others are on the wire go out together, as one script
    /// call (group commit, `group.rs`); off, each create is a call of its own.
    pub group_commit: bool,
    /// How long a call waits for its reply before failing.
    pub response_timeout: Duration,
    /// How long dialing a connection may take.
    pub connect_timeout: Duration,
    /// How keys are laid out ([`Layout::Popoto`] unless chosen; a cluster defaults to
    /// [`Layout::Cluster`], the only one whose writes fit in one slot).
    pub layout: Layout,
}

impl BackendConfig {
    /// Defaults for `url`: 2 shared connections, up to 16 dedicated ones, group commit on,
    /// 30 s response timeout, 2 s connect timeout.
    pub fn new(url: impl Into<String>) -> Self {
        BackendConfig {
            url: url.into(),
            cluster_nodes: Vec::new(),
            shared_connections: 2,
            solo_connection: true,
            max_dedicated_connections: 16,
            group_commit: true,
            response_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(2),
            layout: Layout::Popoto,
        }
    }

    /// The same settings with keys laid out as `layout`.
    pub fn with_layout(mut self, layout: Layout) -> Self {
        self.layout = layout;
        self
    }
}

impl BackendConfig {
    /// Defaults for a Redis Cluster reached through these seed nodes (at least one): each
    /// command goes to the node of its keys' slot, and a script's keys must share one slot.
    pub fn cluster(nodes: Vec<String>) -> Self {
        let mut config = BackendConfig::new(nodes.first().cloned().unwrap_or_default());
        config.cluster_nodes = nodes;
        config.layout = Layout::Cluster;
        config
    }
}

impl std::fmt::Debug for BackendConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendConfig")
            .field("url", &crate::redis_url::redacted(&self.url))
            .field(
                "cluster_nodes",
                &self
                    .cluster_nodes
                    .iter()
                    .map(|n| crate::redis_url::redacted(n))
                    .collect::<Vec<_>>(),
            )
            .field("shared_connections", &self.shared_connections)
            .field("solo_connection", &self.solo_connection)
            .field("max_dedicated_connections", &self.max_dedicated_connections)
            .field("group_commit", &self.group_commit)
            .field("response_timeout", &self.response_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("layout", &self.layout)
            .finish()
    }
}

/// One Redis server (or logical database) and its connections.
#[derive(Clone)]
pub struct Backend {
    /// What every clone shares: one reference count to bump per handle taken.
    inner: Arc<Inner>,
    /// Where a dry run records the writes it would send (`None`: writes are sent).
    pub(crate) recorder: Option<CommandLog>,
}

/// The state of a backend shared by its clones.
struct Inner {
    lanes: Lanes,
    /// Group commit of concurrent creates (`None`: off), made by the first create.
    creates: Option<OnceLock<Arc<Group>>>,
    /// Dedicated connections (`None` on a cluster: each blocking call dials its own).
    dedicated: Option<Dedicated>,
    url: String,
    round_trips: AtomicU64,
    failures: Arc<Failures>,
    /// Calls in a row that failed at the connection level (0 after any reply).
    consecutive: AtomicU64,
    /// How this backend's keys are laid out.
    layout: Layout,
    /// Whether this backend is a Redis Cluster.
    cluster: bool,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("url", &self.url())
            .finish_non_exhaustive()
    }
}

/// Where a call runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// On the solo connection when no other call is in flight, else on a shared one,
    /// pipelined with other tasks' calls.
    Shared,
    /// On a shared connection always: for a caller that keeps several calls in flight.
    Lane,
    /// On a dedicated connection (a blocking command would stall a shared one).
    Dedicated,
}

impl Backend {
    /// Builds a backend; no connection is dialed until the first call.
    pub fn new(config: BackendConfig) -> Result<Self> {
        let conn_config = AsyncConnectionConfig::new()
            .set_response_timeout(Some(config.response_timeout))
            .set_connection_timeout(Some(config.connect_timeout));
        let failures = Arc::new(Failures::default());
        let mut solo = None;
        let (target, dedicated) = if config.cluster_nodes.is_empty() {
            let client = redis::Client::open(config.url.as_str())
                .map_err(|e| Error::Config(e.to_string()))?;
            solo = SoloTarget::new(
                client.get_connection_info(),
                config.connect_timeout,
                config.response_timeout,
            )
            .filter(|_| config.solo_connection);
            let manager =
                deadpool_redis::Manager::new_with_config(config.url.as_str(), conn_config.clone())
                    .map_err(|e| Error::Config(e.to_string()))?;
            let dedicated = deadpool_redis::Pool::builder(manager)
                .max_size(config.max_dedicated_connections.max(1))
                .runtime(deadpool::Runtime::Tokio1)
                .wait_timeout(Some(config.connect_timeout + config.response_timeout))
                .create_timeout(Some(config.connect_timeout))
                .build()
                .map_err(|e| Error::Config(e.to_string()))?;
            (Target::Single(client, conn_config), Some(dedicated))
        } else {
            let client = redis::cluster::ClusterClientBuilder::new(config.cluster_nodes.clone())
                .connection_timeout(config.connect_timeout)
                .response_timeout(config.response_timeout)
                .build()
                .map_err(|e| Error::Config(e.to_string()))?;
            // A blocking read dials a cluster connection of its own (no pool: they are rare).
            (Target::Cluster(client), None)
        };
        let dialer = Dialer::new(target, failures.clone());
        Ok(Backend {
            inner: Arc::new(Inner {
                lanes: Lanes::new(dialer, config.shared_connections, solo),
                creates: config.group_commit.then(OnceLock::new),
                dedicated,
                url: config.url,
                round_trips: AtomicU64::new(0),
                failures,
                consecutive: AtomicU64::new(0),
                layout: config.layout,
                cluster: !config.cluster_nodes.is_empty(),
            }),
            recorder: None,
        })
    }

    /// Whether both handles share one set of connections (one open backend).
    pub fn same_pool(&self, other: &Backend) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Number of handles (clones) of this backend alive: more than its owner's means in use.
    pub(crate) fn handles(&self) -> usize {
        Arc::strong_count(&self.inner)
    }

    /// The URL with its credentials: to connect, never to print.
    pub(crate) fn connection_url(&self) -> &str {
        &self.inner.url
    }

    /// The URL this backend connects to, user and password shown as `***`.
    pub fn url(&self) -> String {
        crate::redis_url::redacted(&self.inner.url)
    }

    /// How this backend's keys are laid out.
    pub fn layout(&self) -> Layout {
        self.inner.layout
    }

    /// Whether this backend is a Redis Cluster (keyspace scans then read every master).
    pub fn is_cluster(&self) -> bool {
        self.inner.cluster
    }

    /// Number of round trips (commands or pipelines sent) since the backend was built.
    pub fn round_trips(&self) -> u64 {
        self.inner.round_trips.load(Ordering::Relaxed)
    }

    /// Calls in a row that failed at the connection level (no connection could be checked out
    /// or dialed, the connection was refused, cut or timed out); 0 once a call got a reply.
    /// The tenant registry's health reacts to it.
    pub fn consecutive_failures(&self) -> u64 {
        self.inner.consecutive.load(Ordering::Relaxed)
    }

    /// Runs `f` on a shared connection, reporting a connection-level failure.
    pub(crate) async fn with_conn<T, F>(
        &self,
        op: &'static str,
        model: &'static str,
        f: F,
    ) -> Result<T>
    where
        F: AsyncFnOnce(&mut Link) -> RedisResult<T>,
    {
        self.with_route(Route::Shared, op, model, f).await
    }

    /// Runs `f` on a connection of `route`; a connection-level failure empties the lane (or
    /// drops the dedicated connection) and counts toward the backend's health.
    pub(crate) async fn with_route<T, F>(
        &self,
        route: Route,
        op: &'static str,
        model: &'static str,
        f: F,
    ) -> Result<T>
    where
        F: AsyncFnOnce(&mut Link) -> RedisResult<T>,
    {
        let refused = |reason: String| {
            self.inner.consecutive.fetch_add(1, Ordering::Relaxed);
            Error::Pool { op, model, reason }
        };
        let result = match route {
            Route::Shared | Route::Lane => {
                let shared = match route {
                    Route::Lane => self.inner.lanes.lane().await,
                    _ => self.inner.lanes.get().await,
                };
                let mut shared = shared.map_err(|e| refused(e.to_string()))?;
                self.inner.round_trips.fetch_add(1, Ordering::Relaxed);
                let result = f(&mut shared.conn).await;
                if matches!(&result, Err(e) if is_connection_error(e)) {
                    self.inner.lanes.failed(&mut shared);
                }
                result
            }
            Route::Dedicated => match &self.inner.dedicated {
                Some(pool) => {
                    let obj = pool.get().await.map_err(|e| refused(e.to_string()))?;
                    self.inner.round_trips.fetch_add(1, Ordering::Relaxed);
                    let mut conn = Link::Shared(Conn::Single((*obj).clone()));
                    let result = f(&mut conn).await;
                    if matches!(&result, Err(e) if is_connection_error(e)) {
                        // Not returned to the pool; the lanes' connections are presumed dead too.
                        drop(deadpool_redis::Connection::take(obj));
                        self.inner.failures.record();
                    }
                    result
                }
                None => {
                    let mut conn = Link::Shared(
                        self.inner
                            .lanes
                            .dial()
                            .await
                            .map_err(|e| refused(e.to_string()))?,
                    );
                    self.inner.round_trips.fetch_add(1, Ordering::Relaxed);
                    f(&mut conn).await
                }
            },
        };
        self.settle(op, model, result)
    }

    /// A call's result, counted toward the backend's health: any reply means the server is
    /// up, a connection-level failure one more in a row.
    pub(crate) fn settle<T>(
        &self,
        op: &'static str,
        model: &'static str,
        result: RedisResult<T>,
    ) -> Result<T> {
        match result {
            Ok(v) => {
                self.inner.consecutive.store(0, Ordering::Relaxed);
                Ok(v)
            }
            Err(source) => {
                if is_connection_error(&source) {
                    self.inner.consecutive.fetch_add(1, Ordering::Relaxed);
                } else {
                    // The server answered: it is up.
                    self.inner.consecutive.store(0, Ordering::Relaxed);
                }
                Err(Error::Redis { op, model, source })
            }
        }
    }

    /// Runs one command on a dedicated connection: for blocking commands (`XREADGROUP
    /// BLOCK`), which would hold up every call pipelined behind them on a shared one.
    pub async fn query_blocking<T: redis::FromRedisValue + Send>(
        &self,
        op: &'static str,
        model: &'static str,
        cmd: &redis::Cmd,
    ) -> Result<T> {
        self.guard(op, cmd)?;
        erased(self.with_route(Route::Dedicated, op, model, async |c| {
            cmd.query_async(c).await
        }))
        .await
    }

    /// Runs an `EVALSHA` of `script` on a shared connection (sent again as `EVAL` on
    /// `NOSCRIPT`), with the health counters of any call, returning the client's own result
    /// (`Err`: no connection could be had, and why): the replies of a group-committed batch
    /// are handed to callers of several models, each labelling its own error.
    pub(crate) async fn eval_raw(&self, script: &Script, cmd: &redis::Cmd) -> Reply {
        let mut shared = match self.inner.lanes.get().await {
            Ok(shared) => shared,
            Err(e) => {
                self.inner.consecutive.fetch_add(1, Ordering::Relaxed);
                return Err(e.to_string());
            }
        };
        self.inner.round_trips.fetch_add(1, Ordering::Relaxed);
        let result = send_script(&mut shared.conn, script, cmd).await;
        if matches!(&result, Err(e) if is_connection_error(e)) {
            self.inner.lanes.failed(&mut shared);
            self.inner.consecutive.fetch_add(1, Ordering::Relaxed);
        } else {
            self.inner.consecutive.store(0, Ordering::Relaxed);
        }
        Ok(result)
    }

    /// Runs a create (`cmd`, an `EVALSHA` of `script`) through the group commit of `group`
    /// (the create script and its batch encoding, which takes calls of `script` too): sent at
    /// once when the connection is idle, otherwise together with the creates issued meanwhile.
    pub(crate) async fn create_grouped(
        &self,
        op: &'static str,
        model: &'static str,
        (group_script, batch): (&'static Script, Batcher),
        script: &'static Script,
        cmd: redis::Cmd,
    ) -> Result<redis::Value> {
        self.guard_script(op, script)?;
        let Some(group) = &self.inner.creates else {
            return self.eval_cmd(op, model, script, &cmd).await;
        };
        let group = group.get_or_init(|| Arc::new(Group::new(group_script, batch)));
        let reply = match group.enter(self, script, cmd) {
            Turn::Now(sending, cmd) => {
                let reply = self.eval_raw(script, &cmd).await;
                drop(sending);
                reply
            }
            Turn::Queued(rx) => erased(rx).await.unwrap_or_else(|_| {
                Ok(Err(RedisError::from((
                    ErrorKind::Io,
                    "the batch carrying this create stopped before its reply (outcome unknown)",
                ))))
            }),
        };
        match reply {
            Ok(result) => result.map_err(|source| Error::Redis { op, model, source }),
            Err(reason) => Err(Error::Pool { op, model, reason }),
        }
    }

    /// Runs one command (`op` and `model` label errors and traces), e.g. a validator's PING.
    pub async fn query<T: redis::FromRedisValue + Send>(
        &self,
        op: &'static str,
        model: &'static str,
        cmd: &redis::Cmd,
    ) -> Result<T> {
        self.guard(op, cmd)?;
        erased(self.with_conn(op, model, async |c| cmd.query_async(c).await)).await
    }

    /// Runs a pipeline (not a transaction) and returns every reply.
    pub(crate) async fn pipeline<T: redis::FromRedisValue + Send>(
        &self,
        op: &'static str,
        model: &'static str,
        pipe: &redis::Pipeline,
    ) -> Result<T> {
        for cmd in pipe.cmd_iter() {
            self.guard(op, cmd)?;
        }
        erased(self.with_conn(op, model, async |c| pipe.query_async(c).await)).await
    }

    /// Runs a script (`EVALSHA`; sent again as `EVAL` on `NOSCRIPT`).
    pub(crate) async fn eval(
        &self,
        op: &'static str,
        model: &'static str,
        script: &Script,
        keys: &[String],
        args: &[Vec<u8>],
    ) -> Result<redis::Value> {
        self.guard_script(op, script)?;
        erased(self.with_conn(op, model, async |c| {
            let mut tries = Tries::new(Form::Sha);
            loop {
                let cmd = script_call(script, tries.form(), keys, args);
                let reply = cmd.query_async(c).await;
                if !tries.again(&reply) {
                    return reply;
                }
            }
        }))
        .await
    }

    /// Runs an `EVALSHA` of `script` built by the caller; on `NOSCRIPT` (nothing ran) it is
    /// sent again as `EVAL`, which runs whatever the script cache holds.
    pub(crate) async fn eval_cmd(
        &self,
        op: &'static str,
        model: &'static str,
        script: &Script,
        cmd: &redis::Cmd,
    ) -> Result<redis::Value> {
        self.guard_script(op, script)?;
        erased(self.with_conn(op, model, async |c| send_script(c, script, cmd).await)).await
    }

    /// Runs many plans of `script` (which must speak [`APPLY`]'s batch protocol: `ARGV[1]` `*`,
    /// then per plan its key count, argument count and arguments) and returns one result per
    /// plan, in order.
    ///
    /// [`PLANS_PER_CALL`] plans go in one script call (the script's per-call cost and its type
    /// checks of keys shared by the plans are paid once per call, not per plan), and
    /// [`PLANS_PER_ROUND_TRIP`] plans in one pipeline, whose calls the server runs in order.
    ///
    /// The script cache can be emptied (`SCRIPT FLUSH`, a failover to a replica that never ran
    /// the script) between two calls of a pipeline, and refilled (another client's `EVAL` or
    /// `SCRIPT LOAD`) before the next. An `EVALSHA` refused with `NOSCRIPT` ran nothing and can
    /// be sent again, but not after a later call of the pipeline that did run: a plan of that
    /// later call may write the same key, and resending the refused one would apply the older
    /// write last. So every call of a pipeline but its last goes as `EVAL` (the source in full,
    /// which the server never refuses), and only the last, behind which nothing was sent, as
    /// `EVALSHA`; if that one is refused it is sent again as `EVAL` once its predecessors have
    /// all answered. Writes apply in the order given, and none twice.
    ///
    /// On a cluster each round trip carries one call: the cluster client sends a whole
    /// pipeline again when one of its calls is redirected or refused with `TRYAGAIN` (a slot
    /// being moved), which would apply the calls that did run a second time.
    pub(crate) async fn eval_many(
        &self,
        op: &'static str,
        model: &'static str,
        script: &Script,
        calls: &[(Vec<String>, Vec<Vec<u8>>)],
    ) -> Result<Vec<RedisResult<redis::Value>>> {
        self.guard_script(op, script)?;
        let per_trip = if self.is_cluster() {
            PLANS_PER_CALL
        } else {
            PLANS_PER_ROUND_TRIP
        };
        erased(self.with_conn(op, model, async |c| {
            let mut out = Vec::with_capacity(calls.len());
            for chunk in calls.chunks(per_trip) {
                let batches: Vec<_> = chunk.chunks(PLANS_PER_CALL).collect();
                let Some(last) = batches.len().checked_sub(1) else {
                    continue;
                };
                let mut pipe = redis::pipe();
                pipe.ignore_errors();
                for cmd in round_trip(script, chunk) {
                    pipe.add_command(cmd);
                }
                let mut replies: Vec<RedisResult<redis::Value>> = pipe.query_async(c).await?;
                if let Some(e) = replies.iter().find_map(|r| r.as_ref().err()) {
                    if is_connection_error(e) {
                        return Err(e.clone());
                    }
                }
                if let Some(reply) = replies.get_mut(last) {
                    let mut tries = Tries::new(Form::Sha);
                    while tries.again(reply) {
                        let mut pipe = redis::pipe();
                        pipe.ignore_errors().add_command(batch_call(
                            script,
                            tries.form(),
                            batches[last],
                        ));
                        let again: Vec<RedisResult<redis::Value>> = pipe.query_async(c).await?;
                        *reply = again.into_iter().next().unwrap_or_else(|| Err(no_reply()));
                    }
                }
                for (batch, reply) in batches.iter().zip(replies) {
                    out.extend(split_batch_replies(reply, batch.len(), "apply"));
                }
            }
            Ok(out)
        }))
        .await
    }
}

/// `fut` behind a `dyn Future + Send`: the client's futures are deeply nested, and a caller's
/// future (a query spawned on a runtime) would otherwise make rustc walk all of them to prove
/// it `Send`, past its recursion limit.
fn erased<'a, T>(
    fut: impl std::future::Future<Output = T> + Send + 'a,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>> {
    Box::pin(fut)
}

#[cfg(test)]
mod tests;
