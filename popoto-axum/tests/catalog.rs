//! The example service (process A) on a real HTTP server, and a second process (B: its own
//! `Db` and registry on the same Redis) changing the tenant catalog: A obeys every change on its
//! next requests, without anyone invalidating its caches. A polls the catalog's change counter
//! only every 30 s and caches API keys for 30 s: only the catalog's change notifications can
//! make it obey in time.

mod common;

use std::time::Duration;

use common::{assert_clean, send, Reply};
use popoto::catalog::TenantUpdate;
use popoto::{BackendConfig, Catalog, CatalogPlacement, Db, TenantId, TenantRegistry};
use reqwest::StatusCode;
use serde_json::json;

fn tid(s: &str) -> TenantId {
    TenantId::new(s).unwrap_or_else(|e| panic!("tenant id {s:?}: {e}"))
}

/// Sends the request `make` builds until its reply satisfies `want` (then returns it), or
/// fails after 10 s with the last reply.
async fn until(
    what: &str,
    make: impl Fn() -> reqwest::RequestBuilder,
    want: impl Fn(&Reply) -> bool,
) -> Reply {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = send(make()).await;
        if want(&r) {
            return r;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("{what}: not within 10 s; last reply {} {}", r.status, r.raw);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn catalog_changes_made_by_another_process_are_obeyed_at_once() {
    let redis = popoto::testing::TestRedis::start().unwrap_or_else(|e| panic!("{e}"));
    // Process A: the example service.
    let demo = common::service::start(redis.url())
        .await
        .unwrap_or_else(|e| panic!("demo: {e}"));
    tokio::time::timeout(Duration::from_secs(10), demo.watcher.subscribed(1))
        .await
        .unwrap_or_else(|_| panic!("the watcher did not subscribe within 10 s"));
    // Process B: its own registry on the same catalog.
    let b = TenantRegistry::with_catalog(BackendConfig::new(redis.url()), Duration::ZERO)
        .unwrap_or_else(|e| panic!("registry: {e}"));
    let b_db = Db::with_registry(b.clone());
    let catalog: Catalog = b.catalog().unwrap_or_else(|| panic!("no catalog"));

    let client = reqwest::Client::new();
    let base = format!("http://{}", demo.addr);
    let globex = || {
        client
            .get(format!("{base}/t/globex/notes"))
            .header("x-api-key", &demo.api_key)
    };
    let acme = || client.get(format!("{base}/notes")).bearer_auth(&demo.token);
    let r = send(
        client
            .post(format!("{base}/notes"))
            .bearer_auth(&demo.token)
            .json(&json!({"title": "before the move", "rank": 1})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.raw);
    // Both served, and cached (API key, tenant entries).
    for _ in 0..3 {
        assert_eq!(send(globex()).await.status, StatusCode::OK);
        assert_eq!(send(acme()).await.status, StatusCode::OK);
    }

    // Suspended by B: A refuses it (403 to its members) on its next requests...
    catalog
        .suspend(&tid("globex"))
        .await
        .unwrap_or_else(|e| panic!("suspend: {e}"));
    let r = until("suspension obeyed", globex, |r| {
        r.status == StatusCode::FORBIDDEN
    })
    .await;
    assert_eq!(r.code(), "tenant_suspended", "{}", r.raw);
    assert_clean(&r, &[demo.api_key.as_str()]);
    // ...and serves it again once resumed.
    catalog
        .resume(&tid("globex"))
        .await
        .unwrap_or_else(|e| panic!("resume: {e}"));
    until("resumption obeyed", globex, |r| r.status == StatusCode::OK).await;

    // The API key revoked in the catalog: refused although A cached it.
    let revoked = TenantUpdate {
        remove: vec![format!("{}demo", popoto_axum::API_KEY_PREFIX)],
        ..Default::default()
    };
    catalog
        .update(&tid("globex"), &revoked)
        .await
        .unwrap_or_else(|e| panic!("revoke: {e}"));
    let r = until("revocation obeyed", globex, |r| {
        r.status == StatusCode::UNAUTHORIZED
    })
    .await;
    assert_eq!(r.code(), "invalid_credentials", "{}", r.raw);

    // acme moved to database 3 (its note copied there first by B): A reads it there.
    let copy = Db::from_backend(
        popoto::Backend::new(BackendConfig::new(redis.url_db(3))).unwrap_or_else(|e| panic!("{e}")),
    );
    for title in ["before the move", "copied"] {
        copy.tenant("acme")
            .unwrap_or_else(|e| panic!("{e}"))
            .create(common::service::Note {
                title: title.into(),
                rank: 1.0,
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("copy: {e}"));
    }
    let moved = TenantUpdate {
        placement: Some(CatalogPlacement::Database(3)),
        ..Default::default()
    };
    catalog
        .update(&tid("acme"), &moved)
        .await
        .unwrap_or_else(|e| panic!("move: {e}"));
    let r = until("move obeyed", acme, |r| r.json["total"] == 2).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.raw);

    // Destroyed through B (its data too): 410 to its member.
    b_db.admin()
        .destroy_tenant(
            &tid("acme"),
            &popoto::ModelSet::new().with::<common::service::Note>(),
        )
        .await
        .unwrap_or_else(|e| panic!("destroy: {e}"));
    let r = until("destruction obeyed", acme, |r| r.status == StatusCode::GONE).await;
    assert_eq!(r.code(), "tenant_destroyed", "{}", r.raw);
    demo.server.abort();
}
