//! Bulk writes: pipelined and batched creates, failures reported per instance, repeated keys
//! and unique values applied in order, partition moves, hidden auto keys.

use popoto::{BulkError, Error};

use crate::support::*;

/// Items `s<i>` of region `eu` at level `i`, for `i` in `range`.
fn eu_items(range: std::ops::Range<i64>) -> Vec<Item> {
    range
        .map(|i| Item {
            sku: format!("s{i}"),
            region: "eu".into(),
            level: i,
            ..Default::default()
        })
        .collect()
}

#[tokio::test]
async fn bulk_create_pipelines_and_reports_failures_per_instance() {
    let (server, db) = setup().await;
    let acme = db.tenant("acme").unwrap();
    let items = eu_items(0..1500);
    let before = db.admin().backend().await.unwrap().round_trips();
    let created = acme.create_many(items).await.unwrap();
    assert!(
        db.admin().backend().await.unwrap().round_trips() - before <= 3,
        "pipelined: one round trip per batch of 1000"
    );
    assert_eq!(created.len(), 1500);
    assert_eq!(acme.query::<Item>().count().await.unwrap(), 1500);
    assert_eq!(smembers(&server, "$Class:Item").len(), 1500);

    let mut batch = eu_items(1500..1510);
    batch[3].sku = "s7".into(); // taken
    match acme.create_many(batch).await {
        Err(BulkError {
            model,
            written,
            failed,
        }) => {
            assert_eq!(model, "Item");
            // Every record comes back: the nine written, in input order, and the refused one.
            let idx: Vec<usize> = written.iter().map(|(i, _)| *i).collect();
            assert_eq!(idx, [0, 1, 2, 4, 5, 6, 7, 8, 9]);
            assert!(written
                .iter()
                .all(|(i, item)| item.level == 1500 + *i as i64));
            assert_eq!(failed.len(), 1);
            let (i, item, e) = &failed[0];
            assert_eq!((*i, item.sku.as_str()), (3, "s7"));
            assert!(matches!(
                e,
                Error::AlreadyExists { .. } | Error::UniqueViolation { .. }
            ));
        }
        other => panic!("expected a bulk error, got {other:?}"),
    }
    assert_eq!(
        acme.query::<Item>().count().await.unwrap(),
        1509,
        "the other nine were written"
    );
}

/// The batched path (partitions in the key): every failed check is that instance's error,
/// and a failed instance leaves nothing behind while the others are written whole.
#[tokio::test]
async fn batched_creates_report_exists_unique_and_wrong_type_per_instance() {
    let (server, db) = setup().await;
    let admin = db.admin();
    let memory = |project: &str, key: &str| Memory {
        project: project.into(),
        key: key.into(),
        content: format!("{project}/{key}"),
        certainty: 0.5,
    };
    admin.create(memory("acme", "taken")).await.unwrap();
    admin.create(memory("hooli", "unique")).await.unwrap();
    raw_cmd::<()>(
        &server,
        redis::cmd("SET")
            .arg("$ConfidencF:Memory:certainty:data:globex")
            .arg("x"),
    );
    raw_cmd::<i64>(
        &server,
        redis::cmd("RPUSH")
            .arg("$KeyF:Memory:project:initech")
            .arg("x"),
    );
    let before = all_keys(&server);
    let mut batch: Vec<Memory> = Vec::new();
    for project in ["acme", "globex", "initech"] {
        batch.extend((0..5).map(|i| memory(project, &format!("{project}{i}"))));
    }
    batch[1] = memory("acme", "taken");
    batch[2] = memory("acme", "unique");
    let Err(Error::Bulk {
        model,
        total,
        failed,
    }) = admin.create_many(batch.clone()).await.map_err(Error::from)
    else {
        panic!("expected a bulk error");
    };
    assert_eq!((model, total), ("Memory", 15));
    let failed: Vec<(usize, String)> = failed
        .into_iter()
        .map(|(i, e)| {
            let kind = match e {
                Error::AlreadyExists { .. } => "exists".to_owned(),
                Error::UniqueViolation { .. } => "unique".to_owned(),
                Error::WrongType { key, .. } => format!("wrongtype {key}"),
                other => format!("{other:?}"),
            };
            (i, kind)
        })
        .collect();
    let mut expected = vec![(1, "exists".to_owned()), (2, "unique".to_owned())];
    expected.extend((5..10).map(|i| {
        (
            i,
            "wrongtype $ConfidencF:Memory:certainty:data:globex".to_owned(),
        )
    }));
    expected.extend((10..15).map(|i| (i, "wrongtype $KeyF:Memory:project:initech".to_owned())));
    assert_eq!(failed, expected);
    // The three acme instances written are whole; nothing else changed but their entries.
    let written: Vec<&Memory> = [0, 3, 4].iter().map(|&i| &batch[i]).collect();
    let acme = db.tenant("acme").unwrap();
    for m in &written {
        let key = Memory::key_of(m.project.clone(), m.key.clone());
        assert_eq!(acme.get(&key).await.unwrap().as_ref(), Some(*m));
    }
    let mut new_keys: Vec<String> = all_keys(&server)
        .into_iter()
        .filter(|k| !before.contains(k))
        .collect();
    new_keys.sort();
    let mut expected_keys: Vec<String> = written
        .iter()
        .flat_map(|m| {
            [
                Memory::key_of(m.project.clone(), m.key.clone()).redis_key(),
                format!("$UniqueKeyF:Memory:key:{}", m.key),
            ]
        })
        .collect();
    expected_keys.sort();
    assert_eq!(new_keys, expected_keys);
    let class = smembers(&server, "$Class:Memory");
    assert_eq!(class.len(), 2 + 3);
    assert_eq!(smembers(&server, "$KeyF:Memory:project:acme").len(), 1 + 3);
    assert_eq!(
        hlen(&server, "$ConfidencF:Memory:certainty:data:acme"),
        1 + 3
    );
}

