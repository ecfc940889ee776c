use popoto::Model;

#[derive(Model)]
struct Episode {
    #[popoto(key)]
    id: String,
    tags: Vec<String>,
    #[popoto(sorted, partition_by = "tags")]
    score: f64,
}

fn main() {}
