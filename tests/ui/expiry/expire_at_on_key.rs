use popoto::Model;

#[derive(Model)]
struct Invite {
    #[popoto(key, expire_at)]
    email: String,
}

fn main() {}
