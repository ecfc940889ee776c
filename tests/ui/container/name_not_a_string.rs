use popoto::Model;

#[derive(Model)]
#[popoto(name = Episode)]
struct Episode {
    #[popoto(key)]
    id: String,
}

fn main() {}
