use popoto::Model;

#[derive(Model)]
struct Invoice {
    #[popoto(auto_key)]
    id: i64,
    total: f64,
}

fn main() {}
