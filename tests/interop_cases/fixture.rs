//! The fixture (`fixture.py --json`), written by popoto or by Rust, and the checks of reads by
//! key and of counts.

use std::collections::BTreeMap;

use popoto::testing::TestRedis;
use popoto::{Db, Key};
use serde_json::{json, Map, Value as Json};

use crate::interop_support::*;
use crate::models::{instance, Episode, Interop, KitchenSink};

pub(crate) const TENANTS: [&str; 3] = ["acme", "globex", "umbrella:eu-1"];

/// `fixture.py --json`: typed rows, and the Rust values built from them.
pub(crate) struct Fixture {
    episode_rows: Vec<Map<String, Json>>,
    sink_rows: Vec<Map<String, Json>>,
    episodes: Vec<Episode>,
    pub(crate) sinks: Vec<KitchenSink>,
}

impl Fixture {
    pub(crate) fn load() -> Fixture {
        let raw = fixture_json();
        let rows = |model: &str| -> Vec<Map<String, Json>> {
            raw.get(model)
                .and_then(Json::as_array)
                .unwrap_or_else(|| panic!("fixture has no {model} list"))
                .iter()
                .map(|r| r.as_object().cloned().unwrap_or_else(|| panic!("row {r}")))
                .collect()
        };
        let episode_rows = rows("Episode");
        let sink_rows = rows("KitchenSink");
        let episodes = episode_rows.iter().map(Episode::from_row).collect();
        let sinks = sink_rows.iter().map(KitchenSink::from_row).collect();
        let fx = Fixture {
            episode_rows,
            sink_rows,
            episodes,
            sinks,
        };
        assert_eq!(
            (fx.episodes.len(), fx.sinks.len()),
            (18, 12),
            "fixture size"
        );
        fx
    }

    /// The canonical instance of every fixture row by Rust-computed key (`_key` included).
    pub(crate) fn expected(&self) -> BTreeMap<String, Json> {
        let mut out = BTreeMap::new();
        for (row, ep) in self.episode_rows.iter().zip(&self.episodes) {
            let key = ep.key().redis_key();
            out.insert(key.clone(), canon_row(&key, row));
        }
        for (row, s) in self.sink_rows.iter().zip(&self.sinks) {
            let key = s.key().redis_key();
            out.insert(key.clone(), canon_row(&key, row));
        }
        out
    }

    pub(crate) fn episodes_of(&self, tenant: &str) -> Vec<Episode> {
        self.episodes
            .iter()
            .filter(|e| e.project_id == tenant)
            .cloned()
            .collect()
    }

    pub(crate) fn sinks_of(&self, tenant: &str) -> Vec<KitchenSink> {
        self.sinks
            .iter()
            .filter(|s| s.tenant == tenant)
            .cloned()
            .collect()
    }
}

pub(crate) fn canon_row(key: &str, row: &Map<String, Json>) -> Json {
    let mut o = Map::new();
    o.insert("_key".into(), json!(key));
    for (k, v) in row {
        o.insert(k.clone(), canon(v));
    }
    Json::Object(o)
}

/// The Rust values render exactly as the fixture's typed JSON (checks this file's parsing).
pub(crate) fn check_fixture_parsing(fx: &Fixture, p: &mut Problems) {
    let expected = fx.expected();
    for ep in &fx.episodes {
        let key = ep.key().redis_key();
        p.json_eq(
            &format!("fixture {key}"),
            "fixture.py",
            &expected[&key],
            "Rust value",
            &instance(&key, ep),
        );
    }
    for s in &fx.sinks {
        let key = s.key().redis_key();
        p.json_eq(
            &format!("fixture {key}"),
            "fixture.py",
            &expected[&key],
            "Rust value",
            &instance(&key, s),
        );
    }
}

/// write.py into `server`; checks its keys (creation order) against Rust's `key_of`.
pub(crate) fn python_write_checked(server: &TestRedis, fx: &Fixture, p: &mut Problems) {
    let written = python_write(server.url());
    let keys = |model: &str| -> Vec<String> {
        written
            .get(model)
            .and_then(Json::as_array)
            .unwrap_or_else(|| panic!("write.py output has no {model}: {written}"))
            .iter()
            .map(|k| match k.as_str() {
                Some(k) => k.to_owned(),
                None => panic!("write.py {model} key {k} is not a string"),
            })
            .collect()
    };
    let rust_episode_keys: Vec<String> = fx.episodes.iter().map(|e| e.key().redis_key()).collect();
    let rust_sink_keys: Vec<String> = fx.sinks.iter().map(|s| s.key().redis_key()).collect();
    p.json_eq(
        "Episode instance keys",
        "write.py",
        &json!(keys("Episode")),
        "Episode::key_of",
        &json!(rust_episode_keys),
    );
    p.json_eq(
        "KitchenSink instance keys",
        "write.py",
        &json!(keys("KitchenSink")),
        "KitchenSink::key_of",
        &json!(rust_sink_keys),
    );
}

