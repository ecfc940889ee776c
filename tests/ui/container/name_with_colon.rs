use popoto::Model;

#[derive(Model)]
#[popoto(name = "app:Episode")]
struct Episode {
    #[popoto(key)]
    id: String,
}

fn main() {}
