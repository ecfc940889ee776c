// Filters of two models cannot be combined with `|` (or `&`): an OR stays within one model.
use popoto::Model;

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

fn main() {
    let _ = Episode::project_id().eq("a".to_string()) | Item::tenant().eq("a".to_string());
}
