//! Expiry against the real Python popoto 1.10.1 (`tests/interop/expiry.py`): popoto's
//! `Meta.ttl` and `_expire_at` are the hash's own TTL, which the crate reads and writes the same
//! way; the crate's expiry sets are extra keys popoto never reads; and the index entries popoto
//! leaves behind when its instances expire are removed by the crate's reads that meet them.

#[allow(dead_code)]
mod interop_support;
mod support;

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use interop_support::{parse_json, run_script};
use popoto::testing::TestRedis;
use popoto::Model;
use serde_json::{json, Value as Json};
use support::{all_keys, dump, raw_cmd, setup, smembers, zrange};

/// `Login` of expiry.py: `Meta.ttl = 3600`.
#[derive(Model, Debug, Clone, PartialEq, Default)]
#[popoto(ttl = 3600)]
struct Login {
    #[popoto(key, tenant)]
    org: String,
    #[popoto(key)]
    id: String,
    #[popoto(sorted, partition_by = "org")]
    at: i64,
}

/// `Invite` of expiry.py, expiring at a time of its own.
#[derive(Model, Debug, Clone, PartialEq, Default)]
struct Invite {
    #[popoto(key, tenant)]
    org: String,
    #[popoto(key)]
    email: String,
    #[popoto(sorted, partition_by = "org")]
    sent: i64,
    #[popoto(expire_at)]
    expires: Option<DateTime<Utc>>,
}

fn server_millis(server: &TestRedis) -> i64 {
    let (s, us): (i64, i64) = raw_cmd(server, &redis::cmd("TIME"));
    s * 1000 + us / 1000
}

fn pexpiretime(server: &TestRedis, key: &str) -> i64 {
    raw_cmd(server, redis::cmd("PEXPIRETIME").arg(key))
}

/// The logins and invites both sides write: `expire_at` in whole seconds (popoto's EXPIREAT).
fn data(soon_s: i64, later_s: i64) -> Json {
    json!({
        "logins": [
            {"org": "acme", "id": "l1", "at": 1},
            {"org": "acme", "id": "l2", "at": 2},
            {"org": "globex", "id": "l1", "at": 3},
        ],
        "invites": [
            {"org": "acme", "email": "a@x.io", "sent": 1, "expire_at": soon_s},
            {"org": "acme", "email": "b@x.io", "sent": 2, "expire_at": later_s},
            {"org": "globex", "email": "a@x.io", "sent": 3, "expire_at": soon_s},
        ]
    })
}

fn rust_write_args(doc: &Json) -> (Vec<Login>, Vec<Invite>) {
    let s = |v: &Json, k: &str| v[k].as_str().unwrap_or_default().to_owned();
    let n = |v: &Json, k: &str| v[k].as_i64().unwrap_or_default();
    let logins = doc["logins"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| Login {
            org: s(v, "org"),
            id: s(v, "id"),
            at: n(v, "at"),
        })
        .collect();
    let invites = doc["invites"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| Invite {
            org: s(v, "org"),
            email: s(v, "email"),
            sent: n(v, "sent"),
            expires: DateTime::from_timestamp(n(v, "expire_at"), 0),
        })
        .collect();
    (logins, invites)
}

/// The database without the crate's expiry sets: what popoto's layout holds.
fn popoto_layout(server: &TestRedis) -> std::collections::BTreeMap<String, String> {
    dump(server)
        .into_iter()
        .filter(|(k, _)| !k.starts_with("zset $ExpireF:"))
        .collect()
}

