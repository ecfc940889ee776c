use popoto::Model;

#[derive(Model)]
struct Episode {
    #[popoto(key, tenant)]
    project_id: String,
    #[popoto(sorted, partition_by = "projct_id")]
    score: f64,
}

fn main() {}
