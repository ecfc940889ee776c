//! Migrating a confidence field to per-tenant partitions, then checking the model's indexes.
//!
//! `LegacyMemory` is the model as it was deployed first (one companion hash for every tenant);
//! `Memory` is the same Redis model (`#[popoto(name = "Memory")]`) after `partition_by` was
//! added. Uses `REDIS_URL` when set; otherwise starts a throwaway private redis-server.

use popoto::{Db, DryRun, Model};

/// The model before: `$ConfidencF:Memory:certainty:data` holds every tenant's entries.
#[derive(Model, Debug, Clone, Default)]
#[popoto(name = "Memory")]
pub struct LegacyMemory {
    /// Tenant key field.
    #[popoto(key, tenant)]
    pub project: String,
    /// Unique key.
    #[popoto(unique_key)]
    pub key: String,
    /// A plain field.
    pub content: String,
    /// Unpartitioned confidence.
    #[popoto(confidence(initial = 0.5, evidence_cap = 20))]
    pub certainty: f64,
}

/// The model after: one companion hash per project, `$ConfidencF:Memory:certainty:data:<project>`.
#[derive(Model, Debug, Clone, Default)]
pub struct Memory {
    /// Tenant key field.
    #[popoto(key, tenant)]
    pub project: String,
    /// Unique key.
    #[popoto(unique_key)]
    pub key: String,
    /// A plain field.
    pub content: String,
    /// Confidence partitioned by tenant.
    #[popoto(confidence(initial = 0.5, evidence_cap = 20), partition_by = "project")]
    pub certainty: f64,
}

/// Runs the migration against `db` and returns what it printed.
pub async fn run(db: &Db) -> popoto::Result<String> {
    let mut out = String::new();
    // Data written by the old deployment.
    for (project, key, signals) in [
        ("atlas", "sky", &[0.9, 0.8][..]),
        ("atlas", "sea", &[0.2][..]),
        ("zeus", "bolt", &[1.0, 1.0, 0.0][..]),
    ] {
        let tenant = db.tenant(project)?;
        let m = tenant
            .create(LegacyMemory {
                key: key.into(),
                content: format!("about {key}"),
                certainty: 0.5,
                ..Default::default()
            })
            .await?;
        let c = tenant.confidence(&m, LegacyMemory::certainty())?;
        for s in signals {
            c.update(*s).await?;
        }
    }

    // Maintenance runs through the admin handle. A dry run first: it writes nothing.
    let admin = db.admin();
    let dry = admin
        .migrate_to_partitioned(Memory::certainty(), DryRun::Yes, |_| {})
        .await?;
    out += &format!(
        "dry run: {} entries, partitions {:?}\n",
        dry.total, dry.partitions
    );
    let report = admin
        .migrate_to_partitioned(Memory::certainty(), DryRun::No, |p| {
            println!("moved {}/{}", p.moved, p.total);
        })
        .await?;
    out += &format!(
        "migrated {}/{}, {} errors, partitions {:?}\n",
        report.migrated,
        report.total,
        report.errors.len(),
        report.partitions
    );

    // The partitioned model reads the moved data through a tenant handle.
    let zeus = db.tenant("zeus")?;
    let bolt = Memory {
        project: "zeus".into(),
        key: "bolt".into(),
        ..Default::default()
    };
    let state = zeus.confidence(&bolt, Memory::certainty())?.state().await?;
    out += &format!(
        "zeus/bolt: confidence {:.4} after {} signals\n",
        state.confidence, state.evidence_count
    );

    // The indexes agree with the instances.
    let check = admin.check_indexes::<Memory>().await?;
    out += &format!(
        "index check: {} instances, clean: {}\n",
        check.instances,
        check.is_clean()
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
