//! `popoto check` end to end against real redis-servers: the index check of the application's
//! models (its binary) and the check from popoto's keys alone (the generic binary), findings
//! per tenant, exit code 3 on any, JSON reports.

mod common;

use common::*;

/// A `Db` placing tenants by the catalog on `url` (reading it on every request).
#[tokio::test]
async fn check_reports_index_findings_per_tenant_with_exit_3() {
    let server = start();
    let url = server.url();
    for (t, p) in [("acme", "db:2"), ("globex", "shared")] {
        app_ok(&["--url", url, "tenants", "create", t, "--placement", p]).await;
    }
    let db = catalog_db(url);
    for t in ["acme", "globex"] {
        db.tenant(t)
            .unwrap_or_else(|e| panic!("{e}"))
            .create(Note {
                id: "n1".into(),
                text: "x".into(),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("create: {e}"));
    }
    // Clean: exit 0, nothing on stdout.
    let (code, out, err) = app(&["--url", url, "check"]).await;
    assert_eq!((code, out.as_slice()), (0, &b""[..]), "{err}");
    // An orphan of acme in its database: acme failed, exit 3, the finding on stdout.
    plant(&server, 2, "$Class:Note", "Note:ghost:acme");
    let (code, out, err) = app(&["--url", url, "check"]).await;
    assert_eq!(code, popoto_cli::EXIT_PARTIAL, "{err}");
    let table = text(&out);
    assert!(
        table.contains(&format!(
            "{}\tNote\torphan index entry: Note:ghost:acme",
            server.url_db(2)
        )),
        "{table}"
    );
    assert!(err.contains("FAILED acme"), "{err}");
    let (code, out, err) = app(&["--url", url, "--json", "check"]).await;
    assert_eq!(code, popoto_cli::EXIT_PARTIAL, "{err}");
    let run = json(&text(&out));
    assert_eq!(run["report"]["failed"], 1, "{run}");
    assert_eq!(run["report"]["ok"], 1, "{run}");
    let finding = &run["backends"][1]["reports"][0]["findings"][0];
    assert_eq!(finding["kind"], "orphan", "{run}");
    assert_eq!(finding["tenant"], "acme", "{run}");
    // Only globex's backend: clean.
    let (code, _, err) = app(&["--url", url, "check", "--tenant", "globex"]).await;
    assert_eq!(code, 0, "{err}");
}

#[tokio::test]
async fn the_generic_check_finds_orphan_and_foreign_entries_from_the_keys_alone() {
    let server = start();
    let url = server.url();
    for (t, p) in [("acme", "db:2"), ("globex", "shared")] {
        expect(Some(url), &["tenants", "create", t, "--placement", p], 0);
    }
    let db = catalog_db(url);
    for t in ["acme", "globex"] {
        db.tenant(t)
            .unwrap_or_else(|e| panic!("{e}"))
            .create(Score {
                id: "s1".into(),
                points: 2.0,
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("create: {e}"));
    }
    let clean = json(&expect(Some(url), &["check", "--json"], 0));
    assert_eq!(clean["report"]["ok"], 2, "{clean}");
    // Entries of every index key were checked: $Class, $KeyF and $SortF on both backends.
    let entries: u64 = clean["backends"]
        .as_array()
        .unwrap_or_else(|| panic!("{clean}"))
        .iter()
        .filter_map(|b| b["reports"][0]["index_entries"].as_u64())
        .sum();
    assert!(entries >= 6, "{clean}");

    // An orphan in acme's own database is acme's; a foreign member on the shared keyspace
    // belongs to no tenant the keys can name: the backend fails.
    let mut acme_db = redis::Client::open(server.url_db(2))
        .and_then(|c| c.get_connection())
        .unwrap_or_else(|e| panic!("{e}"));
    redis::cmd("ZADD")
        .arg("$SortF:Score:points:acme")
        .arg(1)
        .arg("Score:ghost:acme")
        .exec(&mut acme_db)
        .unwrap_or_else(|e| panic!("ZADD: {e}"));
    redis::cmd("SADD")
        .arg("$Class:Score")
        .arg("Note:n1:globex")
        .exec(&mut server.raw())
        .unwrap_or_else(|e| panic!("SADD: {e}"));
    let o = popoto(Some(url), &["check", "--json"]);
    assert_eq!(code(&o), 3, "{}", text(&o.stderr));
    let run = json(&text(&o.stdout));
    assert_eq!(run["report"]["failed"], 1, "{run}");
    let acme = run["report"]["tenants"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["tenant"] == "acme"))
        .unwrap_or_else(|| panic!("{run}"));
    assert_eq!(acme["outcome"]["status"], "failed", "{run}");
    assert!(acme["outcome"]["error"]
        .as_str()
        .is_some_and(|e| e.contains("Score:ghost:acme")));
    let mut kinds: Vec<String> = run["backends"]
        .as_array()
        .unwrap_or_else(|| panic!("{run}"))
        .iter()
        .flat_map(|b| {
            b["reports"][0]["findings"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|f| f["kind"].as_str().map(str::to_owned))
        .collect();
    kinds.sort();
    assert_eq!(kinds, ["foreign", "orphan"], "{run}");
    assert!(
        text(&o.stderr).contains("FAILED backend"),
        "{}",
        text(&o.stderr)
    );
}
