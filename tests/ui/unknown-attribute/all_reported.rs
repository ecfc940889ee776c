use popoto::Model;

// Every bad attribute of the struct is reported, not only the first.
#[derive(Model)]
#[popoto(nam = "Episode")]
struct Episode {
    #[popoto(kye)]
    id: String,
    #[popoto(sorted, partition = "id")]
    score: f64,
    #[popoto(unique)]
    slug: String,
}

fn main() {}
