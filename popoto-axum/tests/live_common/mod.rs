//! The harness of the live-sync tests: models, a server process (its own `Db`, tenancy and
//! live endpoint on a loopback port) and helpers reading what a client receives.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use popoto::feed::HubConfig;
use popoto::{Db, Model, TenantId};
use popoto_axum::live::{live_socket, LiveClient, LiveSync, ServerMsg};
use popoto_axum::{Principal, Tenancy};
use serde::{Deserialize, Serialize};

/// A private task; its writes go to the tenant's change feed.
#[derive(Model, Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[popoto(change_feed)]
pub struct Task {
    /// The tenant.
    #[popoto(key, tenant)]
    pub org: String,
    /// Its id.
    #[popoto(key)]
    pub id: String,
    /// Its title.
    pub title: String,
}

/// A shared document.
#[derive(Model, Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[popoto(shared)]
pub struct Doc {
    /// Its title.
    pub title: String,
    /// Its text.
    pub body: String,
    /// Votes.
    pub votes: i64,
}

pub fn tid(t: &str) -> TenantId {
    TenantId::new(t).unwrap_or_else(|e| panic!("{e}"))
}

/// One server process: its own `Db`, tenancy (API key `<tenant>-key`) and live endpoint.
pub struct App {
    /// The endpoint's URL.
    pub ws: String,
    /// The endpoint.
    pub live: LiveSync,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for App {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A server process with the endpoint of the tests.
pub async fn app(url: &str) -> App {
    let live = LiveSync::builder()
        .private::<Task>()
        .shared::<Doc>()
        .feed(HubConfig::default().poll(Duration::from_millis(100)))
        .build();
    app_with(url, live).await
}

/// A server process serving `live`.
pub async fn app_with(url: &str, live: LiveSync) -> App {
    let db = Db::connect(url).await.unwrap_or_else(|e| panic!("{e}"));
    let tenancy = Tenancy::builder(db)
        .api_key("x-api-key", |key| async move {
            Ok(key
                .strip_suffix("-key")
                .and_then(|t| TenantId::new(t).ok())
                .map(|t| Principal::new(format!("key:{key}"), [t])))
        })
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let router = Router::new()
        .route("/live", get(live_socket))
        .with_state(live.clone())
        .layer(tenancy.layer());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let made = router.into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(listener, made)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    });
    App {
        ws: format!("ws://{addr}/live"),
        live,
        server,
    }
}

/// A client of `tenant` (its API key), resuming after `resume` or starting anew.
pub async fn connect(
    app: &App,
    tenant: &str,
    resume: Option<popoto::feed::FeedPosition>,
) -> LiveClient {
    LiveClient::connect(&app.ws, &[("x-api-key", &format!("{tenant}-key"))], resume)
        .await
        .unwrap_or_else(|e| panic!("{tenant}: {e}"))
}

/// Messages until one matches `want` (that one last), with a deadline; every message is
/// checked against `never` (a text no message of this client may contain).
pub async fn until(
    c: &mut LiveClient,
    never: &[&str],
    want: impl Fn(&ServerMsg) -> bool,
) -> Vec<ServerMsg> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let msg = tokio::time::timeout_at(deadline, c.next())
            .await
            .unwrap_or_else(|_| panic!("no matching message; saw {seen:#?}"))
            .unwrap_or_else(|| panic!("closed; saw {seen:#?}"));
        let text = serde_json::to_string(&msg).unwrap();
        for n in never {
            assert!(!text.contains(n), "{n:?} leaked in {text}");
        }
        let done = want(&msg);
        seen.push(msg);
        if done {
            return seen;
        }
    }
}

/// Whether a message is an event of `model` whose key contains `key`.
pub fn is_event<'a>(model: &'a str, key: &'a str) -> impl Fn(&ServerMsg) -> bool + 'a {
    move |m| matches!(m, ServerMsg::Event { model: mm, key: k, .. } if mm == model && k.contains(key))
}

/// The events of `model` among `msgs`.
pub fn events_of<'a>(
    msgs: &'a [ServerMsg],
    model: &'a str,
) -> impl Iterator<Item = &'a ServerMsg> + 'a {
    msgs.iter()
        .filter(move |m| matches!(m, ServerMsg::Event { model: mm, .. } if mm == model))
}
