use popoto::Model;

#[derive(Model)]
struct Episode {
    #[popoto(key)]
    id: String,
    #[popoto(sorted, partition_by = "score")]
    score: f64,
}

fn main() {}
