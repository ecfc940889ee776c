use popoto::Model;

#[derive(Model)]
#[popoto(name = "Episode", name = "Show")]
struct Episode {
    #[popoto(key)]
    id: String,
}

fn main() {}
