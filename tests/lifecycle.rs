//! Tenant lifecycle: destroy, export/import, counts; other tenants stay byte for byte as they were.

mod lifecycle_common;
mod support;

use lifecycle_common::*;
use popoto::Error;
use support::*;

#[tokio::test]
async fn destroy_removes_one_tenant_and_leaves_the_others_byte_for_byte() {
    for victim in ["a", "umbrella:eu-1", "a*"] {
        let (server, db) = seeded(None).await;
        let (reference, _ref_db) = seeded(Some(victim)).await;
        // An orphan of the victim (an instance key without instance, left in its value set,
        // its partition and the model's shared indexes) is removed everywhere its key derives.
        let orphan = format!(
            "Episode:{}:{}",
            "f".repeat(32),
            popoto_core::keys::escape(victim)
        );
        let value_set = format!(
            "$KeyF:Episode:project_id:{}",
            popoto_core::keys::escape(victim)
        );
        let partition = format!("$SortF:Episode:score:{}", popoto_core::keys::escape(victim));
        for set in ["$Class:Episode", value_set.as_str()] {
            raw_cmd::<i64>(&server, redis::cmd("SADD").arg(set).arg(&orphan));
        }
        for zset in ["$SortF:Episode:rank", partition.as_str()] {
            raw_cmd::<i64>(&server, redis::cmd("ZADD").arg(zset).arg(1).arg(&orphan));
        }
        let report = db
            .admin()
            .destroy_tenant(&tid(victim), &models())
            .await
            .unwrap();
        assert_eq!(
            report.instances.get("Episode"),
            Some(&25),
            "{victim}: {report:?}"
        );
        assert_eq!(report.instances.get("Item"), Some(&25));
        assert_eq!(report.instances.get("Memory"), Some(&5));
        assert_eq!(report.instances.get("Claim"), Some(&5));
        assert_eq!(report.orphan_entries, 4);
        assert!(report.kept.is_empty(), "{report:?}");
        let got = dump(&server);
        let want = dump(&reference);
        assert_eq!(got.len(), want.len(), "{victim}");
        for (k, v) in &want {
            assert_eq!(got.get(k), Some(v), "{victim}: key {k}");
        }
        let counts = db
            .admin()
            .tenant_counts(&tid(victim), &models())
            .await
            .unwrap();
        assert!(counts.values().all(|&n| n == 0), "{counts:?}");
    }
}

#[tokio::test]
async fn export_then_import_round_trips_exactly() {
    let (server, db) = seeded(None).await;
    let before = dump(&server);
    let victim = tid("umbrella:eu-1");
    let mut stream = Vec::new();
    let records = db
        .admin()
        .export_tenant(&victim, &models(), &mut stream)
        .await
        .unwrap();
    assert!(records > 60 * 3, "{records} records");
    db.admin().destroy_tenant(&victim, &models()).await.unwrap();
    assert_ne!(dump(&server), before);
    let applied = db
        .admin()
        .import_tenant(&victim, &models(), stream.as_slice())
        .await
        .unwrap();
    assert_eq!(applied, records);
    assert_eq!(dump(&server), before, "same keys, same bytes");
    // Importing again changes nothing: every instance is there with exactly its fields.
    let again = db
        .admin()
        .import_tenant(&victim, &models(), stream.as_slice())
        .await
        .unwrap();
    assert_eq!(again, records);
    assert_eq!(dump(&server), before);

    // Into an empty server: exactly the tenant's footprint.
    let (other, other_db) = setup().await;
    other_db
        .admin()
        .import_tenant(&victim, &models(), stream.as_slice())
        .await
        .unwrap();
    let footprint = dump(&other);
    for (k, v) in &footprint {
        let original = before
            .get(k)
            .unwrap_or_else(|| panic!("{k} not in the source"));
        if k.starts_with("hash Episode:") || k.starts_with("hash Item:") || k.contains(":umbrella")
        {
            assert_eq!(v, original, "{k}");
        }
    }
    assert_eq!(
        other_db
            .admin()
            .tenant_counts(&victim, &models())
            .await
            .unwrap()
            .get("Episode"),
        Some(&25)
    );
}

