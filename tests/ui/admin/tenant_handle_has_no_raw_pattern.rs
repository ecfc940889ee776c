// A raw, unescaped HSCAN glob is for the admin handle only (`Admin::confidence_scan_raw`).
use popoto::Model;

#[derive(Model, Default)]
struct Belief {
    #[popoto(key, tenant)]
    org: String,
    #[popoto(key)]
    name: String,
    #[popoto(confidence)]
    strength: f64,
}

fn escalate(db: popoto::Db) -> popoto::Result<()> {
    let tenant = db.tenant("acme")?;
    let _scan = tenant.confidence_scan(Belief::strength()).raw_pattern("*");
    Ok(())
}

fn main() {}
