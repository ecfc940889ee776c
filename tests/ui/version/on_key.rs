use popoto::Model;

#[derive(Model)]
struct Doc {
    #[popoto(key, version)]
    slug: u64,
}

fn main() {}
