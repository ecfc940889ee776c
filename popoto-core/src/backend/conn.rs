//! Connections: a few shared multiplexed connections ("lanes") that concurrent calls pipeline
//! on, and a small pool of dedicated connections for commands that hold one to themselves.
//!
//! A redis-rs `MultiplexedConnection` sends the requests of every clone on one socket, in the
//! order they are issued, and matches replies in order: calls from many tasks share a socket
//! and their writes and reads are batched by the connection's driver, instead of each call
//! holding a connection of its own until its reply arrives. A blocking read (`XREADGROUP
//! BLOCK`) would stall everyone behind it on a lane, so it runs on a dedicated connection.
//!
//! Faults: once a call failed at the connection level (cut, refused, timed out), its lane is
//! emptied and every connection dialed before the failure is presumed dead (a restart or
//! `CLIENT KILL` closes them all; a dial cut in its handshake counts too), so the next calls
//! dial fresh connections instead of failing one by one on dead sockets. Calls already in
//! flight on a replaced connection finish on it: replacing a lane closes nothing.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{AsyncConnectionConfig, Cmd, Pipeline, RedisError, RedisFuture, RedisResult, Value};

/// Whether an error means the connection itself is unusable.
pub(crate) fn is_connection_error(e: &RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout()
}

/// Connection-level failures seen so far, shared by lanes and the dedicated pool: a connection
/// dialed before the latest failure is presumed dead.
#[derive(Debug, Default)]
pub(crate) struct Failures(AtomicU64);

impl Failures {
    /// The failure count now: a connection dialed now carries it as its generation.
    pub(crate) fn now(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }

    /// Records a connection-level failure.
    pub(crate) fn record(&self) {
        self.0.fetch_add(1, Ordering::AcqRel);
    }

    /// Whether a connection of `generation` was dialed before a failure.
    fn stale(&self, generation: u64) -> bool {
        generation < self.now()
    }
}

/// A shared connection: to one server, or to a Redis Cluster (each command routed to the node
/// of its keys' slot, `MOVED`/`ASK` followed by the client). Clones share their sockets.
#[derive(Clone)]
pub(crate) enum Conn {
    /// One server.
    Single(MultiplexedConnection),
    /// A cluster.
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// Where connections go.
#[derive(Clone)]
pub(crate) enum Target {
    /// One server, with the connection settings.
    Single(redis::Client, AsyncConnectionConfig),
    /// A cluster (its client carries the settings).
    Cluster(ClusterClient),
}

/// Dials shared connections with the backend's settings.
#[derive(Clone)]
pub(crate) struct Dialer {
    target: Target,
    failures: Arc<Failures>,
}

impl Dialer {
    /// A dialer for `target`; failures of its dials are counted in `failures`.
    pub(crate) fn new(target: Target, failures: Arc<Failures>) -> Dialer {
        Dialer { target, failures }
    }

    /// A new connection and its generation; a dial cut by the network counts as a failure.
    async fn dial(&self) -> RedisResult<(Conn, u64)> {
        let generation = self.failures.now();
        let dialed = match &self.target {
            Target::Single(client, config) => client
                .get_multiplexed_async_connection_with_config(config)
                .await
                .map(Conn::Single),
            Target::Cluster(client) => client.get_async_connection().await.map(Conn::Cluster),
        };
        match dialed {
            Ok(conn) => Ok((conn, generation)),
            Err(e) => {
                if is_connection_error(&e) {
                    self.failures.record();
                }
                Err(e)
            }
        }
    }
}

/// One shared connection slot.
#[derive(Default)]
struct Lane {
    /// The lane's connection, its generation and its id (`None` until dialed or after a
    /// failure).
    slot: Mutex<Option<(Conn, u64, u64)>>,
    /// Held while dialing, so that concurrent calls on an empty lane dial once.
    dialing: tokio::sync::Mutex<()>,
    /// Calls checked out on the lane and not yet answered.
    busy: AtomicUsize,
}

impl Lane {
    /// The lane's connection if it is usable.
    fn current(&self, failures: &Failures) -> Option<(Conn, u64)> {
        let mut slot = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        match &*slot {
            Some((_, generation, _)) if failures.stale(*generation) => {
                *slot = None;
                None
            }
            Some((conn, _, id)) => Some((conn.clone(), *id)),
            None => None,
        }
    }
}

/// A lane's connection checked out for one call: report a connection-level failure with
/// [`Lanes::failed`]; dropping it ends the call's turn on the lane.
pub(crate) struct Shared<'a> {
    /// A clone of the lane's connection (clones share its socket).
    pub(crate) conn: Conn,
    lane: usize,
    id: u64,
    _turn: Turn<'a>,
}

/// A call's turn on a lane: counted from checkout until dropped.
struct Turn<'a>(&'a AtomicUsize);

impl<'a> Turn<'a> {
    fn take(busy: &'a AtomicUsize) -> Turn<'a> {
        busy.fetch_add(1, Ordering::Relaxed);
        Turn(busy)
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The shared connections of a backend.
pub(crate) struct Lanes {
    dialer: Dialer,
    lanes: Box<[Lane]>,
    ids: AtomicU64,
}

impl Lanes {
    /// `count` lanes (at least one), dialed on first use.
    pub(crate) fn new(dialer: Dialer, count: usize) -> Lanes {
        Lanes {
            dialer,
            lanes: (0..count.max(1)).map(|_| Lane::default()).collect(),
            ids: AtomicU64::new(0),
        }
    }

    /// A connection of the lane with the fewest calls outstanding (the first among equals),
    /// dialed if the lane has none: a caller that waits for each reply keeps to one socket, as
    /// with a connection of its own, while concurrent calls spread over the lanes.
    pub(crate) async fn get(&self) -> RedisResult<Shared<'_>> {
        let (index, lane) = self
            .lanes
            .iter()
            .enumerate()
            .min_by_key(|(_, lane)| lane.busy.load(Ordering::Relaxed))
            .unwrap_or((0, &self.lanes[0]));
        // Taken before dialing, so that calls arriving meanwhile see the lane busy.
        let turn = Turn::take(&lane.busy);
        let shared = |(conn, id)| Shared {
            conn,
            lane: index,
            id,
            _turn: turn,
        };
        let failures = &self.dialer.failures;
        if let Some(found) = lane.current(failures) {
            return Ok(shared(found));
        }
        let _dialing = lane.dialing.lock().await;
        if let Some(found) = lane.current(failures) {
            return Ok(shared(found));
        }
        let (conn, generation) = self.dialer.dial().await?;
        let id = self.ids.fetch_add(1, Ordering::Relaxed);
        *lane.slot.lock().unwrap_or_else(|p| p.into_inner()) = Some((conn.clone(), generation, id));
        Ok(shared((conn, id)))
    }

    /// A connection of its own, outside the lanes (a blocking call on a cluster).
    pub(crate) async fn dial(&self) -> RedisResult<Conn> {
        self.dialer.dial().await.map(|(conn, _)| conn)
    }

    /// A call on `shared` failed at the connection level: its lane is emptied and the failure
    /// counted, once per connection (the other calls in flight on it fail too).
    pub(crate) fn failed(&self, shared: &Shared) {
        let mut slot = self.lanes[shared.lane]
            .slot
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if matches!(&*slot, Some((_, _, id)) if *id == shared.id) {
            *slot = None;
            self.dialer.failures.record();
        }
    }
}

/// The pool of dedicated connections: deadpool-redis' (its recycle step PINGs on checkout,
/// a round trip the rare blocking commands can afford).
pub(crate) type Dedicated = deadpool_redis::Pool;
