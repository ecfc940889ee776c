use popoto::Model;

#[derive(Model)]
struct Invoice {
    #[popoto(key, tenant)]
    org: i64,
    total: f64,
}

fn main() {}
