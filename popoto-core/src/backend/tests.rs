//! Unit tests of the backend's connection failures.

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
    assert_eq!(backend.failures.now(), 0);
    for attempt in 1..=2u64 {
        let err = backend
            .query::<String>("ping", "-", &redis::cmd("PING"))
            .await
            .unwrap_err();
        assert!(err.is_connection_error(), "{err}");
        assert_eq!(backend.failures.now(), attempt);
    }
    closer.abort();
}
