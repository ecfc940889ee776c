//! Injection: tenant ids and key values made of separators, escapes, glob metacharacters,
//! whitespace, Unicode and long runs never let one tenant reach another's data.
//!
//! Generated cases per run (fixed by each property's `cases`):
//!
//! | property | cases | server |
//! |---|---|---|
//! | `escape_round_trips_and_leaves_nothing_unescaped` | 2,500 | no |
//! | `escaped_globs_match_only_their_own_text` | 2,000 | no |
//! | `instance_keys_parse_back_to_their_segments` | 2,000 | no |
//! | `distinct_tenants_never_share_keys_or_match_patterns` | 3,500 | no |
//! | `tenant_handles_read_only_their_own_tenant` | 300 | yes |
//! | `lifecycle_of_one_tenant_leaves_the_other_byte_for_byte` | 160 | yes |
//!
//! 10,460 cases in all. Server-backed properties reuse one private server each and FLUSHDB
//! between cases.
//!
//! This file holds the models, strategies and server set-up the properties share; the
//! properties are modules in `tests/injection_cases/`.

mod support;

#[path = "injection_cases/confined.rs"]
mod confined;
#[path = "injection_cases/escaping.rs"]
mod escaping;
#[path = "injection_cases/glob.rs"]
mod glob;
#[path = "injection_cases/lifecycle.rs"]
mod lifecycle;

use std::collections::BTreeMap;

use popoto::testing::TestRedis;
use popoto::{Db, Error, Key, Model, ModelSet, TenantId};
use popoto_core::keys::{self, escape, glob_escape, unescape};
use proptest::prelude::*;
use proptest::test_runner::{TestCaseError, TestRunner};
use support::{dump, proptest_config, runtime, start_server, Belief, Episode, Item, Memory};

// ------------------------------------------------------------------------ test models

/// The tenant in the middle of the key (`Ledger:<zone>:<tenant>:<entry>`).
#[derive(Model, Debug, Clone, PartialEq, Default)]
struct Ledger {
    #[popoto(key)]
    a_zone: String,
    #[popoto(key, tenant)]
    m_tenant: String,
    #[popoto(key)]
    z_entry: String,
    #[popoto(sorted, partition_by = "m_tenant")]
    amount: i64,
}

/// The tenant first (`Doc:<tenant>:<doc>`).
#[derive(Model, Debug, Clone, PartialEq, Default)]
struct Doc {
    #[popoto(key, tenant)]
    a_org: String,
    #[popoto(key)]
    b_doc: String,
    body: String,
}

// ------------------------------------------------------------------------ strategies

/// Pieces of hostile text: Popoto's escapes and their fragments, glob metacharacters,
/// separators, whitespace, Unicode.
const ATOMS: &[&str] = &[
    ":", "{", "}", "*", "?", "[", "]", "\\", "/", "-", "'", "^", "{&#58;}", "/{&#58;}", "{&#58;",
    "&#58;}", "//", "::", "/-", "\\*", "[^a]", "[a-z]", " ", "\u{a0}", "\u{3000}", "é", "日本",
    "🦀", "\u{200b}", "\u{202e}", "a", "b", "A", "0", "$", "%", "#", "&", ".", "_", "$Class",
    "$KeyF", "Item", "Episode",
];

/// Atoms that only key values (not tenant ids) may contain: control characters.
const CONTROL_ATOMS: &[&str] = &["\t", "\n", "\r", "\0", "\u{7f}"];

fn atom() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => prop::sample::select(ATOMS).prop_map(String::from),
        2 => any::<char>().prop_map(String::from),
        1 => (prop::sample::select(&[":", "/", "*", "{&#58;}", "a", "\\", "-", "é"][..]), 2usize..70)
            .prop_map(|(s, n)| s.repeat(n)),
    ]
}

/// Hostile text of 1 to 8 atoms.
fn rich() -> impl Strategy<Value = String> {
    prop::collection::vec(atom(), 1..8).prop_map(|v| v.concat())
}

/// Hostile text that may also hold control characters (key values, not tenant ids).
fn rich_value() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            9 => atom(),
            1 => prop::sample::select(CONTROL_ATOMS).prop_map(String::from),
        ],
        1..8,
    )
    .prop_map(|v| v.concat())
}

