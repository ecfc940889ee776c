//! The solo connection: a call issued while no other call of the backend is in flight writes its
//! request and reads its reply in its own task, on a connection that carries one call at a time.
//!
//! A multiplexed connection hands every request to its driver task and the reply back through
//! a channel: two task hand-offs per call, which a lone caller pays in latency (about 10 µs a
//! call on loopback) and which buy nothing when there is nobody to pipeline with. Concurrent
//! calls never use it: they find the solo busy and go on the shared lanes (`conn.rs`).
//!
//! Out of step means unusable: a request whose reply was not read whole (a timeout, a cut, a
//! parse error, a caller that stopped waiting) leaves the connection pending, and a pending one
//! is dropped instead of going back to its slot. Only plain connections are made here (TCP or
//! Unix socket, RESP2); a URL asking for more (TLS, RESP3) leaves every call on the lanes.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use redis::aio::ConnectionLike;
use redis::{
    Cmd, ConnectionAddr, ConnectionInfo, Pipeline, ProtocolVersion, RedisFuture, RedisResult,
    Value, ValueCodec,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::codec::Decoder;

/// A byte stream to the server (TCP or a Unix socket).
trait Io: AsyncRead + AsyncWrite + Send + Unpin {
    /// Reads what is there without waiting (`WouldBlock`: nothing).
    fn try_read(&self, buf: &mut [u8]) -> io::Result<usize>;
}

impl Io for tokio::net::TcpStream {
    fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        tokio::net::TcpStream::try_read(self, buf)
    }
}

#[cfg(unix)]
impl Io for tokio::net::UnixStream {
    fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        tokio::net::UnixStream::try_read(self, buf)
    }
}

/// What a solo connection needs to dial: the server's address, credentials and database.
#[derive(Clone)]
pub(crate) struct SoloTarget {
    info: ConnectionInfo,
    connect_timeout: Duration,
    response_timeout: Duration,
}

impl SoloTarget {
    /// The target for `info`, or `None` when a solo connection could not speak as the lanes
    /// do (TLS, RESP3).
    pub(crate) fn new(
        info: &ConnectionInfo,
        connect_timeout: Duration,
        response_timeout: Duration,
    ) -> Option<SoloTarget> {
        let plain = matches!(
            info.addr(),
            ConnectionAddr::Tcp(..) | ConnectionAddr::Unix(_)
        );
        let resp2 = matches!(info.redis_settings().protocol(), ProtocolVersion::RESP2);
        (plain && resp2).then(|| SoloTarget {
            info: info.clone(),
            connect_timeout,
            response_timeout,
        })
    }

    /// A new connection, authenticated and on the URL's database, within the connect timeout.
    pub(crate) async fn dial(&self, generation: u64) -> RedisResult<Solo> {
        match tokio::time::timeout(self.connect_timeout, self.handshake(generation)).await {
            Ok(dialed) => dialed,
            Err(_) => Err(io::Error::from(io::ErrorKind::TimedOut).into()),
        }
    }

    async fn handshake(&self, generation: u64) -> RedisResult<Solo> {
        let io: Box<dyn Io> = match self.info.addr() {
            ConnectionAddr::Tcp(host, port) => {
                let stream = tokio::net::TcpStream::connect((host.as_str(), *port)).await?;
                stream.set_nodelay(true)?;
                Box::new(stream)
            }
            #[cfg(unix)]
            ConnectionAddr::Unix(path) => Box::new(tokio::net::UnixStream::connect(path).await?),
            _ => return Err(io::Error::from(io::ErrorKind::Unsupported).into()),
        };
        let settings = self.info.redis_settings();
        let mut solo = Solo {
            io,
            buf: BytesMut::with_capacity(8 * 1024),
            codec: ValueCodec::default(),
            db: settings.db(),
            response_timeout: self.response_timeout,
            pending: false,
            generation,
        };
        if let Some(password) = settings.password() {
            let mut auth = redis::cmd("AUTH");
            if let Some(user) = settings.username() {
                auth.arg(user);
            }
            auth.arg(password);
            auth.query_async::<()>(&mut solo).await?;
        }
        if settings.db() != 0 {
            redis::cmd("SELECT")
                .arg(settings.db())
                .query_async::<()>(&mut solo)
                .await?;
        }
        Ok(solo)
    }
}

