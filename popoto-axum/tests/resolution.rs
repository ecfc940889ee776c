//! Tenant resolution through real HTTP: credentials, selections, refusals and error bodies,
//! against the example service on a loopback port and a private redis-server.

mod common;

use std::sync::atomic::Ordering;

use common::{assert_clean, jwt, now, send, start, start_with, tid, token, token_with};
use popoto_axum::jsonwebtoken::Algorithm;
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn skip_paths_are_the_only_requests_served_without_a_tenant() {
    let h = start().await;
    let health = send(h.get("/health")).await;
    assert_eq!((health.status, health.raw.as_str()), (StatusCode::OK, "ok"));
    for path in [
        "/notes",
        "/whoami",
        "/no-such-route",
        "/healthz",
        "/t/acme/notes",
    ] {
        let r = send(h.get(path)).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{path}: {}", r.raw);
        assert_eq!(r.code(), "unauthenticated", "{path}");
        assert_clean(&r, &[]);
    }
    // A header alone is a selection, not a credential.
    let r = send(h.get("/whoami").header("x-tenant", "acme")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.raw);
}

#[tokio::test]
async fn a_jwt_claim_names_the_tenant_and_bad_tokens_are_refused() {
    let h = start().await;
    let ok = h.whoami(&jwt("alice", &["acme"])).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.raw);
    assert_eq!(ok.json, json!({"tenant": "acme", "subject": "alice"}));

    let t = now();
    let claims = |extra: serde_json::Value| {
        let mut c = json!({"sub": "alice", "tenant": "acme", "exp": t + 3600});
        if let (Some(c), Some(e)) = (c.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                c.insert(k.clone(), v.clone());
            }
        }
        c
    };
    let forged_sig = {
        let good = jwt("alice", &["acme"]);
        let (head, _) = good.rsplit_once('.').unwrap_or_else(|| panic!("{good}"));
        format!("{head}.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
    };
    // `alg: none`, unsigned.
    let unsigned = {
        use base64_url as b;
        format!(
            "{}.{}.",
            b::encode(br#"{"alg":"none","typ":"JWT"}"#),
            b::encode(claims(json!({})).to_string().as_bytes())
        )
    };
    let bad = [
        ("expired", token(claims(json!({"exp": t - 3600})))),
        ("not yet valid", token(claims(json!({"nbf": t + 3600})))),
        ("no exp", token(json!({"sub": "alice", "tenant": "acme"}))),
        (
            "another key",
            token_with(
                Algorithm::HS256,
                b"another-secret-entirely-0123456789",
                claims(json!({})),
            ),
        ),
        (
            "another algorithm",
            token_with(Algorithm::HS512, common::SECRET, claims(json!({}))),
        ),
        ("forged signature", forged_sig),
        ("alg none", unsigned),
        ("garbage", "not.a.jwt".to_owned()),
        ("bad tenant claim", token(claims(json!({"tenant": ""})))),
    ];
    let mut bodies = Vec::new();
    for (what, tok) in &bad {
        let r = h.whoami(tok).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{what}: {}", r.raw);
        assert_eq!(r.code(), "invalid_credentials", "{what}");
        assert_clean(&r, &[tok.as_str()]);
        bodies.push(r.without_id());
    }
    bodies.dedup();
    assert_eq!(
        bodies.len(),
        1,
        "one body for every refused token: {bodies:?}"
    );
}

/// Base64url without padding, for a hand-made unsigned token.
mod base64_url {
    pub fn encode(bytes: &[u8]) -> String {
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
            for i in 0..=chunk.len() {
                out.push(char::from(A[(n >> (18 - 6 * i) & 63) as usize]));
            }
        }
        out
    }
}

#[tokio::test]
async fn api_keys_resolve_through_the_application_with_a_cache() {
    let h = start().await;
    let r = send(h.get("/whoami").header("x-api-key", "acme-key")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.raw);
    assert_eq!(r.json["tenant"], "acme");
    let r = send(h.get("/whoami").header("x-api-key", "acme-key")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.raw);
    assert_eq!(
        h.key_lookups.load(Ordering::SeqCst),
        1,
        "the second hit is cached"
    );

    for _ in 0..2 {
        let r = send(h.get("/whoami").header("x-api-key", "stolen-key")).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.raw);
        assert_eq!(r.code(), "invalid_credentials");
        assert_clean(&r, &["stolen-key"]);
    }
    assert_eq!(
        h.key_lookups.load(Ordering::SeqCst),
        2,
        "unknown keys are cached too (negative cache)"
    );

    h.tenancy.invalidate_api_key("acme-key");
    let r = send(h.get("/whoami").header("x-api-key", "acme-key")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.raw);
    assert_eq!(h.key_lookups.load(Ordering::SeqCst), 3, "invalidated");

    // The resolver fails: 503 without its message (which names a URL and a password).
    let r = send(h.get("/whoami").header("x-api-key", "broken-key")).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.raw);
    assert_eq!(r.code(), "unavailable");
    assert_clean(&r, &["10.0.0.9", "broken-key"]);
}

