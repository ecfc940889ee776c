use popoto::Model;

#[derive(Model)]
#[popoto(change_feed)]
struct Setting {
    #[popoto(key)]
    name: String,
    value: String,
}

fn main() {}
