use popoto::Model;

#[derive(Model)]
struct Episode {
    #[popoto(key)]
    id: String,
    #[popoto(sorted)]
    #[popoto(sorted)]
    score: f64,
}

fn main() {}
