//! Connections: recovery after a Redis restart, and a fast failure on a server that does not
//! answer.

use crate::support::*;

#[tokio::test]
async fn connections_recover_after_a_redis_restart() {
    let (mut server, db) = setup().await;
    let acme = db.tenant("acme").unwrap();
    acme.create(episode("", "before", 1.0, 1)).await.unwrap();
    server.kill();
    let err = acme.query::<Episode>().count().await.unwrap_err();
    assert!(err.is_connection_error(), "a clear connection error: {err}");
    server.restart().unwrap_or_else(|e| panic!("{e}"));
    // The restarted server is empty; the same Db works again without being rebuilt.
    let mut ok = None;
    for _ in 0..3 {
        match acme.create(episode("", "after", 2.0, 2)).await {
            Ok(ep) => {
                ok = Some(ep);
                break;
            }
            Err(e) => assert!(
                e.is_connection_error(),
                "only stale connections may fail: {e}"
            ),
        }
    }
    assert!(ok.is_some(), "later calls succeed");
    assert_eq!(acme.query::<Episode>().count().await.unwrap(), 1);
}

#[tokio::test]
async fn connect_fails_fast_on_a_server_that_does_not_answer() {
    let server = start_server();
    let url = server.url().to_owned();
    assert!(popoto::Db::connect(&url).await.is_ok());
    drop(server);
    match popoto::Db::connect(&url).await {
        Err(e) => assert!(e.is_connection_error(), "{e:?}"),
        Ok(_) => panic!("connect succeeded against a stopped server"),
    }
    // Building the pool without dialing stays lazy.
    assert!(popoto::Db::with_config(popoto::BackendConfig::new(url)).is_ok());
}
