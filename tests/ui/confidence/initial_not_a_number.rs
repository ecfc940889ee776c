use popoto::Model;

#[derive(Model)]
struct Memory {
    #[popoto(key)]
    key: String,
    #[popoto(confidence(initial = "high"))]
    certainty: f64,
}

fn main() {}
