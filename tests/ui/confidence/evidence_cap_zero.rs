use popoto::Model;

#[derive(Model)]
struct Memory {
    #[popoto(key)]
    key: String,
    #[popoto(confidence(evidence_cap = 0))]
    certainty: f64,
}

fn main() {}
