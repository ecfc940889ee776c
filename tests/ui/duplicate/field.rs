use popoto::Model;

#[derive(Model)]
struct Episode {
    #[popoto(key, key)]
    id: String,
}

fn main() {}
