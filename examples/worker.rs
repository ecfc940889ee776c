//! A tokio worker: jobs carry their tenant id; the worker re-enters the tenant's scope for each.
//!
//! Uses `REDIS_URL` when set; otherwise starts a throwaway private redis-server.

use popoto::tenant::{current_tenant, with_tenant};
use popoto::{Db, Model, TenantId};
use serde::{Deserialize, Serialize};

/// A task of a project; the project is the tenant.
#[derive(Model, Debug, Clone, Default)]
pub struct Task {
    /// Tenant key field.
    #[popoto(key, tenant)]
    pub project: String,
    /// Generated id.
    #[popoto(auto_key)]
    pub id: String,
    /// What to do.
    pub title: String,
    /// Priority, one sorted set per project.
    #[popoto(sorted, partition_by = "project")]
    pub priority: i64,
}

/// A job as it travels through a queue: the tenant id serializes with it.
#[derive(Debug, Serialize, Deserialize)]
pub struct Job {
    /// Whose job it is.
    pub tenant: TenantId,
    /// Title of the task to create.
    pub title: String,
    /// Its priority.
    pub priority: i64,
}

/// Business code that cannot be handed a session: it uses the ambient tenant.
async fn handle(db: &Db, job: &Job) -> popoto::Result<String> {
    let scoped = db.current()?;
    let task = scoped
        .create(Task {
            title: job.title.clone(),
            priority: job.priority,
            ..Default::default()
        })
        .await?;
    let urgent = scoped
        .query::<Task>()
        .filter(Task::priority().gte(5))
        .count()
        .await?;
    Ok(format!(
        "{}: created {:?}, {urgent} urgent",
        task.project, task.title
    ))
}

/// Feeds jobs through a queue to a worker task and returns what the worker reported.
pub async fn run(db: &Db) -> popoto::Result<String> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(16);
    let worker_db = db.clone();
    let worker = tokio::spawn(async move {
        let mut log = String::new();
        while let Some(payload) = rx.recv().await {
            // The spawned task has no ambient tenant: it comes from the payload, explicitly.
            assert!(current_tenant().is_none());
            let job: Job = match serde_json::from_str(&payload) {
                Ok(job) => job,
                Err(e) => {
                    log += &format!("rejected payload: {e}\n");
                    continue;
                }
            };
            let line = with_tenant(job.tenant.clone(), handle(&worker_db, &job)).await;
            log += &match line {
                Ok(l) => l,
                Err(e) => format!("job failed: {e}"),
            };
            log.push('\n');
        }
        log
    });
    for (tenant, title, priority) in [
        ("acme", "ship", 9),
        ("globex", "plan", 2),
        ("acme", "test", 7),
        ("acme", "docs", 1),
    ] {
        let job = Job {
            tenant: TenantId::new(tenant)?,
            title: title.into(),
            priority,
        };
        let payload =
            serde_json::to_string(&job).map_err(|e| popoto::Error::Config(e.to_string()))?;
        tx.send(payload)
            .await
            .map_err(|e| popoto::Error::Config(e.to_string()))?;
    }
    tx.send(r#"{"tenant":"","title":"x","priority":1}"#.into())
        .await
        .map_err(|e| popoto::Error::Config(e.to_string()))?;
    drop(tx);
    worker
        .await
        .map_err(|e| popoto::Error::Config(e.to_string()))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (_server, url) = popoto::testing::redis_url_or_private()?;
    let db = Db::connect(&url).await?;
    print!("{}", run(&db).await?);
    Ok(())
}
