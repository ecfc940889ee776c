//! The query cases of `KitchenSink` (every value type) through a tenant handle.

use std::collections::BTreeSet;

use chrono::{FixedOffset, NaiveTime};
use serde_json::{json, Value as Json};

use crate::fixture::Fixture;
use crate::interop_support::*;
use crate::models::{Interop, KitchenSink};
use crate::queries::{count, fetch, get, none, Case, Sc};

pub(crate) fn sink_cases(fx: &Fixture, tenant: &str, c: &mut Vec<Case>) {
    let t = || Sc::Tenant(tenant.to_owned());
    let rows = fx.sinks_of(tenant);
    let l = |s: &str| format!("{tenant}: KitchenSink {s}");
    let mut by_seen = rows.clone();
    by_seen.sort_by_key(|s| s.seen);
    let mut by_due = rows.clone();
    by_due.sort_by_key(|s| s.due);
    let mut by_slot = rows.clone();
    by_slot.sort_by_key(|s| s.slot);
    let seen_mid = by_seen[1].seen;
    let (seen_lo, seen_hi) = (by_seen[0].seen, by_seen[2].seen);
    let due_mid = by_due[2].due;
    let (due_lo, due_hi) = (by_due[1].due, by_due[2].due);
    let slot_mid = by_slot[1].slot;
    let js = j_aware;
    let jd = j_date;
    let jt = |d: &NaiveTime| j_time(d, None);

    c.push(fetch::<KitchenSink>(
        l("all"),
        t(),
        json!({ "tenant": tenant }),
        none(),
        false,
        |q| q,
    ));
    let sku0 = rows[0].sku.clone();
    {
        let sku = sku0.clone();
        c.push(fetch::<KitchenSink>(
            l(&format!("sku == {sku0}")),
            t(),
            json!({ "sku": sku0 }),
            none(),
            false,
            move |q| q.filter(KitchenSink::sku().eq(sku.as_str())),
        ));
    }
    {
        let skus = vec![rows[0].sku.clone(), rows[2].sku.clone(), "nope".to_owned()];
        let f = json!({ "tenant": tenant, "sku__in": skus });
        let s2 = skus.clone();
        c.push(fetch::<KitchenSink>(
            l("sku__in"),
            t(),
            f.clone(),
            none(),
            false,
            move |q| q.filter(KitchenSink::sku().is_in(s2.iter().map(String::as_str))),
        ));
        c.push(count::<KitchenSink>(l("count sku__in"), t(), f, move |q| {
            q.filter(KitchenSink::sku().is_in(skus.iter().map(String::as_str)))
        }));
    }
    let f = |key: &str, v: Json| json!({ "tenant": tenant, key: v });
    c.push(fetch::<KitchenSink>(
        l("seen >= mid"),
        t(),
        f("seen__gte", js(&seen_mid)),
        none(),
        true,
        move |q| q.filter(KitchenSink::seen().gte(seen_mid)),
    ));
    c.push(fetch::<KitchenSink>(
        l("seen > mid"),
        t(),
        f("seen__gt", js(&seen_mid)),
        none(),
        true,
        move |q| q.filter(KitchenSink::seen().gt(seen_mid)),
    ));
    c.push(fetch::<KitchenSink>(
        l("seen <= mid"),
        t(),
        f("seen__lte", js(&seen_mid)),
        none(),
        true,
        move |q| q.filter(KitchenSink::seen().lte(seen_mid)),
    ));
    c.push(fetch::<KitchenSink>(
        l("seen < mid"),
        t(),
        f("seen__lt", js(&seen_mid)),
        none(),
        true,
        move |q| q.filter(KitchenSink::seen().lt(seen_mid)),
    ));
    c.push(fetch::<KitchenSink>(
        l("seen between"),
        t(),
        f("seen__between", json!([js(&seen_lo), js(&seen_hi)])),
        none(),
        true,
        move |q| q.filter(KitchenSink::seen().between(seen_lo, seen_hi)),
    ));
    // The same instant at another offset selects the same rows (scores are UTC timestamps).
    let seen_mid_east =
        seen_mid.with_timezone(&FixedOffset::east_opt(7 * 3600).unwrap_or_else(|| unreachable!()));
    c.push(fetch::<KitchenSink>(
        l("seen >= mid given at +07:00"),
        t(),
        f("seen__gte", js(&seen_mid_east)),
        none(),
        true,
        move |q| q.filter(KitchenSink::seen().gte(seen_mid_east)),
    ));
    c.push(fetch::<KitchenSink>(
        l("due >= mid"),
        t(),
        f("due__gte", jd(&due_mid)),
        none(),
        true,
        move |q| q.filter(KitchenSink::due().gte(due_mid)),
    ));
    c.push(fetch::<KitchenSink>(
        l("due < mid"),
        t(),
        f("due__lt", jd(&due_mid)),
        none(),
        true,
        move |q| q.filter(KitchenSink::due().lt(due_mid)),
    ));
    c.push(fetch::<KitchenSink>(
        l("due between"),
        t(),
        f("due__between", json!([jd(&due_lo), jd(&due_hi)])),
        none(),
        true,
        move |q| q.filter(KitchenSink::due().between(due_lo, due_hi)),
    ));
    c.push(fetch::<KitchenSink>(
        l("slot >= mid (global zset)"),
        t(),
        f("slot__gte", jt(&slot_mid)),
        none(),
        true,
        move |q| q.filter(KitchenSink::slot().gte(slot_mid)),
    ));
    c.push(fetch::<KitchenSink>(
        l("slot <= mid"),
        t(),
        f("slot__lte", jt(&slot_mid)),
        none(),
        true,
        move |q| q.filter(KitchenSink::slot().lte(slot_mid)),
    ));
    let regions: BTreeSet<String> = rows.iter().map(|s| s.region.clone()).collect();
    for region in regions {
        let mut levels: Vec<i64> = rows
            .iter()
            .filter(|s| s.region == region)
            .map(|s| s.level)
            .collect();
        levels.sort_unstable();
        let (min, max) = (levels[0], levels[levels.len() - 1]);
        let lf = |key: &str, v: Json| json!({ "tenant": tenant, "region": region, key: v });
        let r = region.clone();
        c.push(fetch::<KitchenSink>(
            l(&format!("region {region} level >= min")),
            t(),
            lf("level__gte", json!(min)),
            none(),
            true,
            move |q| {
                q.partition(KitchenSink::region(), r.as_str())
                    .filter(KitchenSink::level().gte(min))
            },
        ));
        let r = region.clone();
        c.push(fetch::<KitchenSink>(
            l(&format!("region {region} level > min")),
            t(),
            lf("level__gt", json!(min)),
            none(),
            true,
            move |q| {
                q.partition(KitchenSink::region(), r.as_str())
                    .filter(KitchenSink::level().gt(min))
            },
        ));
        let r = region.clone();
        c.push(fetch::<KitchenSink>(
            l(&format!("region {region} level between")),
            t(),
            lf("level__between", json!([min, max])),
            none(),
            true,
            move |q| {
                q.partition(KitchenSink::region(), r.as_str())
                    .filter(KitchenSink::level().between(min, max))
            },
        ));
        let r = region.clone();
        c.push(fetch::<KitchenSink>(
            l(&format!(
                "region {region} level >= min order_by -level limit 2"
            )),
            t(),
            lf("level__gte", json!(min)),
            json!({ "order_by": "-level", "limit": 2 }),
            true,
            move |q| {
                q.partition(KitchenSink::region(), r.as_str())
                    .filter(KitchenSink::level().gte(min))
                    .order_by_desc(KitchenSink::level())
                    .limit(2)
            },
        ));
        let r = region.clone();
        c.push(count::<KitchenSink>(
            l(&format!("region {region} count level >= min")),
            t(),
            lf("level__gte", json!(min)),
            move |q| {
                q.partition(KitchenSink::region(), r.as_str())
                    .filter(KitchenSink::level().gte(min))
            },
        ));
    }
    c.push(fetch::<KitchenSink>(
        l("order_by -seen limit 2"),
        t(),
        json!({ "tenant": tenant }),
        json!({ "order_by": "-seen", "limit": 2 }),
        true,
        |q| q.order_by_desc(KitchenSink::seen()).limit(2),
    ));
    c.push(fetch::<KitchenSink>(
        l("order_by due limit 3"),
        t(),
        json!({ "tenant": tenant }),
        json!({ "order_by": "due", "limit": 3 }),
        true,
        |q| q.order_by(KitchenSink::due()).limit(3),
    ));
    c.push(fetch::<KitchenSink>(
        l("order_by -slot"),
        t(),
        json!({ "tenant": tenant }),
        json!({ "order_by": "-slot" }),
        true,
        |q| q.order_by_desc(KitchenSink::slot()),
    ));
    c.push(fetch::<KitchenSink>(
        l("seen >= lo order_by -due"),
        t(),
        f("seen__gte", js(&seen_lo)),
        json!({ "order_by": "-due" }),
        true,
        move |q| {
            q.filter(KitchenSink::seen().gte(seen_lo))
                .order_by_desc(KitchenSink::due())
        },
    ));
    c.push(fetch::<KitchenSink>(
        l("seen >= lo and slot >= mid"),
        t(),
        json!({ "tenant": tenant, "seen__gte": js(&seen_lo), "slot__gte": jt(&slot_mid) }),
        none(),
        false,
        move |q| {
            q.filter(KitchenSink::seen().gte(seen_lo))
                .filter(KitchenSink::slot().gte(slot_mid))
        },
    ));
    c.push(count::<KitchenSink>(
        l("count"),
        t(),
        json!({ "tenant": tenant }),
        |q| q,
    ));
    c.push(count::<KitchenSink>(
        l("count seen >= mid"),
        t(),
        f("seen__gte", js(&seen_mid)),
        move |q| q.filter(KitchenSink::seen().gte(seen_mid)),
    ));
    c.push(count::<KitchenSink>(
        l("count due < mid"),
        t(),
        f("due__lt", jd(&due_mid)),
        move |q| q.filter(KitchenSink::due().lt(due_mid)),
    ));
    for s in &rows {
        c.push(get::<KitchenSink>(
            l(&format!("get {}", s.sku)),
            t(),
            json!({ "tenant": tenant, "sku": s.sku }),
            s.key(),
        ));
    }
    c.push(get::<KitchenSink>(
        l("get missing sku"),
        t(),
        json!({ "tenant": tenant, "sku": "nope" }),
        KitchenSink::key_of(tenant, "nope"),
    ));
}
