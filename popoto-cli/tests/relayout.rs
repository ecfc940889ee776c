//! `popoto relayout` against a real server and a real local cluster: a dry run writes nothing,
//! a run moves every tenant of the shared server into the cluster layout (reported per tenant
//! with `--json`) and then the application's shared instances with their change feeds and the
//! tenants' grants, `--after` resumes after a tenant (the shared instances already there are
//! left as they are), and the generic binary refuses it.

mod common;

use common::*;
use popoto::shared::{Access, Merge, Patch, SharedId};
use popoto::testing::TestCluster;
use popoto::{BackendConfig, Db, Model, ModelSet};

/// An application's shared model: a board every tenant may be granted.
#[derive(Model, Debug, Clone, PartialEq, Default)]
#[popoto(shared)]
struct Board {
    title: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relayout_moves_every_tenant_and_the_shared_instances_into_the_cluster_layout() {
    let server = start();
    let url = server.url();
    for t in ["acme", "globex"] {
        app_ok(&["--url", url, "tenants", "create", t]).await;
        let s = catalog_db(url).tenant(t).unwrap();
        for i in 0..3 {
            s.create(Note {
                id: format!("n{i}"),
                text: format!("{t} {i}"),
                ..Default::default()
            })
            .await
            .unwrap();
        }
    }
    let source = Db::connect(url).await.unwrap();
    let host = source.admin().shared();
    let board = SharedId::new("roadmap").unwrap();
    let title = |t: &str| Board { title: t.into() };
    host.share_as(&board, &title("draft"), Merge::LastWriteWins)
        .await
        .unwrap();
    let acme = popoto::TenantId::new("acme").unwrap();
    host.subscribe::<Board>(&acme, &board, Access::Write)
        .await
        .unwrap();
    let patch = Patch::all(&title("final")).unwrap();
    let session = source.tenant("acme").unwrap();
    session
        .shared::<Board>()
        .patch(&board, &patch)
        .await
        .unwrap();

    let models = ModelSet::new().with::<Note>().with::<Board>();
    let cluster = TestCluster::start(3).unwrap_or_else(|e| panic!("{e}"));
    let seeds = cluster.urls().join(",");
    let base = ["--url", url, "relayout", "--to-cluster", seeds.as_str()];

    let (code, _, err) = app_with(&models, &[&base[..], &["--dry-run"]].concat()).await;
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("would move 2 tenants: 6 instances"), "{err}");
    assert!(
        err.contains("would move shared instances: 1 instances (0 already there), 2 change events, 0 dead letters, 1 grants"),
        "{err}"
    );
    assert!(cluster.keys("*").unwrap().is_empty());

    let (code, out, err) = app_with(&models, &[&base[..], &["--json"]].concat()).await;
    assert_eq!(code, 0, "{err}");
    let reports = json(&text(&out));
    let tenants: Vec<&str> = reports["tenants"]
        .as_array()
        .unwrap_or_else(|| panic!("{reports}"))
        .iter()
        .filter_map(|r| r["tenant"].as_str())
        .collect();
    assert_eq!(tenants, ["acme", "globex"]);
    assert_eq!(reports["tenants"][0]["to"], "cluster");
    let shared = &reports["shared"];
    assert_eq!(
        (&shared["instances"], &shared["events"], &shared["grants"]),
        (&1.into(), &2.into(), &1.into()),
        "{reports}"
    );
    let target = Db::with_config(BackendConfig::cluster(cluster.urls())).unwrap();
    for t in ["acme", "globex"] {
        let mut notes = target
            .tenant(t)
            .unwrap()
            .query::<Note>()
            .fetch()
            .await
            .unwrap();
        notes.sort_by(|a, b| a.id.cmp(&b.id));
        let texts: Vec<String> = notes.into_iter().map(|n| n.text).collect();
        assert_eq!(texts, [0, 1, 2].map(|i| format!("{t} {i}")), "{t}");
    }
    // The tenant reads its shared board on the cluster, through its grant.
    let moved = target.tenant("acme").unwrap();
    let read = moved.shared::<Board>().get(&board).await.unwrap();
    assert_eq!((read.value, read.version), (title("final"), 2));
    let listed = moved.shared::<Board>().list().await.unwrap();
    assert_eq!(listed.len(), 1);

    let (code, _, err) = app_with(&models, &[&base[..], &["--after", "acme"]].concat()).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("moved 1 tenants") && err.contains("(last: globex)"),
        "{err}"
    );
    assert!(
        err.contains("moved shared instances: 0 instances (1 already there)"),
        "{err}"
    );

    // The generic binary knows no model: refused as a usage error.
    let out = popoto(Some(url), &["relayout", "--to-cluster", seeds.as_str()]);
    assert_eq!(common::code(&out), 2, "{}", text(&out.stderr));
}
