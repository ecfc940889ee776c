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

mod support;

use std::collections::BTreeMap;

use popoto::testing::TestRedis;
use popoto::{Db, Error, Key, Model, ModelSet, TenantId};
use popoto_core::keys::{self, escape, glob_escape, unescape};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use support::{dump, Belief, Episode, Item, Memory};

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

fn config(cases: u32) -> Config {
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

// ------------------------------------------------------------------------ Redis glob

fn at(b: &[u8], i: isize) -> u8 {
    usize::try_from(i)
        .ok()
        .and_then(|i| b.get(i).copied())
        .unwrap_or(0)
}

/// Redis' `stringmatchlen` (util.c), ported literally: what SCAN/HSCAN MATCH does.
fn redis_glob(pattern: &str, text: &str) -> bool {
    let mut skip = false;
    let (p, s) = (pattern.as_bytes(), text.as_bytes());
    glob_impl(p, 0, p.len() as isize, s, 0, s.len() as isize, &mut skip, 0)
}

#[allow(clippy::too_many_arguments)]
fn glob_impl(
    p: &[u8],
    mut pi: isize,
    mut pl: isize,
    s: &[u8],
    mut si: isize,
    mut sl: isize,
    skip: &mut bool,
    nesting: u32,
) -> bool {
    if nesting > 1000 {
        return false;
    }
    while pl > 0 && sl > 0 {
        match at(p, pi) {
            b'*' => {
                while pl > 0 && at(p, pi + 1) == b'*' {
                    pi += 1;
                    pl -= 1;
                }
                if pl == 1 {
                    return true;
                }
                while sl > 0 {
                    if glob_impl(p, pi + 1, pl - 1, s, si, sl, skip, nesting + 1) {
                        return true;
                    }
                    if *skip {
                        return false;
                    }
                    si += 1;
                    sl -= 1;
                }
                *skip = true;
                return false;
            }
            b'?' => {
                si += 1;
                sl -= 1;
            }
            b'[' => {
                pi += 1;
                pl -= 1;
                let not = at(p, pi) == b'^';
                if not {
                    pi += 1;
                    pl -= 1;
                }
                let mut matched = false;
                loop {
                    if at(p, pi) == b'\\' && pl >= 2 {
                        pi += 1;
                        pl -= 1;
                        if at(p, pi) == at(s, si) {
                            matched = true;
                        }
                    } else if at(p, pi) == b']' {
                        break;
                    } else if pl == 0 {
                        pi -= 1;
                        pl += 1;
                        break;
                    } else if pl >= 3 && at(p, pi + 1) == b'-' {
                        let mut start = at(p, pi) as i8 as i32;
                        let mut end = at(p, pi + 2) as i8 as i32;
                        let c = at(s, si) as i8 as i32;
                        if start > end {
                            std::mem::swap(&mut start, &mut end);
                        }
                        pi += 2;
                        pl -= 2;
                        if c >= start && c <= end {
                            matched = true;
                        }
                    } else if at(p, pi) == at(s, si) {
                        matched = true;
                    }
                    pi += 1;
                    pl -= 1;
                }
                if not {
                    matched = !matched;
                }
                if !matched {
                    return false;
                }
                si += 1;
                sl -= 1;
            }
            c => {
                let mut c = c;
                if c == b'\\' && pl >= 2 {
                    pi += 1;
                    pl -= 1;
                    c = at(p, pi);
                }
                if c != at(s, si) {
                    return false;
                }
                si += 1;
                sl -= 1;
            }
        }
        pi += 1;
        pl -= 1;
        if sl == 0 {
            while at(p, pi) == b'*' {
                pi += 1;
                pl -= 1;
            }
            break;
        }
    }
    pl == 0 && sl == 0
}

#[test]
fn the_glob_port_agrees_with_redis_on_known_cases() {
    for (p, s, want) in [
        ("a*", "abc", true),
        ("a\\*", "a*", true),
        ("a\\*", "ab", false),
        ("h?llo", "hello", true),
        ("h[ae]llo", "hallo", true),
        ("h[^e]llo", "hello", false),
        ("h[a-b]llo", "hbllo", true),
        ("Item:*:acme", "Item:x:y:acme", true),
        ("Item:*:acme", "Item:x:acme2", false),
        ("\\[ab\\]", "[ab]", true),
        ("\\[ab\\]", "a", false),
        ("*", "", false), // Redis: `*` needs at least one byte
        ("", "", true),
    ] {
        assert_eq!(redis_glob(p, s), want, "{p:?} on {s:?}");
    }
}

// ------------------------------------------------------------------------ pure properties

/// Whether `seg` has a `:` or a glob or Popoto metacharacter that is not escaped, scanning as
/// `unescape` does.
fn has_unescaped_meta(seg: &str) -> Option<usize> {
    let b = seg.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'/' => match b.get(i + 1) {
                Some(b'/' | b'\'' | b'?' | b'*' | b'^' | b'[' | b']' | b'-') => i += 2,
                Some(b'{') if seg[i + 1..].starts_with("{&#58;}") => i += 8,
                // A lone `/` is only produced by escaping, always followed by what it escapes.
                _ => return Some(i),
            },
            b'{' if seg[i..].starts_with("{&#58;}") => i += 7,
            b':' | b'\'' | b'?' | b'*' | b'^' | b'[' | b']' | b'-' => return Some(i),
            _ => i += 1,
        }
    }
    None
}

