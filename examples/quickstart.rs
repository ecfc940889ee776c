//! Quickstart: a tenant-partitioned model, a create, a tenant-scoped range query and a count.
//!
//! Uses `REDIS_URL` when set; otherwise starts a throwaway private redis-server.

use popoto::{Db, Model};

/// An episode of a project; the project is the tenant.
#[derive(Model, Debug, Clone, Default)]
pub struct Episode {
    /// Tenant key field.
    #[popoto(key, tenant)]
    pub project_id: String,
    /// Generated uuid4 hex.
    #[popoto(auto_key)]
    pub episode_id: String,
    /// A plain field.
    pub title: String,
    /// One sorted set per project.
    #[popoto(sorted, partition_by = "project_id")]
    pub score: f64,
}

/// Runs the quickstart against `db` and returns what it printed.
pub async fn run(db: &Db) -> popoto::Result<String> {
    let mut out = String::new();
    let acme = db.tenant("acme")?;
    let globex = db.tenant("globex")?;
    let kickoff = acme
        .create(Episode {
            title: "kickoff".into(),
            score: 0.8,
            ..Default::default()
        })
        .await?;
    out += &format!("created {kickoff:?}\n");
    for (title, score) in [("retro", 0.4), ("launch", 0.95)] {
        acme.create(Episode {
            title: title.into(),
            score,
            ..Default::default()
        })
        .await?;
    }
    globex
        .create(Episode {
            title: "other tenant".into(),
            score: 0.99,
            ..Default::default()
        })
        .await?;

    let hot = acme
        .query::<Episode>()
        .filter(Episode::score().gte(0.7))
        .order_by_desc(Episode::score())
        .limit(10)
        .fetch()
        .await?;
    let titles: Vec<&str> = hot.iter().map(|e| e.title.as_str()).collect();
    out += &format!("acme episodes with score >= 0.7: {titles:?}\n");
    out += &format!(
        "acme has {} episodes\n",
        acme.query::<Episode>().count().await?
    );
    Ok(out)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (_server, url) = popoto::testing::redis_url_or_private()?;
    let db = Db::connect(&url).await?;
    print!("{}", run(&db).await?);
    Ok(())
}
