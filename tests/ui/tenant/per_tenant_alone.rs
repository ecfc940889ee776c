use popoto::Model;

#[derive(Model)]
struct Member {
    #[popoto(key, tenant)]
    org: String,
    #[popoto(per_tenant = true)]
    email: String,
}

fn main() {}
