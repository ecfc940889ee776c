//! A client that does not read its socket: its connection's buffers fill, the pump drops its
//! feed without holding anyone up (the other client gets every event as it is written), and
//! the server tells it `too_slow` and closes the socket; the client's position is where it
//! resumes from.

mod live_common;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use live_common::*;
use popoto::feed::{FeedSource, HubConfig, Retention};
use popoto::shared::{Access, Merge, Patch};
use popoto::testing::TestRedis;
use popoto_axum::live::{ClientMsg, LiveSync, ServerMsg};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_read_is_closed_as_too_slow_and_holds_no_one_up() {
    let redis = TestRedis::start().unwrap_or_else(|e| panic!("{e}"));
    let db = redis.db().await;
    let host = db.admin().shared();
    let d = host
        .share(&Doc::default(), Merge::LastWriteWins)
        .await
        .unwrap();
    for t in ["acme", "globex"] {
        host.subscribe::<Doc>(&tid(t), &d, Access::Read)
            .await
            .unwrap();
    }
    // Big values, few kept: the socket's buffers fill after a few dozen writes.
    let retention = Retention {
        max_len: 20,
        ..Retention::default()
    };
    db.admin()
        .set_feed_retention(&FeedSource::shared::<Doc>(&d), retention)
        .await
        .unwrap();
    let live = LiveSync::builder()
        .shared::<Doc>()
        .feed(HubConfig::default().buffer(4))
        .outbox(4)
        .build();
    let app = app_with(redis.url(), live).await;
    let mut fast = connect(&app, "globex", None).await;
    until(&mut fast, &[], |m| {
        matches!(m, ServerMsg::Subscribed { .. })
    })
    .await;

    // The slow client: says hello, then never reads.
    let mut request = app.ws.as_str().into_client_request().unwrap();
    request
        .headers_mut()
        .insert("x-api-key", "acme-key".parse().unwrap());
    let (mut slow, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let hello = serde_json::to_string(&ClientMsg::Hello { resume: None }).unwrap();
    slow.send(Message::Text(hello.into())).await.unwrap();
    // Followed once the pump has its tenant's stream too (a condition, polled).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while app.live.hub().streams() < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "acme never followed"
        );
        tokio::task::yield_now().await;
    }
    let body = "x".repeat(512 * 1024);
    let mut version = 1;
    // Until the pump drops the slow connection's feed (its tenant stream is no longer
    // followed), each write seen by the fast client before the next.
    while app.live.hub().streams() == 3 {
        assert!(version < 400, "the slow client was never dropped");
        let value = Doc {
            body: format!("{version}{body}"),
            ..Doc::default()
        };
        host.patch(&d, &Patch::of(&value).unwrap().with(Doc::body()))
            .await
            .unwrap();
        version += 1;
        let got = until(
            &mut fast,
            &[],
            |m| matches!(m, ServerMsg::Event { version: v, .. } if *v == version),
        )
        .await;
        let versions: Vec<u64> = got
            .iter()
            .filter_map(|m| match m {
                ServerMsg::Event { version, .. } => Some(*version),
                _ => None,
            })
            .collect();
        assert_eq!(versions, [version], "one event per write, in order");
    }
    // The slow client reads at last: what was queued, then `too_slow`, then the close.
    let mut last = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while let Some(frame) = tokio::time::timeout_at(deadline, slow.next())
        .await
        .expect("the server closes the slow connection")
    {
        match frame {
            Ok(Message::Text(t)) => last = Some(serde_json::from_str::<ServerMsg>(&t).unwrap()),
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => {}
        }
    }
    match last {
        Some(ServerMsg::Error {
            code, req: None, ..
        }) => assert_eq!(code, "too_slow"),
        other => panic!("expected too_slow last, got {other:?}"),
    }
}
