use popoto::Model;

#[derive(Model, Default)]
struct Grant {
    #[popoto(key, tenant)]
    org: String,
    #[popoto(key)]
    level: i64,
}

fn main() {
    let _ = Grant::key_builder().org("acme").level("high").build();
}
