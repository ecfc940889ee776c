//! Query breadth against the real Python popoto 1.10.1 (`tests/interop/breadth.py`): the same
//! OR / AND / NOT trees (popoto's `Q` objects), key-field lookups (`__startswith`,
//! `__endswith`) and projections (`values(...)`) run through popoto and through the crate's
//! tenant handle on the same data, written once by popoto and once by Rust, must select the
//! same instances and the same values. A tenant handle's query is popoto's query with
//! `Q(project_id=tenant) &` in front: its NOT is relative to the tenant's own instances.

#[allow(dead_code)]
mod interop_support;

use interop_support::{canon, jf, parse_json, run_script, spec_float, start_server};
use popoto::testing::TestRedis;
use popoto::{Db, Filter, Model};
use serde_json::{json, Value as Json};

/// `Episode` of models.py.
#[derive(Model, Debug, Clone, PartialEq, Default)]
struct Episode {
    #[popoto(key, tenant)]
    project_id: String,
    #[popoto(auto_key)]
    episode_id: String,
    title: String,
    #[popoto(sorted, partition_by = "project_id")]
    score: f64,
    #[popoto(sorted)]
    rank: i64,
}

const TENANTS: [&str; 2] = ["acme", "globex"];

/// 16 episodes per tenant: ids whose first hex digit is `i`, distinct scores, rank `i % 4`.
fn rows() -> Vec<Episode> {
    let mut out = Vec::new();
    for (t, tenant) in TENANTS.iter().enumerate() {
        for i in 0..16u64 {
            out.push(Episode {
                project_id: (*tenant).to_owned(),
                episode_id: format!("{i:x}{:031x}", (t as u64 + 1) * 0x9e37_79b9 + i * 7),
                title: format!("{tenant}-{i}"),
                score: i as f64 * 0.5,
                rank: (i % 4) as i64,
            });
        }
    }
    out
}

