//! Unit tests of the backend's connection failures.

use std::future::Future;

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
    let backend = Backend::new(BackendConfig::new(format!("redis://127.0.0.1:{port}/0"))).unwrap();
    assert_eq!(backend.inner.failures.now(), 0);
    for attempt in 1..=2u64 {
        let err = backend
            .query::<String>("ping", "-", &redis::cmd("PING"))
            .await
            .unwrap_err();
        assert!(err.is_connection_error(), "{err}");
        assert_eq!(backend.inner.failures.now(), attempt);
    }
    closer.abort();
}

/// Whether `backend`'s solo connection is parked, and how many lanes hold a connection.
fn seats(backend: &Backend) -> (bool, usize) {
    backend.inner.lanes.seats()
}

/// A caller that waits for each reply runs every call on the solo connection: no lane is
/// dialed, and the solo connection goes back to its slot after each call.
#[cfg(feature = "testing")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_caller_runs_on_the_solo_connection_and_dials_no_lane() {
    let server = crate::testing::TestRedis::start().unwrap();
    let backend = Backend::new(BackendConfig::new(server.url_db(3))).unwrap();
    for i in 0..10 {
        let set: () = backend
            .query("set", "-", redis::cmd("SET").arg(format!("k{i}")).arg(i))
            .await
            .unwrap();
        let () = set;
    }
    let mut pipe = redis::pipe();
    pipe.atomic().cmd("INCR").arg("k1").cmd("GET").arg("k2");
    let (one, two): (i64, i64) = backend.pipeline("p", "-", &pipe).await.unwrap();
    assert_eq!((one, two), (2, 2));
    assert_eq!(seats(&backend), (true, 0));
    // The solo connection selected the URL's database.
    let mut raw = server.raw();
    let n: i64 = redis::cmd("DBSIZE").query(&mut raw).unwrap();
    assert_eq!(n, 0, "keys written to database 0");
    let n: i64 = redis::pipe()
        .cmd("SELECT")
        .arg(3)
        .ignore()
        .cmd("DBSIZE")
        .query::<(i64,)>(&mut raw)
        .unwrap()
        .0;
    assert_eq!(n, 10);
}

/// While a call holds the solo connection, the next goes on a lane.
#[cfg(feature = "testing")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_issued_while_another_is_in_flight_goes_on_a_lane() {
    let server = crate::testing::TestRedis::start().unwrap();
    let backend = Backend::new(BackendConfig::new(server.url())).unwrap();
    let first = backend.inner.lanes.get().await.unwrap();
    assert!(matches!(first.conn, Link::Solo(_)));
    let mut second = backend.inner.lanes.get().await.unwrap();
    assert!(matches!(second.conn, Link::Shared(_)));
    let pong: String = redis::cmd("PING")
        .query_async(&mut second.conn)
        .await
        .unwrap();
    assert_eq!(pong, "PONG");
    drop((first, second));
    assert_eq!(seats(&backend), (true, 1));
    // Switched off, every call goes on a lane.
    let mut config = BackendConfig::new(server.url());
    config.solo_connection = false;
    let backend = Backend::new(config).unwrap();
    let only = backend.inner.lanes.get().await.unwrap();
    assert!(matches!(only.conn, Link::Shared(_)));
}

/// A transaction whose command is refused while queued fails with the refusal, as on a lane.
#[cfg(feature = "testing")]
#[tokio::test]
async fn a_transaction_refused_while_queued_fails_on_the_solo_connection() {
    let server = crate::testing::TestRedis::start().unwrap();
    let backend = Backend::new(BackendConfig::new(server.url())).unwrap();
    let mut pipe = redis::pipe();
    pipe.atomic().cmd("SET").arg("a").arg(1).cmd("GET");
    let err = backend
        .pipeline::<redis::Value>("p", "-", &pipe)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("wrong number of arguments"),
        "{err}"
    );
    assert!(!err.is_connection_error(), "{err}");
    // Nothing ran, and the connection is still in step.
    let got: Option<String> = backend
        .query("get", "-", redis::cmd("GET").arg("a"))
        .await
        .unwrap();
    assert_eq!(got, None);
    assert_eq!(seats(&backend), (true, 0));
}

