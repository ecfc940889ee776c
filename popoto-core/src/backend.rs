//! Connections: a deadpool pool of multiplexed redis-rs connections, and script execution.
//!
//! Connections are dialed by deadpool-redis' manager. Its recycle step PINGs on every checkout,
//! a second round trip per operation that halves throughput, so the pool wraps it: once a call
//! failed at the connection level, that connection and every connection dialed before the
//! failure are dropped at their next checkout (a restart or `CLIENT KILL` closes them all; a
//! dial cut in its handshake counts as such a failure too), so later calls dial fresh ones
//! instead of failing one by one on dead idle connections.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use deadpool::managed::{self, Metrics, Pool, RecycleError, RecycleResult};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, ErrorKind, RedisError, RedisResult, ServerErrorKind};

use crate::error::{Error, Result};

/// The script that creates one instance (see `Instance::create_cmd`).
pub(crate) static CREATE: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("lua/create.lua")));

/// The script that applies one instance write (see `plan.rs`).
pub(crate) static APPLY: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("lua/apply.lua")));

/// Connection settings of a backend (its `Debug` hides the URL's credentials).
#[derive(Clone)]
#[non_exhaustive]
pub struct BackendConfig {
    /// Redis URL (`redis://host:port/db`).
    pub url: String,
    /// Maximum number of pooled connections (each one multiplexes concurrent calls).
    pub max_connections: usize,
    /// How long a call waits for its reply before failing.
    pub response_timeout: Duration,
    /// How long dialing a connection may take.
    pub connect_timeout: Duration,
}

impl BackendConfig {
    /// Defaults for `url`: 16 connections, 30 s response timeout, 2 s connect timeout.
    pub fn new(url: impl Into<String>) -> Self {
        BackendConfig {
            url: url.into(),
            max_connections: 16,
            response_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(2),
        }
    }
}

impl std::fmt::Debug for BackendConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendConfig")
            .field("url", &crate::redis_url::redacted(&self.url))
            .field("max_connections", &self.max_connections)
            .field("response_timeout", &self.response_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

/// A pooled connection with a flag set when a call on it failed at the connection level.
pub(crate) struct Conn {
    inner: MultiplexedConnection,
    broken: AtomicBool,
    /// The backend's failure count when this connection was dialed.
    generation: u64,
}

/// deadpool manager for [`Conn`]: deadpool-redis' manager dials, recycling is ours.
pub(crate) struct Manager {
    dialer: deadpool_redis::Manager,
    /// Connection-level failures seen so far: a connection dialed before the latest one is
    /// presumed dead (a server restart or `CLIENT KILL` closes every connection at once).
    failures: Arc<AtomicU64>,
}

impl managed::Manager for Manager {
    type Type = Conn;
    type Error = RedisError;

    async fn create(&self) -> RedisResult<Conn> {
        let generation = self.failures.load(Ordering::Acquire);
        let inner = match managed::Manager::create(&self.dialer).await {
            Ok(inner) => inner,
            // Cut while dialing or in its handshake: the connections dialed before are presumed
            // dead too (a kill or restart mid-dial would otherwise leave them in the pool).
            Err(e) => {
                if is_connection_error(&e) {
                    self.failures.fetch_add(1, Ordering::AcqRel);
                }
                return Err(e);
            }
        };
        Ok(Conn {
            inner,
            broken: AtomicBool::new(false),
            generation,
        })
    }

    async fn recycle(&self, conn: &mut Conn, _: &Metrics) -> RecycleResult<RedisError> {
        if conn.broken.load(Ordering::Relaxed) {
            Err(RecycleError::message("connection failed earlier"))
        } else if conn.generation < self.failures.load(Ordering::Acquire) {
            Err(RecycleError::message(
                "dialed before a connection failure: presumed dead",
            ))
        } else {
            Ok(())
        }
    }
}

/// One Redis server (or logical database) and its connection pool.
#[derive(Clone)]
pub struct Backend {
    pool: Pool<Manager>,
    url: Arc<str>,
    round_trips: Arc<AtomicU64>,
    failures: Arc<AtomicU64>,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("url", &self.url())
            .finish_non_exhaustive()
    }
}

/// Whether an error means the connection itself is unusable.
pub(crate) fn is_connection_error(e: &RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout()
}

pub(crate) fn is_noscript(e: &RedisError) -> bool {
    e.kind() == ErrorKind::Server(ServerErrorKind::NoScript)
}

