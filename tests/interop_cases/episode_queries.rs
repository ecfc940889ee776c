//! The query cases of `Episode` through a tenant handle.

use serde_json::{json, Value as Json};

use crate::fixture::Fixture;
use crate::interop_support::*;
use crate::models::{Episode, Interop};
use crate::queries::{count, fetch, get, none, Case, Sc};

pub(crate) fn episode_cases(fx: &Fixture, tenant: &str, c: &mut Vec<Case>) {
    let t = || Sc::Tenant(tenant.to_owned());
    let tn = tenant.to_owned();
    let eps = fx.episodes_of(tenant);
    let mut scores: Vec<f64> = eps.iter().map(|e| e.score).collect();
    scores.sort_by(f64::total_cmp);
    let mut ranks: Vec<i64> = eps.iter().map(|e| e.rank).collect();
    ranks.sort_unstable();
    let (lo, mid, hi) = (scores[1], scores[2], scores[4]);
    let rank_mid = ranks[3];
    let l = |s: &str| format!("{tenant}: Episode {s}");

    c.push(fetch::<Episode>(
        l("all"),
        t(),
        json!({ "project_id": tenant }),
        none(),
        false,
        |q| q,
    ));
    {
        let tn = tn.clone();
        c.push(fetch::<Episode>(
            l("project_id__in"),
            t(),
            json!({ "project_id__in": [tenant] }),
            none(),
            false,
            move |q| q.filter(Episode::project_id().is_in([tn.as_str()])),
        ));
    }
    {
        let tn = tn.clone();
        c.push(fetch::<Episode>(
            l("project_id equality"),
            t(),
            json!({ "project_id": tenant }),
            none(),
            false,
            move |q| q.filter(Episode::project_id().eq(tn.as_str())),
        ));
    }
    let range = |name: &str, key: &str, v: Json| (l(name), json!({ "project_id": tenant, key: v }));
    let (lb, f) = range("score >= mid", "score__gte", spec_float(mid));
    c.push(fetch::<Episode>(lb, t(), f, none(), true, move |q| {
        q.filter(Episode::score().gte(mid))
    }));
    let (lb, f) = range("score > mid", "score__gt", spec_float(mid));
    c.push(fetch::<Episode>(lb, t(), f, none(), true, move |q| {
        q.filter(Episode::score().gt(mid))
    }));
    let (lb, f) = range("score < mid", "score__lt", spec_float(mid));
    c.push(fetch::<Episode>(lb, t(), f, none(), true, move |q| {
        q.filter(Episode::score().lt(mid))
    }));
    let (lb, f) = range("score <= mid", "score__lte", spec_float(mid));
    c.push(fetch::<Episode>(lb, t(), f, none(), true, move |q| {
        q.filter(Episode::score().lte(mid))
    }));
    let (lb, f) = range("score == mid", "score", spec_float(mid));
    c.push(fetch::<Episode>(lb, t(), f, none(), true, move |q| {
        q.filter(Episode::score().eq(mid))
    }));
    let (lb, f) = range(
        "score between",
        "score__between",
        json!([spec_float(lo), spec_float(hi)]),
    );
    c.push(fetch::<Episode>(lb, t(), f, none(), true, move |q| {
        q.filter(Episode::score().between(lo, hi))
    }));
    let (lb, f) = range(
        "rank >= mid (global zset, tenant set)",
        "rank__gte",
        json!(rank_mid),
    );
    c.push(fetch::<Episode>(lb, t(), f, none(), true, move |q| {
        q.filter(Episode::rank().gte(rank_mid))
    }));
    let (lb, f) = range("rank == mid", "rank", json!(rank_mid));
    c.push(fetch::<Episode>(lb, t(), f, none(), true, move |q| {
        q.filter(Episode::rank().eq(rank_mid))
    }));
    c.push(fetch::<Episode>(
        l("order_by -score limit 3"),
        t(),
        json!({ "project_id": tenant }),
        json!({ "order_by": "-score", "limit": 3 }),
        true,
        |q| q.order_by_desc(Episode::score()).limit(3),
    ));
    c.push(fetch::<Episode>(
        l("order_by score limit 2"),
        t(),
        json!({ "project_id": tenant }),
        json!({ "order_by": "score", "limit": 2 }),
        true,
        |q| q.order_by(Episode::score()).limit(2),
    ));
    c.push(fetch::<Episode>(
        l("score >= lo order_by -score limit 2"),
        t(),
        json!({ "project_id": tenant, "score__gte": spec_float(lo) }),
        json!({ "order_by": "-score", "limit": 2 }),
        true,
        move |q| {
            q.filter(Episode::score().gte(lo))
                .order_by_desc(Episode::score())
                .limit(2)
        },
    ));
    c.push(fetch::<Episode>(
        l("order_by rank limit 4"),
        t(),
        json!({ "project_id": tenant }),
        json!({ "order_by": "rank", "limit": 4 }),
        true,
        |q| q.order_by(Episode::rank()).limit(4),
    ));
    c.push(fetch::<Episode>(
        l("score >= lo order_by -rank"),
        t(),
        json!({ "project_id": tenant, "score__gte": spec_float(lo) }),
        json!({ "order_by": "-rank" }),
        true,
        move |q| {
            q.filter(Episode::score().gte(lo))
                .order_by_desc(Episode::rank())
        },
    ));
    c.push(fetch::<Episode>(
        l("score >= lo and rank <= mid"),
        t(),
        json!({ "project_id": tenant, "score__gte": spec_float(lo), "rank__lte": rank_mid }),
        none(),
        false,
        move |q| {
            q.filter(Episode::score().gte(lo))
                .filter(Episode::rank().lte(rank_mid))
        },
    ));
    c.push(count::<Episode>(
        l("count"),
        t(),
        json!({ "project_id": tenant }),
        |q| q,
    ));
    c.push(count::<Episode>(
        l("count score < mid"),
        t(),
        json!({ "project_id": tenant, "score__lt": spec_float(mid) }),
        move |q| q.filter(Episode::score().lt(mid)),
    ));
    c.push(count::<Episode>(
        l("count rank >= mid"),
        t(),
        json!({ "project_id": tenant, "rank__gte": rank_mid }),
        move |q| q.filter(Episode::rank().gte(rank_mid)),
    ));
    for ep in &eps {
        c.push(get::<Episode>(
            l(&format!("get {}", ep.episode_id)),
            t(),
            json!({ "project_id": tenant, "episode_id": ep.episode_id }),
            ep.key(),
        ));
    }
}
