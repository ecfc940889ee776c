use popoto::Model;

#[derive(Model)]
struct Marker;

fn main() {}