/// A batch that repeats a key or a unique value still goes in order, as one-by-one writes
/// would: a key saved twice ends with its later value, and of two creates taking one unique
/// value the earlier wins, the later fails alone.
#[tokio::test]
async fn bulk_writes_that_repeat_keys_or_unique_values_apply_in_order() {
    let (server, db) = setup().await;
    let admin = db.admin();
    let memory = |i: usize, content: &str| Memory {
        project: ["acme", "globex"][i % 2].into(),
        key: format!("m{i}"),
        content: content.into(),
        certainty: 0.5,
    };
    let mut batch: Vec<Memory> = (0..1_200).map(|i| memory(i, "first")).collect();
    // Row 1,100 saves row 5 again; row 1,150 saves row 1,140 again (same call or next).
    batch[1_100] = memory(5, "second");
    batch[1_150] = memory(1_140, "second");
    admin.save_many(batch).await.unwrap();
    for i in [5, 1_140] {
        let key = Memory::key_of(memory(i, "").project, format!("m{i}"));
        let got = db.admin().get(&key).await.unwrap().unwrap();
        assert_eq!(got.content, "second", "m{i}: the later save wins");
    }
    // Rows 1,100 and 1,150 (acme) were replaced by the repeats.
    assert_eq!(smembers(&server, "$Class:Memory").len(), 1_198);
    let acme = db.tenant("acme").unwrap();
    assert_eq!(acme.query::<Memory>().count().await.unwrap(), 598);

    // Creates: the unique value `u7` is taken by row 7, then claimed again by row 900
    // (another tenant, so another key).
    redis::cmd("FLUSHDB").exec(&mut server.raw()).unwrap();
    let mut batch: Vec<Memory> = (0..1_000)
        .map(|i| Memory {
            key: format!("u{i}"),
            ..memory(i, "x")
        })
        .collect();
    batch[900] = Memory {
        project: "initech".into(),
        key: "u7".into(),
        content: "late".into(),
        certainty: 0.5,
    };
    let Err(Error::Bulk { failed, .. }) = admin.create_many(batch).await.map_err(Error::from)
    else {
        panic!("expected a bulk error");
    };
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].0, 900);
    assert!(
        matches!(&failed[0].1, Error::UniqueViolation { field: "key", .. }),
        "{:?}",
        failed[0].1
    );
    assert_eq!(smembers(&server, "$Class:Memory").len(), 999);
    assert_eq!(
        smembers(&server, "$UniqueKeyF:Memory:key:u7"),
        [Memory::key_of("globex".to_owned(), "u7".to_owned()).redis_key()]
    );
    assert!(smembers(&server, "$KeyF:Memory:project:initech").is_empty());
}

#[tokio::test]
async fn save_many_moves_partitions_too() {
    let (server, db) = setup().await;
    let acme = db.tenant("acme").unwrap();
    let items = eu_items(0..20);
    let mut items = acme.create_many(items).await.unwrap();
    for it in items.iter_mut().take(5) {
        it.region = "us".into();
    }
    acme.save_many(items).await.unwrap();
    assert_eq!(zrange(&server, "$SortF:Item:level:acme:eu").len(), 15);
    assert_eq!(zrange(&server, "$SortF:Item:level:acme:us").len(), 5);
}

/// Bulk creates of a model keyed by Popoto's hidden `_auto_key` (the batched path): every
/// instance gets its own key, stored in its `_auto_key` field, and is indexed.
#[tokio::test]
async fn bulk_creates_of_hidden_auto_key_models_store_each_key() {
    let (server, db) = setup().await;
    let notes: Vec<Note> = (0..1_200)
        .map(|i| Note {
            text: format!("note {i}"),
            stars: (i % 5) as u8,
        })
        .collect();
    let created = db.unscoped().create_many(notes.clone()).await.unwrap();
    assert_eq!(created, notes);
    let class = smembers(&server, "$Class:Note");
    assert_eq!(class.len(), 1_200);
    for key in &class {
        let id = key.strip_prefix("Note:").unwrap();
        assert_eq!(id.len(), 32, "{key}");
        let hash = hgetall(&server, key);
        let auto = &hash.iter().find(|(f, _)| f == "_auto_key").unwrap().1;
        assert_eq!(
            &auto[2..],
            id.as_bytes(),
            "{key}: _auto_key holds the key's uuid"
        );
        assert_eq!(hash.len(), 3, "{key}: text, stars and _auto_key");
    }
    let mut fetched = db.unscoped().query::<Note>().fetch().await.unwrap();
    fetched.sort_by(|a, b| a.text.cmp(&b.text));
    let mut expected = notes;
    expected.sort_by(|a, b| a.text.cmp(&b.text));
    assert_eq!(fetched, expected);
}
