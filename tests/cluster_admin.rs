//! What spans tenants on a real local Redis Cluster in the cluster layout: admin reads across
//! tenants (one run per tenant keyspace, merged), tenant discovery by a scan of every master,
//! index checks and rebuilds per keyspace (a member naming another keyspace's key is reported
//! and removed, never read across slots), keyspace sweeps over every master, and the layout
//! migration of every tenant with progress and resume.

mod support;

use std::collections::BTreeSet;

use popoto::maintenance::DryRun;
use popoto::testing::{TestCluster, TestRedis};
use popoto::{
    Backend, BackendConfig, Db, Error, FindingKind, IndexReport, LayoutRun, ModelSet, Sweep,
    TenantId,
};
use support::{Episode, Memory};

fn cluster() -> TestCluster {
    TestCluster::start(3).unwrap_or_else(|e| panic!("{e}"))
}

/// Every key on every master, sorted.
fn keys_everywhere(cluster: &TestCluster) -> Vec<String> {
    cluster.keys("*").unwrap_or_else(|e| panic!("{e}"))
}

/// A raw command through the cluster backend (routed by its key's slot).
async fn raw(backend: &Backend, args: &[&str]) {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    backend
        .query::<redis::Value>("test", "-", &cmd)
        .await
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
}

const TENANTS: [&str; 3] = ["acme", "a}b{c:d", "zeta"];

/// Five episodes per tenant; ranks interleave across tenants (tenant `i` holds `i, i+3, ...`).
async fn seed(db: &Db) {
    for (i, t) in TENANTS.iter().enumerate() {
        let s = db.tenant(t).unwrap();
        for j in 0..5i64 {
            let rank = j * 3 + i as i64;
            s.create(Episode {
                title: format!("{t}/{rank}"),
                score: rank as f64,
                rank,
                ..Default::default()
            })
            .await
            .unwrap();
        }
    }
}

