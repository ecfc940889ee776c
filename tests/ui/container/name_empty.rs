use popoto::Model;

#[derive(Model)]
#[popoto(name = "")]
struct Episode {
    #[popoto(key)]
    id: String,
}

fn main() {}
