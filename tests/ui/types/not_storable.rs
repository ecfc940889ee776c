use popoto::Model;

struct Opaque;

#[derive(Model)]
struct Holder {
    #[popoto(key)]
    id: String,
    thing: Opaque,
}

fn main() {}
