//! The harness of the HTTP tests: a private redis-server, a registry with tenants in every
//! state, the example service on a free loopback port, and a real HTTP client.

#![allow(dead_code)]

#[path = "../../examples/service.rs"]
pub mod service;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use popoto::registry::Placement;
use popoto::testing::TestRedis;
use popoto::{BackendConfig, Db, Error, TenantId, TenantRegistry};
use popoto_axum::jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use popoto_axum::{CacheTtl, JwtConfig, Principal, Tenancy, TenancyBuilder, TenantStatus};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// The HS256 secret of the test tokens.
pub const SECRET: &[u8] = b"test-secret-that-is-long-enough-for-hs256";

/// Registered, served tenants.
pub const ACTIVE: [&str; 4] = ["acme", "globex", "initech", "hooli"];

pub fn tid(s: &str) -> TenantId {
    TenantId::new(s).unwrap_or_else(|e| panic!("tenant id {s:?}: {e}"))
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_else(|e| panic!("clock before 1970: {e}"))
        .as_secs()
}

/// A running service and what the tests need to drive and inspect it.
pub struct Harness {
    pub redis: TestRedis,
    pub db: Db,
    pub registry: TenantRegistry,
    pub tenancy: Tenancy,
    /// The queue `POST /notes/later` enqueues into.
    pub jobs: popoto_axum::JobQueue,
    pub base: String,
    pub client: reqwest::Client,
    /// Tenants the status hook reports as suspended.
    pub suspended: Arc<Mutex<HashSet<String>>>,
    /// Calls made to the API key resolver.
    pub key_lookups: Arc<AtomicUsize>,
    /// Calls made to the status hook.
    pub status_lookups: Arc<AtomicUsize>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// The full configuration: JWT, API key, header `x-tenant`, host under `example.test`, path
/// `/t`, skip `/health`. Tenants: acme, globex, initech, hooli served; `umbrella` destroyed;
/// `wayne` registered with a backend that cannot be built (disabled); `initech` suspended by
/// the status hook when the test says so. API keys: `acme-key` (acme), `multi-key` (acme and
/// globex), `outsider-key` (no tenant), `broken-key` (the resolver fails, naming a URL).
pub async fn start() -> Harness {
    start_with(|b| b).await
}

/// [`start`] with extra configuration.
pub async fn start_with(extra: impl FnOnce(TenancyBuilder) -> TenancyBuilder) -> Harness {
    let redis = TestRedis::start().unwrap_or_else(|e| panic!("{e}"));
    let registry = TenantRegistry::new(BackendConfig::new(redis.url()))
        .unwrap_or_else(|e| panic!("registry: {e}"));
    for t in ACTIVE {
        registry.register(&tid(t), Placement::Shared).await;
    }
    registry.tombstone(&tid("umbrella"));
    registry.register_lazy(&tid("wayne"), |_| async {
        Err(Error::Config(
            "redis://:hunter2@10.0.0.9:6379 refused".into(),
        ))
    });
    let db = Db::with_registry(registry.clone());

    let suspended = Arc::new(Mutex::new(HashSet::new()));
    let key_lookups = Arc::new(AtomicUsize::new(0));
    let status_lookups = Arc::new(AtomicUsize::new(0));
    let (s, k, st) = (
        suspended.clone(),
        key_lookups.clone(),
        status_lookups.clone(),
    );
    let builder = Tenancy::builder(db.clone())
        .jwt(JwtConfig::hs256(SECRET).unwrap_or_else(|e| panic!("{e}")))
        .api_key("x-api-key", move |key| {
            k.fetch_add(1, Ordering::SeqCst);
            async move {
                let tenants: Vec<TenantId> = match key.as_str() {
                    "acme-key" => vec![tid("acme")],
                    "multi-key" => vec![tid("acme"), tid("globex")],
                    "outsider-key" => vec![],
                    "broken-key" => {
                        return Err("key store at redis://:hunter2@10.0.0.9:6379 is down".into())
                    }
                    _ => return Ok(None),
                };
                Ok(Some(Principal::new(format!("key:{key}"), tenants)))
            }
        })
        .header("x-tenant")
        .host("example.test")
        .path_prefix("/t")
        .skip_path("/health")
        .status(move |t: TenantId| {
            st.fetch_add(1, Ordering::SeqCst);
            let suspended = s
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains(t.as_str());
            async move {
                Ok(if suspended {
                    TenantStatus::Suspended
                } else {
                    TenantStatus::Active
                })
            }
        })
        .cache_ttl(CacheTtl::default());
    let tenancy = extra(builder)
        .build()
        .unwrap_or_else(|e| panic!("tenancy: {e}"));
    let jobs = popoto_axum::JobQueue::open(&db, "tests")
        .await
        .unwrap_or_else(|e| panic!("job queue: {e}"));
    let app = service::router(&tenancy, Some(jobs.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("bind: {e}"));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("local addr: {e}"));
    let server = tokio::spawn(async move {
        let made = app.into_make_service_with_connect_info::<SocketAddr>();
        if let Err(e) = axum::serve(listener, made).await {
            panic!("server: {e}");
        }
    });
    Harness {
        redis,
        db,
        registry,
        tenancy,
        jobs,
        base: format!("http://{addr}"),
        client: reqwest::Client::new(),
        suspended,
        key_lookups,
        status_lookups,
        server,
    }
}

/// An HS256 token with these claims.
pub fn token(claims: Value) -> String {
    token_with(Algorithm::HS256, SECRET, claims)
}

/// A token signed with `alg` under `secret`.
pub fn token_with(alg: Algorithm, secret: &[u8], claims: Value) -> String {
    let key = EncodingKey::from_secret(secret).unwrap_or_else(|e| panic!("key: {e}"));
    encode(&Header::new(alg), &claims, &key).unwrap_or_else(|e| panic!("encode: {e}"))
}

/// A valid token of `sub` for `tenants` (a string claim for one, an array for several).
pub fn jwt(sub: &str, tenants: &[&str]) -> String {
    let claim = match tenants {
        [one] => json!(one),
        many => json!(many),
    };
    token(json!({"sub": sub, "tenant": claim, "exp": now() + 3600}))
}

/// A response: status, JSON body (`Null` if not JSON), raw body and `x-request-id`.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub json: Value,
    pub raw: String,
    pub request_id: Option<String>,
}

