//! Key-field lookups (`starts_with`, `ends_with`, `contains`) and client-side order against a
//! private redis-server: lookups scan the tenant's own set with an escaped pattern (a needle's
//! glob metacharacters match literally), never return a member planted in that set, and
//! combine with OR / NOT; a client-side order sorts every row before paging.

mod support;

use popoto::Filter;
use support::*;

/// Acme's episodes: rank `i % 5`, score `i / 4` (ties), titles `acme-<i>`.
async fn seeded(n: usize) -> (popoto::testing::TestRedis, popoto::Db) {
    let (server, db) = setup().await;
    let t = db.tenant("acme").unwrap_or_else(|e| panic!("{e}"));
    let eps: Vec<Episode> = (0..n)
        .map(|i| episode("", &format!("acme-{i}"), (i / 4) as f64, (i % 5) as i64))
        .collect();
    t.create_many(eps)
        .await
        .unwrap_or_else(|e| panic!("seed: {e}"));
    (server, db)
}

fn titles(rows: &[Episode]) -> Vec<String> {
    rows.iter().map(|e| e.title.clone()).collect()
}

#[tokio::test]
async fn key_lookups_scan_only_the_tenants_set_and_globs_do_not_widen() {
    let (server, db) = setup().await;
    let skus = [
        "a*b",
        "a*c",
        "ab",
        "axb",
        "a?c",
        "[x]1",
        "x:y-1",
        "ends*",
        "mid[dle]x",
    ];
    for (tenant, prefix) in [("acme", ""), ("globex", "g")] {
        let t = db.tenant(tenant).unwrap();
        let items: Vec<Item> = skus
            .iter()
            .map(|s| Item {
                sku: format!("{prefix}{s}"),
                region: "eu".into(),
                ..Default::default()
            })
            .collect();
        t.create_many(items).await.unwrap();
    }
    // Globex also has an "a*" sku: acme's lookups must not see it.
    db.tenant("globex")
        .unwrap()
        .create(Item {
            sku: "a*zz".into(),
            region: "eu".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let acme = db.tenant("acme").unwrap();
    let skus_of = |f: Filter<Item>| {
        let acme = acme.clone();
        async move {
            let mut s: Vec<String> = acme
                .query::<Item>()
                .filter(f)
                .fetch()
                .await
                .unwrap()
                .into_iter()
                .map(|i| i.sku)
                .collect();
            s.sort();
            s
        }
    };
    assert_eq!(skus_of(Item::sku().starts_with("a*")).await, ["a*b", "a*c"]);
    assert_eq!(skus_of(Item::sku().starts_with("a?")).await, ["a?c"]);
    assert_eq!(skus_of(Item::sku().starts_with("[x]")).await, ["[x]1"]);
    assert_eq!(skus_of(Item::sku().ends_with("-1")).await, ["x:y-1"]);
    assert_eq!(skus_of(Item::sku().ends_with("*b")).await, ["a*b"]);
    assert_eq!(skus_of(Item::sku().contains(":y")).await, ["x:y-1"]);
    assert_eq!(skus_of(Item::sku().contains("[dle]")).await, ["mid[dle]x"]);
    assert_eq!(
        skus_of(Item::sku().contains("*")).await,
        ["a*b", "a*c", "ends*"]
    );
    assert_eq!(
        skus_of(Item::sku().starts_with("g")).await,
        Vec::<String>::new()
    );
    // Combined with OR / NOT and other filters.
    assert_eq!(
        skus_of(Item::sku().starts_with("a*") | Item::sku().ends_with("1")).await,
        ["[x]1", "a*b", "a*c", "x:y-1"]
    );
    assert_eq!(
        skus_of(Item::sku().starts_with("a") & !Item::sku().contains("*")).await,
        ["a?c", "ab", "axb"]
    );
    // The scan reads acme's own set only.
    let before = calls(&server, "sscan");
    assert_eq!(
        acme.query::<Item>()
            .filter(Item::sku().starts_with("a"))
            .count()
            .await
            .unwrap(),
        5
    );
    assert_eq!(calls(&server, "sscan") - before, 1);
    // A globex key planted in acme's set is not returned, even when it matches.
    let planted = Item::key_of("globex", "a*zz").redis_key();
    raw_cmd::<i64>(
        &server,
        redis::cmd("SADD")
            .arg("$KeyF:Item:tenant:acme")
            .arg(&planted),
    );
    assert_eq!(skus_of(Item::sku().starts_with("a*")).await, ["a*b", "a*c"]);
    assert_eq!(
        acme.query::<Item>()
            .filter(Item::sku().starts_with("a*"))
            .count()
            .await
            .unwrap(),
        2
    );
}

#[tokio::test]
async fn client_order_sorts_every_row_then_pages() {
    let (_server, db) = seeded(12).await;
    let acme = db.tenant("acme").unwrap();
    let rows = acme
        .query::<Episode>()
        .order_by_client_desc(|e| e.title.clone())
        .limit(3)
        .fetch()
        .await
        .unwrap();
    assert_eq!(titles(&rows), ["acme-9", "acme-8", "acme-7"]);
    // Ties keep the index order (here the score order).
    let by_rank = acme
        .query::<Episode>()
        .order_by(Episode::score())
        .order_by_client(|e| e.rank)
        .offset(1)
        .limit(3)
        .fetch()
        .await
        .unwrap();
    assert_eq!(titles(&by_rank), ["acme-5", "acme-10", "acme-1"]);
    let keys = acme
        .query::<Episode>()
        .order_by_client(|e| e.title.clone())
        .limit(2)
        .fetch_keys()
        .await
        .unwrap();
    assert_eq!(keys.len(), 2);
}
