//! Every read through a tenant handle returns that tenant's data only, with hostile tenant
//! ids and key values on both sides.

use super::*;

/// Everything `me` can read through its handle is its own, and exactly its own; nothing of
/// `other` is reachable by key, filter, range, order, count or confidence scan.
async fn reads_are_confined(db: &Db, me: &Seed, other: &Seed) -> Result<(), TestCaseError> {
    let t = db.tenant(&me.tenant).map_err(|e| fail("tenant", e))?;
    let my_skus = sorted(me.items.iter().map(|i| i.0.clone()).collect::<Vec<_>>());
    let all_skus: Vec<String> = me
        .items
        .iter()
        .chain(&other.items)
        .map(|i| i.0.clone())
        .collect();

    // get: own keys are found; the other tenant's keys are refused; own tenant with the
    // other's key values finds nothing.
    for (sku, region, level) in &me.items {
        let got = t
            .get(&Item::key_of(me.tenant.clone(), sku.clone()))
            .await
            .map_err(|e| fail("get", e))?;
        prop_assert!(
            got.as_ref()
                .is_some_and(|i| i.tenant == me.tenant && &i.region == region && i.level == *level),
            "get own item {:?}: {:?}",
            sku,
            got
        );
    }
    for (sku, _, _) in &other.items {
        let r = t
            .get(&Item::key_of(other.tenant.clone(), sku.clone()))
            .await;
        prop_assert!(matches!(r, Err(Error::TenantMismatch { .. })), "{:?}", r);
        let r = t
            .get(&Item::key_of(me.tenant.clone(), sku.clone()))
            .await
            .map_err(|e| fail("get", e))?;
        prop_assert!(r.is_none(), "other's sku under own tenant: {:?}", r);
        let r = t
            .exists(&Item::key_of(other.tenant.clone(), sku.clone()))
            .await;
        prop_assert!(matches!(r, Err(Error::TenantMismatch { .. })), "{:?}", r);
    }
    for (id, _) in &me.episodes {
        let got = t
            .get(&Episode::key_of(me.tenant.clone(), id.clone()))
            .await
            .map_err(|e| fail("get", e))?;
        prop_assert!(
            got.as_ref().is_some_and(
                |e| e.project_id == me.tenant && e.title == format!("{} {id}", me.tenant)
            ),
            "get own episode {:?}: {:?}",
            id,
            got
        );
    }

    // Queries: all rows, key equality, `in`, ranges, order, count.
    let rows = t
        .query::<Item>()
        .fetch()
        .await
        .map_err(|e| fail("query", e))?;
    prop_assert_eq!(
        sorted(rows.iter().map(|i| i.sku.clone()).collect::<Vec<_>>()),
        my_skus.clone()
    );
    prop_assert!(rows.iter().all(|i| i.tenant == me.tenant));
    let n = t
        .query::<Item>()
        .count()
        .await
        .map_err(|e| fail("count", e))?;
    prop_assert_eq!(n, me.items.len());
    for sku in &all_skus {
        let mine = me.items.iter().any(|i| &i.0 == sku);
        let q = t
            .query::<Item>()
            .filter(Item::sku().eq(sku.clone()))
            .fetch()
            .await
            .map_err(|e| fail("eq", e))?;
        prop_assert_eq!(q.len(), usize::from(mine), "sku {:?}", sku);
        let c = t
            .query::<Item>()
            .filter(Item::sku().eq(sku.clone()))
            .count()
            .await
            .map_err(|e| fail("eq count", e))?;
        prop_assert_eq!(c, usize::from(mine));
    }
    let q = t
        .query::<Item>()
        .filter(Item::sku().is_in(all_skus.clone()))
        .fetch_keys()
        .await
        .map_err(|e| fail("in", e))?;
    prop_assert_eq!(
        sorted(
            q.iter()
                .map(|k| k.segments()[0].clone())
                .collect::<Vec<_>>()
        ),
        my_skus.clone()
    );
    let c = t
        .query::<Item>()
        .filter(Item::sku().is_in(all_skus.clone()))
        .count()
        .await
        .map_err(|e| fail("in count", e))?;
    prop_assert_eq!(c, me.items.len());
    let regions: Vec<&String> = me.items.iter().chain(&other.items).map(|i| &i.1).collect();
    for region in regions {
        let want: Vec<i64> = {
            let mut v: Vec<i64> = me
                .items
                .iter()
                .filter(|i| &i.1 == region)
                .map(|i| i.2)
                .collect();
            v.sort_by(|a, b| b.cmp(a));
            v
        };
        let got = t
            .query::<Item>()
            .partition(Item::region(), region.clone())
            .order_by_desc(Item::level())
            .fetch()
            .await
            .map_err(|e| fail("order", e))?;
        prop_assert!(got.iter().all(|i| i.tenant == me.tenant));
        prop_assert_eq!(
            got.iter().map(|i| i.level).collect::<Vec<_>>(),
            want.clone()
        );
        let c = t
            .query::<Item>()
            .partition(Item::region(), region.clone())
            .filter(Item::level().between(-1000, 1000))
            .count()
            .await
            .map_err(|e| fail("range count", e))?;
        prop_assert_eq!(c, want.len());
    }
    let eps = t
        .query::<Episode>()
        .order_by(Episode::score())
        .fetch()
        .await
        .map_err(|e| fail("episode order", e))?;
    prop_assert_eq!(eps.len(), me.episodes.len());
    prop_assert!(eps.iter().all(|e| e.project_id == me.tenant));
    let eps = t
        .query::<Episode>()
        .filter(Episode::rank().gte(0))
        .order_by_desc(Episode::rank())
        .count()
        .await
        .map_err(|e| fail("episode rank", e))?;
    prop_assert_eq!(eps, me.episodes.len());
    let ledgers = t
        .query::<Ledger>()
        .order_by(Ledger::amount())
        .fetch()
        .await
        .map_err(|e| fail("ledger", e))?;
    prop_assert_eq!(ledgers.len(), me.ledgers.len());
    prop_assert!(ledgers.iter().all(|l| l.m_tenant == me.tenant));
    for (zone, _) in &other.ledgers {
        let c = t
            .query::<Ledger>()
            .filter(Ledger::a_zone().eq(zone.clone()))
            .count()
            .await
            .map_err(|e| fail("ledger zone", e))?;
        prop_assert_eq!(c, me.ledgers.iter().filter(|l| &l.0 == zone).count());
    }

    // A filter naming the other tenant is refused, not answered.
    let r = t
        .query::<Item>()
        .filter(Item::tenant().eq(other.tenant.clone()))
        .count()
        .await;
    prop_assert!(matches!(r, Err(Error::TenantMismatch { .. })), "{:?}", r);
    let r = t
        .query::<Item>()
        .partition(Item::tenant(), other.tenant.clone())
        .partition(Item::region(), "x")
        .filter(Item::level().gte(0))
        .fetch()
        .await;
    prop_assert!(matches!(r, Err(Error::TenantMismatch { .. })), "{:?}", r);

    // Filtered confidence reads: the tenant's partition hash, and the shared unpartitioned one.
    let entries = t
        .confidence_scan(Memory::certainty())
        .batch(1)
        .fetch_all()
        .await
        .map_err(|e| fail("scan", e))?;
    prop_assert_eq!(
        sorted(
            entries
                .iter()
                .map(|(k, _)| k.segments()[0].clone())
                .collect::<Vec<_>>()
        ),
        sorted(me.memories.clone())
    );
    for (i, key) in me.memories.iter().enumerate() {
        let found = entries.iter().find(|(k, _)| &k.segments()[0] == key);
        prop_assert!(found.is_some_and(|(_, s)| s.evidence_count == i as u64 + 1));
    }
    let entries = t
        .confidence_scan(Belief::strength())
        .fetch_all()
        .await
        .map_err(|e| fail("scan", e))?;
    prop_assert_eq!(
        sorted(
            entries
                .iter()
                .map(|(k, _)| k.segments()[0].clone())
                .collect::<Vec<_>>()
        ),
        sorted(me.beliefs.clone())
    );
    prop_assert!(entries
        .iter()
        .all(|(k, s)| k.tenant() == Some(me.tenant.as_str()) && s.evidence_count == 1));
    for name in &other.beliefs {
        let entries = t
            .confidence_scan(Belief::strength())
            .with(Belief::name(), name.clone())
            .fetch_all()
            .await
            .map_err(|e| fail("scan", e))?;
        prop_assert_eq!(
            entries.len(),
            me.beliefs.iter().filter(|b| *b == name).count()
        );
    }
    let r = t
        .confidence_scan(Belief::strength())
        .with(Belief::owner(), other.tenant.clone())
        .fetch_all()
        .await;
    prop_assert!(matches!(r, Err(Error::TenantMismatch { .. })), "{:?}", r);
    // A unique value held by the other tenant is refused without showing its key.
    for (sku, _, _) in &other.items {
        let r = t
            .create(Item {
                sku: sku.clone(),
                ..Default::default()
            })
            .await;
        match r {
            Err(Error::UniqueViolation { existing, .. }) => {
                prop_assert_eq!(existing, popoto::OTHER_TENANT)
            }
            other => prop_assert!(false, "expected UniqueViolation, got {:?}", other),
        }
    }
    // Maintenance and audits are for the admin handle only: a tenant handle has no such
    // methods (tests/ui/admin).
    Ok(())
}

/// Every read through one tenant's handle (get, exists, queries by key equality, `in`, ranges,
/// order, count, confidence scans) returns that tenant's data only, with hostile tenant ids and
/// key values on both sides (300 cases, one server).
#[test]
fn tenant_handles_read_only_their_own_tenant() {
    on_one_server(300, seeds(), |_server, db, (a, b)| {
        Box::pin(async move {
            write_seed(db, &a).await?;
            write_seed(db, &b).await?;
            reads_are_confined(db, &a, &b).await?;
            reads_are_confined(db, &b, &a).await?;
            audits_clean(db).await
        })
    });
}
