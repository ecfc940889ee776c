use popoto::Model;

#[derive(Model)]
#[popoto(shared)]
struct Roadmap {
    #[popoto(key, tenant)]
    org: String,
    title: String,
}

fn main() {}
