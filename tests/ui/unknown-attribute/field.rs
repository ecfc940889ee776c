use popoto::Model;

#[derive(Model)]
struct Episode {
    #[popoto(key)]
    id: String,
    #[popoto(sortd)]
    score: f64,
}

fn main() {}
