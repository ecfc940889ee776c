// A filter on an unindexed (plain) field does not compile: use `.matching(..)` instead.
use popoto::Model;

#[derive(Model, Default)]
struct Episode {
    #[popoto(key, tenant)]
    project_id: String,
    title: String,
}

fn main() {
    let _ = Episode::title().eq("kickoff".to_string());
}
