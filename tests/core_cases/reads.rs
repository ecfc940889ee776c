//! Reads: models keyed by popoto's hidden auto key, tenant models that fail closed, typed
//! decode errors, and values popoto may have written.

use popoto::Error;

use crate::support::*;

#[tokio::test]
async fn hidden_auto_key_models_work_through_keys() {
    let (server, db) = setup().await;
    let (key, note) = db
        .unscoped()
        .create_keyed(Note {
            text: "hi".into(),
            stars: 4,
        })
        .await
        .unwrap();
    let redis_key = key.redis_key();
    assert!(redis_key.starts_with("Note:") && redis_key.len() == 5 + 32);
    let hash = hgetall(&server, &redis_key);
    let auto = hash.iter().find(|(f, _)| f == "_auto_key").unwrap();
    assert_eq!(auto.1[0], 0xd9);
    assert_eq!(db.unscoped().get(&key).await.unwrap(), Some(note.clone()));
    let updated = Note {
        stars: 5,
        ..note.clone()
    };
    db.unscoped().save_at(&key, &updated).await.unwrap();
    assert_eq!(
        db.unscoped().get(&key).await.unwrap(),
        Some(updated.clone())
    );
    assert!(matches!(
        db.unscoped().save(&updated).await,
        Err(Error::InvalidValue {
            field: "_auto_key",
            ..
        })
    ));
    assert_eq!(
        db.unscoped().query::<Note>().fetch().await.unwrap(),
        [updated]
    );
    assert!(db.unscoped().delete_key(&key).await.unwrap());
    assert!(all_keys(&server).is_empty());
}

#[tokio::test]
async fn tenant_models_fail_closed() {
    let (_server, db) = setup().await;
    let acme = db.tenant("acme").unwrap();
    assert!(matches!(
        db.unscoped().create(episode("acme", "x", 1.0, 1)).await,
        Err(Error::NoTenant { model: "Episode" })
    ));
    assert!(matches!(
        db.unscoped().query::<Episode>().count().await,
        Err(Error::NoTenant { .. })
    ));
    let ep = acme.create(episode("", "x", 1.0, 1)).await.unwrap();
    assert!(matches!(
        db.unscoped()
            .get(&Episode::key_of("acme", ep.episode_id.clone()))
            .await,
        Err(Error::NoTenant { .. })
    ));
    match acme.create(episode("globex", "x", 1.0, 1)).await {
        Err(Error::TenantMismatch {
            model,
            field,
            expected,
            found,
        }) => {
            assert_eq!(
                (model, field, expected.as_str(), found.as_str()),
                ("Episode", "project_id", "acme", "globex")
            );
        }
        other => panic!("expected TenantMismatch, got {other:?}"),
    }
    let globex = db.tenant("globex").unwrap();
    let k = Episode::key_of("acme", ep.episode_id.clone());
    assert!(matches!(
        globex.get(&k).await,
        Err(Error::TenantMismatch { .. })
    ));
    assert!(matches!(
        globex.delete(&ep).await,
        Err(Error::TenantMismatch { .. })
    ));
    assert!(matches!(
        globex
            .query::<Episode>()
            .filter(Episode::project_id().eq("acme"))
            .fetch()
            .await,
        Err(Error::TenantMismatch { .. })
    ));
    assert_eq!(db.admin().get(&k).await.unwrap(), Some(ep));
    assert!(matches!(db.tenant(""), Err(Error::InvalidTenant { .. })));
}

#[tokio::test]
async fn undecodable_values_are_typed_errors_naming_key_and_field() {
    let (server, db) = setup().await;
    let acme = db.tenant("acme").unwrap();
    let ep = acme.create(episode("", "x", 1.0, 1)).await.unwrap();
    let key = format!("Episode:{}:acme", ep.episode_id);
    raw_cmd::<i64>(
        &server,
        redis::cmd("HSET")
            .arg(&key)
            .arg("rank")
            .arg(b"\xa3abc".as_slice()),
    );
    match acme
        .get(&Episode::key_of("acme", ep.episode_id.clone()))
        .await
    {
        Err(Error::Decode {
            model,
            key: k,
            field,
            ..
        }) => {
            assert_eq!(
                (model, k.as_str(), field.as_str()),
                ("Episode", key.as_str(), "rank")
            );
        }
        other => panic!("expected Decode, got {other:?}"),
    }
    for garbage in [&b""[..], b"\xc1", b"\xcb\x00", b"\xd9\xff", b"\x92\x01"] {
        raw_cmd::<i64>(
            &server,
            redis::cmd("HSET").arg(&key).arg("score").arg(garbage),
        );
        raw_cmd::<i64>(
            &server,
            redis::cmd("HSET")
                .arg(&key)
                .arg("rank")
                .arg(b"\x01".as_slice()),
        );
        let r = acme.query::<Episode>().fetch().await;
        assert!(
            matches!(r, Err(Error::Decode { ref field, .. }) if field == "score"),
            "{garbage:?}: {r:?}"
        );
    }
}

#[tokio::test]
async fn readers_accept_what_popoto_may_have_written() {
    let (server, db) = setup().await;
    let acme = db.tenant("acme").unwrap();
    let ep = acme.create(episode("", "x", 1.0, 1)).await.unwrap();
    let key = format!("Episode:{}:acme", ep.episode_id);
    let k = Episode::key_of("acme", ep.episode_id.clone());
    // Lua-written numbers: an int and a float32 for a float field.
    raw_cmd::<i64>(
        &server,
        redis::cmd("HSET")
            .arg(&key)
            .arg("score")
            .arg(b"\x03".as_slice()),
    );
    assert_eq!(acme.get(&k).await.unwrap().unwrap().score, 3.0);
    raw_cmd::<i64>(
        &server,
        redis::cmd("HSET")
            .arg(&key)
            .arg("score")
            .arg(b"\xca\x40\x20\x00\x00".as_slice()),
    );
    assert_eq!(acme.get(&k).await.unwrap().unwrap().score, 2.5);
    // Extra fields (and legacy NUL-named ones) are ignored; a missing field takes its default.
    raw_cmd::<i64>(
        &server,
        redis::cmd("HSET")
            .arg(&key)
            .arg("extra")
            .arg("zz")
            .arg(b"title\x00idxset".as_slice())
            .arg("zz"),
    );
    raw_cmd::<i64>(&server, redis::cmd("HDEL").arg(&key).arg("title"));
    let got = acme.get(&k).await.unwrap().unwrap();
    assert_eq!((got.title.as_str(), got.rank), ("", 1));
}
