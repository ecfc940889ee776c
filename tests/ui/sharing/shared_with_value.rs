use popoto::Model;

#[derive(Model)]
#[popoto(shared = true)]
struct Roadmap {
    title: String,
}

fn main() {}
