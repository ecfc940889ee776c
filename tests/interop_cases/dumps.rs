//! Comparison of two `dump.py` outputs, key by key and byte for byte.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value as Json};

use crate::interop_support::*;

/// Compares two dump.py outputs key by key, naming every differing hash field with both hex
/// values, set members and zset members/scores.
pub(crate) fn compare_dumps(py: &Json, rs: &Json, p: &mut Problems) {
    let (Some(py), Some(rs)) = (py.as_object(), rs.as_object()) else {
        p.push("a dump is not an object".to_owned());
        return;
    };
    let keys: BTreeSet<&String> = py.keys().chain(rs.keys()).collect();
    for key in keys {
        let (x, y) = match (py.get(key), rs.get(key)) {
            (Some(x), Some(y)) => (x, y),
            (Some(x), None) => {
                p.push(format!("key {key:?} written by popoto only: {x}"));
                continue;
            }
            (None, Some(y)) => {
                p.push(format!("key {key:?} written by Rust only: {y}"));
                continue;
            }
            (None, None) => continue,
        };
        let ty = |v: &Json| {
            v.get("type")
                .and_then(Json::as_str)
                .unwrap_or("?")
                .to_owned()
        };
        if ty(x) != ty(y) {
            p.push(format!(
                "key {key:?}: type {} (popoto) vs {} (Rust)",
                ty(x),
                ty(y)
            ));
            continue;
        }
        if x.get("ttl_ms").is_some() || y.get("ttl_ms").is_some() {
            p.push(format!(
                "key {key:?}: ttl popoto {:?} Rust {:?}",
                x.get("ttl_ms"),
                y.get("ttl_ms")
            ));
        }
        match ty(x).as_str() {
            "hash" => {
                let empty = Map::new();
                let hx = x.get("hash").and_then(Json::as_object).unwrap_or(&empty);
                let hy = y.get("hash").and_then(Json::as_object).unwrap_or(&empty);
                let fields: BTreeSet<&String> = hx.keys().chain(hy.keys()).collect();
                for f in fields {
                    let (vx, vy) = (hx.get(f), hy.get(f));
                    p.check(vx == vy, || {
                        let h = |v: Option<&Json>| v.and_then(Json::as_str).map(str::to_owned);
                        let show = |v: Option<&Json>| match h(v) {
                            Some(hex) => format!("{hex}  ({})", unhex(&hex).escape_ascii()),
                            None => "<absent>".to_owned(),
                        };
                        format!(
                            "hash {key:?} field {f:?}:\n    popoto {}\n    Rust   {}",
                            show(vx),
                            show(vy)
                        )
                    });
                }
            }
            "set" => {
                let m = |v: &Json| -> BTreeSet<String> {
                    v.get("set")
                        .and_then(Json::as_array)
                        .unwrap_or_else(|| panic!("dump of set {key:?} has no member list: {v}"))
                        .iter()
                        .map(|s| match s.as_str() {
                            Some(s) => s.to_owned(),
                            None => panic!("dump of set {key:?}: member {s} is not a string"),
                        })
                        .collect()
                };
                let (mx, my) = (m(x), m(y));
                p.check(mx == my, || {
                    format!(
                        "set {key:?}: only popoto {:?}, only Rust {:?}",
                        mx.difference(&my).collect::<Vec<_>>(),
                        my.difference(&mx).collect::<Vec<_>>()
                    )
                });
            }
            "zset" => {
                let m = |v: &Json| -> BTreeMap<String, String> {
                    v.get("zset")
                        .and_then(Json::as_array)
                        .unwrap_or_else(|| panic!("dump of zset {key:?} has no member list: {v}"))
                        .iter()
                        .map(|e| {
                            let s = |i: usize| {
                                e.get(i).and_then(Json::as_str).map_or_else(
                                    || panic!("dump of zset {key:?}: bad entry {e}"),
                                    str::to_owned,
                                )
                            };
                            (s(0), s(1))
                        })
                        .collect()
                };
                let (mx, my) = (m(x), m(y));
                let members: BTreeSet<&String> = mx.keys().chain(my.keys()).collect();
                for member in members {
                    let (sx, sy) = (mx.get(member), my.get(member));
                    p.check(sx == sy, || {
                        format!("zset {key:?} member {member:?}: score popoto {sx:?} Rust {sy:?}")
                    });
                }
            }
            _ => p.json_eq(&format!("key {key:?}"), "popoto", x, "Rust", y),
        }
    }
}
