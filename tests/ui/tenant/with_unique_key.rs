use popoto::Model;

#[derive(Model)]
struct Invoice {
    #[popoto(unique_key, tenant)]
    org: String,
}

fn main() {}