/// A filter tree, as popoto's Q (JSON for breadth.py) and as the crate's `Filter`.
enum T {
    Rank(i64),
    RankIn(i64, i64),
    ScoreGte(f64),
    ScoreLt(f64),
    Starts(&'static str),
    Ends(&'static str),
    And(Vec<T>),
    Or(Vec<T>),
    Not(Box<T>),
}

fn not(t: T) -> T {
    T::Not(Box::new(t))
}

impl T {
    fn json(&self) -> Json {
        match self {
            T::Rank(r) => json!({"leaf": {"rank": r}}),
            T::RankIn(a, b) => json!({"leaf": {"rank__gte": a, "rank__lt": b}}),
            T::ScoreGte(s) => json!({"leaf": {"score__gte": spec_float(*s)}}),
            T::ScoreLt(s) => json!({"leaf": {"score__lt": spec_float(*s)}}),
            T::Starts(p) => json!({"leaf": {"episode_id__startswith": p}}),
            T::Ends(p) => json!({"leaf": {"episode_id__endswith": p}}),
            T::And(ts) => json!({"and": ts.iter().map(T::json).collect::<Vec<_>>()}),
            T::Or(ts) => json!({"or": ts.iter().map(T::json).collect::<Vec<_>>()}),
            T::Not(t) => json!({"not": t.json()}),
        }
    }

    fn filter(&self) -> Filter<Episode> {
        match self {
            T::Rank(r) => Episode::rank().eq(*r),
            T::RankIn(a, b) => Episode::rank().range(*a..*b),
            T::ScoreGte(s) => Episode::score().gte(*s),
            T::ScoreLt(s) => Episode::score().lt(*s),
            T::Starts(p) => Episode::episode_id().starts_with(p),
            T::Ends(p) => Episode::episode_id().ends_with(p),
            T::And(ts) => Filter::all(ts.iter().map(T::filter)),
            T::Or(ts) => Filter::any(ts.iter().map(T::filter)),
            T::Not(t) => !t.filter(),
        }
    }
}

fn cases() -> Vec<T> {
    use T::*;
    vec![
        not(Rank(1)),
        Or(vec![Rank(1), ScoreGte(6.0)]),
        not(Or(vec![Rank(1), ScoreLt(2.0)])),
        Or(vec![
            And(vec![Rank(0), ScoreGte(1.0)]),
            And(vec![Rank(2), not(ScoreGte(4.0))]),
        ]),
        And(vec![RankIn(1, 3), not(ScoreLt(3.0))]),
        Starts("1"),
        Or(vec![Starts("a"), Ends("5")]),
        And(vec![not(Starts("2")), RankIn(0, 2)]),
        not(And(vec![Rank(3), Or(vec![Starts("3"), Starts("f")])])),
    ]
}

fn spec(tenant: &str, t: &T, values: bool) -> Json {
    json!({
        "tenant": tenant,
        "q": t.json(),
        "values": if values { json!(["title", "score", "rank"]) } else { Json::Null },
    })
}

fn python(command: &str, url: &str, input: &Json) -> Json {
    parse_json(&run_script(
        "breadth.py",
        &[command],
        Some(url),
        &input.to_string(),
    ))
}

/// Every case through both, per tenant: keys, then projected values; returns the results
/// that selected something (the comparison is not vacuous).
async fn compare(server: &TestRedis, db: &Db) -> usize {
    let cases = cases();
    let mut specs = Vec::new();
    for tenant in TENANTS {
        for t in &cases {
            specs.push(spec(tenant, t, false));
            specs.push(spec(tenant, t, true));
        }
    }
    let oracle = match python("query", server.url(), &Json::Array(specs)) {
        Json::Array(a) => a,
        other => panic!("breadth.py query: {other}"),
    };
    let mut results = oracle.into_iter();
    let mut nonempty = 0;
    for tenant in TENANTS {
        let session = db.tenant(tenant).unwrap_or_else(|e| panic!("{e}"));
        for t in &cases {
            let label = t.json();
            let q = session.query::<Episode>().filter(t.filter());
            let mut keys: Vec<String> = q
                .clone()
                .fetch_keys()
                .await
                .unwrap_or_else(|e| panic!("{label}: {e}"))
                .into_iter()
                .map(|k| k.redis_key())
                .collect();
            keys.sort();
            let want = results
                .next()
                .unwrap_or_else(|| panic!("no result for {label}"));
            assert_eq!(json!(keys), want, "{tenant}: {label}");
            assert_eq!(
                q.clone().count().await.unwrap_or_else(|e| panic!("{e}")),
                keys.len()
            );
            if !keys.is_empty() {
                nonempty += 1;
            }
            let mut rows: Vec<Json> = q
                .values((Episode::title(), Episode::score(), Episode::rank()))
                .await
                .unwrap_or_else(|e| panic!("{label}: {e}"))
                .into_iter()
                .map(|(title, score, rank)| json!([title, jf(score), rank]))
                .collect();
            let want = results
                .next()
                .unwrap_or_else(|| panic!("no values for {label}"));
            let mut want: Vec<Json> = match canon(&want) {
                Json::Array(a) => a,
                other => panic!("{label}: values {other}"),
            };
            rows.sort_by_key(|r| r.to_string());
            want.sort_by_key(|r| r.to_string());
            assert_eq!(rows, want, "{tenant} values: {label}");
        }
    }
    nonempty
}

fn typed(e: &Episode) -> Json {
    json!({
        "project_id": e.project_id,
        "episode_id": e.episode_id,
        "title": e.title,
        "score": spec_float(e.score),
        "rank": e.rank,
    })
}

#[tokio::test]
async fn popoto_written_data_answers_the_same_q_lookups_and_values() {
    let server = start_server();
    let db = server.db().await;
    let input = Json::Array(rows().iter().map(typed).collect());
    let keys = python("seed", server.url(), &input);
    assert_eq!(keys.as_array().map(Vec::len), Some(32), "{keys}");
    let nonempty = compare(&server, &db).await;
    assert!(nonempty >= 14, "most cases select rows: {nonempty}");
}

#[tokio::test]
async fn rust_written_data_answers_the_same_q_lookups_and_values() {
    let server = start_server();
    let db = server.db().await;
    for e in rows() {
        db.admin().create(e).await.unwrap_or_else(|e| panic!("{e}"));
    }
    let nonempty = compare(&server, &db).await;
    assert!(nonempty >= 14, "most cases select rows: {nonempty}");
}
