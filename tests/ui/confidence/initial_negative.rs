use popoto::Model;

#[derive(Model)]
struct Memory {
    #[popoto(key)]
    key: String,
    #[popoto(confidence(initial = -0.1, evidence_cap = 5))]
    certainty: f64,
}

fn main() {}
