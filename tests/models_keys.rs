//! Keys by name: `key_builder()` sets each key field by its name, in any order, and only
//! builds once every one is set (missing, repeated or mistyped fields do not compile:
//! `tests/ui/keys/`); `get`, `exists`, `update` and `delete_key` take what it builds.

mod support;

use popoto::{Key, Model};
use support::*;

/// Grants of a role to a user: three string key fields, the order `key_of` cannot check.
#[derive(Model, Debug, Clone, PartialEq, Default)]
struct Grant {
    #[popoto(key, tenant)]
    org: String,
    #[popoto(key)]
    user: String,
    #[popoto(key)]
    role: String,
    #[popoto(key)]
    level: i64,
    note: String,
}

#[tokio::test]
async fn a_key_built_by_name_is_the_positional_key_in_any_order() {
    let (server, db) = setup().await;
    let acme = db.tenant("acme").unwrap();
    let g = Grant {
        user: "ann".into(),
        role: "admin".into(),
        level: 3,
        note: "n".into(),
        ..Default::default()
    };
    acme.create(g.clone()).await.unwrap();
    let positional = Grant::key_of("acme", "ann", "admin", 3);
    let named = Grant::key_builder()
        .role("admin")
        .level(3)
        .org("acme")
        .user("ann")
        .build();
    assert_eq!(named, positional);
    let other_order = Grant::key_builder()
        .user("ann")
        .org("acme")
        .level(3i64)
        .role(String::from("admin"))
        .build();
    assert_eq!(other_order, positional);
    // Swapping two string values by position builds another key; by name it cannot happen.
    let swapped = Grant::key_of("acme", "admin", "ann", 3);
    assert_ne!(swapped, positional);
    assert!(acme.get(&swapped).await.unwrap().is_none());
    // The key is the instance's: reads, updates and deletes by key.
    assert_eq!(
        named.redis_key(),
        "Grant:3:acme:admin:ann",
        "key fields in name order"
    );
    assert_eq!(
        acme.get(&named).await.unwrap(),
        Some(Grant {
            org: "acme".into(),
            ..g
        })
    );
    assert!(acme.exists(&named).await.unwrap());
    let updated = acme
        .update(&named, |g| g.note = "changed".into())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(updated.note, "changed");
    assert!(acme.delete_key(&named).await.unwrap());
    assert!(all_keys(&server).iter().all(|k| !k.starts_with("Grant:")));
    // Another tenant's key built by name is refused like any other.
    let theirs = Grant::key_builder()
        .org("globex")
        .user("ann")
        .role("admin")
        .level(3)
        .build();
    assert!(matches!(
        acme.get(&theirs).await,
        Err(popoto::Error::TenantMismatch { .. })
    ));
}

#[tokio::test]
async fn a_hidden_auto_key_is_built_by_name_too() {
    let (_server, db) = setup().await;
    let (key, note) = db
        .unscoped()
        .create_keyed(Note {
            text: "hi".into(),
            stars: 2,
        })
        .await
        .unwrap();
    let built: Key<Note> = Note::key_builder()
        .auto_key(key.segments()[0].clone())
        .build();
    assert_eq!(built, key);
    assert_eq!(db.unscoped().get(&built).await.unwrap(), Some(note));
}
