// A tenant handle gives no raw access to Redis: only `Admin::backend` does.
async fn escalate(db: popoto::Db) -> popoto::Result<()> {
    let tenant = db.tenant("acme")?;
    let _raw = tenant.backend().await?;
    Ok(())
}

fn main() {}
