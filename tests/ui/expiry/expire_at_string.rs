use popoto::Model;

#[derive(Model)]
struct Invite {
    #[popoto(key)]
    email: String,
    #[popoto(expire_at)]
    expires: String,
}

fn main() {}
