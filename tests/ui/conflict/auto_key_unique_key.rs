use popoto::Model;

#[derive(Model)]
struct Episode {
    #[popoto(auto_key)]
    #[popoto(unique_key)]
    id: String,
}

fn main() {}
