use popoto::Model;

#[derive(Model)]
#[popoto(ttl = 60)]
struct Login {
    #[popoto(key, tenant)]
    org: String,
    #[popoto(auto_key)]
    id: String,
    region: String,
    #[popoto(sorted, partition_by("org", "region"))]
    at: i64,
}

fn main() {}
