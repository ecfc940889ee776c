use popoto::Model;

#[derive(Model)]
struct Episode {
    #[popoto(key, tenant)]
    project_id: String,
    #[popoto(sorted, partition_by("project_id", "project_id"))]
    score: f64,
}

fn main() {}
