//! Connections: a few shared multiplexed connections ("lanes") that concurrent calls pipeline
//! on, and a small pool of dedicated connections for commands that hold one to themselves.
//!
//! A redis-rs `MultiplexedConnection` sends the requests of every clone on one socket, in the
//! order they are issued, and matches replies in order: calls from many tasks share a socket
//! and their writes and reads are batched by the connection's driver, instead of each call
//! holding a connection of its own until its reply arrives. A blocking read (`XREADGROUP
//! BLOCK`) would stall everyone behind it on a lane, so it runs on a dedicated connection.
//!
//! A call issued while no other is in flight takes the solo connection instead (`solo.rs`),
//! which it writes and reads in its own task: a caller that waits for each reply pays no
//! hand-off to a driver task.
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

use super::solo::{Solo, SoloLease, SoloSlot, SoloTarget};

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

/// The connection a call runs on: a shared one, or the solo connection of a lone call.
pub(crate) enum Link {
    /// A lane's shared connection (clones pipeline on its socket).
    Shared(Conn),
    /// The solo connection, the call's alone until it answered.
    Solo(SoloLease),
}

impl Link {
    /// The connection to send on (an error for a solo connection already discarded).
    fn target(&mut self) -> RedisResult<&mut dyn ConnectionLike> {
        match self {
            Link::Shared(c) => Ok(c),
            Link::Solo(c) => Ok(c.get()?),
        }
    }
}

impl ConnectionLike for Link {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self.target() {
            Ok(c) => c.req_packed_command(cmd),
            Err(e) => Box::pin(std::future::ready(Err(e))),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self.target() {
            Ok(c) => c.req_packed_commands(pipeline, offset, count),
            Err(e) => Box::pin(std::future::ready(Err(e))),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Link::Shared(c) => c.get_db(),
            Link::Solo(c) => c.db(),
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

/// A connection checked out for one call: report a connection-level failure with
/// [`Lanes::failed`]; dropping it ends the call's turn.
pub(crate) struct Shared<'a> {
    /// The lane's connection (a clone: clones share its socket), or the solo connection.
    pub(crate) conn: Link,
    /// The lane and connection id (`None`: the solo connection).
    lane: Option<(usize, u64)>,
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

/// The solo connection of a backend and whether a call holds it.
struct SoloSeat {
    target: SoloTarget,
    slot: SoloSlot,
    /// Calls holding (or dialing) the solo connection: 0 or 1.
    busy: AtomicUsize,
}

/// The shared connections of a backend.
pub(crate) struct Lanes {
    dialer: Dialer,
    lanes: Box<[Lane]>,
    ids: AtomicU64,
    /// The solo connection (`None`: every call goes on the lanes).
    solo: Option<SoloSeat>,
}

impl Lanes {
    /// `count` lanes (at least one), dialed on first use, and the solo connection if `solo`
    /// targets one.
    pub(crate) fn new(dialer: Dialer, count: usize, solo: Option<SoloTarget>) -> Lanes {
        Lanes {
            dialer,
            lanes: (0..count.max(1)).map(|_| Lane::default()).collect(),
            ids: AtomicU64::new(0),
            solo: solo.map(|target| SoloSeat {
                target,
                slot: SoloSlot::default(),
                busy: AtomicUsize::new(0),
            }),
        }
    }

    /// The solo connection when no other call is in flight, else a connection of the lane with
    /// the fewest calls outstanding (the first among equals), dialed if the lane has none:
    /// concurrent calls spread over the lanes and pipeline there.
    pub(crate) async fn get(&self) -> RedisResult<Shared<'_>> {
        if let Some(solo) = self.solo().await? {
            return Ok(solo);
        }
        self.lane().await
    }

    /// A lane's connection, never the solo one: for a caller that pipelines several calls.
    pub(crate) async fn lane(&self) -> RedisResult<Shared<'_>> {
        let (index, lane) = self
            .lanes
            .iter()
            .enumerate()
            .min_by_key(|(_, lane)| lane.busy.load(Ordering::Relaxed))
            .unwrap_or((0, &self.lanes[0]));
        // Taken before dialing, so that calls arriving meanwhile see the lane busy.
        let turn = Turn::take(&lane.busy);
        let shared = |(conn, id)| Shared {
            conn: Link::Shared(conn),
            lane: Some((index, id)),
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

    /// The solo connection (dialed if there is none, or only a presumed dead one), if this
    /// backend has one and no call is in flight.
    async fn solo(&self) -> RedisResult<Option<Shared<'_>>> {
        let Some(seat) = &self.solo else {
            return Ok(None);
        };
        let idle = |busy: &AtomicUsize| busy.load(Ordering::Relaxed) == 0;
        if !idle(&seat.busy) || !self.lanes.iter().all(|l| idle(&l.busy)) {
            return Ok(None);
        }
        if (seat
            .busy
            .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed))
        .is_err()
        {
            // Another call took it meanwhile.
            return Ok(None);
        }
        let turn = Turn(&seat.busy);
        let failures = &self.dialer.failures;
        let parked = seat.slot.lock().unwrap_or_else(|p| p.into_inner()).take();
        if parked.as_ref().is_some_and(Solo::closed) {
            // The server closed it (a restart closes the lanes' connections too).
            failures.record();
        }
        let solo = match parked.filter(|s| !failures.stale(s.generation)) {
            Some(solo) => solo,
            None => {
                let generation = failures.now();
                seat.target.dial(generation).await.inspect_err(|e| {
                    if is_connection_error(e) {
                        failures.record();
                    }
                })?
            }
        };
        Ok(Some(Shared {
            conn: Link::Solo(SoloLease::new(solo, seat.slot.clone())),
            lane: None,
            _turn: turn,
        }))
    }

    /// Whether the solo connection is parked in its slot, and how many lanes hold a
    /// connection.
    #[cfg(test)]
    pub(crate) fn seats(&self) -> (bool, usize) {
        let parked = self.solo.as_ref().is_some_and(|seat| {
            seat.slot
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_some()
        });
        let lanes = self.lanes.iter();
        let dialed = lanes
            .filter(|l| l.slot.lock().unwrap_or_else(|p| p.into_inner()).is_some())
            .count();
        (parked, dialed)
    }

    /// Whether the parked solo connection is one the server closed.
    #[cfg(test)]
    pub(crate) fn parked_closed(&self) -> bool {
        self.solo.as_ref().is_some_and(|seat| {
            let slot = seat.slot.lock().unwrap_or_else(|p| p.into_inner());
            slot.as_ref().is_some_and(Solo::closed)
        })
    }

    /// A connection of its own, outside the lanes (a blocking call on a cluster).
    pub(crate) async fn dial(&self) -> RedisResult<Conn> {
        self.dialer.dial().await.map(|(conn, _)| conn)
    }

    /// A call on `shared` failed at the connection level: its lane is emptied (the solo
    /// connection dropped) and the failure counted, once per connection (the other calls in
    /// flight on it fail too).
    pub(crate) fn failed(&self, shared: &mut Shared) {
        let Some((lane, id)) = shared.lane else {
            if let Link::Solo(solo) = &mut shared.conn {
                solo.discard();
            }
            self.dialer.failures.record();
            return;
        };
        let mut slot = self.lanes[lane]
            .slot
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if matches!(&*slot, Some((_, _, current)) if *current == id) {
            *slot = None;
            self.dialer.failures.record();
        }
    }
}

/// The pool of dedicated connections: deadpool-redis' (its recycle step PINGs on checkout,
/// a round trip the rare blocking commands can afford).
pub(crate) type Dedicated = deadpool_redis::Pool;
