use popoto::Model;

#[derive(Model)]
struct Membership {
    #[popoto(key, tenant)]
    org: String,
    #[popoto(key, tenant)]
    team: String,
}

fn main() {}
