use popoto::Model;

#[derive(Model, Default)]
struct Grant {
    #[popoto(key, tenant)]
    org: String,
    #[popoto(key)]
    user: String,
    #[popoto(key)]
    role: String,
}

fn main() {
    let _ = Grant::key_builder().org("acme").user("ann").build();
}
