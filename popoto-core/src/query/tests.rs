//! Query resolution without a server: filters and scope to index reads.

use super::*;
use crate::backend::{Backend, BackendConfig};
use crate::db::Db;
use crate::model::{FieldKind, FieldMeta, KeyField, ModelMeta, Record, SortedField};
use crate::query::Query;

/// Popoto's Episode by hand: tenant key `project_id`, auto key, a sorted score partitioned by
/// the tenant, an unpartitioned sorted rank.
struct Episode;

impl Model for Episode {
    const META: &'static ModelMeta = &ModelMeta {
        name: "Episode",
        fields: &[
            FieldMeta {
                name: "project_id",
                kind: FieldKind::Key,
                partition_by: &[],
                hidden: false,
            },
            FieldMeta {
                name: "episode_id",
                kind: FieldKind::AutoKey,
                partition_by: &[],
                hidden: false,
            },
            FieldMeta {
                name: "score",
                kind: FieldKind::Sorted,
                partition_by: &[0],
                hidden: false,
            },
            FieldMeta {
                name: "rank",
                kind: FieldKind::Sorted,
                partition_by: &[],
                hidden: false,
            },
        ],
        key_fields: &[1, 0],
        tenant: Some(0),
    };

    fn to_record(&self) -> Result<Record> {
        Ok(Record::default())
    }
    fn from_hash(_key: &str, _fields: Vec<(Vec<u8>, Vec<u8>)>) -> Result<Self> {
        Ok(Episode)
    }
    fn fill_auto_keys(&mut self) -> bool {
        false
    }
    fn fill_confidence_initials(&mut self) {}
    fn tenant_id(&self) -> Option<&str> {
        None
    }
    fn set_tenant_id(&mut self, _tenant: &str) {}
    fn segment_from_stored(_key: &str, _field: usize, _raw: &[u8]) -> Result<String> {
        Ok(String::new())
    }
}

const PROJECT: KeyField<Episode, String> = KeyField::new(0);
const SCORE: SortedField<Episode, f64> = SortedField::new(2);
const RANK: SortedField<Episode, i64> = SortedField::new(3);

/// A `Db` on an address nothing listens on: resolution never dials.
fn db() -> Db {
    let backend =
        Backend::new(BackendConfig::new("redis://127.0.0.1:1/0")).unwrap_or_else(|e| panic!("{e}"));
    Db::from_backend(backend)
}

fn set(k: &str) -> Source {
    Source::Set(k.into())
}

fn range(field: usize, zset: &str, min: Bound, max: Bound) -> Source {
    Source::Range {
        field,
        zset: zset.into(),
        min,
        max,
    }
}

fn resolve(q: Query<'_, Episode>) -> Result<Vec<Source>> {
    q.resolve()
}

#[test]
fn a_tenant_handle_reads_its_value_set_or_its_partition() {
    let db = db();
    let acme = db.tenant("acme").unwrap_or_else(|e| panic!("{e}"));
    let q = || acme.query::<Episode>();
    assert_eq!(
        resolve(q()).ok(),
        Some(vec![set("$KeyF:Episode:project_id:acme")])
    );
    // A range on the tenant-partitioned score reads the partition only: no extra set.
    assert_eq!(
        resolve(q().filter(SCORE.gte(0.5))).ok(),
        Some(vec![range(
            2,
            "$SortF:Episode:score:acme",
            Bound::Incl(0.5),
            Bound::Unbounded
        )])
    );
    // A range on an unpartitioned field is intersected with the tenant's value set.
    assert_eq!(
        resolve(q().filter(RANK.lt(3))).ok(),
        Some(vec![
            range(3, "$SortF:Episode:rank", Bound::Unbounded, Bound::Excl(3.0)),
            set("$KeyF:Episode:project_id:acme"),
        ])
    );
    // Ordering by the partitioned field reads that partition as the source.
    assert_eq!(
        resolve(q().order_by(SCORE)).ok(),
        Some(vec![range(
            2,
            "$SortF:Episode:score:acme",
            Bound::Unbounded,
            Bound::Unbounded
        )])
    );
    // Tenant ids are escaped in the keys.
    let odd = db.tenant("a:b*").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        resolve(odd.query::<Episode>()).ok(),
        Some(vec![set("$KeyF:Episode:project_id:a{&#58;}b/*")])
    );
}

#[test]
fn another_tenants_values_are_refused_before_any_read() {
    let db = db();
    let acme = db.tenant("acme").unwrap_or_else(|e| panic!("{e}"));
    for q in [
        acme.query::<Episode>().filter(PROJECT.eq("globex")),
        acme.query::<Episode>()
            .filter(PROJECT.is_in(["acme", "globex"])),
        acme.query::<Episode>().partition(PROJECT, "globex"),
    ] {
        match resolve(q) {
            Err(Error::TenantMismatch { found, .. }) => assert_eq!(found, "globex"),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn scopes_without_a_tenant_read_the_class_set_and_need_partitions() {
    let db = db();
    assert!(matches!(
        resolve(db.unscoped().query::<Episode>()),
        Err(Error::NoTenant { model: "Episode" })
    ));
    let admin = db.admin();
    assert_eq!(
        resolve(admin.query::<Episode>()).ok(),
        Some(vec![set("$Class:Episode")])
    );
    assert!(matches!(
        resolve(admin.query::<Episode>().filter(SCORE.gte(0.0))),
        Err(Error::MissingPartition {
            field: "score",
            partition_field: "project_id",
            ..
        })
    ));
    assert_eq!(
        resolve(
            admin
                .query::<Episode>()
                .filter(PROJECT.eq("globex"))
                .filter(SCORE.gte(1.0))
        )
        .ok(),
        Some(vec![
            set("$KeyF:Episode:project_id:globex"),
            range(
                2,
                "$SortF:Episode:score:globex",
                Bound::Incl(1.0),
                Bound::Unbounded
            ),
        ])
    );
    assert_eq!(
        resolve(admin.query::<Episode>().filter(PROJECT.is_in(["a", "b"]))).ok(),
        Some(vec![Source::Union(vec![
            "$KeyF:Episode:project_id:a".into(),
            "$KeyF:Episode:project_id:b".into()
        ])])
    );
}

#[test]
fn nan_bounds_are_refused() {
    let db = db();
    let acme = db.tenant("acme").unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        resolve(acme.query::<Episode>().filter(SCORE.lt(f64::NAN))),
        Err(Error::InvalidValue { field: "score", .. })
    ));
}