/// Makes any text a valid tenant id: control characters replaced, at most 256 bytes, not blank.
fn as_tenant(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        let c = if c.is_control() { '^' } else { c };
        if out.len() + c.len_utf8() > popoto::tenant::MAX_TENANT_LEN {
            break;
        }
        out.push(c);
    }
    if out.chars().all(char::is_whitespace) {
        out.insert(0, 't');
        if out.len() > popoto::tenant::MAX_TENANT_LEN {
            out.pop();
        }
    }
    out
}

fn tenant() -> impl Strategy<Value = String> {
    rich().prop_map(|s| as_tenant(&s))
}

/// Two distinct tenants, often near each other: prefixes, inserted atoms, one tenant being the
/// other's escaped, unescaped or glob-escaped form.
fn tenant_pair() -> impl Strategy<Value = (String, String)> {
    prop_oneof![
        (tenant(), tenant()),
        (tenant(), atom()).prop_map(|(a, x)| {
            let b = as_tenant(&format!("{a}{x}"));
            (a, b)
        }),
        (tenant(), atom(), any::<prop::sample::Index>()).prop_map(|(a, x, at)| {
            let mut cut = at.index(a.len() + 1);
            while !a.is_char_boundary(cut) {
                cut -= 1;
            }
            let b = as_tenant(&format!("{}{x}{}", &a[..cut], &a[cut..]));
            (a, b)
        }),
        tenant().prop_map(|a| {
            let b = as_tenant(&escape(&a));
            (a, b)
        }),
        tenant().prop_map(|a| {
            let b = as_tenant(&unescape(&a));
            (a, b)
        }),
        tenant().prop_map(|a| {
            let b = as_tenant(&glob_escape(&escape(&a)));
            (a, b)
        }),
    ]
    .prop_filter("two distinct tenants", |(a, b)| a != b)
    .prop_flat_map(|(a, b)| prop_oneof![Just((a.clone(), b.clone())), Just((b, a))])
}

// ------------------------------------------------------------------------ server set-up

/// The data one tenant writes in a case.
#[derive(Debug, Clone)]
struct Seed {
    tenant: String,
    /// Unique skus (disjoint from the other tenant's) with their region and level.
    items: Vec<(String, String, i64)>,
    /// Explicit episode ids (often equal to the other tenant's) and scores.
    episodes: Vec<(String, f64)>,
    /// Unique memory keys (disjoint from the other tenant's).
    memories: Vec<String>,
    /// Belief names (often equal to the other tenant's) in the one unpartitioned hash.
    beliefs: Vec<String>,
    /// Ledger (zone, entry) pairs, often equal to the other tenant's.
    ledgers: Vec<(String, String)>,
}

/// Items (sku, region, level), episode/belief/ledger names, memory keys.
type SeedValues = (Vec<(String, String, i64)>, Vec<String>, Vec<String>);

fn seed_values() -> impl Strategy<Value = SeedValues> {
    (
        prop::collection::vec((rich_value(), rich_value(), -50i64..50), 1..3),
        prop::collection::vec(rich_value(), 1..3),
        prop::collection::vec(rich_value(), 1..3),
    )
}

/// Two tenants' seeds; unique values are made distinct with a suffix, the others are often
/// shared on purpose.
fn seeds() -> impl Strategy<Value = (Seed, Seed)> {
    (tenant_pair(), seed_values(), seed_values(), any::<bool>()).prop_map(
        |((a, b), (ia, sa, ma), (ib, sb, mb), share)| {
            let make = |tenant: &str,
                        tag: &str,
                        items: Vec<(String, String, i64)>,
                        shared: &[String],
                        mems: &[String]| {
                let items = items
                    .into_iter()
                    .enumerate()
                    .map(|(i, (sku, region, level))| (format!("{sku}\u{1}{tag}{i}"), region, level))
                    .collect();
                Seed {
                    tenant: tenant.to_owned(),
                    items,
                    episodes: shared
                        .iter()
                        .enumerate()
                        .map(|(i, id)| (format!("{id}{i}"), i as f64 * 0.25 - 0.5))
                        .collect(),
                    memories: mems
                        .iter()
                        .enumerate()
                        .map(|(i, m)| format!("{m}\u{1}{tag}{i}"))
                        .collect(),
                    beliefs: shared
                        .iter()
                        .enumerate()
                        .map(|(i, n)| format!("{n}{i}"))
                        .collect(),
                    ledgers: shared
                        .iter()
                        .enumerate()
                        .map(|(i, n)| (n.clone(), format!("{i}")))
                        .collect(),
                }
            };
            let sb = if share { sa.clone() } else { sb };
            (make(&a, "a", ia, &sa, &ma), make(&b, "b", ib, &sb, &mb))
        },
    )
}

