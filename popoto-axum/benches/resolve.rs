//! The cost of resolving one request in-process (`cargo bench -p popoto-axum --bench resolve`):
//! a JWT verification, and an API key answered from the cache with a header selection, on a
//! `Db` without registry (nothing is dialed, the hooks answer at once); then the same API key
//! on a registry placing its tenants by the tenant catalog (on a private redis-server), whose
//! answers are cached and whose changes are watched: no round trip per request.

use std::hint::black_box;
use std::time::Instant;

use axum::http::Request;
use popoto_axum::jsonwebtoken::{encode, EncodingKey, Header};
use popoto_axum::{JwtConfig, Principal, Tenancy};
use popoto_core::{Db, TenantId};

const SECRET: &[u8] = b"bench-secret-bench-secret-bench-secret";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        // Resolution only: nothing is dialed.
        let db = Db::with_config(popoto_core::BackendConfig::new("redis://127.0.0.1:1/0"))?;
        let acme = TenantId::new("acme")?;
        let key_tenants = vec![acme.clone(), TenantId::new("globex")?];
        let tenancy = Tenancy::builder(db)
            .jwt(JwtConfig::hs256(SECRET)?)
            .api_key("x-api-key", move |_key| {
                let tenants = key_tenants.clone();
                async move { Ok(Some(Principal::new("bench", tenants))) }
            })
            .header("x-tenant")
            .build()?;
        let exp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs()
            + 3600;
        let token = encode(
            &Header::default(),
            &serde_json::json!({"sub": "bench", "tenant": "acme", "exp": exp}),
            &EncodingKey::from_secret(SECRET)?,
        )?;
        let jwt = Request::builder()
            .uri("/notes")
            .header("authorization", format!("Bearer {token}"))
            .body(())?
            .into_parts()
            .0;
        let key = Request::builder()
            .uri("/notes")
            .header("x-api-key", "k")
            .header("x-tenant", "globex")
            .body(())?
            .into_parts()
            .0;
        let iterations: u32 = std::env::var("BENCH_ITERATIONS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(20_000);
        for (name, parts) in [("jwt (HS256)", &jwt), ("api key (cached) + header", &key)] {
            let t = tenancy.resolve(parts).await?;
            assert!(t.id().as_str() == "acme" || t.id().as_str() == "globex");
            let start = Instant::now();
            for _ in 0..iterations {
                black_box(tenancy.resolve(black_box(parts)).await?);
            }
            let per = start.elapsed() / iterations;
            println!("resolve {name}: {per:?} per request ({iterations} iterations)");
        }

        // The tenant catalog: tenants and API keys in Redis, cached, changes watched.
        let server = popoto::testing::TestRedis::start()?;
        let registry = popoto_core::TenantRegistry::with_catalog(
            popoto_core::BackendConfig::new(server.url()),
            std::time::Duration::from_secs(30),
        )?;
        let watcher = registry.watch_catalog()?;
        let catalog = registry.catalog().ok_or("no catalog")?;
        catalog
            .create(&acme, popoto_core::CatalogPlacement::Shared, Default::default())
            .await?;
        let (api_key, entry) = popoto_axum::new_api_key(&acme, "bench");
        let stored = popoto_core::catalog::TenantUpdate {
            set: entry,
            ..Default::default()
        };
        catalog.update(&acme, &stored).await?;
        watcher.subscribed(1).await;
        let tenancy = Tenancy::builder(Db::with_registry(registry.clone()))
            .catalog_api_key("x-api-key")
            .build()?;
        let key = Request::builder()
            .uri("/notes")
            .header("x-api-key", api_key)
            .body(())?
            .into_parts()
            .0;
        tenancy.resolve(&key).await?;
        let trips = registry.shared().round_trips();
        let start = Instant::now();
        for _ in 0..iterations {
            black_box(tenancy.resolve(black_box(&key)).await?);
        }
        let per = start.elapsed() / iterations;
        let sent = registry.shared().round_trips() - trips;
        println!(
            "resolve api key (catalog, cached) on a catalog registry: {per:?} per request, {sent} round trips in {iterations} requests"
        );
        Ok(())
    })
}