/// A connection that carries one call at a time, read and written by the calling task.
pub(crate) struct Solo {
    io: Box<dyn Io>,
    buf: BytesMut,
    codec: ValueCodec,
    db: i64,
    response_timeout: Duration,
    /// A request went out whose reply was not read whole: never reused.
    pending: bool,
    /// The backend's failure count when dialed (older than a failure: presumed dead).
    pub(crate) generation: u64,
}

impl Solo {
    /// Whether the server closed the connection (or sent what nobody asked for) while it was
    /// parked: a restart, `CLIENT KILL` or the server's idle `timeout`. Nothing was sent on
    /// it since its last reply, so a fresh connection can take the call instead.
    pub(crate) fn closed(&self) -> bool {
        let mut byte = [0u8; 1];
        let quiet =
            matches!(self.io.try_read(&mut byte), Err(e) if e.kind() == io::ErrorKind::WouldBlock);
        !quiet || !self.buf.is_empty()
    }

    /// Sends `request` and reads `skip + count` replies, returning the last `count`. In a
    /// transaction (`MULTI` … `EXEC`), a command refused while queued fails the call.
    async fn exchange(
        &mut self,
        request: &[u8],
        skip: usize,
        count: usize,
        transaction: bool,
    ) -> RedisResult<Vec<Value>> {
        self.pending = true;
        let timeout = self.response_timeout;
        let replies = match tokio::time::timeout(timeout, self.send(request, skip + count)).await {
            Ok(replies) => replies?,
            Err(_) => return Err(io::Error::from(io::ErrorKind::TimedOut).into()),
        };
        self.pending = false;
        let mut replies = replies.into_iter();
        let mut refused = None;
        for skipped in replies.by_ref().take(skip) {
            if let (true, None, Value::ServerError(e)) = (transaction, &refused, skipped) {
                refused = Some(e);
            }
        }
        if let Some(e) = refused {
            return Err(e.into());
        }
        Ok(replies.collect())
    }

    async fn send(&mut self, request: &[u8], replies: usize) -> RedisResult<Vec<Value>> {
        self.io.write_all(request).await?;
        let mut out = Vec::with_capacity(replies);
        while out.len() < replies {
            if let Some(value) = self.codec.decode(&mut self.buf)? {
                out.push(value);
            } else if self.io.read_buf(&mut self.buf).await? == 0 {
                return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
            }
        }
        Ok(out)
    }
}

impl ConnectionLike for Solo {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let mut replies = self
                .exchange(&cmd.get_packed_command(), 0, 1, false)
                .await?;
            Ok(replies.pop().unwrap_or(Value::Nil))
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let request = pipeline.get_packed_pipeline();
            self.exchange(&request, offset, count, pipeline.is_transaction())
                .await
        })
    }

    fn get_db(&self) -> i64 {
        self.db
    }
}

/// Where an idle solo connection waits between calls.
pub(crate) type SoloSlot = Arc<Mutex<Option<Solo>>>;

/// A solo connection checked out for one call: back to its slot when dropped, unless it is
/// out of step or [`SoloLease::discard`]ed.
pub(crate) struct SoloLease {
    solo: Option<Solo>,
    slot: SoloSlot,
}

impl SoloLease {
    /// Checks `solo` out of `slot` for one call.
    pub(crate) fn new(solo: Solo, slot: SoloSlot) -> SoloLease {
        SoloLease {
            solo: Some(solo),
            slot,
        }
    }

    /// Drops the connection instead of returning it (a connection-level failure).
    pub(crate) fn discard(&mut self) {
        self.solo = None;
    }

    /// The connection, until discarded.
    pub(crate) fn get(&mut self) -> RedisResult<&mut Solo> {
        self.solo
            .as_mut()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected).into())
    }

    /// The database the connection selected (0 once discarded).
    pub(crate) fn db(&self) -> i64 {
        self.solo.as_ref().map_or(0, |s| s.db)
    }
}

impl Drop for SoloLease {
    fn drop(&mut self) {
        if let Some(solo) = self.solo.take().filter(|s| !s.pending) {
            let mut slot = self.slot.lock().unwrap_or_else(|p| p.into_inner());
            slot.get_or_insert(solo);
        }
    }
}