impl Backend {
    /// Builds a backend; no connection is dialed until the first call.
    pub fn new(config: BackendConfig) -> Result<Self> {
        let conn_config = AsyncConnectionConfig::new()
            .set_response_timeout(Some(config.response_timeout))
            .set_connection_timeout(Some(config.connect_timeout));
        let dialer = deadpool_redis::Manager::new_with_config(config.url.as_str(), conn_config)
            .map_err(|e| Error::Config(e.to_string()))?;
        let failures = Arc::new(AtomicU64::new(0));
        let manager = Manager {
            dialer,
            failures: failures.clone(),
        };
        let pool = Pool::builder(manager)
            .max_size(config.max_connections.max(1))
            .runtime(deadpool::Runtime::Tokio1)
            .wait_timeout(Some(config.connect_timeout + config.response_timeout))
            .create_timeout(Some(config.connect_timeout))
            .build()
            .map_err(|e| Error::Config(e.to_string()))?;
        Ok(Backend {
            pool,
            url: config.url.into(),
            round_trips: Arc::new(AtomicU64::new(0)),
            failures,
        })
    }

    /// The URL this backend connects to, user and password shown as `***`.
    pub fn url(&self) -> String {
        crate::redis_url::redacted(&self.url)
    }

    /// Number of round trips (commands or pipelines sent) since the backend was built.
    pub fn round_trips(&self) -> u64 {
        self.round_trips.load(Ordering::Relaxed)
    }

    /// Runs `f` on a pooled connection, marking the connection broken on a connection error.
    pub(crate) async fn with_conn<T, F>(
        &self,
        op: &'static str,
        model: &'static str,
        f: F,
    ) -> Result<T>
    where
        F: AsyncFnOnce(&mut MultiplexedConnection) -> RedisResult<T>,
    {
        let mut obj = self.pool.get().await.map_err(|e| Error::Pool {
            op,
            model,
            reason: e.to_string(),
        })?;
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        let result = f(&mut obj.inner).await;
        match result {
            Ok(v) => Ok(v),
            Err(source) => {
                if is_connection_error(&source) {
                    obj.broken.store(true, Ordering::Relaxed);
                    self.failures.fetch_add(1, Ordering::AcqRel);
                }
                Err(Error::Redis { op, model, source })
            }
        }
    }

    /// Runs one command (`op` and `model` label errors and traces), e.g. a validator's PING.
    pub async fn query<T: redis::FromRedisValue>(
        &self,
        op: &'static str,
        model: &'static str,
        cmd: &redis::Cmd,
    ) -> Result<T> {
        self.with_conn(op, model, async |c| cmd.query_async(c).await)
            .await
    }

    /// Runs a pipeline (not a transaction) and returns every reply.
    pub(crate) async fn pipeline<T: redis::FromRedisValue>(
        &self,
        op: &'static str,
        model: &'static str,
        pipe: &redis::Pipeline,
    ) -> Result<T> {
        self.with_conn(op, model, async |c| pipe.query_async(c).await)
            .await
    }

    /// Runs a script (EVALSHA, loading it on NOSCRIPT).
    pub(crate) async fn eval(
        &self,
        op: &'static str,
        model: &'static str,
        script: &redis::Script,
        keys: &[String],
        args: &[Vec<u8>],
    ) -> Result<redis::Value> {
        self.eval_cmd(op, model, script, &evalsha(script, keys, args))
            .await
    }

    /// Runs an `EVALSHA` of `script` built by the caller, loading the script on NOSCRIPT.
    pub(crate) async fn eval_cmd(
        &self,
        op: &'static str,
        model: &'static str,
        script: &redis::Script,
        cmd: &redis::Cmd,
    ) -> Result<redis::Value> {
        self.with_conn(op, model, async |c| match cmd.query_async(c).await {
            Err(e) if is_noscript(&e) => {
                script.prepare_invoke().load_async(c).await?;
                cmd.query_async(c).await
            }
            other => other,
        })
        .await
    }

