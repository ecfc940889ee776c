//! A tenant-partitioned web service: tenants in the tenant catalog, JWT and API-key (kept in
//! the catalog) authentication, tenant selection by header or path, CRUD on two models, a
//! sorted listing with paging, a background job on a Redis Stream, and JSON errors that never
//! show a Redis key.
//!
//! `cargo run --example service` starts it on a free loopback port with its own
//! throwaway redis-server (or `REDIS_URL`) and prints curl lines to try.

use axum::extract::{Extension, Path, RawQuery};
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use popoto::Model;
use popoto_axum::{ApiError, BoxError, Job, JobQueue, Json, Tenancy, Tenant};
use serde::{Deserialize, Serialize};

/// A note of an organisation (the tenant), ranked.
#[derive(Model, Debug, Clone, Default, Serialize)]
pub struct Note {
    /// Tenant key field.
    #[popoto(key, tenant)]
    pub org: String,
    /// Generated id.
    #[popoto(auto_key)]
    pub id: String,
    /// Its text.
    pub title: String,
    /// Listing order, one sorted set per organisation.
    #[popoto(sorted, partition_by = "org")]
    pub rank: f64,
}

/// A project of an organisation, keyed by its slug.
#[derive(Model, Debug, Clone, Default, Serialize)]
pub struct Project {
    /// Tenant key field.
    #[popoto(key, tenant)]
    pub org: String,
    /// Chosen by the client.
    #[popoto(key)]
    pub slug: String,
    /// Display name.
    pub name: String,
}

/// Body of `POST /notes`, `POST /notes/later` and `PUT /notes/{id}`.
#[derive(Debug, Serialize, Deserialize)]
pub struct NoteInput {
    /// Text.
    pub title: String,
    /// Rank.
    pub rank: f64,
}

/// Body of `POST /projects`.
#[derive(Debug, Deserialize)]
pub struct ProjectInput {
    /// Slug (its key).
    pub slug: String,
    /// Display name.
    pub name: String,
}

/// `{id}` of the note routes (the `/t/{tenant}` prefix is ignored here: the layer read it).
#[derive(Debug, Deserialize)]
pub struct NoteId {
    /// The note id.
    pub id: String,
}

/// `{slug}` of the project routes.
#[derive(Debug, Deserialize)]
pub struct Slug {
    /// The project slug.
    pub slug: String,
}

/// A page of notes.
#[derive(Debug, Serialize)]
pub struct Page {
    /// The tenant that answered.
    pub tenant: String,
    /// Notes of the tenant, highest rank first.
    pub items: Vec<Note>,
    /// How many notes the tenant has.
    pub total: usize,
}

/// The routes of the API, at the root and under `/t/{tenant}` (for a path-segment source),
/// behind `tenancy`'s layer; `/health` is for a skip path. With `jobs`, `POST /notes/later`
/// enqueues the creation of a note for a worker ([`run_job`]).
pub fn router(tenancy: &Tenancy, jobs: Option<JobQueue>) -> Router {
    let mut api = Router::new()
        .route("/notes", get(list_notes).post(create_note))
        .route(
            "/notes/{id}",
            get(get_note).put(update_note).delete(delete_note),
        )
        .route("/projects", axum::routing::post(create_project))
        .route("/projects/{slug}", get(get_project).delete(delete_project))
        .route("/whoami", get(whoami));
    if let Some(jobs) = jobs {
        api = api
            .route("/notes/later", axum::routing::post(create_note_later))
            .layer(Extension(jobs));
    }
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .merge(api.clone())
        .nest("/t/{tenant}", api)
        .layer(tenancy.layer())
}

async fn whoami(tenant: Tenant) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "tenant": tenant.id().as_str(),
        "subject": tenant.principal().map(|p| p.subject()),
    }))
}

/// `offset` and `limit` from the query string (defaults 0 and 20, limit at most 100).
fn paging(query: Option<&str>) -> Result<(usize, usize), ApiError> {
    let (mut offset, mut limit) = (0, 20);
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let n: usize = v
            .parse()
            .map_err(|_| ApiError::bad_request(format!("paging parameter {k}")))?;
        match k {
            "offset" => offset = n,
            "limit" => limit = n.min(100),
            _ => {}
        }
    }
    Ok((offset, limit))
}

