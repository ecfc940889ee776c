use popoto::Model;

#[derive(Model)]
struct Memory {
    #[popoto(key)]
    key: String,
    #[popoto(confidence(initial = 1.5))]
    certainty: f64,
}

fn main() {}
