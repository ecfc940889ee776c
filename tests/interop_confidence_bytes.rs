//! Byte equality with the real Python popoto 1.10.1 (`tests/interop/confidence.py ops`, run with
//! the interop harness's Python, `interop_support::python`; missing, the test fails).
//!
//! `popoto_and_rust_write_the_same_bytes`: the same creates (confidence fields left unset or
//! given), updates (none, one, several, past the evidence cap; confidences that Redis' cmsgpack
//! stores as float64, float32 and int) and a delete, run by popoto on one server and by Rust on
//! another, leave every key with the same bytes: key names and types, hash fields and values,
//! set members, sorted-set scores.

#[allow(dead_code)]
mod interop_support;

use std::collections::{BTreeMap, BTreeSet};

use interop_support::confidence::PartitionedMemory;
use interop_support::{hex, start_server};
use popoto::testing::TestRedis;
use popoto::{ConfidenceState, Db, Model};
use serde_json::{json, Value as Json};

/// popoto's `Sure` of `confidence.py`: an unpartitioned field with `initial_confidence=1.0`.
#[derive(Model, Debug, Clone, PartialEq, Default)]
struct Sure {
    #[popoto(key, tenant)]
    project: String,
    #[popoto(unique_key)]
    key: String,
    #[popoto(confidence(initial = 1.0, evidence_cap = 3))]
    level: f64,
}

/// The content of one Redis key, byte for byte.
#[derive(Debug, PartialEq)]
enum Content {
    Hash(BTreeMap<Vec<u8>, Vec<u8>>),
    Set(BTreeSet<Vec<u8>>),
    /// Members with their scores as Redis prints them.
    ZSet(BTreeMap<Vec<u8>, String>),
    Other(String),
}

