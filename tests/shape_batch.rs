//! Group commit of a generated shape's creates: concurrent creates of one model go as the
//! shape's batch form, one run per set of index keys. In a file of its own: its script-cache
//! flusher spins on a core, which would slow the timing-bound kill tests it sat beside.

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use popoto::Error;
use support::{all_keys, calls, episode, hgetall, raw_cmd, setup, smembers, zrange, Episode};

/// Episodes (one generated shape) of three tenants created by 64 tasks while another client
/// flushes the script cache again and again: concurrent creates go as the shape's batch form
/// (fewer script calls than creates), and a batch refused with `NOSCRIPT` is sent again whole.
/// Tenant `bad`'s score zset is a string: each of its creates is refused with `WrongType` and
/// leaves nothing; every other create is written whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shape_batches_of_several_tenants_survive_script_flushes_and_refuse_a_bad_run() {
    let (server, db) = setup().await;
    raw_cmd::<()>(
        &server,
        redis::cmd("SET")
            .arg("$SortF:Episode:score:bad")
            .arg("planted"),
    );
    let before = calls(&server, "evalsha") + calls(&server, "eval");
    let done = Arc::new(AtomicBool::new(false));
    let flusher = {
        let (done, mut conn) = (done.clone(), server.raw());
        std::thread::spawn(move || {
            let mut flushes = 0u64;
            while !done.load(Ordering::Acquire) && flushes < 1_000_000 {
                redis::cmd("SCRIPT").arg("FLUSH").exec(&mut conn).unwrap();
                flushes += 1;
            }
            flushes
        })
    };
    let tasks: Vec<_> = (0..64)
        .map(|t| {
            let db = db.clone();
            tokio::spawn(async move {
                let mut out = Vec::new();
                for j in 0..12usize {
                    let tenant = ["acme", "globex", "bad"][(t + j) % 3];
                    let n = (t * 12 + j) as i64;
                    let ep = episode("", &format!("t{n}"), n as f64 / 1024.0, n);
                    out.push((tenant, db.tenant(tenant).unwrap().create(ep).await));
                }
                out
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.extend(t.await.unwrap());
    }
    done.store(true, Ordering::Release);
    let flushes = flusher.join().unwrap();
    assert!(flushes > 0 && flushes < 1_000_000, "{flushes} flushes");
    let scripts = calls(&server, "evalsha") + calls(&server, "eval") - before;
    assert!(scripts < 768, "{scripts} script calls for 768 creates");

    let mut written = BTreeMap::<&str, usize>::new();
    for (tenant, r) in &outcomes {
        match (r, *tenant) {
            (Ok(e), "acme" | "globex") => {
                *written.entry(tenant).or_default() += 1;
                let key = Episode::key_of(*tenant, e.episode_id.as_str()).redis_key();
                assert!(!hgetall(&server, &key).is_empty(), "{key}");
                assert!(smembers(&server, "$Class:Episode").contains(&key));
                let zset = format!("$SortF:Episode:score:{tenant}");
                assert!(zrange(&server, &zset).contains(&(key.clone(), e.score)));
                assert!(zrange(&server, "$SortF:Episode:rank")
                    .iter()
                    .any(|(m, _)| *m == key));
            }
            (Err(Error::WrongType { key, found, .. }), "bad") => {
                assert_eq!(
                    (key.as_str(), found.as_str()),
                    ("$SortF:Episode:score:bad", "string")
                );
            }
            (r, tenant) => panic!("{tenant}: unexpected {r:?}"),
        }
    }
    assert_eq!(written.values().sum::<usize>(), 512);
    // Tenant `bad` left nothing: no hash, no member of any index.
    assert!(all_keys(&server)
        .iter()
        .all(|k| !k.ends_with(":bad") || k == "$SortF:Episode:score:bad"));
    assert_eq!(smembers(&server, "$Class:Episode").len(), 512);
    assert_eq!(zrange(&server, "$SortF:Episode:rank").len(), 512);
}
