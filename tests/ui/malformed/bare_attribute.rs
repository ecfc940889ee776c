use popoto::Model;

#[derive(Model)]
struct Episode {
    #[popoto]
    id: String,
}

fn main() {}
