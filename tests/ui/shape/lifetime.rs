use popoto::Model;

#[derive(Model)]
struct Borrowed<'a> {
    #[popoto(key)]
    id: &'a str,
}

fn main() {}
