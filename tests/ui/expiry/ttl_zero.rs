use popoto::Model;

#[derive(Model)]
#[popoto(ttl = 0)]
struct Login {
    #[popoto(key)]
    id: String,
}

fn main() {}
