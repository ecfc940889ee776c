use popoto::Model;

#[derive(Model)]
struct Episode {
    #[popoto(key)]
    id: String,
    #[popoto(frobnicate = 3)]
    title: String,
}

fn main() {}
