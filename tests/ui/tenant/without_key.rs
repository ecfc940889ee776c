use popoto::Model;

#[derive(Model)]
struct Invoice {
    #[popoto(auto_key)]
    id: String,
    #[popoto(tenant)]
    org: String,
}

fn main() {}
