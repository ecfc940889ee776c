use popoto::Model;

#[derive(Model)]
#[popoto(crate = "not a path")]
struct Episode {
    #[popoto(key)]
    id: String,
}

fn main() {}