async fn list_notes(tenant: Tenant, RawQuery(query): RawQuery) -> Result<Json<Page>, ApiError> {
    let (offset, limit) = paging(query.as_deref())?;
    let items = tenant
        .query::<Note>()
        .order_by_desc(Note::rank())
        .offset(offset)
        .limit(limit)
        .fetch()
        .await?;
    let total = tenant.query::<Note>().count().await?;
    Ok(Json(Page {
        tenant: tenant.id().to_string(),
        items,
        total,
    }))
}

async fn create_note(
    tenant: Tenant,
    Json(input): Json<NoteInput>,
) -> Result<(StatusCode, Json<Note>), ApiError> {
    let note = tenant
        .create(Note {
            title: input.title,
            rank: input.rank,
            ..Default::default()
        })
        .await?;
    Ok((StatusCode::CREATED, Json(note)))
}

async fn create_note_later(
    tenant: Tenant,
    Extension(jobs): Extension<JobQueue>,
    Json(input): Json<NoteInput>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let id = jobs.enqueue_for(&tenant, "create_note", &input).await?;
    Ok((StatusCode::ACCEPTED, Json(serde_json::json!({ "job": id }))))
}

/// Runs one job in its tenant's session (what a worker process calls).
pub async fn run_job(job: Job, session: popoto::Session) -> Result<(), BoxError> {
    match job.kind.as_str() {
        "create_note" => {
            let input: NoteInput = job.payload()?;
            session
                .create(Note {
                    title: input.title,
                    rank: input.rank,
                    ..Default::default()
                })
                .await?;
            Ok(())
        }
        other => Err(format!("unknown job kind {other:?}").into()),
    }
}

async fn get_note(tenant: Tenant, Path(p): Path<NoteId>) -> Result<Json<Note>, ApiError> {
    let key = Note::key_of(tenant.id().as_str(), p.id);
    match tenant.get(&key).await? {
        Some(note) => Ok(Json(note)),
        None => Err(ApiError::not_found(format!("note {}", key.redis_key()))),
    }
}

async fn update_note(
    tenant: Tenant,
    Path(p): Path<NoteId>,
    Json(input): Json<NoteInput>,
) -> Result<Json<Note>, ApiError> {
    let key = Note::key_of(tenant.id().as_str(), p.id);
    let Some(mut note) = tenant.get(&key).await? else {
        return Err(ApiError::not_found(format!("note {}", key.redis_key())));
    };
    note.title = input.title;
    note.rank = input.rank;
    tenant.save(&note).await?;
    Ok(Json(note))
}

async fn delete_note(tenant: Tenant, Path(p): Path<NoteId>) -> Result<StatusCode, ApiError> {
    let key = Note::key_of(tenant.id().as_str(), p.id);
    match tenant.delete_key(&key).await? {
        true => Ok(StatusCode::NO_CONTENT),
        false => Err(ApiError::not_found(format!("note {}", key.redis_key()))),
    }
}

async fn create_project(
    tenant: Tenant,
    Json(input): Json<ProjectInput>,
) -> Result<(StatusCode, Json<Project>), ApiError> {
    let project = tenant
        .create(Project {
            org: String::new(),
            slug: input.slug,
            name: input.name,
        })
        .await?;
    Ok((StatusCode::CREATED, Json(project)))
}

async fn get_project(tenant: Tenant, Path(p): Path<Slug>) -> Result<Json<Project>, ApiError> {
    let key = Project::key_of(tenant.id().as_str(), p.slug);
    match tenant.get(&key).await? {
        Some(project) => Ok(Json(project)),
        None => Err(ApiError::not_found(format!("project {}", key.redis_key()))),
    }
}

async fn delete_project(tenant: Tenant, Path(p): Path<Slug>) -> Result<StatusCode, ApiError> {
    let key = Project::key_of(tenant.id().as_str(), p.slug);
    match tenant.delete_key(&key).await? {
        true => Ok(StatusCode::NO_CONTENT),
        false => Err(ApiError::not_found(format!("project {}", key.redis_key()))),
    }
}

