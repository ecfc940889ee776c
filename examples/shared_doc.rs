//! Two tenants co-edit one shared document: the host shares it (merged as an LWW map), grants
//! acme WRITE and globex READ, then WRITE; each tenant's change feed delivers the other's edits
//! (and its own echo, with its origin).
//!
//! Uses `REDIS_URL` when set; otherwise starts a throwaway private redis-server.

use std::time::Duration;

use popoto::feed::FeedReader;
use popoto::shared::{Access, Merge, Patch, Replica};
use popoto::{Db, Model, TenantId};

/// A document several organisations edit together.
#[derive(Model, Debug, Clone, Default, PartialEq)]
#[popoto(shared)]
pub struct Document {
    /// Its title.
    pub title: String,
    /// Its text.
    pub body: String,
    /// Its status.
    pub status: String,
}

/// Every event a reader has now, as `op by origin: fields`.
async fn drain(reader: &mut FeedReader) -> popoto::Result<Vec<String>> {
    let batch = reader.next().await?;
    Ok(batch
        .events
        .iter()
        .map(|e| {
            let fields: Vec<&str> = e.fields.iter().map(|(f, _)| f.as_str()).collect();
            format!(
                "{:?} v{} by {}: {}",
                e.op,
                e.version,
                e.origin,
                fields.join(",")
            )
        })
        .collect())
}

/// Shares a document, lets two tenants edit it, and returns what happened, line by line.
pub async fn run(db: &Db) -> popoto::Result<String> {
    let mut log = String::new();
    let host = db.admin().shared().with_replica(Replica::new("host")?);
    let draft = Document {
        title: "Q3 roadmap".into(),
        body: "tbd".into(),
        status: "draft".into(),
    };
    let id = host.share(&draft, Merge::LwwMapCrdt).await?;
    let (acme_id, globex_id) = (TenantId::new("acme")?, TenantId::new("globex")?);
    host.subscribe::<Document>(&acme_id, &id, Access::Write)
        .await?;
    host.subscribe::<Document>(&globex_id, &id, Access::Read)
        .await?;

    let (acme, globex) = (db.tenant_id(&acme_id), db.tenant_id(&globex_id));
    // Each reader's position is fixed when it opens: nothing written afterwards is missed.
    let mut acme_feed = acme.feed()?.block(Duration::ZERO).open().await?;
    let mut globex_feed = globex.feed()?.block(Duration::ZERO).open().await?;
    let alice = acme.shared::<Document>().replica(Replica::new("alice")?);
    let bob = globex.shared::<Document>().replica(Replica::new("bob")?);

    // acme edits the body; globex may only read, so its edit is refused and changes nothing.
    let mut doc = alice.get(&id).await?.value;
    let before = doc.clone();
    doc.body = "ship the feed".into();
    alice.patch(&id, &Patch::diff(&before, &doc)?).await?;
    let refused = Document {
        status: "done".into(),
        ..bob.get(&id).await?.value
    };
    match bob
        .patch(&id, &Patch::of(&refused)?.with(Document::status()))
        .await
    {
        Err(e) => log += &format!("globex refused: {e}\n"),
        Ok(_) => log += "globex wrote without WRITE\n",
    }
    // Granted WRITE, both edit at once: different fields both survive.
    host.subscribe::<Document>(&globex_id, &id, Access::Write)
        .await?;
    let status = Document {
        status: "review".into(),
        ..Default::default()
    };
    let title = Document {
        title: "Q3 roadmap (final)".into(),
        ..Default::default()
    };
    let title = Patch::of(&title)?.with(Document::title());
    let status = Patch::of(&status)?.with(Document::status());
    let (a, b) = tokio::join!(alice.patch(&id, &title), bob.patch(&id, &status));
    a?;
    b?;
    for line in drain(&mut acme_feed).await? {
        log += &format!("acme sees {line}\n");
    }
    for line in drain(&mut globex_feed).await? {
        log += &format!("globex sees {line}\n");
    }
    let now = host.get::<Document>(&id).await?;
    log += &format!(
        "final v{}: {:?} / {:?} / {:?}\n",
        now.version, now.value.title, now.value.body, now.value.status
    );
    Ok(log)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (_server, url) = popoto::testing::redis_url_or_private()?;
    let db = Db::connect(&url).await?;
    print!("{}", run(&db).await?);
    Ok(())
}
