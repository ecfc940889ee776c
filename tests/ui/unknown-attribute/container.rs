use popoto::Model;

#[derive(Model)]
#[popoto(nmae = "Episode")]
struct Episode {
    #[popoto(key)]
    id: String,
}

fn main() {}
