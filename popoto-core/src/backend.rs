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
use redis::{Arg, AsyncConnectionConfig, ErrorKind, RedisError, RedisResult, ServerErrorKind};

use crate::error::{Error, Result};
use crate::record::{self, CommandLog};

/// The script that creates one instance (see `Instance::create_cmd`).
pub(crate) static CREATE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/create.lua")));

/// The script that applies one instance write (see `plan.rs`).
pub(crate) static APPLY: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/apply.lua")));

/// A Lua script with its source, so that a call can go as `EVAL` as well as `EVALSHA`.
///
/// Derefs to the `redis::Script` (its SHA1), which builds the usual `EVALSHA`.
pub(crate) struct Script {
    code: &'static str,
    inner: redis::Script,
    /// Whether the script only reads (a recording backend runs it).
    read_only: bool,
}

impl Script {
    /// The script of this source (one that writes).
    pub(crate) fn new(code: &'static str) -> Script {
        Script {
            code,
            inner: redis::Script::new(code),
            read_only: false,
        }
    }

    /// A script of this source that only reads: a dry run ([`Backend::recording`]) runs it.
    pub(crate) fn read_only(code: &'static str) -> Script {
        Script {
            read_only: true,
            ..Script::new(code)
        }
    }

    /// Starts a call of the script: `EVALSHA <sha1>` or `EVAL <source>`, with room for
    /// `args` more arguments of `bytes` bytes in all.
    pub(crate) fn command(&self, form: Form, args: usize, bytes: usize) -> redis::Cmd {
        let head = match form {
            Form::Sha => 48,
            Form::Eval => 16 + self.code.len(),
        };
        let mut cmd = redis::Cmd::with_capacity(args + 2, bytes + head);
        match form {
            Form::Sha => cmd.arg("EVALSHA").arg(self.inner.get_hash()),
            Form::Eval => cmd.arg("EVAL").arg(self.code),
        };
        cmd
    }

    /// The `EVAL` (source sent in full) of a call built as `EVALSHA` of this script.
    pub(crate) fn to_eval(&self, cmd: &redis::Cmd) -> RedisResult<redis::Cmd> {
        let mut args = cmd.args_iter();
        let head = (args.next(), args.next());
        let sha = self.inner.get_hash().as_bytes();
        if !matches!(head, (Some(Arg::Simple(name)), Some(Arg::Simple(hash)))
            if name.eq_ignore_ascii_case(b"EVALSHA") && hash == sha)
        {
            return Err(RedisError::from((
                ErrorKind::Client,
                "not an EVALSHA of this script",
            )));
        }
        let mut out = self.command(Form::Eval, args.len(), 0);
        for arg in args {
            match arg {
                Arg::Simple(bytes) => out.arg(bytes),
                _ => {
                    return Err(RedisError::from((
                        ErrorKind::Client,
                        "a script call with a cursor argument",
                    )))
                }
            };
        }
        Ok(out)
    }
}

impl std::ops::Deref for Script {
    type Target = redis::Script;

    fn deref(&self) -> &redis::Script {
        &self.inner
    }
}

/// How a script call is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Form {
    /// `EVALSHA`: refused with `NOSCRIPT` when the server's script cache lacks the script.
    Sha,
    /// `EVAL` with the source: always runs (and caches the script).
    Eval,
}

/// Times one script call is sent before a `NOSCRIPT` is given up: the first try may be an
/// `EVALSHA`, every later one is an `EVAL`, which a server cannot refuse with `NOSCRIPT`; the
/// bound only stops a loop should something between us and Redis (a proxy) refuse it anyway.
pub(crate) const SCRIPT_ATTEMPTS: usize = 5;

/// The tries of one script call: first in a given form, then, while the server answers
/// `NOSCRIPT` (nothing ran), again as `EVAL`, at most [`SCRIPT_ATTEMPTS`] times in all; the
/// last `NOSCRIPT` is the call's reply when every try was refused.
///
/// Only for a call behind which no later call of the same ordered batch was sent: resending it
/// must not land after a later write (see [`Backend::eval_many`]).
pub(crate) struct Tries {
    form: Form,
    attempt: usize,
}

impl Tries {
    /// The first try goes as `first`.
    pub(crate) fn new(first: Form) -> Tries {
        Tries {
            form: first,
            attempt: 1,
        }
    }

    /// The form of the next try.
    pub(crate) fn form(&self) -> Form {
        self.form
    }

