use popoto::Model;

#[derive(Model)]
struct Doc {
    #[popoto(key)]
    slug: String,
    #[popoto(version)]
    version: i32,
}

fn main() {}
