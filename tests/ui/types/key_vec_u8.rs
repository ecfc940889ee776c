use popoto::Model;

#[derive(Model)]
struct Blob {
    #[popoto(key)]
    digest: Vec<u8>,
    size: i64,
}

fn main() {}