#[tokio::test]
async fn imports_refuse_another_tenants_stream() {
    let (_server, db) = seeded(None).await;
    let mut stream = Vec::new();
    db.admin()
        .export_tenant(&tid("a"), &models(), &mut stream)
        .await
        .unwrap();
    let (target, target_db) = setup().await;
    let err = target_db
        .admin()
        .import_tenant(&tid("ab"), &models(), stream.as_slice())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidValue { .. }), "{err:?}");
    assert!(dump(&target).is_empty(), "nothing was written");
    // A forged record naming another tenant's instance inside a valid stream is refused too.
    let mut forged = Vec::new();
    rmp_serde::encode::write_named(
        &mut forged,
        &popoto::ExportRecord::Header {
            version: 1,
            tenant: "ab".into(),
        },
    )
    .unwrap();
    rmp_serde::encode::write_named(
        &mut forged,
        &popoto::ExportRecord::SetMember {
            key: "$Class:Episode".into(),
            member: "Episode:00:a".into(),
        },
    )
    .unwrap();
    assert!(target_db
        .admin()
        .import_tenant(&tid("ab"), &models(), forged.as_slice())
        .await
        .is_err());
    assert!(dump(&target).is_empty());
}

#[tokio::test]
async fn per_tenant_counts() {
    let (_server, db) = seeded(None).await;
    let counts = db
        .admin()
        .tenant_counts(&tid("a*"), &models())
        .await
        .unwrap();
    assert_eq!(counts.get("Episode"), Some(&25));
    assert_eq!(counts.get("Item"), Some(&25));
    assert_eq!(counts.get("Memory"), Some(&5));
    assert_eq!(
        counts.get("Note"),
        None,
        "untenanted models are not counted per tenant"
    );
}

#[tokio::test]
async fn the_audit_covers_every_model_and_finds_a_cross_tenant_member() {
    let (server, db) = seeded(None).await;
    popoto::testing::assert_db_isolated(&db, &models()).await;
    let reports = db.admin().audit_all(&models()).await.unwrap();
    assert_eq!(reports.len(), 5);
    assert!(reports.iter().all(|r| r.is_clean()));
    // An acme episode slipped into another tenant's partition zset.
    let acme_key: String = raw_cmd(
        &server,
        redis::cmd("SRANDMEMBER").arg("$KeyF:Episode:project_id:acme"),
    );
    raw_cmd::<i64>(
        &server,
        redis::cmd("ZADD")
            .arg("$SortF:Episode:score:ab")
            .arg(1)
            .arg(&acme_key),
    );
    let reports = db.admin().audit_all(&models()).await.unwrap();
    let episode = reports.iter().find(|r| !r.is_clean()).unwrap();
    let violations: Vec<_> = episode.isolation_violations().collect();
    assert_eq!(violations.len(), 1, "{episode}");
    assert_eq!(violations[0].member, acme_key);
    let caught =
        tokio::spawn(async move { popoto::testing::assert_db_isolated(&db, &models()).await })
            .await;
    let panic = caught.unwrap_err().into_panic();
    let message = panic
        .downcast_ref::<String>()
        .cloned()
        .expect("the panic message is a formatted String");
    assert!(
        message.contains("tenant isolation audit failed") && message.contains(&acme_key),
        "{message}"
    );
}

#[tokio::test]
async fn a_failing_export_writer_is_a_typed_error() {
    struct Broken;
    impl std::io::Write for Broken {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("disk full"))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let (_server, db) = seeded(None).await;
    match db
        .admin()
        .export_tenant(&tid("acme"), &models(), Broken)
        .await
    {
        Err(Error::Stream(reason)) => assert!(reason.contains("writing"), "{reason}"),
        other => panic!("expected Stream, got {other:?}"),
    }
}
