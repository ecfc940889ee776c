use popoto::Model;

#[derive(Model)]
struct Memory {
    #[popoto(key)]
    key: String,
    #[popoto(confidence = 0.5)]
    certainty: f64,
}

fn main() {}
