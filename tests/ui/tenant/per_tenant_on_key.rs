use popoto::Model;

#[derive(Model)]
struct Member {
    #[popoto(key, tenant)]
    org: String,
    #[popoto(key, per_tenant)]
    email: String,
}

fn main() {}
