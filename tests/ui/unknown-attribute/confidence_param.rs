use popoto::Model;

#[derive(Model)]
struct Memory {
    #[popoto(key)]
    key: String,
    #[popoto(confidence(inital = 0.3))]
    certainty: f64,
}

fn main() {}
