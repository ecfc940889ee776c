use popoto::Model;

#[derive(Model)]
struct Doc {
    #[popoto(key)]
    slug: String,
    #[popoto(version)]
    version: u64,
    #[popoto(sorted, partition_by = "version")]
    rank: i64,
}

fn main() {}
