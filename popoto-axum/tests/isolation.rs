//! Tenants stay apart through the API: CRUD, paging, and 1,000+ concurrent requests
//! alternating tenants with no response ever showing another tenant's data.

mod common;

use std::collections::HashMap;

use common::service::Note;
use common::{jwt, send, start, Harness};
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn create_note(h: &Harness, token: &str, title: &str, rank: f64) -> String {
    let r = send(
        h.post("/notes", json!({"title": title, "rank": rank}))
            .bearer_auth(token),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "create {title}: {}", r.raw);
    r.json["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {}", r.raw))
        .to_owned()
}

fn titles(page: &Value) -> Vec<&str> {
    page["items"]
        .as_array()
        .unwrap_or_else(|| panic!("no items in {page}"))
        .iter()
        .map(|n| n["title"].as_str().unwrap_or("<no title>"))
        .collect()
}

#[tokio::test]
async fn tenants_are_isolated_through_the_api() {
    let h = start().await;
    let acme = jwt("alice", &["acme"]);
    let globex = jwt("gina", &["globex"]);
    let mut acme_ids = Vec::new();
    for (title, rank) in [("a-low", 1.0), ("a-high", 9.0), ("a-mid", 5.0)] {
        acme_ids.push(create_note(&h, &acme, title, rank).await);
    }
    // globex writes through its API key path and the path source.
    for (title, rank) in [("g-one", 3.0), ("g-two", 4.0)] {
        let r = send(
            h.post("/t/globex/notes", json!({"title": title, "rank": rank}))
                .header("x-api-key", "multi-key"),
        )
        .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.raw);
        assert_eq!(r.json["org"], "globex");
    }

    // Paging a sorted listing, highest rank first.
    let p1 = send(h.get("/notes?limit=2").bearer_auth(&acme)).await;
    assert_eq!(titles(&p1.json), ["a-high", "a-mid"], "{}", p1.raw);
    assert_eq!(p1.json["total"], 3);
    let p2 = send(h.get("/notes?offset=2&limit=2").bearer_auth(&acme)).await;
    assert_eq!(titles(&p2.json), ["a-low"], "{}", p2.raw);
    let g = send(h.get("/notes").bearer_auth(&globex)).await;
    assert_eq!(titles(&g.json), ["g-two", "g-one"], "{}", g.raw);
    assert_eq!(g.json["total"], 2);

    // globex cannot read, change or delete acme's note by id.
    let id = &acme_ids[1];
    let path = format!("/notes/{id}");
    for rb in [
        h.get(&path),
        h.client
            .put(format!("{}{path}", h.base))
            .json(&json!({"title": "pwned", "rank": 0})),
        h.client.delete(format!("{}{path}", h.base)),
    ] {
        let r = send(rb.bearer_auth(&globex)).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.raw);
    }
    let r = send(h.get(&path).bearer_auth(&acme)).await;
    assert_eq!(
        (r.status, r.json["title"].as_str()),
        (StatusCode::OK, Some("a-high"))
    );
    // acme can.
    let r = send(
        h.client
            .put(format!("{}{path}", h.base))
            .json(&json!({"title": "a-top", "rank": 10}))
            .bearer_auth(&acme),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.raw);
    let r = send(
        h.client
            .delete(format!("{}{path}", h.base))
            .bearer_auth(&acme),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.raw);
    let r = send(h.get("/notes").bearer_auth(&acme)).await;
    assert_eq!(titles(&r.json), ["a-mid", "a-low"], "{}", r.raw);

    // The same project slug in two tenants: two projects.
    for (token, name) in [(&acme, "Acme roadmap"), (&globex, "Globex roadmap")] {
        let r = send(
            h.post("/projects", json!({"slug": "roadmap", "name": name}))
                .bearer_auth(token),
        )
        .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.raw);
    }
    for (token, name) in [(&acme, "Acme roadmap"), (&globex, "Globex roadmap")] {
        let r = send(h.get("/projects/roadmap").bearer_auth(token)).await;
        assert_eq!(r.json["name"], name, "{}", r.raw);
    }
    popoto::testing::assert_isolated::<Note>(&h.db).await;
    popoto::testing::assert_isolated::<common::service::Project>(&h.db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_alternating_tenants_never_bleed() {
    const REQUESTS: usize = 1200;
    let h = std::sync::Arc::new(start().await);
    let tenants = ["acme", "globex", "initech", "hooli"];
    let tokens: HashMap<&str, String> = tenants.iter().map(|t| (*t, jwt(t, &[t]))).collect();
    for t in tenants {
        for i in 0..3 {
            create_note(&h, &tokens[t], &format!("{t}-seed-{i}"), f64::from(i)).await;
        }
    }
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..REQUESTS {
        let t = tenants[i % tenants.len()];
        let h = h.clone();
        let token = tokens[t].clone();
        tasks.spawn(async move {
            // Alternate credentials and selection sources, and reads with writes.
            let rb = match (i / tenants.len()) % 4 {
                0 => h.get("/notes?limit=100").bearer_auth(&token),
                1 => h
                    .get(&format!("/t/{t}/notes?limit=100"))
                    .bearer_auth(&token),
                2 => h
                    .get("/notes?limit=100")
                    .header("x-tenant", t)
                    .bearer_auth(&token),
                _ => h
                    .post(
                        "/notes",
                        json!({"title": format!("{t}-req-{i}"), "rank": i}),
                    )
                    .bearer_auth(&token),
            };
            (i, t, send(rb).await)
        });
    }
    let mut created: HashMap<&str, usize> = HashMap::new();
    let mut seen = 0;
    while let Some(done) = tasks.join_next().await {
        let (i, t, r) = done.unwrap_or_else(|e| panic!("request task: {e}"));
        seen += 1;
        if (i / tenants.len()) % 4 == 3 {
            assert_eq!(r.status, StatusCode::CREATED, "request {i}: {}", r.raw);
            assert_eq!(
                r.json["org"], t,
                "request {i} created in another tenant: {}",
                r.raw
            );
            *created.entry(t).or_default() += 1;
            continue;
        }
        assert_eq!(r.status, StatusCode::OK, "request {i}: {}", r.raw);
        assert_eq!(
            r.json["tenant"], t,
            "request {i} answered by another tenant"
        );
        for item in r.json["items"]
            .as_array()
            .unwrap_or_else(|| panic!("{}", r.raw))
        {
            assert_eq!(item["org"], t, "request {i} of {t} saw {item}");
            let title = item["title"].as_str().unwrap_or("<no title>");
            assert!(
                title.starts_with(&format!("{t}-")),
                "request {i} of {t} saw {title}"
            );
        }
    }
    assert_eq!(seen, REQUESTS);
    // Every write landed in its own tenant, and only there.
    for t in tenants {
        let session = h.db.tenant(t).unwrap_or_else(|e| panic!("{e}"));
        let notes = session
            .query::<Note>()
            .fetch()
            .await
            .unwrap_or_else(|e| panic!("{t}: {e}"));
        assert_eq!(notes.len(), 3 + created[t], "{t}");
        assert!(notes
            .iter()
            .all(|n| n.org == t && n.title.starts_with(&format!("{t}-"))));
    }
    popoto::testing::assert_isolated::<Note>(&h.db).await;
}

#[tokio::test]
async fn the_example_serves_what_its_curl_lines_say() {
    let redis = popoto::testing::TestRedis::start().unwrap_or_else(|e| panic!("{e}"));
    let demo = common::service::start(redis.url())
        .await
        .unwrap_or_else(|e| panic!("demo: {e}"));
    assert!(
        demo.curl[0].contains(&format!("http://{}/notes", demo.addr)),
        "{:?}",
        demo.curl
    );
    let client = reqwest::Client::new();
    let url = format!("http://{}/notes", demo.addr);
    let r = send(
        client
            .post(&url)
            .bearer_auth(&demo.token)
            .json(&json!({"title": "hello", "rank": 1})),
    )
    .await;
    assert_eq!(
        (r.status, r.json["org"].as_str()),
        (StatusCode::CREATED, Some("acme")),
        "{}",
        r.raw
    );
    let r = send(client.get(&url).bearer_auth(&demo.token)).await;
    assert_eq!(titles(&r.json), ["hello"], "{}", r.raw);
    // The API key of globex sees none of it; an unregistered tenant is refused.
    let r = send(
        client
            .get(format!("http://{}/t/globex/notes", demo.addr))
            .header("x-api-key", &demo.api_key),
    )
    .await;
    assert_eq!(
        (r.status, titles(&r.json).len()),
        (StatusCode::OK, 0),
        "{}",
        r.raw
    );
    let r = send(
        client
            .get(format!("http://{}/t/ghost/notes", demo.addr))
            .header("x-api-key", &demo.api_key),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.raw);
    demo.server.abort();
}
