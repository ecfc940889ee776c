//! Query cases: one `query.py` spec and the same query through the Rust API, run on both sides
//! and compared.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use popoto::{Admin, Db, Key, Model, Query, Session};
use serde_json::{json, Value as Json};

use crate::admin_queries::admin_cases;
use crate::episode_queries::episode_cases;
use crate::fixture::{Fixture, TENANTS};
use crate::interop_support::*;
use crate::models::{instance, Interop};
use crate::sink_queries::sink_cases;

pub(crate) type Fut = Pin<Box<dyn Future<Output = Json>>>;
pub(crate) type Runner = Box<dyn Fn(Db) -> Fut>;

pub(crate) struct Case {
    label: String,
    spec: Json,
    run: Runner,
}

#[derive(Clone)]
pub(crate) enum Sc {
    Tenant(String),
    Admin,
}

/// A tenant handle or the admin handle, for cases run through either.
pub(crate) enum Handle {
    Tenant(Session),
    Admin(Box<Admin>),
}

impl Case {
    /// A case whose Rust side opens `sc`'s handle on the database (a refused handle answers
    /// a `$rust_error`) and answers what `run` makes of it.
    fn new<F, R>(label: impl Into<String>, spec: Json, sc: Sc, run: F) -> Case
    where
        F: Fn(Handle) -> R + 'static,
        R: Future<Output = Json> + 'static,
    {
        let run = Rc::new(run);
        let run: Runner = Box::new(move |db: Db| {
            let (run, sc) = (Rc::clone(&run), sc.clone());
            Box::pin(async move {
                match session(&db, &sc) {
                    Ok(s) => run(s).await,
                    Err(e) => rust_error(e),
                }
            })
        });
        Case {
            label: label.into(),
            spec,
            run,
        }
    }
}

impl Handle {
    fn query<M: Model>(&self) -> Query<'_, M> {
        match self {
            Handle::Tenant(s) => s.query(),
            Handle::Admin(a) => a.query(),
        }
    }

    async fn get<M: Model>(&self, key: &Key<M>) -> popoto::Result<Option<M>> {
        match self {
            Handle::Tenant(s) => s.get(key).await,
            Handle::Admin(a) => a.get(key).await,
        }
    }
}

pub(crate) fn session(db: &Db, sc: &Sc) -> popoto::Result<Handle> {
    match sc {
        Sc::Tenant(t) => db.tenant(t).map(Handle::Tenant),
        Sc::Admin => Ok(Handle::Admin(Box::new(db.admin()))),
    }
}

pub(crate) fn rust_error(e: popoto::Error) -> Json {
    json!({ "$rust_error": e.to_string() })
}

pub(crate) fn sort_by_key(rows: &mut [Json]) {
    rows.sort_by(|a, b| {
        let k = |v: &Json| {
            v.get("_key")
                .and_then(Json::as_str)
                .unwrap_or_else(|| panic!("row without a string _key: {v}"))
                .to_owned()
        };
        k(a).into_bytes().cmp(&k(b).into_bytes())
    });
}

/// A fetch: query.py `filter` (+ `extra`: order_by, limit) and the Rust query built by `build`.
/// `ordered`: popoto's order is defined (order_by, or exactly one sorted filter) and must be
/// matched; otherwise both sides are sorted by key.
pub(crate) fn fetch<M: Interop>(
    label: impl Into<String>,
    sc: Sc,
    filter: Json,
    extra: Json,
    ordered: bool,
    build: impl for<'s> Fn(Query<'s, M>) -> Query<'s, M> + 'static,
) -> Case {
    let mut spec = json!({
        "model": M::META.name,
        "filter": filter,
        "order": if ordered { "popoto" } else { "key" },
    });
    if let (Some(s), Json::Object(extra)) = (spec.as_object_mut(), extra) {
        s.extend(extra);
    }
    let build = Rc::new(build);
    Case::new(label, spec, sc, move |s| {
        let build = Rc::clone(&build);
        async move {
            match build(s.query::<M>()).fetch_keyed().await {
                Ok(rows) => {
                    let mut out: Vec<Json> = rows
                        .iter()
                        .map(|(k, m)| instance(&k.redis_key(), m))
                        .collect();
                    if !ordered {
                        sort_by_key(&mut out);
                    }
                    Json::Array(out)
                }
                Err(e) => rust_error(e),
            }
        }
    })
}

/// A count: query.py `count(**filter)` and the Rust `count()`.
pub(crate) fn count<M: Interop>(
    label: impl Into<String>,
    sc: Sc,
    filter: Json,
    build: impl for<'s> Fn(Query<'s, M>) -> Query<'s, M> + 'static,
) -> Case {
    let spec = json!({ "model": M::META.name, "count": true, "filter": filter });
    let build = Rc::new(build);
    Case::new(label, spec, sc, move |s| {
        let build = Rc::clone(&build);
        async move {
            match build(s.query::<M>()).count().await {
                Ok(n) => json!(n),
                Err(e) => rust_error(e),
            }
        }
    })
}