proptest! {
    #![proptest_config(config(2500))]

    /// `unescape(escape(s)) == s`; an escaped segment holds no `:` and no unescaped
    /// metacharacter; escaping is injective and unescaping total.
    #[test]
    fn escape_round_trips_and_leaves_nothing_unescaped(s in rich_value(), t in rich_value()) {
        let e = escape(&s);
        prop_assert_eq!(unescape(&e).into_owned(), s.clone());
        prop_assert!(!e.contains(':'), "{:?} -> {:?}", s, e);
        prop_assert_eq!(has_unescaped_meta(&e), None, "{:?} -> {:?}", s, e);
        if s != t {
            prop_assert_ne!(escape(&s), escape(&t));
        }
        // Unescaping arbitrary text (not produced by escape) never panics.
        let _ = unescape(&s);
    }
}

proptest! {
    #![proptest_config(config(2000))]

    /// A glob-escaped text matches itself and nothing else under Redis' MATCH rules.
    #[test]
    fn escaped_globs_match_only_their_own_text((a, b) in tenant_pair(), v in rich_value()) {
        for x in [a.as_str(), b.as_str(), v.as_str()] {
            let seg = escape(x);
            let pattern = glob_escape(&seg);
            prop_assert!(redis_glob(&pattern, &seg), "{:?} does not match {:?}", pattern, seg);
            prop_assert!(redis_glob(&glob_escape(x), x));
        }
        let (pa, sb) = (glob_escape(&escape(&a)).into_owned(), escape(&b).into_owned());
        prop_assert!(!redis_glob(&pa, &sb), "{:?} matches {:?}", pa, sb);
        prop_assert!(!redis_glob(&glob_escape(&a), &b));
    }
}

proptest! {
    #![proptest_config(config(2000))]

    /// `Key::parse(key.redis_key()) == key` for every model shape; the key splits on `:` into
    /// exactly one segment per key field after the class name.
    #[test]
    fn instance_keys_parse_back_to_their_segments(
        t in tenant(),
        v in rich_value(),
        w in rich_value(),
    ) {
        fn check<M: Model>(key: Key<M>) -> Result<(), TestCaseError> {
            let redis_key = key.redis_key();
            prop_assert_eq!(redis_key.split(':').count(), 1 + M::META.key_fields.len());
            let back = Key::<M>::parse(&redis_key);
            prop_assert!(back.as_ref().is_ok_and(|b| *b == key), "{:?} -> {:?}", redis_key, back);
            Ok(())
        }
        check(Item::key_of(t.clone(), v.clone()))?;
        check(Item::key_of(v.clone(), t.clone()))?;
        check(Episode::key_of(t.clone(), v.clone()))?;
        check(Memory::key_of(t.clone(), v.clone()))?;
        check(Belief::key_of(t.clone(), v.clone()))?;
        check(Ledger::key_of(v.clone(), t.clone(), w.clone()))?;
        check(Doc::key_of(t.clone(), w.clone()))?;
    }
}

/// Checks that keys of `a` and `b` differ and that `a`'s MATCH pattern (what destroy, export
/// and HSCAN reads use) matches `a`'s key and never `b`'s.
fn patterns_separate<M: Model>(key_a: Key<M>, key_b: Key<M>, a: &str) -> Result<(), TestCaseError> {
    let (ka, kb) = (key_a.redis_key(), key_b.redis_key());
    prop_assert_ne!(&ka, &kb);
    let tf = M::META.tenant;
    let pattern = keys::instance_match(M::META, &|i| (Some(i) == tf).then_some(a));
    prop_assert!(redis_glob(&pattern, &ka), "{:?} misses {:?}", pattern, ka);
    prop_assert!(!redis_glob(&pattern, &kb), "{:?} matches {:?}", pattern, kb);
    Ok(())
}

