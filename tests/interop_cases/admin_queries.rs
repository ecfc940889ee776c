//! The query cases through the admin handle, across tenants.

use chrono::NaiveTime;
use serde_json::json;

use crate::fixture::{Fixture, TENANTS};
use crate::interop_support::*;
use crate::models::{Episode, KitchenSink};
use crate::queries::{count, fetch, get, none, Case, Sc};

pub(crate) fn admin_cases(fx: &Fixture, c: &mut Vec<Case>) {
    let a = || Sc::Admin;
    c.push(fetch::<Episode>(
        "admin: Episode all",
        a(),
        none(),
        none(),
        false,
        |q| q,
    ));
    c.push(count::<Episode>("admin: Episode count", a(), none(), |q| q));
    c.push(fetch::<Episode>(
        "admin: Episode rank between -10 and 100 (global zset)",
        a(),
        json!({ "rank__between": [-10, 100] }),
        none(),
        true,
        |q| q.filter(Episode::rank().between(-10, 100)),
    ));
    c.push(fetch::<Episode>(
        "admin: Episode order_by -rank limit 5",
        a(),
        none(),
        json!({ "order_by": "-rank", "limit": 5 }),
        true,
        |q| q.order_by_desc(Episode::rank()).limit(5),
    ));
    let two = ["acme", "umbrella:eu-1"];
    c.push(fetch::<Episode>(
        "admin: Episode project_id__in",
        a(),
        json!({ "project_id__in": two }),
        none(),
        false,
        move |q| q.filter(Episode::project_id().is_in(two)),
    ));
    c.push(count::<Episode>(
        "admin: Episode count project_id__in",
        a(),
        json!({ "project_id__in": two }),
        move |q| q.filter(Episode::project_id().is_in(two)),
    ));
    let mid = fx
        .episodes_of("globex")
        .iter()
        .map(|e| e.score)
        .fold(f64::INFINITY, f64::min);
    c.push(fetch::<Episode>(
        "admin: Episode project_id == globex and score >= min",
        a(),
        json!({ "project_id": "globex", "score__gte": spec_float(mid) }),
        none(),
        true,
        move |q| {
            q.filter(Episode::project_id().eq("globex"))
                .filter(Episode::score().gte(mid))
        },
    ));
    c.push(get::<Episode>(
        "admin: Episode get missing",
        a(),
        json!({ "project_id": "acme", "episode_id": "0".repeat(32) }),
        Episode::key_of("acme", "0".repeat(32)),
    ));

    c.push(fetch::<KitchenSink>(
        "admin: KitchenSink all",
        a(),
        none(),
        none(),
        false,
        |q| q,
    ));
    c.push(count::<KitchenSink>(
        "admin: KitchenSink count",
        a(),
        none(),
        |q| q,
    ));
    let noon = NaiveTime::from_hms_opt(12, 0, 0).unwrap_or_else(|| unreachable!());
    c.push(fetch::<KitchenSink>(
        "admin: KitchenSink slot < 12:00 (global zset)",
        a(),
        json!({ "slot__lt": j_time(&noon, None) }),
        none(),
        true,
        move |q| q.filter(KitchenSink::slot().lt(noon)),
    ));
    c.push(fetch::<KitchenSink>(
        "admin: KitchenSink order_by slot limit 4",
        a(),
        none(),
        json!({ "order_by": "slot", "limit": 4 }),
        true,
        |q| q.order_by(KitchenSink::slot()).limit(4),
    ));
    let two = ["globex", "umbrella:eu-1"];
    c.push(fetch::<KitchenSink>(
        "admin: KitchenSink tenant__in",
        a(),
        json!({ "tenant__in": two }),
        none(),
        false,
        move |q| q.filter(KitchenSink::tenant().is_in(two)),
    ));
    let skus: Vec<String> = TENANTS
        .iter()
        .map(|t| fx.sinks_of(t)[3].sku.clone())
        .collect();
    {
        let skus2 = skus.clone();
        c.push(fetch::<KitchenSink>(
            "admin: KitchenSink sku__in across tenants",
            a(),
            json!({ "sku__in": skus }),
            none(),
            false,
            move |q| q.filter(KitchenSink::sku().is_in(skus2.iter().map(String::as_str))),
        ));
    }
    for s in &fx.sinks {
        let sku = s.sku.clone();
        c.push(fetch::<KitchenSink>(
            format!("admin: KitchenSink sku == {}", s.sku),
            a(),
            json!({ "sku": s.sku }),
            none(),
            false,
            move |q| q.filter(KitchenSink::sku().eq(sku.as_str())),
        ));
    }
}