/// A get by all key fields: query.py `get(**get)` and the Rust `get(&key)`.
pub(crate) fn get<M: Interop>(label: impl Into<String>, sc: Sc, get: Json, key: Key<M>) -> Case {
    let spec = json!({ "model": M::META.name, "get": get });
    Case::new(label, spec, sc, move |s| {
        let key = key.clone();
        async move {
            match s.get(&key).await {
                Ok(Some(m)) => instance(&key.redis_key(), &m),
                Ok(None) => Json::Null,
                Err(e) => rust_error(e),
            }
        }
    })
}

pub(crate) fn none() -> Json {
    json!({})
}

/// Every query case, built from the fixture values (bounds are fixture values, so inclusive
/// and exclusive bounds both matter).
pub(crate) fn cases(fx: &Fixture) -> Vec<Case> {
    let mut c = Vec::new();
    for tenant in TENANTS {
        episode_cases(fx, tenant, &mut c);
        sink_cases(fx, tenant, &mut c);
    }
    admin_cases(fx, &mut c);
    c
}

pub(crate) fn specs(cases: &[Case]) -> Vec<Json> {
    cases.iter().map(|c| c.spec.clone()).collect()
}

pub(crate) async fn run_rust(db: &Db, cases: &[Case]) -> Vec<Json> {
    let mut out = Vec::with_capacity(cases.len());
    for c in cases {
        out.push((c.run)(db.clone()).await);
    }
    out
}

/// The `_key`s of a fetch result, or `None` for another kind of result.
pub(crate) fn keys_of(v: &Json) -> Option<Vec<String>> {
    v.as_array().map(|rows| {
        rows.iter()
            .map(|r| {
                r.get("_key")
                    .and_then(Json::as_str)
                    .unwrap_or("<no _key>")
                    .to_owned()
            })
            .collect()
    })
}

/// Compares two result lists case by case (keys and order first, then values), and every
/// instance of `a` against its fixture row.
pub(crate) fn compare_results(
    cases: &[Case],
    expected: &BTreeMap<String, Json>,
    (a_name, a): (&str, &[Json]),
    (b_name, b): (&str, &[Json]),
    p: &mut Problems,
) {
    let mut rows = 0;
    for (i, case) in cases.iter().enumerate() {
        let (x, y) = (canon(&a[i]), canon(&b[i]));
        for (name, v) in [(a_name, &x), (b_name, &y)] {
            if v.get("$error").is_some() || v.get("$rust_error").is_some() {
                p.push(format!(
                    "{}: {name} failed: {v}\n    spec {}",
                    case.label, case.spec
                ));
            }
        }
        match (keys_of(&x), keys_of(&y)) {
            (Some(kx), Some(ky)) if kx != ky => {
                p.push(format!(
                    "{}: keys differ\n    {a_name}: {kx:?}\n    {b_name}: {ky:?}\n    spec {}",
                    case.label, case.spec
                ));
                continue;
            }
            _ => {}
        }
        p.json_eq(
            &format!("{} (spec {})", case.label, case.spec),
            a_name,
            &x,
            b_name,
            &y,
        );
        let instances: Vec<&Json> = match &x {
            Json::Array(r) => r.iter().collect(),
            Json::Object(o) if o.contains_key("_key") => vec![&x],
            _ => Vec::new(),
        };
        for inst in instances {
            rows += 1;
            let Some(key) = inst.get("_key").and_then(Json::as_str) else {
                p.push(format!("{}: instance without a _key: {inst}", case.label));
                continue;
            };
            match expected.get(key) {
                Some(want) => p.json_eq(
                    &format!("{}: instance {key}", case.label),
                    a_name,
                    inst,
                    "fixture",
                    want,
                ),
                None => p.push(format!(
                    "{}: {a_name} returned unknown key {key:?}",
                    case.label
                )),
            }
        }
    }
    eprintln!(
        "compared {} query results ({a_name} vs {b_name}), {rows} instances against the fixture",
        cases.len()
    );
}

/// Sanity of the case list: the oracle's answers are mostly non-trivial.
pub(crate) fn check_cases_meaningful(cases: &[Case], oracle: &[Json], p: &mut Problems) {
    let fetches: Vec<usize> = (0..cases.len()).filter(|&i| oracle[i].is_array()).collect();
    let empty = fetches
        .iter()
        .filter(|&&i| oracle[i].as_array().is_some_and(Vec::is_empty))
        .count();
    p.check(empty * 10 <= fetches.len(), || {
        format!(
            "{empty} of {} fetch cases are empty: the cases test little",
            fetches.len()
        )
    });
}
