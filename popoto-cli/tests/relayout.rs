//! `popoto relayout` against a real server and a real local cluster: a dry run writes nothing,
//! a run moves every tenant of the shared server into the cluster layout (reported per tenant
//! with `--json`), `--after` resumes after a tenant, and the generic binary refuses it.

mod common;

use common::*;
use popoto::testing::TestCluster;
use popoto::{BackendConfig, Db};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relayout_moves_every_tenant_into_the_cluster_layout() {
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
    let cluster = TestCluster::start(3).unwrap_or_else(|e| panic!("{e}"));
    let seeds = cluster.urls().join(",");
    let base = ["--url", url, "relayout", "--to-cluster", seeds.as_str()];

    let (code, _, err) = app(&[&base[..], &["--dry-run"]].concat()).await;
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("would move 2 tenants: 6 instances"), "{err}");
    assert!(cluster.keys("*").unwrap().is_empty());

    let out = app_ok(&[&base[..], &["--json"]].concat()).await;
    let reports = json(&text(&out));
    let tenants: Vec<&str> = reports
        .as_array()
        .unwrap_or_else(|| panic!("{reports}"))
        .iter()
        .filter_map(|r| r["tenant"].as_str())
        .collect();
    assert_eq!(tenants, ["acme", "globex"]);
    assert_eq!(reports[0]["to"], "cluster");
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

    let (code, _, err) = app(&[&base[..], &["--after", "acme"]].concat()).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("moved 1 tenants") && err.contains("(last: globex)"),
        "{err}"
    );

    // The generic binary knows no model: refused as a usage error.
    let out = popoto(Some(url), &["relayout", "--to-cluster", seeds.as_str()]);
    assert_eq!(common::code(&out), 2, "{}", text(&out.stderr));
}
