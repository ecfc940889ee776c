use popoto::Model;

#[derive(Model)]
struct Episode {
    #[popoto(key)]
    id: String,
    #[popoto(sorted, partition_by = id)]
    score: f64,
}

fn main() {}
