//! Fault helpers: killing every client when a probe reaches a count, and checking that each
//! instance is all or nothing.

use popoto::testing::TestRedis;

use super::Item;

/// `CLIENT KILL TYPE normal SKIPME yes` from a fresh raw connection: every client but itself.
pub fn kill_clients(url: &str) -> u64 {
    let mut conn = redis::Client::open(url)
        .and_then(|c| c.get_connection())
        .unwrap();
    kill_others(&mut conn)
}

/// `CLIENT KILL TYPE normal SKIPME yes` on `conn`: every client but `conn`; how many.
pub fn kill_others(conn: &mut redis::Connection) -> u64 {
    redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .arg("SKIPME")
        .arg("yes")
        .query(conn)
        .unwrap_or_else(|e| panic!("CLIENT KILL: {e}"))
}

/// Spawns a thread that polls `probe` (a raw command returning a count) until it reaches
/// `threshold`, then kills every client; bounded in polls. Returns the count seen at the kill.
pub fn killer(
    url: String,
    probe: redis::Cmd,
    threshold: u64,
) -> std::thread::JoinHandle<Option<u64>> {
    std::thread::spawn(move || {
        let mut conn = redis::Client::open(url.as_str())
            .and_then(|c| c.get_connection())
            .unwrap();
        for _ in 0..2_000_000 {
            let n: u64 = probe
                .query(&mut conn)
                .unwrap_or_else(|e| panic!("the killer's probe on {url}: {e}"));
            if n >= threshold {
                kill_clients(&url);
                return Some(n);
            }
        }
        None
    })
}

/// Each instance's key and the commands probing its hash and each of its index entries.
pub fn item_probes(it: &Item) -> (String, Vec<redis::Cmd>) {
    let key = Item::key_of(it.tenant.clone(), it.sku.clone()).redis_key();
    let sku_set = format!(
        "$UniqueKeyF:Item:sku:{}",
        popoto_core::keys::escape(&it.sku)
    );
    let zset = format!("$SortF:Item:level:acme:{}", it.region);
    let probes = vec![
        redis::cmd("EXISTS").arg(&key).clone(),
        redis::cmd("SISMEMBER").arg("$Class:Item").arg(&key).clone(),
        redis::cmd("SISMEMBER")
            .arg("$KeyF:Item:tenant:acme")
            .arg(&key)
            .clone(),
        redis::cmd("SISMEMBER").arg(sku_set).arg(&key).clone(),
        redis::cmd("ZSCORE").arg(zset).arg(&key).clone(),
    ];
    (key, probes)
}

/// For every instance: its hash exists iff each of its index entries exists. Returns how many
/// exist.
pub fn all_or_nothing<T>(
    server: &TestRedis,
    values: &[T],
    probes: fn(&T) -> (String, Vec<redis::Cmd>),
) -> usize {
    let mut conn = server.raw();
    let mut present = 0;
    for chunk in values.chunks(2000) {
        let mut pipe = redis::pipe();
        let mut shape = Vec::with_capacity(chunk.len());
        for v in chunk {
            let (key, cmds) = probes(v);
            shape.push((key, cmds.len()));
            for c in cmds {
                pipe.add_command(c);
            }
        }
        let replies: Vec<redis::Value> = pipe.query(&mut conn).unwrap();
        let mut it = replies.into_iter();
        for (key, n) in shape {
            let flags: Vec<bool> = it
                .by_ref()
                .take(n)
                .map(|v| !matches!(v, redis::Value::Nil | redis::Value::Int(0)))
                .collect();
            assert!(
                flags.iter().all(|f| *f == flags[0]),
                "{key} is half written: {flags:?}"
            );
            present += usize::from(flags[0]);
        }
    }
    present
}
