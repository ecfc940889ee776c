// Prefix lookups exist on key fields only: a plain field has no index to scan.
use popoto::Model;

#[derive(Model, Default)]
struct Episode {
    #[popoto(key, tenant)]
    project_id: String,
    title: String,
}

fn main() {
    let _ = Episode::title().starts_with("kick");
}
