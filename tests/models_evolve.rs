//! Field type changes: a struct whose field types changed reads what the old struct stored when
//! the stored bytes still mean a value of the new type; otherwise the read is a typed
//! `Error::Decode` naming model, key and field, and the documented migration (the old struct
//! read, the new one saved) moves the data.

mod support;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use popoto::{Error, Model};
use rust_decimal::Decimal;
use support::*;

/// The first version of a document.
mod v1 {
    use super::*;

    #[derive(Model, Debug, Clone, PartialEq, Default)]
    #[popoto(name = "Doc")]
    pub struct Doc {
        #[popoto(key, tenant)]
        pub org: String,
        #[popoto(key)]
        pub slug: i32,
        pub count: i32,
        pub title: String,
        pub ratio: f32,
        pub price: i64,
        pub tags: Vec<i32>,
        pub flag: bool,
        pub at: NaiveDateTime,
        pub legacy: String,
        #[popoto(sorted, partition_by = "org")]
        pub rank: i32,
    }
}

/// The same model after compatible changes of every kind.
mod v2 {
    use super::*;

    #[derive(Model, Debug, Clone, PartialEq, Default)]
    #[popoto(name = "Doc")]
    pub struct Doc {
        #[popoto(key, tenant)]
        pub org: String,
        /// A wider integer: the same bytes, the same key segment.
        #[popoto(key)]
        pub slug: i64,
        pub count: i64,
        pub title: Option<String>,
        pub ratio: f64,
        pub price: Decimal,
        pub tags: Vec<i64>,
        pub flag: Option<bool>,
        pub at: DateTime<Utc>,
        /// New: absent from old hashes, read as its default.
        pub added: u32,
        #[popoto(sorted, partition_by = "org")]
        pub rank: f64,
    }
}

/// Changes the stored bytes cannot follow.
mod v3 {
    use super::*;

    #[derive(Model, Debug, Clone, PartialEq, Default)]
    #[popoto(name = "Doc")]
    pub struct Doc {
        #[popoto(key, tenant)]
        pub org: String,
        #[popoto(key)]
        pub slug: String,
        pub count: String,
        pub title: Title,
        pub rank: f64,
    }

    /// A title that became a struct.
    #[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
    pub struct Title {
        pub text: String,
        pub lang: String,
    }
}

fn old(slug: i32) -> v1::Doc {
    v1::Doc {
        slug,
        count: -7,
        title: "hello".into(),
        ratio: 0.5,
        price: 12,
        tags: vec![1, -2, 3],
        flag: true,
        at: NaiveDate::from_ymd_opt(2024, 1, 15)
            .and_then(|d| d.and_hms_micro_opt(10, 30, 0, 250))
            .unwrap(),
        legacy: "kept".into(),
        rank: 3,
        ..Default::default()
    }
}

#[tokio::test]
async fn compatible_changes_read_old_data_and_keep_unknown_fields() {
    let (server, db) = setup().await;
    let acme = db.tenant("acme").unwrap();
    acme.create(old(5)).await.unwrap();
    let key = v2::Doc::key_of("acme", 5);
    assert_eq!(key.redis_key(), v1::Doc::key_of("acme", 5).redis_key());
    let new = acme.get(&key).await.unwrap().unwrap();
    assert_eq!(
        new,
        v2::Doc {
            org: "acme".into(),
            slug: 5,
            count: -7,
            title: Some("hello".into()),
            ratio: 0.5,
            price: Decimal::from(12),
            tags: vec![1, -2, 3],
            flag: Some(true),
            at: old(5).at.and_utc(),
            added: 0,
            rank: 3.0,
        }
    );
    // Queries read them too (the sorted field's score is the same number).
    let rows = acme
        .query::<v2::Doc>()
        .filter(v2::Doc::rank().gte(3.0))
        .fetch()
        .await
        .unwrap();
    assert_eq!(rows, std::slice::from_ref(&new));
    // Saving the new version keeps the field it no longer declares.
    acme.save(&v2::Doc {
        count: 1 << 20,
        ..new
    })
    .await
    .unwrap();
    let hash = hgetall(&server, &key.redis_key());
    let legacy = hash
        .iter()
        .find(|(f, _)| f == "legacy")
        .map(|(_, v)| v.clone());
    assert_eq!(legacy.as_deref(), Some(&[0xa4, b'k', b'e', b'p', b't'][..]));
    // The new version reads what it wrote.
    let again = acme.get(&key).await.unwrap().unwrap();
    assert_eq!(again.count, 1 << 20);
    popoto::testing::assert_isolated::<v2::Doc>(&db).await;
}

