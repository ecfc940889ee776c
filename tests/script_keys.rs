//! Every key a Lua script touches is declared in its KEYS (what Redis Cluster requires of a
//! script, and what the cluster layout builds on). `redis-cli monitor` records the commands the
//! scripts run while the crate's operations go through every script; each command's keys must be
//! among the KEYS of the script call that ran it.

mod support;

#[path = "script_keys_cases/scenarios.rs"]
mod scenarios;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use support::*;

/// `redis-cli monitor` on `server`, killed on drop.
struct Monitor {
    child: Child,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
}

impl Monitor {
    fn start(server: &popoto::testing::TestRedis) -> Monitor {
        let port = server
            .url()
            .rsplit(':')
            .next()
            .and_then(|p| p.split('/').next())
            .unwrap_or_else(|| panic!("no port in {}", server.url()))
            .to_owned();
        let mut child = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &port, "monitor"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("redis-cli monitor: {e}"));
        let stdout = child
            .stdout
            .take()
            .unwrap_or_else(|| panic!("redis-cli monitor has no stdout"));
        let mut lines = BufReader::new(stdout).lines();
        match lines.next() {
            Some(Ok(l)) if l == "OK" => {}
            other => panic!("redis-cli monitor did not start: {other:?}"),
        }
        Monitor { child, lines }
    }

    /// Every line up to the `ECHO` of `marker` sent after the operations.
    fn until(&mut self, marker: &str) -> Vec<String> {
        let mut out = Vec::new();
        for line in self.lines.by_ref() {
            let line = line.unwrap_or_else(|e| panic!("reading redis-cli monitor: {e}"));
            if line.contains("\"ECHO\"") && line.contains(marker) {
                return out;
            }
            out.push(line);
        }
        panic!(
            "redis-cli monitor ended before the marker; read {} lines",
            out.len()
        );
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        if let Err(e) = self.child.kill() {
            eprintln!("killing redis-cli monitor: {e}");
        }
        let _reaped = self.child.wait();
    }
}

/// The quoted arguments of a MONITOR line (redis-cli's escapes kept as they are: keys are only
/// compared with each other).
fn args(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c != '"' {
            continue;
        }
        let mut arg = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    arg.push('\\');
                    if let Some(n) = chars.next() {
                        arg.push(n);
                    }
                }
                '"' => break,
                c => arg.push(c),
            }
        }
        out.push(arg);
    }
    out
}

/// The keys of a command as the scripts use it; a command not listed fails the test, so a new
/// command in a script must say where its keys are.
fn keys_of(cmd: &[String]) -> Vec<String> {
    let name = cmd[0].to_ascii_uppercase();
    let rest = &cmd[1..];
    match name.as_str() {
        "EXISTS" | "DEL" | "SUNION" | "SINTER" => rest.to_vec(),
        // Subcommand, then the key.
        "XGROUP" | "XINFO" => rest.iter().skip(1).take(1).cloned().collect(),
        "TIME" => Vec::new(),
        "RENAME" => rest.iter().take(2).cloned().collect(),
        "HSET" | "HSETNX" | "HGET" | "HMGET" | "HGETALL" | "HDEL" | "HLEN" | "HEXISTS" | "SADD"
        | "SREM" | "SMEMBERS" | "SCARD" | "SISMEMBER" | "ZADD" | "ZREM" | "ZSCORE" | "ZMSCORE"
        | "ZCARD" | "ZRANGEBYSCORE" | "ZRANGE" | "TYPE" | "HINCRBY" | "PEXPIREAT" | "PTTL"
        | "PEXPIRETIME" | "GET" | "INCR" | "HKEYS" | "XADD" | "XTRIM" | "XRANGE" | "XREVRANGE"
        | "XLEN" | "XACK" | "XPENDING" | "ZREMRANGEBYSCORE" | "ZCOUNT" | "ZREVRANGEBYSCORE"
        | "ZREVRANGE" | "ZRANK" | "ZREVRANK" => rest.iter().take(1).cloned().collect(),
        // A channel, not a key.
        "PUBLISH" => Vec::new(),
        // A shared layout migration's staging and landing.
        "EXPIRE" | "PERSIST" | "XSETID" | "XCLAIM" => rest.iter().take(1).cloned().collect(),
        other => panic!("a script runs {other}: add where its keys are to keys_of"),
    }
}

