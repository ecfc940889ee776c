use popoto::Model;

#[derive(Model)]
struct Lookup {
    #[popoto(key)]
    id: String,
    key_of: String,
}

fn main() {}
