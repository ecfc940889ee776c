use popoto::Model;

#[derive(Model)]
struct Wrapper<T> {
    #[popoto(key)]
    id: String,
    value: T,
}

fn main() {}
