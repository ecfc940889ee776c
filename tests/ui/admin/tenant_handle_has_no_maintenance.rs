// Maintenance (index checks, migrations, audits) and lifecycle exist on `Admin` only.
use popoto::Model;

#[derive(Model, Default)]
struct Memory {
    #[popoto(key, tenant)]
    project: String,
    #[popoto(key)]
    key: String,
}

async fn escalate(db: popoto::Db) -> popoto::Result<()> {
    let tenant = db.tenant("acme")?;
    tenant.check_indexes::<Memory>().await?;
    let models = popoto::ModelSet::new().with::<Memory>();
    tenant.destroy_tenant(&popoto::TenantId::new("globex")?, &models).await?;
    Ok(())
}

fn main() {}