/// A server that reads requests and never answers: the call times out, and the solo
/// connection (its reply still owed) is dropped, not parked; so is one whose caller stopped
/// waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_solo_connection_out_of_step_is_dropped() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (accepted_tx, mut accepted) = tokio::sync::mpsc::unbounded_channel();
    let silent = tokio::spawn(async move {
        loop {
            let (socket, _) = listener.accept().await.unwrap();
            accepted_tx.send(()).unwrap();
            tokio::spawn(async move {
                use tokio::io::AsyncReadExt;
                let mut socket = socket;
                let mut buf = [0u8; 1024];
                while socket.read(&mut buf).await.unwrap_or(0) > 0 {}
            });
        }
    });
    let mut config = BackendConfig::new(format!("redis://127.0.0.1:{port}/0"));
    config.response_timeout = Duration::from_millis(200);
    let backend = Backend::new(config).unwrap();
    let err = backend
        .query::<String>("ping", "-", &redis::cmd("PING"))
        .await
        .unwrap_err();
    assert!(err.is_connection_error(), "{err}");
    assert_eq!(backend.inner.failures.now(), 1);
    assert_eq!(seats(&backend), (false, 0));
    accepted.recv().await.unwrap();
    // A caller that stops waiting: its call is dropped once the request is on the wire.
    let (sent_tx, sent) = tokio::sync::oneshot::channel();
    let call = {
        let backend = backend.clone();
        tokio::spawn(async move {
            let mut shared = backend.inner.lanes.get().await.unwrap();
            assert!(matches!(shared.conn, Link::Solo(_)));
            let ping = redis::cmd("PING");
            let mut reply = Box::pin(ping.query_async::<String>(&mut shared.conn));
            // Polled once: the request is written, the reply awaited.
            let polled = std::future::poll_fn(|cx| std::task::Poll::Ready(reply.as_mut().poll(cx)));
            assert!(polled.await.is_pending());
            sent_tx.send(()).unwrap();
            std::future::pending::<()>().await;
        })
    };
    accepted.recv().await.unwrap();
    sent.await.unwrap();
    call.abort();
    assert!(call.await.unwrap_err().is_cancelled());
    assert_eq!(seats(&backend), (false, 0));
    silent.abort();
}

/// A solo connection the server closed while it was parked (`CLIENT KILL`, a restart, the idle
/// `timeout`) is replaced before the next call is written: that call does not fail, and the
/// backend's health never sees a failure.
#[cfg(feature = "testing")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_solo_connection_closed_while_parked_is_replaced_before_the_next_call() {
    let server = crate::testing::TestRedis::start().unwrap();
    let backend = Backend::new(BackendConfig::new(server.url())).unwrap();
    let mut raw = server.raw();
    for round in 1..=3u64 {
        let pong: String = backend
            .query("ping", "-", &redis::cmd("PING"))
            .await
            .unwrap();
        assert_eq!(pong, "PONG");
        let killed: u64 = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("normal")
            .arg("SKIPME")
            .arg("yes")
            .query(&mut raw)
            .unwrap();
        assert_eq!(killed, 1, "round {round}: the solo connection alone");
        // The server's close reaches this process when the kernel delivers it (late under
        // load); the check covers a close already delivered.
        let mut polls = 0;
        while !backend.inner.lanes.parked_closed() {
            polls += 1;
            assert!(polls < 1_000_000, "round {round}: the close never arrived");
            tokio::task::yield_now().await;
        }
        let pong: String = backend
            .query("ping", "-", &redis::cmd("PING"))
            .await
            .unwrap();
        assert_eq!(pong, "PONG");
        assert_eq!(backend.consecutive_failures(), 0);
        assert_eq!(backend.inner.failures.now(), round);
        assert_eq!(seats(&backend), (true, 0));
    }
}