#[tokio::test]
async fn the_same_expiring_data_has_popotos_layout_and_ttls_from_both_sides() {
    let (py_server, _py_db) = setup().await;
    let (rs_server, rs_db) = setup().await;
    let now_s = server_millis(&py_server) / 1000;
    let doc = data(now_s + 7200, now_s + 7300);
    let keys = parse_json(&run_script(
        "expiry.py",
        &["write"],
        Some(py_server.url()),
        &doc.to_string(),
    ));
    let (logins, invites) = rust_write_args(&doc);
    for l in logins {
        rs_db.tenant(&l.org).unwrap().create(l).await.unwrap();
    }
    for i in invites {
        rs_db.tenant(&i.org).unwrap().create(i).await.unwrap();
    }
    // Byte for byte popoto's keys, plus the crate's expiry sets.
    assert_eq!(popoto_layout(&rs_server), popoto_layout(&py_server));
    assert!(all_keys(&py_server)
        .iter()
        .all(|k| !k.starts_with("$ExpireF")));
    assert_eq!(zrange(&rs_server, "$ExpireF:Login:acme").len(), 2);
    // The same TTLs: Meta.ttl's EXPIRE 3600 and _expire_at's EXPIREAT, on both sides.
    for key in keys["keys"].as_array().into_iter().flatten() {
        let key = key.as_str().unwrap_or_default();
        let (py, rs) = (pexpiretime(&py_server, key), pexpiretime(&rs_server, key));
        if key.starts_with("Login:") {
            assert!((py - rs).abs() < 60_000, "{key}: popoto {py}, crate {rs}");
            assert!(py > server_millis(&py_server) + 3_500_000, "{key}: {py}");
        } else {
            assert_eq!(py, rs, "{key}");
        }
    }
    // popoto reads what the crate wrote, TTLs included.
    let read = parse_json(&run_script(
        "expiry.py",
        &["read"],
        Some(rs_server.url()),
        &json!({"orgs": ["acme", "globex"]}).to_string(),
    ));
    let logins = read["logins"].as_array().cloned().unwrap_or_default();
    assert_eq!(logins.len(), 3, "{read}");
    for l in &logins {
        let pttl = l["pttl"].as_i64().unwrap_or_default();
        assert!((3_500_000..=3_600_000).contains(&pttl), "{l}");
    }
    assert_eq!(read["invites"].as_array().map(Vec::len), Some(3), "{read}");
}

#[tokio::test]
async fn what_popotos_expired_instances_leave_is_removed_by_the_reads_that_meet_it() {
    let (server, db) = setup().await;
    // The oracle's venv first (built on a first run): the expiry below is seconds away.
    interop_support::python();
    let now_s = server_millis(&server) / 1000;
    let soon_s = now_s + 3;
    run_script(
        "expiry.py",
        &["write"],
        Some(server.url()),
        &data(soon_s, now_s + 7200).to_string(),
    );
    let acme = db.tenant("acme").unwrap();
    assert_eq!(acme.query::<Invite>().count().await.unwrap(), 2);
    assert_eq!(acme.query::<Login>().count().await.unwrap(), 2);
    // Wait on the server's clock (no key read) until popoto's EXPIREAT has passed.
    let deadline = Instant::now() + Duration::from_secs(10);
    while server_millis(&server) <= soon_s * 1000 {
        assert!(
            Instant::now() < deadline,
            "the server clock did not pass {soon_s}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // popoto left the expired instances in its indexes (no expiry set knows them)...
    assert_eq!(smembers(&server, "$KeyF:Invite:org:acme").len(), 2);
    // ...no read returns them, and the reads that met them removed their entries.
    let rows = acme.query::<Invite>().fetch().await.unwrap();
    assert_eq!(
        rows.iter().map(|r| r.email.as_str()).collect::<Vec<_>>(),
        ["b@x.io"]
    );
    let globex = db.tenant("globex").unwrap();
    assert_eq!(globex.query::<Invite>().count().await.unwrap(), 0);
    assert_eq!(smembers(&server, "$KeyF:Invite:org:acme").len(), 1);
    assert!(smembers(&server, "$KeyF:Invite:org:globex").is_empty());
    assert_eq!(zrange(&server, "$SortF:Invite:sent:acme").len(), 1);
    let report = db.admin().audit::<Invite>().await.unwrap();
    assert!(report.is_clean(), "{report}");
    // popoto reads the same survivors.
    let read = parse_json(&run_script(
        "expiry.py",
        &["read"],
        Some(server.url()),
        &json!({"orgs": ["acme", "globex"]}).to_string(),
    ));
    assert_eq!(read["invites"].as_array().map(Vec::len), Some(1), "{read}");
}
