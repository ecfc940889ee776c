use popoto::Model;

#[derive(Model)]
struct Episode {
    #[popoto(key, tenant)]
    project_id: String,
    #[popoto(partition_by = "project_id")]
    title: String,
}

fn main() {}
