use popoto::Model;

#[derive(Model)]
#[popoto(key)]
struct Episode {
    #[popoto(key)]
    id: String,
}

fn main() {}