    /// Runs many plans of `script` (which must speak [`APPLY`]'s batch protocol: `ARGV[1]` `*`,
    /// then per plan its key count, argument count and arguments) and returns one result per
    /// plan, in order.
    ///
    /// [`PLANS_PER_CALL`] plans go in one `EVALSHA` (the script's per-call cost and its type
    /// checks of keys shared by the plans are paid once per call, not per plan), and
    /// [`PLANS_PER_ROUND_TRIP`] plans in one pipeline. The script is loaded only when the
    /// server answers `NOSCRIPT` (first use, or after a restart); nothing ran then, so the
    /// refused calls are simply sent again.
    pub(crate) async fn eval_many(
        &self,
        op: &'static str,
        model: &'static str,
        script: &redis::Script,
        calls: &[(Vec<String>, Vec<Vec<u8>>)],
    ) -> Result<Vec<RedisResult<redis::Value>>> {
        self.with_conn(op, model, async |c| {
            let mut out = Vec::with_capacity(calls.len());
            for chunk in calls.chunks(PLANS_PER_ROUND_TRIP) {
                let batches: Vec<_> = chunk.chunks(PLANS_PER_CALL).collect();
                let send = |which: &[usize]| {
                    let mut pipe = redis::pipe();
                    pipe.ignore_errors();
                    for &i in which {
                        pipe.add_command(evalsha_batch(script, batches[i]));
                    }
                    pipe
                };
                let all: Vec<usize> = (0..batches.len()).collect();
                let mut replies: Vec<RedisResult<redis::Value>> = send(&all).query_async(c).await?;
                if let Some(e) = replies.iter().find_map(|r| r.as_ref().err()) {
                    if is_connection_error(e) {
                        return Err(e.clone());
                    }
                }
                let refused: Vec<usize> = (0..replies.len())
                    .filter(|&i| matches!(&replies[i], Err(e) if is_noscript(e)))
                    .collect();
                if !refused.is_empty() {
                    script.prepare_invoke().load_async(c).await?;
                    let again: Vec<RedisResult<redis::Value>> =
                        send(&refused).query_async(c).await?;
                    for (i, r) in refused.into_iter().zip(again) {
                        replies[i] = r;
                    }
                }
                for (batch, reply) in batches.iter().zip(replies) {
                    match reply {
                        Ok(redis::Value::Array(items)) if items.len() == batch.len() => {
                            out.extend(items.into_iter().map(|v| match v {
                                redis::Value::ServerError(e) => Err(e.into()),
                                v => Ok(v),
                            }));
                        }
                        Ok(other) => {
                            let e = RedisError::from((
                                ErrorKind::Parse,
                                "unexpected reply to a batch of plans",
                                format!("{other:?}"),
                            ));
                            out.extend(batch.iter().map(|_| Err(e.clone())));
                        }
                        Err(e) => out.extend(batch.iter().map(|_| Err(e.clone()))),
                    }
                }
            }
            Ok(out)
        })
        .await
    }
}

/// Plans applied by one `EVALSHA` in [`Backend::eval_many`]: large enough that the call's own
/// cost is spread thin, small enough that one call blocks the server for about a millisecond.
pub(crate) const PLANS_PER_CALL: usize = 100;

/// Plans sent per pipelined round trip in [`Backend::eval_many`].
pub(crate) const PLANS_PER_ROUND_TRIP: usize = 1000;

/// One `EVALSHA` applying several plans (the batch protocol of `lua/apply.lua`).
fn evalsha_batch(script: &redis::Script, plans: &[(Vec<String>, Vec<Vec<u8>>)]) -> redis::Cmd {
    let nkeys: usize = plans.iter().map(|(keys, _)| keys.len()).sum();
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(script.get_hash()).arg(nkeys);
    for (keys, _) in plans {
        cmd.arg(keys);
    }
    cmd.arg("*");
    for (keys, args) in plans {
        cmd.arg(keys.len()).arg(args.len()).arg(args);
    }
    cmd
}

/// The `EVALSHA` of `script` with these keys and arguments.
pub(crate) fn evalsha(script: &redis::Script, keys: &[String], args: &[Vec<u8>]) -> redis::Cmd {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(script.get_hash())
        .arg(keys.len())
        .arg(keys)
        .arg(args);
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server that accepts connections and closes them before answering: every dial is cut
    /// in its handshake, and each cut counts as a connection failure (so connections dialed
    /// before it would be discarded at their next checkout).
    #[tokio::test]
    async fn a_dial_cut_in_its_handshake_counts_as_a_connection_failure() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let closer = tokio::spawn(async move {
            loop {
                let (socket, _) = listener.accept().await.unwrap();
                drop(socket);
            }
        });
        let backend =
            Backend::new(BackendConfig::new(format!("redis://127.0.0.1:{port}/0"))).unwrap();
        assert_eq!(backend.failures.load(Ordering::Acquire), 0);
        for attempt in 1..=2u64 {
            let err = backend
                .query::<String>("ping", "-", &redis::cmd("PING"))
                .await
                .unwrap_err();
            assert!(err.is_connection_error(), "{err}");
            assert_eq!(backend.failures.load(Ordering::Acquire), attempt);
        }
        closer.abort();
    }
}
