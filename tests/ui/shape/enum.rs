use popoto::Model;

#[derive(Model)]
enum Status {
    Open,
    Closed,
}

fn main() {}