proptest! {
    #![proptest_config(config(3500))]

    /// Distinct tenants never share an instance key, a value set, a partition zset or a
    /// companion hash, whatever the other key values (equal or hostile); a tenant's MATCH
    /// pattern never matches the other tenant's keys, wherever the tenant sits in the key.
    #[test]
    fn distinct_tenants_never_share_keys_or_match_patterns(
        (a, b) in tenant_pair(),
        va in rich_value(),
        vb in rich_value(),
        same in any::<bool>(),
    ) {
        let vb = if same { va.clone() } else { vb };
        patterns_separate(Item::key_of(a.clone(), va.clone()), Item::key_of(b.clone(), vb.clone()), &a)?;
        patterns_separate(Episode::key_of(a.clone(), va.clone()), Episode::key_of(b.clone(), vb.clone()), &a)?;
        patterns_separate(Memory::key_of(a.clone(), va.clone()), Memory::key_of(b.clone(), vb.clone()), &a)?;
        patterns_separate(Belief::key_of(a.clone(), va.clone()), Belief::key_of(b.clone(), vb.clone()), &a)?;
        patterns_separate(
            Ledger::key_of(va.clone(), a.clone(), vb.clone()),
            Ledger::key_of(va.clone(), b.clone(), vb.clone()),
            &a,
        )?;
        patterns_separate(Ledger::key_of(vb.clone(), a.clone(), va.clone()), Ledger::key_of(va.clone(), b.clone(), vb.clone()), &a)?;
        patterns_separate(Doc::key_of(a.clone(), va.clone()), Doc::key_of(b.clone(), vb.clone()), &a)?;

        // Index keys: the tenant's value set, its partition zsets and companion hash.
        let item = Item::META;
        let tf = item.tenant.expect("Item has a tenant field");
        prop_assert_ne!(keys::value_set_key(item, tf, &a), keys::value_set_key(item, tf, &b));
        let level = item.fields.iter().position(|f| f.name == "level").expect("Item has a level field");
        prop_assert_ne!(
            keys::sorted_key(item, level, &[&a, &va]),
            keys::sorted_key(item, level, &[&b, &vb])
        );
        let mem = Memory::META;
        let certainty = mem.fields.iter().position(|f| f.name == "certainty").expect("Memory has a certainty field");
        let (ca, cb) = (keys::confidence_key(mem, certainty, &[&a]), keys::confidence_key(mem, certainty, &[&b]));
        prop_assert!(ca.is_ok() && cb.is_ok());
        prop_assert_ne!(ca.ok(), cb.ok());
        // A tenant's value set is never mistaken for another model's or field's index key.
        let vs = keys::value_set_key(item, tf, &a);
        prop_assert_eq!(keys::parse_index_key(item, &vs), Some(keys::IndexKind::ValueSet(tf)));
        prop_assert_eq!(keys::parse_index_key(Episode::META, &vs), None);
    }
}

// ------------------------------------------------------------------------ server properties

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
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let server = TestRedis::start().unwrap_or_else(|e| panic!("{e}"));
    let db = rt.block_on(server.db());
    let raw = std::cell::RefCell::new(server.raw());
    let mut runner = TestRunner::new(config(cases));
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

fn tid(s: &str) -> Result<TenantId, TestCaseError> {
    TenantId::new(s).map_err(|e| fail("tenant id", e))
}

/// Destroying, exporting and importing one tenant touches nothing of the other: after
/// `destroy_tenant(a)` the database is byte for byte the database of `b` alone, an import of
/// `a`'s export restores the exact database, and destroying `b` then leaves `a` alone
/// (160 cases, one server).
#[test]
fn lifecycle_of_one_tenant_leaves_the_other_byte_for_byte() {
    on_one_server(160, seeds(), |server, db, (a, b)| {
        Box::pin(async move {
            let flush = || -> Result<(), TestCaseError> {
                redis::cmd("FLUSHDB")
                    .exec(&mut server.raw())
                    .map_err(|e| fail("flushdb", e))
            };
            let (ta, tb) = (tid(&a.tenant)?, tid(&b.tenant)?);
            write_seed(db, &a).await?;
            let only_a = dump(server);
            flush()?;
            write_seed(db, &b).await?;
            let only_b = dump(server);
            write_seed(db, &a).await?;
            let both = dump(server);
            audits_clean(db).await?;
            for s in [&a, &b] {
                let counts = db
                    .admin()
                    .tenant_counts(&tid(&s.tenant)?, &models())
                    .await
                    .map_err(|e| fail("counts", e))?;
                let want: BTreeMap<&str, u64> = [
                    ("Belief", s.beliefs.len()),
                    ("Episode", s.episodes.len()),
                    ("Item", s.items.len()),
                    ("Ledger", s.ledgers.len()),
                    ("Memory", s.memories.len()),
                ]
                .into_iter()
                .map(|(m, n)| (m, n as u64))
                .collect();
                prop_assert_eq!(counts, want);
            }

            let mut export = Vec::new();
            db.admin()
                .export_tenant(&ta, &models(), &mut export)
                .await
                .map_err(|e| fail("export", e))?;
            let report = db
                .admin()
                .destroy_tenant(&ta, &models())
                .await
                .map_err(|e| fail("destroy", e))?;
            prop_assert_eq!(report.orphan_entries, 0);
            let after: BTreeMap<_, _> = dump(server);
            prop_assert_eq!(
                &after,
                &only_b,
                "destroying {:?} touched {:?}",
                a.tenant,
                b.tenant
            );
            db.admin()
                .import_tenant(&ta, &models(), export.as_slice())
                .await
                .map_err(|e| fail("import", e))?;
            prop_assert_eq!(&dump(server), &both, "import of {:?}", a.tenant);
            db.admin()
                .destroy_tenant(&tb, &models())
                .await
                .map_err(|e| fail("destroy", e))?;
            prop_assert_eq!(&dump(server), &only_a, "destroying {:?}", b.tenant);
            audits_clean(db).await
        })
    });
}

