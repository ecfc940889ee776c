use popoto::Model;

#[derive(Model)]
struct Memory {
    #[popoto(key)]
    key: String,
    #[popoto(sorted, confidence)]
    certainty: f64,
}

fn main() {}
