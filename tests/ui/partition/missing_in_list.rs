use popoto::Model;

#[derive(Model)]
struct Episode {
    #[popoto(key, tenant)]
    project_id: String,
    #[popoto(key)]
    season: i64,
    #[popoto(sorted, partition_by("project_id", "nowhere"))]
    score: f64,
}

fn main() {}
