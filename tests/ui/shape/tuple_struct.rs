use popoto::Model;

#[derive(Model)]
struct Pair(String, i64);

fn main() {}
