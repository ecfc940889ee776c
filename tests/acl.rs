//! Per-tenant ACL users under the cluster layout: a tenant `Db` connected as its tenant's user
//! runs every tenant operation, and cannot read, list, change or destroy another tenant's keys,
//! whatever raw command or script it tries.

mod support;

use popoto::testing::TestRedis;
use popoto::Layout;
use popoto::{BackendConfig, Db, Error, TenantId};
use support::{Episode, Memory};

fn tenant(id: &str) -> TenantId {
    TenantId::new(id).unwrap_or_else(|e| panic!("{e}"))
}

/// A `Db` on `server` with the cluster layout, connected as `user` (`None`: the default user).
fn db_as(server: &TestRedis, user: Option<(&str, &str)>) -> Db {
    let url = match user {
        None => server.url().to_owned(),
        Some((name, pw)) => server
            .url()
            .replacen("redis://", &format!("redis://{name}:{pw}@"), 1),
    };
    Db::with_config(BackendConfig::new(url).with_layout(Layout::Cluster))
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Every key of the server with its type, as the default user sees it.
fn keys_of(server: &TestRedis, prefix: &str) -> Vec<String> {
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query(&mut server.raw())
        .unwrap_or_else(|e| panic!("{e}"));
    keys.sort();
    keys
}

/// Every key under `prefix` with its `DUMP`, as the default user sees them.
fn dumps_of(server: &TestRedis, prefix: &str) -> Vec<(String, String)> {
    keys_of(server, prefix)
        .into_iter()
        .map(|k| {
            let dump: Vec<u8> = redis::cmd("DUMP")
                .arg(&k)
                .query(&mut server.raw())
                .unwrap_or_else(|e| panic!("{e}"));
            (k, format!("{dump:?}"))
        })
        .collect()
}

#[tokio::test]
async fn a_tenant_user_reaches_its_own_keys_and_nothing_else() {
    let server = TestRedis::start().unwrap_or_else(|e| panic!("{e}"));
    let root = db_as(&server, None);
    // Another tenant's data, written by the operator.
    let beta = root.tenant("beta").unwrap();
    let (beta_key, _) = beta
        .create_keyed(Episode {
            title: "secret".into(),
            score: 1.0,
            ..Default::default()
        })
        .await
        .unwrap();
    let beta_before = dumps_of(&server, "{beta}");
    assert!(beta_before.len() >= 3, "{beta_before:?}");
    let user = root
        .admin()
        .create_tenant_user(&tenant("acme"), "acme-pw")
        .await
        .unwrap();
    assert_eq!(user.username, "popoto-tenant-acme");

    // The tenant's own operations all run as its user.
    let acme_db = db_as(&server, Some((&user.username, "acme-pw")));
    let acme = acme_db.tenant("acme").unwrap();
    let (key, mut ep) = acme
        .create_keyed(Episode {
            title: "mine".into(),
            score: 2.0,
            ..Default::default()
        })
        .await
        .unwrap();
    ep.score = 3.0;
    acme.save(&ep).await.unwrap();
    acme.create_many(
        (0..5)
            .map(|i| Episode {
                title: format!("b{i}"),
                score: f64::from(i),
                ..Default::default()
            })
            .collect(),
    )
    .await
    .unwrap();
    let top = acme
        .query::<Episode>()
        .filter(Episode::score().gte(3.0))
        .order_by_desc(Episode::score())
        .fetch()
        .await
        .unwrap();
    assert_eq!(top.len(), 3, "{top:?}");
    assert_eq!(acme.query::<Episode>().count().await.unwrap(), 6);
    assert!(acme
        .update(&key, |e| e.title = "renamed".into())
        .await
        .unwrap()
        .is_some());
    let m = acme
        .create(Memory {
            key: "m".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    acme.confidence(&m, Memory::certainty())
        .unwrap()
        .update(0.8)
        .await
        .unwrap();
    assert!(acme.delete(&ep).await.unwrap());
    // Even a session of another tenant, opened on the user's Db, is refused by Redis.
    assert!(matches!(
        acme_db.tenant("beta").unwrap().get(&beta_key).await,
        Err(Error::Redis { .. })
    ));

    // Raw commands as the tenant's user: keyspace-wide ones, another tenant's keys, scripts
    // touching them, data management: every one refused by Redis.
    let beta_instance = beta_key.redis_key_in(Layout::Cluster);
    let mut conn = redis::Client::open(server.url().replacen(
        "redis://",
        "redis://popoto-tenant-acme:acme-pw@",
        1,
    ))
    .and_then(|c| c.get_connection())
    .unwrap_or_else(|e| panic!("{e}"));
    let attempts: Vec<redis::Cmd> = vec![
        redis::cmd("KEYS").arg("*").clone(),
        redis::cmd("SCAN").arg(0).clone(),
        redis::cmd("RANDOMKEY").clone(),
        redis::cmd("FLUSHALL").clone(),
        redis::cmd("FLUSHDB").clone(),
        redis::cmd("SWAPDB").arg(0).arg(1).clone(),
        redis::cmd("HGETALL").arg(&beta_instance).clone(),
        redis::cmd("DEL").arg(&beta_instance).clone(),
        redis::cmd("SMEMBERS").arg("{beta}$Class:Episode").clone(),
        redis::cmd("EXISTS").arg(&beta_instance).clone(),
        redis::cmd("TYPE").arg(&beta_instance).clone(),
        redis::cmd("RENAME")
            .arg(&beta_instance)
            .arg("{acme}stolen")
            .clone(),
        redis::cmd("COPY")
            .arg(&beta_instance)
            .arg("{acme}stolen")
            .clone(),
        redis::cmd("MOVE").arg("{acme}x").arg(1).clone(),
        redis::cmd("DUMP").arg(&beta_instance).clone(),
        redis::cmd("OBJECT")
            .arg("ENCODING")
            .arg(&beta_instance)
            .clone(),
        redis::cmd("EVAL")
            .arg("return redis.call('HGETALL', KEYS[1])")
            .arg(1)
            .arg(&beta_instance)
            .clone(),
        // A script declaring its own key and touching another's.
        redis::cmd("EVAL")
            .arg("return redis.call('DEL', ARGV[1])")
            .arg(1)
            .arg("{acme}x")
            .arg(&beta_instance)
            .clone(),
        redis::cmd("SCRIPT").arg("FLUSH").clone(),
        redis::cmd("FUNCTION").arg("FLUSH").clone(),
        redis::cmd("CONFIG").arg("GET").arg("*").clone(),
        redis::cmd("ACL").arg("LIST").clone(),
        redis::cmd("CLIENT").arg("LIST").clone(),
        redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("normal")
            .clone(),
        redis::cmd("PUBLISH")
            .arg("$PopotoCatalog:changes")
            .arg("acme")
            .clone(),
        redis::cmd("SHUTDOWN").clone(),
    ];
    for cmd in &attempts {
        match cmd.query::<redis::Value>(&mut conn) {
            // Redis refuses a command with NOPERM, a script's command with the script error.
            Err(e) => assert!(
                e.code() == Some("NOPERM")
                    || e.to_string().contains("user executing the script can't"),
                "{cmd:?}: {e}"
            ),
            Ok(v) => panic!("{cmd:?} was allowed: {v:?}"),
        }
    }
    // The tenant's own keys stay reachable raw.
    let own: i64 = redis::cmd("SCARD")
        .arg("{acme}$Class:Episode")
        .query(&mut conn)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(own, 5);

    // The other tenant's data is exactly as it was.
    let beta_after = dumps_of(&server, "{beta}");
    assert_eq!(beta_after, beta_before);

    // Deleted, the user can no longer connect.
    assert!(root
        .admin()
        .delete_tenant_user(&tenant("acme"))
        .await
        .unwrap());
    let fresh = redis::Client::open(server.url().replacen(
        "redis://",
        "redis://popoto-tenant-acme:acme-pw@",
        1,
    ))
    .and_then(|c| c.get_connection());
    assert!(fresh.is_err());
}

#[tokio::test]
async fn popotos_layout_has_no_tenant_prefix_to_confine_a_user_to() {
    let server = TestRedis::start().unwrap_or_else(|e| panic!("{e}"));
    let db = Db::connect(server.url()).await.unwrap();
    match db.admin().create_tenant_user(&tenant("acme"), "pw").await {
        Err(Error::Layout { layout, .. }) => assert_eq!(layout, Layout::Popoto),
        other => panic!("expected a layout refusal, got {other:?}"),
    }
    let users: Vec<String> = redis::cmd("ACL")
        .arg("USERS")
        .query(&mut server.raw())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(users, ["default"]);
}