fn fail(context: &str, e: impl std::fmt::Display) -> TestCaseError {
    TestCaseError::fail(format!("{context}: {e}"))
}

fn models() -> ModelSet {
    ModelSet::new()
        .with::<Item>()
        .with::<Episode>()
        .with::<Memory>()
        .with::<Belief>()
        .with::<Ledger>()
}

/// Writes one tenant's seed through its handle, with confidence updates.
async fn write_seed(db: &Db, s: &Seed) -> Result<(), TestCaseError> {
    let t = db.tenant(&s.tenant).map_err(|e| fail("tenant", e))?;
    for (sku, region, level) in &s.items {
        t.create(Item {
            sku: sku.clone(),
            region: region.clone(),
            level: *level,
            note: Some(format!("{} {sku}", s.tenant)),
            ..Default::default()
        })
        .await
        .map_err(|e| fail("create item", e))?;
    }
    for (id, score) in &s.episodes {
        t.create(Episode {
            episode_id: id.clone(),
            title: format!("{} {id}", s.tenant),
            score: *score,
            rank: (id.len() % 7) as i64,
            ..Default::default()
        })
        .await
        .map_err(|e| fail("create episode", e))?;
    }
    for (i, key) in s.memories.iter().enumerate() {
        let m = t
            .create(Memory {
                key: key.clone(),
                content: s.tenant.clone(),
                certainty: 0.5,
                ..Default::default()
            })
            .await
            .map_err(|e| fail("create memory", e))?;
        let c = t
            .confidence(&m, Memory::certainty())
            .map_err(|e| fail("confidence", e))?;
        for _ in 0..=i {
            c.update(0.9).await.map_err(|e| fail("update", e))?;
        }
    }
    for name in &s.beliefs {
        let b = t
            .create(Belief {
                name: name.clone(),
                strength: 0.25,
                ..Default::default()
            })
            .await
            .map_err(|e| fail("create belief", e))?;
        t.confidence(&b, Belief::strength())
            .map_err(|e| fail("confidence", e))?
            .update(0.1)
            .await
            .map_err(|e| fail("update", e))?;
    }
    for (zone, entry) in &s.ledgers {
        t.create(Ledger {
            a_zone: zone.clone(),
            z_entry: entry.clone(),
            amount: entry.len() as i64,
            ..Default::default()
        })
        .await
        .map_err(|e| fail("create ledger", e))?;
    }
    Ok(())
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

async fn audits_clean(db: &Db) -> Result<(), TestCaseError> {
    let admin = db.admin();
    let reports = [
        admin.audit::<Item>().await,
        admin.audit::<Episode>().await,
        admin.audit::<Memory>().await,
        admin.audit::<Belief>().await,
        admin.audit::<Ledger>().await,
    ];
    for r in reports {
        let r = r.map_err(|e| fail("audit", e))?;
        prop_assert!(r.is_clean(), "{}", r);
    }
    Ok(())
}

/// Runs `cases` cases of `strategy` against one private server, FLUSHDB between cases.
fn on_one_server<S: Strategy>(
    cases: u32,
    strategy: S,
    body: impl for<'a> Fn(&'a TestRedis, &'a Db, S::Value) -> boxed::BoxedCase<'a>,
) where
    S::Value: std::fmt::Debug,
{
    let rt = runtime();
    let server = start_server();
    let db = rt.block_on(server.db());
    let raw = std::cell::RefCell::new(server.raw());
    let mut runner = TestRunner::new(proptest_config(cases));
    let result = runner.run(&strategy, |value| {
        redis::cmd("FLUSHDB")
            .exec(&mut *raw.borrow_mut())
            .map_err(|e| fail("flushdb", e))?;
        rt.block_on(body(&server, &db, value))
    });
    if let Err(e) = result {
        panic!("{e}\n--- server log ---\n{}", server.log());
    }
}

mod boxed {
    use proptest::test_runner::TestCaseError;
    use std::future::Future;
    use std::pin::Pin;

    /// A boxed case body.
    pub type BoxedCase<'a> = Pin<Box<dyn Future<Output = Result<(), TestCaseError>> + 'a>>;
}
