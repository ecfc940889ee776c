//! Tenancy on the cluster layout: bulk writes, confidence, two tenants that never see each
//! other, concurrent writers of several tenants on one `Db`, destroying and exporting one
//! tenant (found through its indexes and through a scan of every master), and the isolation
//! audit run per tenant keyspace.

use popoto::{Layout, ModelSet, Sweep};

use crate::common::*;
use crate::support::*;

fn models() -> ModelSet {
    ModelSet::new()
        .with::<Episode>()
        .with::<Memory>()
        .with::<Item>()
}

/// Writes a little of everything for `tenant`: 30 episodes in bulk, 3 memories with confidence
/// signals, 2 items.
async fn populate(db: &popoto::Db, tenant: &str) {
    seed_episodes(db, tenant, 30).await;
    let s = db.tenant(tenant).unwrap();
    for k in ["m1", "m2", "m3"] {
        let m = s
            .create(Memory {
                key: k.into(),
                content: format!("{tenant} {k}"),
                ..Default::default()
            })
            .await
            .unwrap();
        let c = s.confidence(&m, Memory::certainty()).unwrap();
        c.update(0.9).await.unwrap();
        c.update(0.8).await.unwrap();
    }
    for sku in ["i1", "i2"] {
        s.create(Item {
            sku: sku.into(),
            region: "eu".into(),
            level: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_writes_and_confidence_stay_within_each_tenant() {
    let (cluster, db) = (popoto::testing::TestCluster::shared(), shared_db());
    let tenants = ["tenancy-a", "tenancy-b{:}"];
    for t in tenants {
        populate(&db, t).await;
    }
    for t in tenants {
        let s = db.tenant(t).unwrap();
        assert_eq!(s.query::<Episode>().count().await.unwrap(), 30);
        let titles: Vec<String> = s
            .query::<Episode>()
            .fetch()
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.title)
            .collect();
        assert!(titles.iter().all(|x| x.starts_with(t)), "{t}: {titles:?}");
        let scanned = s
            .confidence_scan(Memory::certainty())
            .batch(2)
            .fetch_all()
            .await
            .unwrap();
        assert_eq!(scanned.len(), 3, "{t}: {scanned:?}");
        for (key, state) in &scanned {
            assert_eq!(key.tenant(), Some(t));
            assert_eq!(state.evidence_count, 2, "{key:?}");
            assert!(state.confidence > 0.5, "{state:?}");
        }
        // Bulk saves and deletes.
        let mut eps = s.query::<Episode>().fetch().await.unwrap();
        for e in &mut eps {
            e.rank += 100;
        }
        s.save_many(eps.clone()).await.unwrap();
        assert_eq!(
            s.query::<Episode>()
                .filter(Episode::rank().gte(100))
                .count()
                .await
                .unwrap(),
            30
        );
        let keys = s.query::<Episode>().limit(10).fetch_keys().await.unwrap();
        assert_eq!(s.delete_many(&keys).await.unwrap(), 10);
        assert_eq!(s.query::<Episode>().count().await.unwrap(), 20);
        assert_all_or_nothing(cluster, &db, t, "Episode", true).await;
        assert_all_or_nothing(cluster, &db, t, "Memory", false).await;
    }
}

/// Creates of several tenants issued together through one `Db` (group commit gathers
/// concurrent creates into one script call) each land in their own tenant's slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_of_several_tenants_through_one_db_all_succeed() {
    let (cluster, db) = (popoto::testing::TestCluster::shared(), shared_db());
    let tenants: Vec<String> = (0..6).map(|i| format!("tenancy-conc-{i}")).collect();
    let mut tasks = Vec::new();
    for t in &tenants {
        for i in 0..20 {
            let (db, t) = (db.clone(), t.clone());
            tasks.push(tokio::spawn(async move {
                db.tenant(&t)
                    .unwrap()
                    .create(episode("", &format!("{t}-{i}"), i as f64, 0))
                    .await
            }));
        }
    }
    for task in tasks {
        task.await.unwrap().unwrap_or_else(|e| panic!("{e}"));
    }
    for t in &tenants {
        assert_eq!(
            db.tenant(t)
                .unwrap()
                .query::<Episode>()
                .count()
                .await
                .unwrap(),
            20
        );
        assert_eq!(
            assert_all_or_nothing(cluster, &db, t, "Episode", true)
                .await
                .len(),
            20
        );
    }
}

/// Export through the tenant's indexes, destroy with the default sweep (a `SCAN` of every
/// master), import back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_is_destroyed_or_exported_and_imported_without_touching_another() {
    let (cluster, db) = (popoto::testing::TestCluster::shared(), shared_db());
    let (gone, kept) = ("tenancy-gone", "tenancy-kept");
    populate(&db, gone).await;
    populate(&db, kept).await;
    let kept_before = tenant_keys(cluster, kept);
    let gone_keys = tenant_keys(cluster, gone);
    let mut stream = Vec::new();
    let records = db
        .admin()
        .export_tenant_with(&tid(gone), &models(), &mut stream, Sweep::Indexes)
        .await
        .unwrap();
    assert!(records > 35, "{records}");
    // One more instance that no index names: only a scan of the keyspace (every master)
    // finds it, and the default sweep does.
    let (_, stray) = db
        .tenant(gone)
        .unwrap()
        .create_keyed(episode("", "stray", 9.0, 9))
        .await
        .unwrap();
    let fp = footprint(cluster, &db, gone, "Episode").await;
    let hash = fp
        .instances
        .iter()
        .find(|k| k.contains(&stray.episode_id))
        .expect("the stray hash");
    for (index, _) in &fp.indexes {
        let ty: String = raw(&db, redis::cmd("TYPE").arg(index)).await;
        let rem = if ty == "set" { "SREM" } else { "ZREM" };
        let _: i64 = raw(&db, redis::cmd(rem).arg(index).arg(hash)).await;
    }
    let report = db
        .admin()
        .destroy_tenant(&tid(gone), &models())
        .await
        .unwrap();
    assert_eq!(report.instances.get("Episode"), Some(&31), "{report:?}");
    assert_eq!(report.instances.get("Memory"), Some(&3), "{report:?}");
    assert_eq!(tenant_keys(cluster, gone), Vec::<String>::new());
    assert_eq!(tenant_keys(cluster, kept), kept_before);
    assert_eq!(
        db.tenant(gone)
            .unwrap()
            .query::<Episode>()
            .count()
            .await
            .unwrap(),
        0
    );

    // The export restores the tenant exactly, and a second import changes nothing.
    for _ in 0..2 {
        db.admin()
            .import_tenant(&tid(gone), &models(), stream.as_slice())
            .await
            .unwrap();
        assert_eq!(tenant_keys(cluster, gone), gone_keys);
    }
    let s = db.tenant(gone).unwrap();
    assert_eq!(s.query::<Episode>().count().await.unwrap(), 30);
    let m = s
        .query::<Memory>()
        .fetch()
        .await
        .unwrap()
        .into_iter()
        .find(|m| m.key == "m2")
        .expect("m2 imported");
    let state = s
        .confidence(&m, Memory::certainty())
        .unwrap()
        .state()
        .await
        .unwrap();
    assert_eq!(state.evidence_count, 2);
    assert_eq!(tenant_keys(cluster, kept), kept_before);
}

/// The isolation audit, the index check and admin reads across tenants run once per tenant
/// keyspace, each in its slot: on a model only this case writes (`Claim`), so that the shared
/// cluster's other tenants are not in its reports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_isolation_audit_runs_per_tenant_keyspace() {
    let (cluster, db) = (popoto::testing::TestCluster::shared(), shared_db());
    let (a, b) = ("tenancy-audit-a", "tenancy-audit-b");
    for t in [a, b] {
        let s = db.tenant(t).unwrap();
        for i in 0..3 {
            let c = s
                .create(Claim {
                    id: format!("c{i}"),
                    topic: "x".into(),
                    ..Default::default()
                })
                .await
                .unwrap();
            s.confidence(&c, Claim::belief())
                .unwrap()
                .update(0.7)
                .await
                .unwrap();
        }
    }
    let admin = db.admin_on(&tid(a));
    let clean = admin.audit::<Claim>().await.unwrap();
    assert!(clean.is_clean(), "{clean}");
    assert_eq!(db.admin().query::<Claim>().count().await.unwrap(), 6);
    // One of b's instance keys planted in a's value set: a misplaced member, which a's reads
    // skip and the audit reports as an isolation violation (naming the key's tenant, b).
    let foreign = Claim::key_of(b, "c0").redis_key_in(Layout::Cluster);
    let value_set = tenant_keys(cluster, a)
        .into_iter()
        .find(|k| k.contains("$KeyF:Claim:project:"))
        .expect("a's value set");
    let _: i64 = raw(&db, redis::cmd("SADD").arg(&value_set).arg(&foreign)).await;
    assert_eq!(
        db.tenant(a)
            .unwrap()
            .query::<Claim>()
            .count()
            .await
            .unwrap(),
        3
    );
    let found = admin.audit::<Claim>().await.unwrap();
    assert_eq!(found.isolation_violations().count(), 1, "{found}");
    assert_eq!(
        found.tenants().into_iter().collect::<Vec<_>>(),
        [b],
        "{found}"
    );
    let rebuilt = admin.rebuild_indexes::<Claim>().await.unwrap();
    assert!(rebuilt.findings.iter().all(|f| f.repaired), "{rebuilt}");
    assert!(admin.audit::<Claim>().await.unwrap().is_clean());
    assert_all_or_nothing(cluster, &db, a, "Claim", false).await;
    // A tenant's counts, through the admin handle, read its slot.
    let claims = ModelSet::new().with::<Claim>();
    let counts = db.admin().tenant_counts(&tid(a), &claims).await.unwrap();
    assert_eq!(counts.get("Claim"), Some(&3));
}