    /// Whether `reply` is a `NOSCRIPT` to send again (as `EVAL`), within the bound.
    pub(crate) fn again<T>(&mut self, reply: &RedisResult<T>) -> bool {
        let again = matches!(reply, Err(e) if is_noscript(e)) && self.attempt < SCRIPT_ATTEMPTS;
        if again {
            self.form = Form::Eval;
            self.attempt += 1;
        }
        again
    }
}

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
    /// Calls in a row that failed at the connection level (0 after any reply).
    consecutive: Arc<AtomicU64>,
    /// A dry run: writes go to this log (or are refused), never to the server.
    recorder: Option<CommandLog>,
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

    /// The same backend (same pool) for a dry run: reads are sent, the writes of operations
    /// that support a dry run are recorded in `log` instead of sent, and any other write is
    /// refused with [`Error::DryRunWrite`] before it leaves the process.
    pub fn recording(&self, log: &CommandLog) -> Backend {
        Backend {
            recorder: Some(log.clone()),
            ..self.clone()
        }
    }

    /// Whether this backend records writes instead of sending them ([`Backend::recording`]).
    pub fn is_recording(&self) -> bool {
        self.recorder.is_some()
    }

    /// The dry-run log, if this backend records.
    pub(crate) fn recorder(&self) -> Option<&CommandLog> {
        self.recorder.as_ref()
    }

    /// Whether both handles share one connection pool (one open backend).
    pub fn same_pool(&self, other: &Backend) -> bool {
        Arc::ptr_eq(&self.round_trips, &other.round_trips)
    }

    /// Number of handles (clones) of this backend alive: more than its owner's means in use.
    pub(crate) fn handles(&self) -> usize {
        Arc::strong_count(&self.round_trips)
    }

    /// Records `cmd` as a write this dry run would send (`false` when not a dry run).
    pub(crate) fn record(&self, cmd: &redis::Cmd) -> bool {
        match &self.recorder {
            Some(log) => {
                log.push(self.url(), cmd);
                true
            }
            None => false,
        }
    }

    /// Records the commands [`Backend::eval_many`] sends for these plans, in its order.
    pub(crate) fn record_many(
        &self,
        script: &Script,
        calls: &[(Vec<String>, Vec<Vec<u8>>)],
    ) -> bool {
        if self.recorder.is_none() {
            return false;
        }
        for chunk in calls.chunks(PLANS_PER_ROUND_TRIP) {
            for cmd in round_trip(script, chunk) {
                self.record(&cmd);
            }
        }
        true
    }

    /// Refuses, on a recording backend, a command that is not a read.
    fn guard(&self, op: &'static str, cmd: &redis::Cmd) -> Result<()> {
        if self.recorder.is_some() && !record::is_read_only(cmd) {
            let name = record::args_of(cmd)
                .first()
                .map(|n| String::from_utf8_lossy(n).to_ascii_uppercase())
                .unwrap_or_default();
            return Err(Error::DryRunWrite { op, command: name });
        }
        Ok(())
    }

    /// Refuses, on a recording backend, a script that writes.
    pub(crate) fn guard_script(&self, op: &'static str, script: &Script) -> Result<()> {
        if self.recorder.is_some() && !script.read_only {
            return Err(Error::DryRunWrite {
                op,
                command: format!("EVALSHA {}", script.get_hash()),
            });
        }
        Ok(())
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
        erased(self.with_conn(op, model, async |c| {
            let mut tries = Tries::new(Form::Sha);
            loop {
                let reply = match tries.form() {
                    Form::Sha => cmd.query_async(c).await,
                    Form::Eval => script.to_eval(cmd)?.query_async(c).await,
                };
                if !tries.again(&reply) {
                    return reply;
                }
            }
        }))
        .await
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
    pub(crate) async fn eval_many(
        &self,
        op: &'static str,
        model: &'static str,
        script: &Script,
        calls: &[(Vec<String>, Vec<Vec<u8>>)],
    ) -> Result<Vec<RedisResult<redis::Value>>> {
        self.guard_script(op, script)?;
        erased(self.with_conn(op, model, async |c| {
            let mut out = Vec::with_capacity(calls.len());
            for chunk in calls.chunks(PLANS_PER_ROUND_TRIP) {
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
        }))
        .await
    }
}

/// The error for a pipeline that answered nothing.
fn no_reply() -> RedisError {
    RedisError::from((ErrorKind::Parse, "no reply to a script call"))
}

/// Plans applied by one script call in [`Backend::eval_many`]: large enough that the call's own
/// cost is spread thin, small enough that one call blocks the server for about a millisecond.
pub(crate) const PLANS_PER_CALL: usize = 100;

/// Plans sent per pipelined round trip in [`Backend::eval_many`].
pub(crate) const PLANS_PER_ROUND_TRIP: usize = 1000;

/// The calls of one round trip of [`Backend::eval_many`] (at most [`PLANS_PER_ROUND_TRIP`]
/// plans), as first sent: [`PLANS_PER_CALL`] plans per call, every call `EVAL` but the last,
/// which is `EVALSHA`.
fn round_trip(script: &Script, chunk: &[(Vec<String>, Vec<Vec<u8>>)]) -> Vec<redis::Cmd> {
    let batches: Vec<_> = chunk.chunks(PLANS_PER_CALL).collect();
    let last = batches.len().saturating_sub(1);
    batches
        .iter()
        .enumerate()
        .map(|(i, batch)| {
            let form = if i == last { Form::Sha } else { Form::Eval };
            batch_call(script, form, batch)
        })
        .collect()
}

/// One call applying several plans (the batch protocol of `lua/apply.lua`).
fn batch_call(script: &Script, form: Form, plans: &[(Vec<String>, Vec<Vec<u8>>)]) -> redis::Cmd {
    let nkeys: usize = plans.iter().map(|(keys, _)| keys.len()).sum();
    let nargs: usize = plans.iter().map(|(_, args)| args.len() + 2).sum();
    let mut cmd = script.command(form, 2 + nkeys + nargs, 0);
    cmd.arg(nkeys);
    for (keys, _) in plans {
        cmd.arg(keys);
    }
    cmd.arg("*");
    for (keys, args) in plans {
        cmd.arg(keys.len()).arg(args.len()).arg(args);
    }
    cmd
}

/// A call of `script` with these keys and arguments.
fn script_call(script: &Script, form: Form, keys: &[String], args: &[Vec<u8>]) -> redis::Cmd {
    let mut cmd = script.command(form, 1 + keys.len() + args.len(), 0);
    cmd.arg(keys.len()).arg(keys).arg(args);
    cmd
}

/// The `EVALSHA` of `script` with these keys and arguments.
pub(crate) fn evalsha(script: &Script, keys: &[String], args: &[Vec<u8>]) -> redis::Cmd {
    script_call(script, Form::Sha, keys, args)
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

    fn args(cmd: &redis::Cmd) -> Vec<Vec<u8>> {
        cmd.args_iter()
            .map(|a| match a {
                Arg::Simple(b) => b.to_vec(),
                _ => panic!("a cursor argument"),
            })
            .collect()
    }

    /// A call built as `EVALSHA` becomes the same call as `EVAL` with the source; a command
    /// that is not an `EVALSHA` of the script is refused, never sent with another source.
    #[test]
    fn an_evalsha_becomes_the_same_eval() {
        let script = Script::new("return ARGV[1]");
        let keys = vec!["k1".to_owned(), "k2".to_owned()];
        let argv = vec![b"a".to_vec(), vec![0, 255]];
        let sha = evalsha(&script, &keys, &argv);
        let eval = script.to_eval(&sha).unwrap();
        assert_eq!(
            args(&eval),
            args(&script_call(&script, Form::Eval, &keys, &argv))
        );
        let mut expected = vec![b"EVAL".to_vec(), b"return ARGV[1]".to_vec(), b"2".to_vec()];
        expected.extend([b"k1".to_vec(), b"k2".to_vec(), b"a".to_vec(), vec![0, 255]]);
        assert_eq!(args(&eval), expected);
        let other = Script::new("return 2");
        assert!(other.to_eval(&sha).is_err());
        assert!(script.to_eval(redis::cmd("GET").arg("k")).is_err());
    }

    /// A refused call is tried again as `EVAL`, at most `SCRIPT_ATTEMPTS` times in all; any
    /// other reply ends the tries.
    #[test]
    fn noscript_is_retried_as_eval_a_bounded_number_of_times() {
        let noscript: RedisResult<()> = Err(RedisError::from((
            ErrorKind::Server(ServerErrorKind::NoScript),
            "no script",
        )));
        let mut tries = Tries::new(Form::Sha);
        assert_eq!(tries.form(), Form::Sha);
        let mut sent = 1;
        while tries.again(&noscript) {
            assert_eq!(tries.form(), Form::Eval);
            sent += 1;
        }
        assert_eq!(sent, SCRIPT_ATTEMPTS);
        let mut tries = Tries::new(Form::Sha);
        assert!(!tries.again(&Ok(())));
        let other: RedisResult<()> = Err(RedisError::from((ErrorKind::Client, "other")));
        assert!(!tries.again(&other));
    }

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