// ------------------------------------------------------------------------ crafted imports

/// An import stream of tenant `a` cannot plant `a`'s instances into `b`'s value sets,
/// partitions or companion hashes, nor into another value's set, nor write a non-canonical key
/// or an instance whose tenant field names another tenant: each stream is refused before it
/// writes anything.
#[tokio::test]
async fn crafted_import_streams_cannot_reach_another_tenant() {
    use popoto::ExportRecord;
    use serde_bytes::ByteBuf;

    let (server, db) = support::setup().await;
    let b = db.tenant("b").unwrap();
    b.create(Item {
        sku: "y".into(),
        region: "eu".into(),
        level: 1,
        ..Default::default()
    })
    .await
    .unwrap();
    b.create(Memory {
        key: "m".into(),
        certainty: 0.5,
        ..Default::default()
    })
    .await
    .unwrap();
    let before = dump(&server);
    let a = TenantId::new("a").unwrap();
    let item_a = Item::key_of("a", "x").redis_key();
    let mem_a = Memory::key_of("a", "mx").redis_key();
    let str_field = |name: &str, value: &str| {
        let mut v = Vec::new();
        popoto::codec::encode_serde(value, &mut v).unwrap();
        (ByteBuf::from(name.as_bytes().to_vec()), ByteBuf::from(v))
    };
    let item_hash = |key: &str, tenant: &str| ExportRecord::Hash {
        key: key.to_owned(),
        fields: vec![
            str_field("tenant", tenant),
            str_field("sku", "x"),
            str_field("region", "eu"),
        ],
    };
    let mem_hash = ExportRecord::Hash {
        key: mem_a.clone(),
        fields: vec![str_field("project", "a"), str_field("key", "mx")],
    };
    let set = |key: &str, member: &str| ExportRecord::SetMember {
        key: key.to_owned(),
        member: member.to_owned(),
    };
    let streams: Vec<(&str, Vec<ExportRecord>)> = vec![
        (
            "into b's value set",
            vec![item_hash(&item_a, "a"), set("$KeyF:Item:tenant:b", &item_a)],
        ),
        (
            "into another sku's unique set",
            vec![
                item_hash(&item_a, "a"),
                set("$UniqueKeyF:Item:sku:y", &item_a),
            ],
        ),
        (
            "into b's partition zset",
            vec![
                item_hash(&item_a, "a"),
                ExportRecord::ZSetMember {
                    key: "$SortF:Item:level:b:eu".into(),
                    member: item_a.clone(),
                    score: 1.0,
                },
            ],
        ),
        (
            "into b's companion hash",
            vec![
                mem_hash.clone(),
                ExportRecord::HashEntry {
                    key: "$ConfidencF:Memory:certainty:data:b".into(),
                    field: mem_a.clone(),
                    value: ByteBuf::from(vec![0x80]),
                },
            ],
        ),
        (
            "an orphan entry into b's value set",
            vec![set("$KeyF:Item:tenant:b", &item_a)],
        ),
        (
            "a non-canonical instance key",
            vec![item_hash("Item:x-y:a", "a")],
        ),
        ("a tenant field naming b", vec![item_hash(&item_a, "b")]),
    ];
    for (what, records) in streams {
        let mut stream = Vec::new();
        rmp_serde::encode::write_named(
            &mut stream,
            &ExportRecord::Header {
                version: 1,
                tenant: "a".into(),
            },
        )
        .unwrap();
        for r in &records {
            rmp_serde::encode::write_named(&mut stream, r).unwrap();
        }
        let r = db
            .admin()
            .import_tenant(&a, &models(), stream.as_slice())
            .await;
        assert!(
            matches!(r, Err(Error::InvalidValue { .. })),
            "{what}: {r:?}"
        );
        assert_eq!(dump(&server), before, "{what} wrote something");
    }
    // b still sees exactly its own.
    assert_eq!(b.query::<Item>().count().await.unwrap(), 1);
    assert_eq!(
        b.confidence_scan(Memory::certainty())
            .fetch_all()
            .await
            .unwrap()
            .len(),
        1
    );
}
