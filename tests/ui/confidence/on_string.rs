use popoto::Model;

#[derive(Model)]
struct Memory {
    #[popoto(key)]
    key: String,
    #[popoto(confidence)]
    certainty: String,
}

fn main() {}
