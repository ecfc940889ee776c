use popoto::Model;

#[derive(Model)]
struct Episode {
    #[popoto(key, tenant)]
    project_id: String,
    #[popoto(key, partition_by = "project_id")]
    season: i64,
}

fn main() {}
