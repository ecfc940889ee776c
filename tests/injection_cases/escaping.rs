//! Properties that need no server: escaping round-trips, escaped globs match only their own
//! text, instance keys parse back, distinct tenants never share keys or match patterns.

use super::glob::redis_glob;
use super::*;

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
    #![proptest_config(proptest_config(2500))]

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
    #![proptest_config(proptest_config(2000))]

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
    #![proptest_config(proptest_config(2000))]

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
    #![proptest_config(proptest_config(3500))]

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
