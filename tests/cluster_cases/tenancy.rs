//! Tenancy on the cluster layout: bulk writes, confidence, two tenants that never see each
//! other, concurrent writers of several tenants on one `Db`, destroying and exporting one
//! tenant (found through its indexes: a `SCAN` reaches one node), and the isolation audit.

use popoto::{Error, Layout, ModelSet, Sweep};

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
    let report = db
        .admin()
        .destroy_tenant_with(&tid(gone), &models(), Sweep::Indexes)
        .await
        .unwrap();
    assert_eq!(report.instances.get("Episode"), Some(&30), "{report:?}");
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

/// The isolation audit and the index check read a model across tenants: on the cluster layout
/// both are refused before anything is read, through the admin handle and the tenant's
/// (`admin_on`) alike, naming the model and the layout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_isolation_audit_is_refused_on_the_cluster_layout() {
    let db = shared_db();
    let t = "tenancy-audit";
    seed_episodes(&db, t, 3).await;
    for admin in [db.admin(), db.admin_on(&tid(t))] {
        match admin.audit::<Episode>().await {
            Err(Error::Layout { model, layout, .. }) => {
                assert_eq!((model, layout), ("Episode", Layout::Cluster))
            }
            other => panic!("expected a layout refusal, got {other:?}"),
        }
        match admin.check_indexes::<Memory>().await {
            Err(Error::Layout { model, .. }) => assert_eq!(model, "Memory"),
            other => panic!("expected a layout refusal, got {other:?}"),
        }
        match admin.query::<Episode>().count().await {
            Err(Error::Layout { layout, .. }) => assert_eq!(layout, Layout::Cluster),
            other => panic!("expected a layout refusal, got {other:?}"),
        }
    }
    // A tenant's counts, through the admin handle, read its slot.
    let counts = db.admin().tenant_counts(&tid(t), &models()).await.unwrap();
    assert_eq!(counts.get("Episode"), Some(&3));
}
