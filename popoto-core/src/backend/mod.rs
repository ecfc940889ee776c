//! Connections: a deadpool pool of multiplexed redis-rs connections; script execution in
//! `script`, dry runs (recording backends) in `recording`.
//!
//! Connections are dialed by deadpool-redis' manager. Its recycle step PINGs on every checkout,
//! a second round trip per operation that halves throughput, so the pool wraps it: once a call
//! failed at the connection level, that connection and every connection dialed before the
//! failure are dropped at their next checkout (a restart or `CLIENT KILL` closes them all; a
//! dial cut in its handshake counts as such a failure too), so later calls dial fresh ones
//! instead of failing one by one on dead idle connections.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use deadpool::managed::{self, Metrics, Pool, RecycleError, RecycleResult};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, ErrorKind, RedisError, RedisResult, ServerErrorKind};

use crate::error::{Error, Result};
use crate::record::CommandLog;

mod recording;
mod script;

pub(crate) use script::{evalsha, Form, Script, Tries, APPLY, CREATE};

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
    pub(crate) round_trips: Arc<AtomicU64>,
    failures: Arc<AtomicU64>,
    /// Calls in a row that failed at the connection level (0 after any reply).
    pub(crate) consecutive: Arc<AtomicU64>,
    /// A dry run: writes go to this log (or are refused), never to the server.
    pub(crate) recorder: Option<CommandLog>,
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

/// Whether the server refused a script call because its script cache lacks the script.
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
            consecutive: Arc::new(AtomicU64::new(0)),
            recorder: None,
        })
    }

    /// Whether both handles share one connection pool (one open backend).
    pub fn same_pool(&self, other: &Backend) -> bool {
        Arc::ptr_eq(&self.round_trips, &other.round_trips)
    }

    /// Number of handles (clones) of this backend alive: more than its owner's means in use.
    pub(crate) fn handles(&self) -> usize {
        Arc::strong_count(&self.round_trips)
    }

    /// The URL this backend connects to, user and password shown as `***`.
    pub fn url(&self) -> String {
        crate::redis_url::redacted(&self.url)
    }

    /// The URL with its credentials: to connect, never to print.
    pub(crate) fn connection_url(&self) -> &str {
        &self.url
    }

    /// Number of round trips (commands or pipelines sent) since the backend was built.
    pub fn round_trips(&self) -> u64 {
        self.round_trips.load(Ordering::Relaxed)
    }

    /// Calls in a row that failed at the connection level (no connection could be checked out
    /// or dialed, the connection was refused, cut or timed out); 0 once a call got a reply.
    /// The tenant registry's health reacts to it.
    pub fn consecutive_failures(&self) -> u64 {
        self.consecutive.load(Ordering::Relaxed)
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
        // Boxed: the pool's and the client's futures are deeply nested, and callers' futures
        // (a query spawned on a runtime) would otherwise exceed rustc's layout depth limit.
        let mut obj = Box::pin(self.pool.get()).await.map_err(|e| {
            self.consecutive.fetch_add(1, Ordering::Relaxed);
            Error::Pool {
                op,
                model,
                reason: e.to_string(),
            }
        })?;
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        let result = Box::pin(f(&mut obj.inner)).await;
        match result {
            Ok(v) => {
                self.consecutive.store(0, Ordering::Relaxed);
                Ok(v)
            }
            Err(source) => {
                if is_connection_error(&source) {
                    obj.broken.store(true, Ordering::Relaxed);
                    self.failures.fetch_add(1, Ordering::AcqRel);
                    self.consecutive.fetch_add(1, Ordering::Relaxed);
                } else {
                    // The server answered: it is up.
                    self.consecutive.store(0, Ordering::Relaxed);
                }
                Err(Error::Redis { op, model, source })
            }
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
