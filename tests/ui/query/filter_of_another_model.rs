// A filter built from one model's field cannot be used in another model's query.
use popoto::{Db, Model};

#[derive(Model, Default)]
struct Episode {
    #[popoto(key, tenant)]
    project_id: String,
}

#[derive(Model, Default)]
struct Item {
    #[popoto(key, tenant)]
    tenant: String,
}

async fn run(db: Db) {
    let acme = db.tenant("acme").unwrap();
    let _ = acme.query::<Item>().filter(Episode::project_id().eq("acme".to_string()));
}

fn main() {
    let _ = run;
}