/// Checks every script call in `lines`; returns the script commands seen and the SHA1 of
/// every script called.
fn check(lines: &[String]) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut seen = BTreeSet::new();
    let mut scripts = BTreeSet::new();
    // The call being run: MONITOR shows a script call, then the commands it ran.
    let mut current: Option<(String, BTreeSet<String>)> = None;
    let mut calls = 0;
    for line in lines {
        let a = args(line);
        if a.is_empty() {
            continue;
        }
        if line.contains(" lua]") {
            let Some((call, declared)) = &current else {
                panic!("a script command before any script call: {line}");
            };
            seen.insert(a[0].to_ascii_uppercase());
            for k in keys_of(&a) {
                assert!(
                    declared.contains(&k),
                    "a script touches {k}, which its call does not declare in KEYS\n  call: {call}\n  command: {a:?}"
                );
            }
            continue;
        }
        let name = a[0].to_ascii_uppercase();
        current = if name == "EVAL" || name == "EVALSHA" {
            calls += 1;
            if name == "EVALSHA" {
                scripts.insert(a[1].to_ascii_lowercase());
            }
            let numkeys: usize = a[2]
                .parse()
                .unwrap_or_else(|e| panic!("numkeys of {line}: {e}"));
            Some((line.clone(), a[3..3 + numkeys].iter().cloned().collect()))
        } else {
            None
        };
    }
    assert!(calls >= 10, "only {calls} script calls were seen");
    (seen, scripts)
}

