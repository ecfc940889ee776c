use popoto::Model;

#[derive(Model)]
struct Member {
    #[popoto(key)]
    org: String,
    #[popoto(unique_key, per_tenant)]
    email: String,
}

fn main() {}
