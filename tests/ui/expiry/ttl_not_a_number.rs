use popoto::Model;

#[derive(Model)]
#[popoto(ttl = "1h")]
struct Login {
    #[popoto(key)]
    id: String,
}

fn main() {}
