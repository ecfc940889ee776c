use popoto::Model;

#[derive(Model)]
struct Doc {
    #[popoto(key)]
    slug: String,
    #[popoto(version)]
    version: u64,
    #[popoto(version)]
    revision: u64,
}

fn main() {}