#[tokio::test]
async fn incompatible_changes_are_typed_errors_naming_the_field() {
    let (server, db) = setup().await;
    let acme = db.tenant("acme").unwrap();
    acme.create(old(1)).await.unwrap();
    let decode_field = |e: Error| match e {
        Error::Decode {
            model, key, field, ..
        } => (model, key, field),
        other => panic!("expected a decode error, got {other:?}"),
    };
    // Ints read as a string, a string as a struct (the hash's order decides which field is
    // met first): the error names the model, the key and a field that changed. The key is the
    // same: `str(1)` either way.
    let e = acme.get(&v3::Doc::key_of("acme", "1")).await.unwrap_err();
    let text = e.to_string();
    let (model, key, field) = decode_field(e);
    assert_eq!((model, key.as_str()), ("Doc", "Doc:acme:1"));
    assert!(
        ["slug", "count", "title"].contains(&field.as_str()),
        "{text}"
    );
    // fetch fails on the row; fetch_each returns the error in its place.
    assert!(matches!(
        acme.query::<v3::Doc>().fetch().await,
        Err(Error::Decode { .. })
    ));
    let each = acme.query::<v3::Doc>().fetch_each().await.unwrap();
    assert_eq!(each.len(), 1);
    assert!(matches!(each[0], Err(Error::Decode { .. })));
    // One field of an old instance changed behind it at a time: a value that no longer fits
    // (an i64 beyond i32), a nil read into a type without None, a float into an int.
    let mut int40 = Vec::new();
    rmp::encode::write_sint(&mut int40, 1 << 40).unwrap();
    let mut half = Vec::new();
    rmp::encode::write_f64(&mut half, 2.5).unwrap();
    for (i, (field, bytes, why)) in [
        ("count", int40, "out of range"),
        ("title", vec![0xc0], "nil"),
        ("rank", half, "float"),
    ]
    .into_iter()
    .enumerate()
    {
        let slug = 10 + i as i32;
        acme.create(old(slug)).await.unwrap();
        let key = v1::Doc::key_of("acme", slug);
        hset(&server, &key.redis_key(), field.as_bytes(), &bytes);
        let e = acme.get(&key).await.unwrap_err();
        let text = e.to_string();
        assert_eq!(decode_field(e).2, field, "{text}");
        assert!(text.contains(why), "{text}");
    }
}

#[tokio::test]
async fn the_migration_recipe_moves_every_tenant_to_the_new_type() {
    let (server, db) = setup().await;
    for t in ["acme", "globex"] {
        let s = db.tenant(t).unwrap();
        for i in 0..30 {
            s.create(old(i)).await.unwrap();
        }
    }
    // docs/models.md, "Migrating a field": read every instance with the old struct, save it
    // with the new one (same model name, same key), batch by batch.
    let admin = db.admin();
    let mut rows = admin.query::<v1::Doc>().scan(10);
    let mut migrated = 0;
    while let Some(row) = rows.next().await {
        let (_, old) = row.unwrap();
        let new = v3::Doc {
            org: old.org,
            slug: old.slug.to_string(),
            count: old.count.to_string(),
            title: v3::Title {
                text: old.title,
                lang: "en".into(),
            },
            rank: f64::from(old.rank),
        };
        admin.save(&new).await.unwrap();
        migrated += 1;
    }
    assert_eq!(migrated, 60);
    for t in ["acme", "globex"] {
        let rows = db
            .tenant(t)
            .unwrap()
            .query::<v3::Doc>()
            .fetch()
            .await
            .unwrap();
        assert_eq!(rows.len(), 30);
        assert!(rows.iter().all(|d| d.title.lang == "en" && d.count == "-7"));
    }
    popoto::testing::assert_isolated::<v3::Doc>(&db).await;
    // The hashes hold the new encodings.
    let hash = hgetall(&server, &v3::Doc::key_of("acme", "0").redis_key());
    let count = hash
        .iter()
        .find(|(f, _)| f == "count")
        .map(|(_, v)| v.clone());
    assert_eq!(count.as_deref(), Some(&[0xa2, b'-', b'7'][..]));
}
