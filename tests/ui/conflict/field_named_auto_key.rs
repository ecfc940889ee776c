use popoto::Model;

// Without a key field popoto adds a hidden `_auto_key`; a field of that name would collide.
#[derive(Model)]
struct Note {
    _auto_key: String,
    text: String,
}

fn main() {}
