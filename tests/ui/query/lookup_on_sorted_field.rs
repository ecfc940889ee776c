// Prefix lookups compare a key field's rendered value; a sorted field has ranges instead.
use popoto::Model;

#[derive(Model, Default)]
struct Episode {
    #[popoto(key, tenant)]
    project_id: String,
    #[popoto(sorted)]
    score: f64,
}

fn main() {
    let _ = Episode::score().starts_with("1");
}
