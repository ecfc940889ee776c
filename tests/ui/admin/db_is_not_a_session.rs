// `Db` is the root handle, not a session: it has no reads or writes of its own, and no
// admin capability is reachable from it by dereferencing.
use popoto::Model;

#[derive(Model, Default)]
struct Note {
    #[popoto(key)]
    id: String,
}

async fn misuse(db: popoto::Db) -> popoto::Result<()> {
    db.create(Note::default()).await?;
    let _session: &popoto::Session = &db;
    Ok(())
}

fn main() {}
