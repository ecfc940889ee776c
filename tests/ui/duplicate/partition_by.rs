use popoto::Model;

#[derive(Model)]
struct Episode {
    #[popoto(key)]
    project_id: String,
    #[popoto(key)]
    owner: String,
    #[popoto(sorted, partition_by = "project_id", partition_by = "owner")]
    score: f64,
}

fn main() {}