#[tokio::test]
async fn header_host_and_path_only_pick_among_the_principals_tenants() {
    let h = start().await;
    let multi = |rb: reqwest::RequestBuilder| rb.header("x-api-key", "multi-key");
    let acme = jwt("alice", &["acme"]);

    // Several tenants and no selection: 400, nothing guessed.
    let r = send(multi(h.get("/whoami"))).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.raw);
    assert_eq!(r.code(), "tenant_required");
    // Each source selects among them.
    for (rb, want) in [
        (
            multi(h.get("/whoami")).header("x-tenant", "globex"),
            "globex",
        ),
        (
            multi(h.get("/whoami")).header("host", "globex.example.test"),
            "globex",
        ),
        (multi(h.get("/t/globex/whoami")), "globex"),
        (multi(h.get("/t/acme/whoami")), "acme"),
    ] {
        let r = send(rb).await;
        assert_eq!(
            (r.status, r.json["tenant"].as_str()),
            (StatusCode::OK, Some(want)),
            "{}",
            r.raw
        );
    }
    // The header comes first in the configured order.
    let r = send(multi(h.get("/t/acme/whoami")).header("x-tenant", "globex")).await;
    assert_eq!(r.json["tenant"], "globex", "{}", r.raw);

    // A member of acme selecting globex by any source: the uniform 404.
    for rb in [
        h.get("/whoami").header("x-tenant", "globex"),
        h.get("/whoami").header("host", "globex.example.test"),
        h.get("/t/globex/whoami"),
    ] {
        let r = send(rb.bearer_auth(&acme)).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.raw);
        assert_eq!(r.code(), "tenant_not_found");
        assert_clean(&r, &["globex", "acme"]);
    }
}

#[tokio::test]
async fn a_jwt_for_one_tenant_is_refused_on_another_tenants_host() {
    let h = start().await;
    let acme = jwt("alice", &["acme"]);
    let on_host = |host: &str| h.get("/whoami").bearer_auth(&acme).header("host", host);
    let r = send(on_host("acme.example.test")).await;
    assert_eq!(
        (r.status, r.json["tenant"].as_str()),
        (StatusCode::OK, Some("acme"))
    );
    let r = send(on_host("ACME.example.test:8443")).await;
    assert_eq!(
        r.json["tenant"], "acme",
        "case and port do not matter: {}",
        r.raw
    );
    let r = send(on_host("globex.example.test")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.raw);
    assert_eq!(r.code(), "tenant_not_found");
    // Two labels under the base domain are no tenant, not the claim's tenant either.
    let r = send(on_host("acme.globex.example.test")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.raw);
    // The base domain itself and foreign hosts select nothing: the claim decides.
    for host in ["example.test", "api.other.test", "127.0.0.1"] {
        let r = send(on_host(host)).await;
        assert_eq!(r.json["tenant"], "acme", "{host}: {}", r.raw);
    }
}

#[tokio::test]
async fn forwarded_hosts_are_ignored_unless_the_peer_is_a_trusted_proxy() {
    let h = start().await;
    let globex = jwt("gina", &["globex"]);
    let spoofed = |rb: reqwest::RequestBuilder| {
        rb.header("host", "acme.example.test")
            .header("x-forwarded-host", "globex.example.test")
            .header("forwarded", "for=1.2.3.4;host=globex.example.test")
    };
    // The peer (127.0.0.1) is no trusted proxy: the Host header (acme) decides.
    let r = send(spoofed(h.get("/whoami")).bearer_auth(&globex)).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.raw);
    let r = send(spoofed(h.get("/whoami")).bearer_auth(jwt("alice", &["acme"]))).await;
    assert_eq!(r.json["tenant"], "acme", "{}", r.raw);

    let trusting =
        start_with(|b| b.trusted_proxies(["127.0.0.1".parse().unwrap_or_else(|e| panic!("{e}"))]))
            .await;
    let r = send(spoofed(trusting.get("/whoami")).bearer_auth(&globex)).await;
    assert_eq!(
        (r.status, r.json["tenant"].as_str()),
        (StatusCode::OK, Some("globex")),
        "{}",
        r.raw
    );
    // X-Forwarded-Host alone, from the trusted proxy: its last value.
    let r = send(
        trusting
            .get("/whoami")
            .bearer_auth(&globex)
            .header("host", "acme.example.test")
            .header("x-forwarded-host", "acme.example.test, globex.example.test"),
    )
    .await;
    assert_eq!(r.json["tenant"], "globex", "{}", r.raw);
}

