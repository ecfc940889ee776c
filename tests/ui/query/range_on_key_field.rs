// Ranges exist only on sorted fields.
use popoto::Model;

#[derive(Model, Default)]
struct Episode {
    #[popoto(key, tenant)]
    project_id: String,
    #[popoto(key)]
    rank: i64,
}

fn main() {
    let _ = Episode::rank().gte(3);
}
