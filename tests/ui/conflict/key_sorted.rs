use popoto::Model;

#[derive(Model)]
struct Episode {
    #[popoto(key, sorted)]
    rank: i64,
}

fn main() {}