#[tokio::test]
async fn every_script_declares_every_key_it_touches() {
    let (server, db) = setup().await;
    // Every script popoto sends, cached as on a server that ran them: calls go as EVALSHA.
    let every_script = server.load_scripts();
    let mut monitor = Monitor::start(&server);
    let acme = db.tenant("acme").unwrap_or_else(|e| panic!("{e}"));
    // create.lua (generated and given keys), apply.lua (save, move, delete), insert_many.lua
    // (bulk creates and saves), confidence.lua.
    let mut e = acme
        .create(episode("", "a", 1.0, 1))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    e.title = "b".into();
    e.score = 2.0;
    acme.save(&e).await.unwrap_or_else(|e| panic!("{e}"));
    let rows: Vec<Episode> = (0..5)
        .map(|i| episode("", "x", f64::from(i), i64::from(i)))
        .collect();
    let rows = acme
        .create_many(rows)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    acme.save_many(rows).await.unwrap_or_else(|e| panic!("{e}"));
    // select.lua (OR / NOT), project.lua (values), window.lua (cursor pages).
    let either = acme
        .query::<Episode>()
        .filter(Episode::rank().eq(1) | !Episode::score().gte(2.0))
        .count()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(either, 3);
    let titles: Vec<(String,)> = acme
        .query::<Episode>()
        .values((Episode::title(),))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(titles.len(), 6);
    let page = acme
        .query::<Episode>()
        .order_by_desc(Episode::score())
        .page(None, 4)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(page.rows.len(), 4);
    // The next page starts among rows of one score (two at 2.0), which the window read takes
    // along.
    let rest = acme
        .query::<Episode>()
        .order_by_desc(Episode::score())
        .page(page.next.as_ref(), 4)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(rest.rows.len(), 2);
    // Among more rows of one score than that read takes along, window.lua finds the place.
    let ties = db.tenant("ties").unwrap_or_else(|e| panic!("{e}"));
    let tied: Vec<Episode> = (0..70).map(|i| episode("", "t", 5.0, i)).collect();
    ties.create_many(tied)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let first = ties
        .query::<Episode>()
        .order_by(Episode::score())
        .page(None, 10)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let second = ties
        .query::<Episode>()
        .order_by(Episode::score())
        .page(first.next.as_ref(), 10)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(second.rows.len(), 10);
    let items: Vec<Item> = (0..3)
        .map(|i| Item {
            sku: format!("s{i}"),
            region: "eu".into(),
            level: i,
            ..Default::default()
        })
        .collect();
    let items = acme
        .create_many(items)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut moved = items[0].clone();
    moved.region = "us".into();
    acme.save(&moved).await.unwrap_or_else(|e| panic!("{e}"));
    acme.save_many(items[1..].to_vec())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let m = acme
        .create(Memory {
            key: "fact".into(),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    acme.confidence(&m, Memory::certainty())
        .unwrap_or_else(|e| panic!("{e}"))
        .update(0.9)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let renamed = acme
        .move_key(
            &m,
            Memory {
                key: "fact2".into(),
                ..m.clone()
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    acme.delete(&renamed)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // Unique values within a tenant: create.lua's 'V', apply.lua's 'W', insert_many.lua's
    // scoped triples (and their refusals).
    let member = |id: &str, email: &str| Member {
        id: id.repeat(32),
        email: email.into(),
        ..Default::default()
    };
    let ann = acme
        .create(member("a", "ann@x.io"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(acme.create(member("b", "ann@x.io")).await.is_err());
    acme.save(&member("c", "cy@x.io"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(acme.save(&member("d", "ann@x.io")).await.is_err());
    assert!(acme
        .create_many(vec![member("e", "eve@x.io"), member("f", "ann@x.io")])
        .await
        .is_err());
    acme.move_key(
        &ann,
        Member {
            email: "ann2@x.io".into(),
            ..ann.clone()
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    // Versions: apply.lua's 'R' check (refused and passed); update's 'P' and 'S' checks.
    let page = acme
        .create(Page {
            slug: "p".into(),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    acme.save(&page).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(acme.save(&page).await.is_err());
    acme.update(&Page::key_of("acme", "p"), |p| p.body.push('x'))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    acme.update(&Episode::key_of("acme", e.episode_id.clone()), |e| {
        e.title.push('!')
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    // Expiry: create.lua's 'X' (ZADD + PEXPIREAT), apply.lua's EXPIRE and ZRENAME, and
    // sweep.lua after a read meets an expired instance and on demand.
    let ticket = |id: &str, expires| Ticket {
        id: id.into(),
        expires,
        ..Default::default()
    };
    let t1 = acme
        .create(ticket("t1", None))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    acme.save(&ticket(
        "t1",
        Some(chrono::Utc::now() + chrono::Duration::hours(2)),
    ))
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    acme.move_key(&t1, ticket("t2", None))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    acme.create(ticket(
        "gone",
        Some(chrono::Utc::now() - chrono::Duration::hours(1)),
    ))
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(acme.query::<Ticket>().count().await.ok(), Some(1));
    acme.create(ticket(
        "gone",
        Some(chrono::Utc::now() - chrono::Duration::hours(1)),
    ))
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    // A live ticket whose entry says it expired: the sweep reads its TTL (PTTL).
    raw_cmd::<i64>(
        &server,
        redis::cmd("ZADD")
            .arg("$ExpireF:Ticket:acme")
            .arg(1)
            .arg(Ticket::key_of("acme", "t2").redis_key()),
    );
    let swept = acme
        .sweep_expired::<Ticket>()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((swept.swept, swept.rescored), (1, 1));
    assert_eq!(acme.query::<Episode>().count().await.ok(), Some(6));
    assert_eq!(
        acme.query::<Item>()
            .fetch_keys()
            .await
            .map(|k| k.len())
            .ok(),
        Some(3)
    );
    let key = Episode::key_of("acme", e.episode_id.clone());
    assert_eq!(acme.exists(&key).await.ok(), Some(true));
    assert!(acme.delete(&e).await.unwrap_or_else(|e| panic!("{e}")));
    // migrate_page.lua: a legacy unpartitioned zset moved into partitions.
    raw_cmd::<i64>(
        &server,
        redis::cmd("ZADD")
            .arg("$SortF:Episode:score")
            .arg(1)
            .arg(Episode::key_of("acme", "e".repeat(32)).redis_key()),
    );
    db.admin()
        .migrate_sorted_to_partitioned(Episode::score(), popoto::DryRun::No, |_| {})
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // catalog.lua: a tenant created, then suspended (compare-and-set, announced).
    let catalog =
        popoto::Catalog::new(db.admin().backend().await.unwrap_or_else(|e| panic!("{e}")));
    let globex = popoto::TenantId::new("globex").unwrap_or_else(|e| panic!("{e}"));
    catalog
        .create(
            &globex,
            popoto::CatalogPlacement::Shared,
            Default::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    catalog
        .suspend(&globex)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    scenarios::shared_and_feed_scripts(&db).await;
    scenarios::relayout_into(&db).await;
    raw_cmd::<String>(&server, redis::cmd("ECHO").arg("script-keys-done"));
    let lines = monitor.until("script-keys-done");
    let (seen, called) = check(&lines);
    let never: Vec<&&str> = every_script
        .iter()
        .filter(|(_, sha)| !called.contains(*sha))
        .map(|(name, _)| name)
        .collect();
    assert!(
        never.is_empty(),
        "{never:?} never ran, so their keys were never checked"
    );
    for cmd in [
        "HSET",
        "SADD",
        "ZADD",
        "HGET",
        "PEXPIREAT",
        "PEXPIRETIME",
        "EXISTS",
        "PUBLISH",
        "INCR",
        "XADD",
        "XTRIM",
        "XGROUP",
        "XACK",
        "XINFO",
    ] {
        assert!(seen.contains(cmd), "{cmd} never ran in a script: {seen:?}");
    }
}
