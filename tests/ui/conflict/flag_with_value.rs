use popoto::Model;

#[derive(Model)]
struct Episode {
    #[popoto(key = true)]
    id: String,
}

fn main() {}
