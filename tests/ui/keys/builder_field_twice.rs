use popoto::Model;

#[derive(Model, Default)]
struct Grant {
    #[popoto(key, tenant)]
    org: String,
    #[popoto(key)]
    user: String,
}

fn main() {
    let _ = Grant::key_builder().org("acme").org("globex").user("ann").build();
}