/// Every key of the server with its content, read as raw bytes (`SCAN`, `HGETALL`, ...).
fn dump_bytes(server: &TestRedis) -> BTreeMap<Vec<u8>, Content> {
    let mut conn = server.raw();
    let mut q = |cmd: &mut redis::Cmd| -> redis::Value {
        cmd.query(&mut conn)
            .unwrap_or_else(|e| panic!("{cmd:?} on {}: {e}", server.url()))
    };
    let mut keys: Vec<Vec<u8>> = Vec::new();
    let mut cursor = 0u64;
    loop {
        let reply = q(redis::cmd("SCAN").arg(cursor).arg("COUNT").arg(1000));
        let (next, mut page): (u64, Vec<Vec<u8>>) =
            redis::from_redis_value(reply).unwrap_or_else(|e| panic!("SCAN reply: {e}"));
        keys.append(&mut page);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    let mut out = BTreeMap::new();
    for key in keys {
        let name = String::from_utf8_lossy(&key).into_owned();
        let ty: String = redis::from_redis_value(q(redis::cmd("TYPE").arg(&key)))
            .unwrap_or_else(|e| panic!("TYPE {name}: {e}"));
        let content = match ty.as_str() {
            "hash" => Content::Hash(
                redis::from_redis_value::<Vec<(Vec<u8>, Vec<u8>)>>(q(
                    redis::cmd("HGETALL").arg(&key)
                ))
                .unwrap_or_else(|e| panic!("HGETALL {name}: {e}"))
                .into_iter()
                .collect(),
            ),
            "set" => Content::Set(
                redis::from_redis_value(q(redis::cmd("SMEMBERS").arg(&key)))
                    .unwrap_or_else(|e| panic!("SMEMBERS {name}: {e}")),
            ),
            "zset" => Content::ZSet(
                redis::from_redis_value::<Vec<(Vec<u8>, String)>>(q(redis::cmd("ZRANGE")
                    .arg(&key)
                    .arg(0)
                    .arg(-1)
                    .arg("WITHSCORES")))
                .unwrap_or_else(|e| panic!("ZRANGE {name}: {e}"))
                .into_iter()
                .collect(),
            ),
            other => Content::Other(other.to_owned()),
        };
        out.insert(key, content);
    }
    out
}

/// Every difference between two dumps, hash values in hex.
fn dump_diff(py: &BTreeMap<Vec<u8>, Content>, rs: &BTreeMap<Vec<u8>, Content>) -> Vec<String> {
    let name = |k: &[u8]| String::from_utf8_lossy(k).into_owned();
    let mut out = Vec::new();
    for key in py.keys().chain(rs.keys()).collect::<BTreeSet<_>>() {
        match (py.get(key), rs.get(key)) {
            (Some(Content::Hash(a)), Some(Content::Hash(b))) => {
                for f in a.keys().chain(b.keys()).collect::<BTreeSet<_>>() {
                    let (x, y) = (a.get(f), b.get(f));
                    if x != y {
                        out.push(format!(
                            "{} field {}: popoto {} | rust {}",
                            name(key),
                            name(f),
                            x.map_or("<absent>".into(), |v| hex(v)),
                            y.map_or("<absent>".into(), |v| hex(v)),
                        ));
                    }
                }
            }
            (a, b) if a != b => out.push(format!("{}: popoto {a:?} | rust {b:?}", name(key))),
            _ => {}
        }
    }
    out
}

/// The operations both sides run, as `confidence.py ops` takes them.
fn byte_ops() -> Vec<Json> {
    let mut ops = Vec::new();
    let memory = |project: &str, key: &str| json!({"project": project, "key": key});
    let create_memory = |project: &str, key: &str, certainty: Option<f64>| {
        let mut fields = json!({"project": project, "key": key, "content": format!("c {key}")});
        if let Some(c) = certainty {
            fields["certainty"] = json!(c);
        }
        json!({"op": "create", "model": "Memory", "fields": fields})
    };
    for (project, key) in [
        ("atlas", "fact0"),
        ("atlas", "fact1"),
        ("umbrella:eu-1", "fact2"),
        ("atlas", "fact3"),
        ("zeus", "fact5"),
    ] {
        ops.push(create_memory(project, key, None));
    }
    ops.push(create_memory("zeus", "fact4", Some(0.9)));
    for (project, key) in [("atlas", "s0"), ("atlas", "s1"), ("zeus", "s2")] {
        ops.push(
            json!({"op": "create", "model": "Sure", "fields": {"project": project, "key": key}}),
        );
    }
    let update = |model: &str, get: Json, signal: f64| json!({"op": "update", "model": model, "get": get, "signal": signal});
    // fact0: never updated. fact1: one update (0.7: float64). fact2: one (0.75: float32).
    ops.push(update("Memory", memory("atlas", "fact1"), 0.9));
    ops.push(update("Memory", memory("umbrella:eu-1", "fact2"), 1.0));
    // fact3: 26 signals, past the cap of 20; fact4: from its given 0.9 (the entry starts at 0.5).
    let long = interop_support::LONG_SIGNALS;
    for (i, s) in long.into_iter().enumerate() {
        ops.push(update("Memory", memory("atlas", "fact3"), s));
        if i < 2 {
            ops.push(update("Memory", memory("zeus", "fact4"), [0.0, 0.25][i]));
        }
    }
    // fact5: updated, then deleted (its entry goes).
    ops.push(update("Memory", memory("zeus", "fact5"), 0.6));
    ops.push(json!({"op": "delete", "model": "Memory", "get": memory("zeus", "fact5")}));
    // Sure (initial 1.0, cap 3): s0 stays at 1 (an int); s1 leaves and comes back; s2 untouched.
    ops.push(update("Sure", memory("atlas", "s0"), 1.0));
    for s in [1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.5] {
        ops.push(update("Sure", memory("atlas", "s1"), s));
    }
    ops
}

/// The string `what` of JSON object `v`.
fn text(v: &Json, what: &str) -> String {
    v[what]
        .as_str()
        .unwrap_or_else(|| panic!("no string {what} in {v}"))
        .to_owned()
}

/// Runs `ops` with popoto-rs, as `confidence.py ops` does with popoto.
async fn rust_ops(db: &Db, ops: &[Json]) -> popoto::Result<()> {
    for op in ops {
        let create = op["op"] == "create";
        let target = if create { &op["fields"] } else { &op["get"] };
        let (project, key) = (text(target, "project"), text(target, "key"));
        let s = db.tenant(project.as_str())?;
        let signal = || {
            op["signal"]
                .as_f64()
                .unwrap_or_else(|| panic!("no signal in {op}"))
        };
        let memory = PartitionedMemory {
            project: project.clone(),
            key: key.clone(),
            ..Default::default()
        };
        let sure = Sure {
            project,
            key,
            ..Default::default()
        };
        match (text(op, "model").as_str(), text(op, "op").as_str()) {
            ("Memory", "create") => {
                let certainty = match target.get("certainty") {
                    Some(c) => c.as_f64().unwrap_or_else(|| panic!("certainty {c}")),
                    // Unset in popoto: left at f64's default here, as `..Default::default()`.
                    None => 0.0,
                };
                s.create(PartitionedMemory {
                    content: text(target, "content"),
                    certainty,
                    ..memory
                })
                .await?;
            }
            ("Sure", "create") => {
                s.create(sure).await?;
            }
            ("Memory", "update") => {
                let c = s.confidence(&memory, PartitionedMemory::certainty())?;
                c.update(signal()).await?;
            }
            ("Sure", "update") => {
                s.confidence(&sure, Sure::level())?.update(signal()).await?;
            }
            ("Memory", "delete") => {
                s.delete_key(&PartitionedMemory::key_of(memory.project, memory.key))
                    .await?;
            }
            _ => panic!("unknown operation {op}"),
        }
    }
    Ok(())
}

#[tokio::test]
async fn popoto_and_rust_write_the_same_bytes() {
    let ops = byte_ops();
    let py_server = start_server();
    let rust_server = start_server();
    let input = json!({ "ops": ops }).to_string();
    let out = interop_support::run_script("confidence.py", &["ops"], Some(py_server.url()), &input);
    let done: Json = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(done["done"], json!(ops.len()), "confidence.py ops: {out}");
    let db = rust_server.db().await;
    rust_ops(&db, &ops)
        .await
        .unwrap_or_else(|e| panic!("Rust operations: {e}"));

    let popoto = dump_bytes(&py_server);
    let diff = dump_diff(&popoto, &dump_bytes(&rust_server));
    assert!(
        diff.is_empty(),
        "{} difference(s) between popoto's and Rust's keys:\n{}",
        diff.len(),
        diff.join("\n")
    );
    // What was compared holds what it is about: updated entries in each encoding cmsgpack
    // uses (the byte after `confidence`), a long history, and a deleted instance's entry gone.
    let hash = |key: &str| match popoto.get(key.as_bytes()) {
        Some(Content::Hash(h)) => h.clone(),
        other => panic!("{key}: {other:?}"),
    };
    let entry = |key: &str, member: &str| {
        hash(key)
            .remove(member.as_bytes())
            .unwrap_or_else(|| panic!("{key} has no {member}"))
    };
    let confidence_tag = |raw: Vec<u8>| {
        let at = raw
            .windows(11)
            .position(|w| w == b"\xaaconfidence")
            .unwrap_or_else(|| panic!("no confidence in {}", hex(&raw)));
        raw[at + 11]
    };
    let data = "$ConfidencF:Memory:certainty:data";
    let tags = [
        entry(&format!("{data}:atlas"), "Memory:fact1:atlas"),
        entry(
            &format!("{data}:umbrella:eu-1"),
            "Memory:fact2:umbrella{&#58;}eu/-1",
        ),
        entry("$ConfidencF:Sure:level:data", "Sure:s0:atlas"),
    ]
    .map(confidence_tag);
    assert_eq!(tags, [0xcb, 0xca, 0x01], "float64, float32, int");
    let fact3 = entry(&format!("{data}:atlas"), "Memory:fact3:atlas");
    let fact3 = ConfidenceState::decode(&fact3, 0.5).unwrap_or_else(|e| panic!("fact3: {e}"));
    assert_eq!(fact3.evidence_count, 26);
    assert!(!hash(&format!("{data}:zeus")).contains_key(b"Memory:fact5:zeus".as_slice()));
    assert!(popoto.len() > 10, "popoto wrote {} keys", popoto.len());
}
