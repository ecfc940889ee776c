use popoto::Model;

#[derive(Model)]
struct Episode {
    #[popoto(key)]
    id: String,
    #[popoto(sorted)]
    title: String,
}

fn main() {}