#[tokio::test]
async fn outsiders_cannot_tell_unknown_suspended_destroyed_and_forbidden_tenants_apart() {
    let h = start().await;
    h.suspended
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert("initech".into());
    let outsider = jwt("mallory", &["hooli"]);
    // globex exists, ghost does not, initech is suspended, umbrella destroyed, wayne disabled,
    // the last two are no valid ids.
    let probes = [
        "globex", "ghost", "initech", "umbrella", "wayne", " ", "a%0Ab",
    ];
    let mut authenticated = Vec::new();
    let mut anonymous = Vec::new();
    for t in probes {
        let r = send(h.get(&format!("/t/{t}/notes")).bearer_auth(&outsider)).await;
        assert_clean(&r, &[t.trim(), "hooli"]);
        authenticated.push((r.status, r.without_id()));
        let r = send(h.get("/notes").header("x-tenant", t)).await;
        assert_clean(&r, &[t.trim()]);
        anonymous.push((r.status, r.without_id()));
    }
    for (replies, status) in [
        (&mut authenticated, StatusCode::NOT_FOUND),
        (&mut anonymous, StatusCode::UNAUTHORIZED),
    ] {
        assert_eq!(replies[0].0, status, "{replies:?}");
        replies.dedup();
        assert_eq!(replies.len(), 1, "one answer for every probe: {replies:?}");
    }
    assert_eq!(
        h.status_lookups.load(Ordering::SeqCst),
        0,
        "nothing about the tenant is looked up before authorization"
    );
}

#[tokio::test]
async fn members_get_distinct_statuses() {
    let h = start().await;
    h.suspended
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert("initech".into());
    for (tenant, status, code) in [
        ("initech", StatusCode::FORBIDDEN, "tenant_suspended"),
        ("umbrella", StatusCode::GONE, "tenant_destroyed"),
        (
            "wayne",
            StatusCode::SERVICE_UNAVAILABLE,
            "tenant_unavailable",
        ),
        ("ghost", StatusCode::NOT_FOUND, "tenant_not_found"),
    ] {
        let r = h.whoami(&jwt("member", &[tenant])).await;
        assert_eq!((r.status, r.code()), (status, code), "{tenant}: {}", r.raw);
        assert_clean(&r, &["10.0.0.9"]);
    }
    // The status is cached until the application invalidates it.
    h.suspended
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clear();
    let member = jwt("member", &["initech"]);
    assert_eq!(h.whoami(&member).await.status, StatusCode::FORBIDDEN);
    h.tenancy.invalidate_tenant(&tid("initech"));
    let r = h.whoami(&member).await;
    assert_eq!(
        (r.status, r.json["tenant"].as_str()),
        (StatusCode::OK, Some("initech"))
    );
    // A tenant destroyed while its members hold valid tokens is refused at once (the registry
    // is asked on every request).
    h.registry.tombstone(&tid("initech"));
    assert_eq!(h.whoami(&member).await.status, StatusCode::GONE);
}

#[tokio::test]
async fn error_bodies_never_carry_keys_urls_credentials_or_input() {
    let h = start().await;
    let acme = jwt("alice", &["acme"]);
    let r = send(h.get("/notes/0123456789abcdef").bearer_auth(&acme)).await;
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "not_found"));
    assert_clean(&r, &["0123456789abcdef", "acme", &acme]);

    let project = json!({"slug": "roadmap-7f3a", "name": "Roadmap"});
    let r = send(h.post("/projects", project.clone()).bearer_auth(&acme)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.raw);
    let r = send(h.post("/projects", project).bearer_auth(&acme)).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "already_exists"),
        "{}",
        r.raw
    );
    assert_clean(&r, &["roadmap-7f3a", "acme"]);

    // Input is not echoed, whatever is wrong with it.
    for (body, status) in [
        (
            "{\"title\": \"SECRET-INPUT\"}",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        ("{\"title\": SECRET-INPUT", StatusCode::BAD_REQUEST),
    ] {
        let r = send(
            h.client
                .post(format!("{}/notes", h.base))
                .bearer_auth(&acme)
                .header("content-type", "application/json")
                .body(body),
        )
        .await;
        assert_eq!(r.status, status, "{}", r.raw);
        assert_clean(&r, &["SECRET-INPUT", "title"]);
    }
}

#[tokio::test]
async fn the_tenant_extractor_without_the_layer_is_a_server_fault() {
    use axum::routing::get;
    let h = start().await;
    // The same handler type, mounted without the layer: no request is served tenant-less.
    let app = axum::Router::new().route(
        "/whoami",
        get(|t: popoto_axum::Tenant| async move { t.id().to_string() }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let r = send(
        h.client
            .get(format!("http://{addr}/whoami"))
            .header("x-tenant", "acme"),
    )
    .await;
    server.abort();
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        "{}",
        r.raw
    );
}
