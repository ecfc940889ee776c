use popoto::Model;

#[derive(Model)]
struct Memory {
    #[popoto(key)]
    key: String,
    #[popoto(confidence(initial = 0.1, initial = 0.2))]
    certainty: f64,
}

fn main() {}