/// The demo started by `main`: where it listens, a token of `acme`, an API key of `globex`, the
/// curl lines to try, and the server task.
pub struct Demo {
    /// Its address.
    pub addr: std::net::SocketAddr,
    /// A JWT of user `alice` in tenant `acme`, valid for an hour.
    pub token: String,
    /// The API key `demo` of tenant `globex`, kept (as its SHA-256) in the tenant catalog.
    pub api_key: String,
    /// Commands to try.
    pub curl: Vec<String>,
    /// The server.
    pub server: tokio::task::JoinHandle<std::io::Result<()>>,
    /// Listens to the catalog's changes (made by any process) while the demo runs.
    pub watcher: popoto::registry::CatalogWatcher,
}

/// Starts the demo on a free loopback port against `url`: tenants `acme` and `globex` in the
/// tenant catalog (no other is served), JWT and API key (through the catalog) authentication,
/// header and path selection. Catalog changes made by any process (the `popoto` tool, another
/// instance) are obeyed at the next request.
pub async fn start(url: &str) -> Result<Demo, Box<dyn std::error::Error>> {
    use popoto::catalog::TenantUpdate;
    use popoto::{BackendConfig, CatalogPlacement, Db, Error, TenantId, TenantRegistry};
    use popoto_axum::jsonwebtoken::{encode, EncodingKey, Header};
    use popoto_axum::JwtConfig;

    // Tenants placed by the catalog; its changes are announced, so a long refresh is enough.
    let registry =
        TenantRegistry::with_catalog(BackendConfig::new(url), std::time::Duration::from_secs(30))?;
    let watcher = registry.watch_catalog()?;
    let catalog = registry
        .catalog()
        .ok_or("the registry has no tenant catalog")?;
    for t in ["acme", "globex"] {
        let placement = CatalogPlacement::Shared;
        match catalog
            .create(&TenantId::new(t)?, placement, Default::default())
            .await
        {
            Ok(_) | Err(Error::AlreadyExists { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let globex = TenantId::new("globex")?;
    let (api_key, entry) = popoto_axum::new_api_key(&globex, "demo");
    let stored = TenantUpdate {
        set: entry,
        ..Default::default()
    };
    catalog.update(&globex, &stored).await?;
    let db = Db::with_registry(registry);

    let secret = uuid::Uuid::new_v4().to_string();
    let tenancy = Tenancy::builder(db)
        .jwt(JwtConfig::hs256(secret.as_bytes())?)
        .catalog_api_key("x-api-key")
        .header("x-tenant")
        .path_prefix("/t")
        .skip_path("/health")
        .build()?;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs()
        + 3600;
    let token = encode(
        &Header::default(),
        &serde_json::json!({"sub": "alice", "tenant": "acme", "exp": exp}),
        &EncodingKey::from_secret(secret.as_bytes())?,
    )?;
    let curl = vec![
        format!("curl -s -H 'Authorization: Bearer {token}' -H 'content-type: application/json' -d '{{\"title\":\"hello\",\"rank\":1}}' http://{addr}/notes"),
        format!("curl -s -H 'Authorization: Bearer {token}' http://{addr}/notes"),
        format!("curl -s -H 'x-api-key: {api_key}' http://{addr}/t/globex/notes"),
        format!("curl -s -H 'x-api-key: {api_key}' -H 'content-type: application/json' -d '{{\"title\":\"later\",\"rank\":2}}' http://{addr}/t/globex/notes/later"),
    ];
    let jobs = JobQueue::open(tenancy.db(), "service").await?;
    let worker_db = tenancy.db().clone();
    let app = router(&tenancy, Some(jobs.clone()))
        .into_make_service_with_connect_info::<std::net::SocketAddr>();
    // The demo runs its worker in-process; a real deployment runs it as its own process.
    let worker = popoto_axum::Worker::new(jobs, worker_db, "demo-worker");
    tokio::spawn(async move {
        loop {
            if let Err(e) = worker.poll(run_job).await {
                tracing::error!(error = %e, "worker poll failed");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        }
    });
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(Demo {
        addr,
        token,
        api_key,
        curl,
        server,
        watcher,
    })
}

#[allow(dead_code)]
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (_server, url) = popoto::testing::redis_url_or_private()?;
    let demo = start(&url).await?;
    println!("listening on http://{}", demo.addr);
    for line in &demo.curl {
        println!("{line}");
    }
    demo.server.await??;
    Ok(())
}