/// Rust creates the fixture, row by row, through tenant handles (Episodes first, as write.py).
pub(crate) async fn rust_write(db: &Db, fx: &Fixture) {
    for ep in &fx.episodes {
        let t = db.tenant(&ep.project_id).unwrap_or_else(|e| panic!("{e}"));
        let created = t
            .create(ep.clone())
            .await
            .unwrap_or_else(|e| panic!("create {ep:?}: {e}"));
        assert_eq!(
            &created, ep,
            "create keeps the fixed episode id and every value"
        );
    }
    for s in &fx.sinks {
        let t = db.tenant(&s.tenant).unwrap_or_else(|e| panic!("{e}"));
        let created = t
            .create(s.clone())
            .await
            .unwrap_or_else(|e| panic!("create {s:?}: {e}"));
        assert_eq!(&created, s);
    }
}

/// Rust reads every fixture instance by key (tenant handle and admin) and by `fetch_keys`.
pub(crate) async fn check_gets(db: &Db, fx: &Fixture, p: &mut Problems) {
    let expected = fx.expected();
    async fn one<M: Interop>(
        db: &Db,
        tenant: &str,
        m: &M,
        expected: &BTreeMap<String, Json>,
        p: &mut Problems,
    ) {
        let key = m.key();
        let redis_key = key.redis_key();
        let t = db.tenant(tenant).unwrap_or_else(|e| panic!("{e}"));
        for (via, got) in [
            ("tenant get", t.get(&key).await),
            ("admin get", db.admin().get(&key).await),
        ] {
            match got {
                Ok(Some(v)) => {
                    p.json_eq(
                        &format!("{via} {redis_key}"),
                        "fixture",
                        &expected[&redis_key],
                        "Rust",
                        &instance(&redis_key, &v),
                    );
                }
                other => p.push(format!(
                    "{via} {redis_key}: expected the instance, got {other:?}"
                )),
            }
        }
    }
    for ep in &fx.episodes {
        one(db, &ep.project_id, ep, &expected, p).await;
    }
    for s in &fx.sinks {
        one(db, &s.tenant, s, &expected, p).await;
    }
    // Key parsing of what popoto wrote: fetch_keys yields the fixture keys.
    for tenant in TENANTS {
        let t = db.tenant(tenant).unwrap_or_else(|e| panic!("{e}"));
        let mut want: Vec<String> = fx
            .sinks_of(tenant)
            .iter()
            .map(|s| s.key().redis_key())
            .collect();
        want.sort();
        match t.query::<KitchenSink>().fetch_keys().await {
            Ok(keys) => {
                let mut got: Vec<String> = keys.iter().map(Key::redis_key).collect();
                got.sort();
                let segs: Vec<Vec<String>> = keys.iter().map(|k| k.segments().to_vec()).collect();
                p.json_eq(
                    &format!("{tenant}: KitchenSink fetch_keys"),
                    "fixture",
                    &json!(want),
                    "Rust",
                    &json!(got),
                );
                for s in segs {
                    p.check(s.len() == 2 && s[1] == tenant, || {
                        format!("{tenant}: key segments {s:?}")
                    });
                }
            }
            Err(e) => p.push(format!("{tenant}: fetch_keys: {e}")),
        }
    }
}

/// Counts per tenant and across tenants, from the Rust API, against the fixture.
pub(crate) async fn check_counts(db: &Db, fx: &Fixture, p: &mut Problems) {
    for tenant in TENANTS {
        let t = db.tenant(tenant).unwrap_or_else(|e| panic!("{e}"));
        let e = t
            .query::<Episode>()
            .count()
            .await
            .map_err(|e| e.to_string());
        let k = t
            .query::<KitchenSink>()
            .count()
            .await
            .map_err(|e| e.to_string());
        let want = (
            Ok(fx.episodes_of(tenant).len()),
            Ok(fx.sinks_of(tenant).len()),
        );
        p.check((e.clone(), k.clone()) == want, || {
            format!("{tenant}: counts {:?}, expected {want:?}", (e, k))
        });
    }
    let admin = db.admin();
    let e = admin
        .query::<Episode>()
        .count()
        .await
        .map_err(|e| e.to_string());
    let k = admin
        .query::<KitchenSink>()
        .count()
        .await
        .map_err(|e| e.to_string());
    p.check((e.clone(), k.clone()) == (Ok(18), Ok(12)), || {
        format!("admin counts {:?}, expected (18, 12)", (e, k))
    });
}
