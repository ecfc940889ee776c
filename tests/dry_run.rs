//! A recording backend (a dry run) sends reads, records the writes of the operations that
//! support a dry run, and refuses every other write before it is sent: whatever is called
//! through it, the server's data does not change.

mod support;

use popoto::{CommandLog, ConfidenceState, Db, DryRun, Error, ModelSet, TenantId};
use support::{episode, setup, Episode, Item, Memory};

fn refused<T: std::fmt::Debug>(r: Result<T, Error>, what: &str) {
    match r {
        Err(Error::DryRunWrite { .. }) => {}
        Err(Error::Bulk { failed, .. })
            if !failed.is_empty()
                && failed
                    .iter()
                    .all(|(_, e)| matches!(e, Error::DryRunWrite { .. })) => {}
        other => panic!("{what}: expected DryRunWrite, got {other:?}"),
    }
}

#[tokio::test]
async fn a_recording_backend_reads_records_and_refuses_every_other_write() {
    let (server, db) = setup().await;
    let acme = db.tenant("acme").unwrap_or_else(|e| panic!("{e}"));
    let e = acme
        .create(episode("", "kept", 0.5, 1))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let m = acme
        .create(Memory {
            key: "fact".into(),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // An orphan entry: something for a rebuild to repair.
    redis::cmd("SADD")
        .arg("$Class:Episode")
        .arg("Episode:ghost:acme")
        .exec(&mut server.raw())
        .unwrap_or_else(|e| panic!("SADD: {e}"));
    let before = server.snapshot();

    let log = CommandLog::new();
    let backend = db
        .admin()
        .backend()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .recording(&log);
    assert!(backend.is_recording());
    let dry = Db::from_backend(backend);
    let dry_acme = dry.tenant("acme").unwrap_or_else(|e| panic!("{e}"));
    // Reads go through.
    assert_eq!(dry_acme.query::<Episode>().count().await.ok(), Some(1));
    let key = Episode::key_of("acme", e.episode_id.clone());
    let read = dry_acme
        .get(&key)
        .await
        .unwrap_or_else(|e| panic!("get: {e}"));
    assert_eq!(read.map(|x| x.title).as_deref(), Some("kept"));
    // Writes without a dry run of their own are refused before they are sent.
    refused(dry_acme.create(episode("", "new", 0.1, 2)).await, "create");
    refused(dry_acme.save(&e).await, "save");
    refused(dry_acme.delete(&e).await, "delete");
    refused(
        dry_acme
            .create_many(vec![Item {
                sku: "s".into(),
                ..Default::default()
            }])
            .await
            .map_err(Error::from),
        "create_many (plans)",
    );
    refused(
        dry_acme
            .create_many(vec![episode("", "bulk", 0.2, 3)])
            .await
            .map_err(Error::from),
        "create_many (insert_many.lua)",
    );
    refused(
        dry_acme
            .confidence(&m, Memory::certainty())
            .unwrap_or_else(|e| panic!("{e}"))
            .update(0.9)
            .await,
        "confidence update",
    );
    refused(
        dry.admin().rebuild_indexes::<Episode>().await,
        "rebuild_indexes",
    );
    // The check itself only reads.
    let checked = dry.admin().check_indexes::<Episode>().await;
    assert_eq!(checked.map(|r| r.findings.len()).ok(), Some(1));
    assert_eq!(
        server.snapshot(),
        before,
        "a refused write changed the data"
    );
    // A migration asked to write on a recording backend is refused too (DryRun::Yes records).
    redis::cmd("ZADD")
        .arg("$SortF:Episode:score")
        .arg(1)
        .arg(key.redis_key())
        .exec(&mut server.raw())
        .unwrap_or_else(|e| panic!("ZADD: {e}"));
    let before = server.snapshot();
    refused(
        dry.admin()
            .migrate_sorted_to_partitioned(Episode::score(), DryRun::No, |_| {})
            .await,
        "migration",
    );
    assert!(log.is_empty(), "nothing recorded yet: {:?}", log.commands());

    // Operations with a dry run record what they would send, and write nothing either.
    let report = dry
        .admin()
        .destroy_tenant(
            &TenantId::new("acme").unwrap_or_else(|e| panic!("{e}")),
            &ModelSet::new().with::<Episode>().with::<Memory>(),
        )
        .await
        .unwrap_or_else(|e| panic!("dry destroy: {e}"));
    assert_eq!(report.instances.get("Episode"), Some(&1));
    assert_eq!(report.instances.get("Memory"), Some(&1));
    let migrated = dry
        .admin()
        .migrate_sorted_to_partitioned(Episode::score(), DryRun::Yes, |_| {})
        .await
        .unwrap_or_else(|e| panic!("dry migration: {e}"));
    assert_eq!(migrated.total, 1);
    // The episode's deletion, its legacy score entry's removal, the memory's deletion, the
    // tenant's change feed's deletion, the migration's page call.
    let commands = log.commands();
    let names: Vec<String> = commands.iter().map(|c| c.name()).collect();
    assert_eq!(
        names,
        ["EVALSHA", "EVALSHA", "EVALSHA", "DEL", "EVALSHA"],
        "{commands:?}"
    );
    let shown: Vec<String> = commands.iter().map(|c| c.to_string()).collect();
    assert!(
        shown[1].contains("$SortF:Episode:score ") && shown[1].contains("ZREM"),
        "{shown:?}"
    );
    assert!(shown[2].contains("Memory:fact:acme"), "{shown:?}");
    assert!(shown[3].contains("$Feed:tenant:acme"), "{shown:?}");
    assert_eq!(server.snapshot(), before, "a dry run changed the data");
}

#[test]
fn confidence_states_are_data() {
    let state = ConfidenceState {
        confidence: 0.75,
        evidence_count: 4,
        corroborations: 3,
        contradictions: 1,
    };
    let json = serde_json::to_string(&state).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        json,
        r#"{"confidence":0.75,"evidence_count":4,"corroborations":3,"contradictions":1}"#
    );
    let back: ConfidenceState = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(back, state);
}