impl Reply {
    /// The body without its request id (to compare refusals).
    pub fn without_id(&self) -> Value {
        let mut v = self.json.clone();
        if let Some(o) = v.as_object_mut() {
            o.remove("request_id");
        }
        v
    }

    /// The error code of an error body.
    pub fn code(&self) -> &str {
        self.json["error"].as_str().unwrap_or("<no error code>")
    }
}

/// Sends a request and reads its reply.
pub async fn send(rb: reqwest::RequestBuilder) -> Reply {
    let resp = rb.send().await.unwrap_or_else(|e| panic!("request: {e}"));
    let status = resp.status();
    let request_id = resp
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let raw = resp.text().await.unwrap_or_else(|e| panic!("body: {e}"));
    let json = serde_json::from_str(&raw).unwrap_or(Value::Null);
    Reply {
        status,
        json,
        raw,
        request_id,
    }
}

impl Harness {
    /// `GET path`.
    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.get(format!("{}{path}", self.base))
    }

    /// `POST path` with a JSON body.
    pub fn post(&self, path: &str, body: Value) -> reqwest::RequestBuilder {
        self.client.post(format!("{}{path}", self.base)).json(&body)
    }

    /// `GET /whoami` as the holder of `token`.
    pub async fn whoami(&self, token: &str) -> Reply {
        send(self.get("/whoami").bearer_auth(token)).await
    }
}

/// Panics if an error body shows any of `secrets`, a Redis key or a URL, or if its request id
/// differs from the `x-request-id` header.
pub fn assert_clean(reply: &Reply, secrets: &[&str]) {
    let always = ["redis://", "Note:", "Project:", "$", "hunter2"];
    for s in secrets.iter().chain(&always).filter(|s| !s.is_empty()) {
        assert!(
            !reply.raw.contains(s),
            "the body shows {s:?}: {}",
            reply.raw
        );
    }
    assert_eq!(
        reply.json["request_id"].as_str(),
        reply.request_id.as_deref(),
        "body and header request ids: {}",
        reply.raw
    );
}