fn ranks(eps: &[Episode]) -> Vec<i64> {
    eps.iter().map(|e| e.rank).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_reads_across_tenants_run_per_keyspace_and_merge_in_order() {
    let cluster = cluster();
    let db = Db::with_config(BackendConfig::cluster(cluster.urls())).unwrap();
    seed(&db).await;
    let admin = db.admin();
    let mut expected: Vec<TenantId> = TENANTS.iter().map(|t| TenantId::new(t).unwrap()).collect();
    expected.sort();
    assert_eq!(admin.tenants_of::<Episode>().await.unwrap(), expected);

    let q = || admin.query::<Episode>();
    assert_eq!(q().count().await.unwrap(), 15);
    let all: BTreeSet<i64> = ranks(&q().fetch().await.unwrap()).into_iter().collect();
    assert_eq!(all, (0..15).collect());
    assert_eq!(
        ranks(&q().order_by(Episode::rank()).fetch().await.unwrap()),
        (0..15).collect::<Vec<_>>()
    );
    assert_eq!(
        ranks(
            &q().order_by_desc(Episode::rank())
                .offset(2)
                .limit(4)
                .fetch()
                .await
                .unwrap()
        ),
        [12, 11, 10, 9]
    );
    assert_eq!(
        ranks(&q().filter(Episode::rank().gte(9)).fetch().await.unwrap()),
        [9, 10, 11, 12, 13, 14],
        "a range orders by its field"
    );
    assert_eq!(
        q().order_by(Episode::rank())
            .first()
            .await
            .unwrap()
            .unwrap()
            .rank,
        0
    );
    assert_eq!(
        q().order_by(Episode::rank())
            .last()
            .await
            .unwrap()
            .unwrap()
            .rank,
        14
    );
    assert!(q().exists().await.unwrap());
    assert!(!q().filter(Episode::rank().gte(100)).exists().await.unwrap());
    let keys = q().fetch_keys().await.unwrap();
    assert_eq!(keys.len(), 15);
    // A filter naming a tenant reads that tenant's keyspace only.
    let zeta = q()
        .filter(Episode::project_id().eq("zeta"))
        .order_by(Episode::rank())
        .fetch()
        .await
        .unwrap();
    assert_eq!(ranks(&zeta), [2, 5, 8, 11, 14]);
    assert!(zeta.iter().all(|e| e.project_id == "zeta"));
    assert_eq!(
        q().filter(Episode::project_id().is_in(["acme", "nobody"]))
            .count()
            .await
            .unwrap(),
        5
    );

    // A key of another tenant planted in acme's class set (same slot as acme's keys) is not
    // read as acme's, nor counted twice.
    let zeta_key = keys
        .iter()
        .find(|k| k.tenant() == Some("zeta"))
        .unwrap()
        .redis_key_in(popoto::Layout::Cluster);
    let backend = admin.backend().await.unwrap();
    raw(&backend, &["SADD", "{acme}$Class:Episode", &zeta_key]).await;
    assert_eq!(q().count().await.unwrap(), 15);
    assert_eq!(q().fetch().await.unwrap().len(), 15);

    // Pages and streams do not merge across keyspaces: refused, typed.
    match q().order_by(Episode::rank()).page(None, 5).await {
        Err(Error::Layout { model, .. }) => assert_eq!(model, "Episode"),
        other => panic!("expected a layout refusal, got {other:?}"),
    }

    // A confidence scan by the admin reads each tenant's companion hash.
    for t in TENANTS {
        let s = db.tenant(t).unwrap();
        let m = s
            .create(Memory {
                key: format!("m-{}", t.len()),
                content: "c".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        s.confidence(&m, Memory::certainty())
            .unwrap()
            .update(0.9)
            .await
            .unwrap();
    }
    let scanned = admin
        .confidence_scan(Memory::certainty())
        .fetch_all()
        .await
        .unwrap();
    let owners: BTreeSet<String> = scanned
        .iter()
        .map(|(k, _)| k.tenant().unwrap().to_owned())
        .collect();
    assert_eq!(owners, TENANTS.iter().map(|t| t.to_string()).collect());
    assert!(scanned.iter().all(|(_, s)| s.confidence > 0.5));
}

fn kinds(report: &IndexReport) -> Vec<(FindingKind, Option<String>, bool)> {
    let mut out: Vec<_> = report
        .findings
        .iter()
        .map(|f| (f.kind, f.tenant.clone(), f.repaired))
        .collect();
    out.sort_by_key(|f| format!("{f:?}"));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_checks_rebuilds_and_sweeps_run_per_keyspace_on_a_cluster() {
    let cluster = cluster();
    let db = Db::with_config(BackendConfig::cluster(cluster.urls())).unwrap();
    seed(&db).await;
    let admin = db.admin();
    let backend = admin.backend().await.unwrap();
    let clean = admin.check_indexes::<Episode>().await.unwrap();
    assert!(clean.findings.is_empty(), "{:?}", clean.findings);
    assert_eq!(
        clean.index_keys,
        3 * 4,
        "class, value set, two zsets per tenant"
    );

    // An orphan in acme's class set, a key of zeta's in acme's value set, and one of zeta's
    // instances missing from zeta's rank index.
    let zeta = db.tenant("zeta").unwrap();
    let zkeys = zeta.query::<Episode>().fetch_keys().await.unwrap();
    let zkey = zkeys[0].redis_key_in(popoto::Layout::Cluster);
    raw(
        &backend,
        &["SADD", "{acme}$Class:Episode", "{acme}Episode:ghost:acme"],
    )
    .await;
    raw(
        &backend,
        &["SADD", "{acme}$KeyF:Episode:project_id:acme", &zkey],
    )
    .await;
    raw(&backend, &["ZREM", "{zeta}$SortF:Episode:rank", &zkey]).await;

    let found = admin.check_indexes::<Episode>().await.unwrap();
    assert_eq!(
        kinds(&found),
        [
            (FindingKind::Misplaced, Some("zeta".into()), false),
            (FindingKind::Missing, Some("zeta".into()), false),
            (FindingKind::Orphan, Some("acme".into()), false),
        ]
    );
    let audit = admin.audit::<Episode>().await.unwrap();
    assert_eq!(audit.isolation_violations().count(), 1);
    let rebuilt = admin.rebuild_indexes::<Episode>().await.unwrap();
    assert!(
        rebuilt.findings.iter().all(|f| f.repaired),
        "{:?}",
        rebuilt.findings
    );
    assert_eq!(rebuilt.findings.len(), 3);
    let after = admin.check_indexes::<Episode>().await.unwrap();
    assert!(after.findings.is_empty(), "{:?}", after.findings);
    assert_eq!(zeta.query::<Episode>().count().await.unwrap(), 5);
    assert_eq!(
        db.tenant("acme")
            .unwrap()
            .query::<Episode>()
            .count()
            .await
            .unwrap(),
        5
    );

    // A keyspace sweep reaches the tenant's node: destroy leaves none of its keys anywhere,
    // a key of it no index names included, and the others whole.
    raw(
        &backend,
        &[
            "SADD",
            "{acme}$KeyF:Episode:project_id:stray",
            "{acme}Episode:x:acme",
        ],
    )
    .await;
    let acme = TenantId::new("acme").unwrap();
    let models = ModelSet::new().with::<Episode>();
    admin
        .destroy_tenant_with(&acme, &models, Sweep::Keyspace)
        .await
        .unwrap();
    let left = keys_everywhere(&cluster);
    assert!(!left.iter().any(|k| k.starts_with("{acme}")), "{left:?}");
    assert!(left.iter().any(|k| k.starts_with("{zeta}")));
    assert_eq!(admin.query::<Episode>().count().await.unwrap(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_tenant_moves_to_the_cluster_layout_with_progress_and_resumes() {
    let single = TestRedis::start().unwrap();
    let source = single.db().await;
    seed(&source).await;
    let cluster = cluster();
    let target = Db::with_config(BackendConfig::cluster(cluster.urls())).unwrap();
    let models = ModelSet::new().with::<Episode>();
    let (from, to) = (source.admin(), target.admin());

    // A dry run counts every tenant and writes nothing.
    let dry = LayoutRun {
        dry_run: DryRun::Yes,
        ..Default::default()
    };
    let reports = from
        .migrate_layout_all(&models, &to, &dry, |_| {})
        .await
        .unwrap();
    assert_eq!(reports.len(), 3);
    assert!(reports.iter().all(|r| r.instances == 5 && r.dry_run));
    assert!(keys_everywhere(&cluster).is_empty());

    // A run cut after the first tenant, then resumed after it.
    let mut ids: Vec<String> = TENANTS.iter().map(|t| t.to_string()).collect();
    ids.sort();
    let first = TenantId::new(&ids[0]).unwrap();
    from.migrate_tenant_layout(&first, &models, &to, Sweep::Keyspace, DryRun::No)
        .await
        .unwrap();
    let mut seen = Vec::new();
    let resumed = LayoutRun {
        after: Some(first.clone()),
        ..Default::default()
    };
    let reports = from
        .migrate_layout_all(&models, &to, &resumed, |p| {
            seen.push((p.done, p.total, p.report.tenant.clone()))
        })
        .await
        .unwrap();
    assert_eq!(
        seen,
        [(1, 2, ids[1].clone()), (2, 2, ids[2].clone())],
        "progress after each tenant, in id order, after the resume point"
    );
    assert_eq!(reports.len(), 2);

    // Everything arrived: the same rows through every tenant and across tenants.
    for t in TENANTS {
        let mut a = source
            .tenant(t)
            .unwrap()
            .query::<Episode>()
            .fetch()
            .await
            .unwrap();
        let mut b = target
            .tenant(t)
            .unwrap()
            .query::<Episode>()
            .fetch()
            .await
            .unwrap();
        a.sort_by_key(|e| e.rank);
        b.sort_by_key(|e| e.rank);
        assert_eq!(a, b, "{t}");
    }
    assert_eq!(
        ranks(
            &to.query::<Episode>()
                .order_by(Episode::rank())
                .fetch()
                .await
                .unwrap()
        ),
        (0..15).collect::<Vec<_>>()
    );
    let check = to.check_indexes::<Episode>().await.unwrap();
    assert!(check.findings.is_empty(), "{:?}", check.findings);

    // Running it all again changes nothing (idempotent imports).
    let before = keys_everywhere(&cluster);
    from.migrate_layout_all(&models, &to, &LayoutRun::default(), |_| {})
        .await
        .unwrap();
    assert_eq!(keys_everywhere(&cluster), before);
}
