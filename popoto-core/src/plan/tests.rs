//! Unit tests of the plan module: arguments and type checks of plans.
use super::*;

#[test]
fn initial_confidence_matches_popoto_bytes() {
    let hex: String = initial_confidence(0.5)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        hex,
        "84aa636f6e666964656e6365cb3fe0000000000000ae65766964656e63655f636f756e7400ae636f72726f626f726174696f6e7300ae636f6e74726164696374696f6e7300"
    );
}

#[test]
fn keys_are_interned_and_args_reference_them() {
    let mut p = Plan::default();
    let a = p.key("A".into());
    let b = p.key("B".into());
    assert_eq!(p.key("A".into()), a);
    p.checks.push(Check::Absent(b));
    p.writes.push(Write::SAdd {
        key: a,
        member: "m".into(),
    });
    p.add_type_checks();
    let args: Vec<String> = crate::script::apply::args(&p)
        .into_iter()
        .map(|a| String::from_utf8(a).unwrap_or_default())
        .collect();
    assert_eq!(args, ["2", "A", "2", "T", "1", "set", "SADD", "1", "m"]);
}

#[test]
fn move_nx_writes_type_check_both_keys() {
    let mut p = Plan::default();
    let m = p.key("M:1".into());
    let from = p.key("H".into());
    let to = p.key("H:p".into());
    p.checks.push(Check::Present(m));
    p.writes.push(Write::HMoveNx {
        from,
        from_field: "M:1".into(),
        to,
        to_field: "M:1".into(),
    });
    p.add_type_checks();
    let args: Vec<String> = crate::script::apply::args(&p)
        .into_iter()
        .map(|a| String::from_utf8(a).unwrap_or_default())
        .collect();
    assert_eq!(
        args,
        ["3", "P", "1", "T", "2", "hash", "T", "3", "hash", "HMOVENX", "2", "M:1", "3", "M:1"]
    );
    let mut z = Plan::default();
    let (from, to) = (z.key("Z".into()), z.key("Z:p".into()));
    z.writes.push(Write::ZMoveNx {
        from,
        to,
        member: "M:1".into(),
    });
    z.add_type_checks();
    assert_eq!(
        z.checks,
        [
            Check::Type { key: 0, ty: "zset" },
            Check::Type { key: 1, ty: "zset" }
        ]
    );
}

#[test]
fn same_check_carries_its_pairs_and_needs_no_type_check() {
    let mut p = Plan::default();
    let k = p.key("M:1".into());
    let pairs = vec![("a".to_owned(), b"1".to_vec())];
    p.checks.push(Check::Same {
        key: k,
        pairs: pairs.clone(),
    });
    p.writes.push(Write::HSet { key: k, pairs });
    p.add_type_checks();
    let args: Vec<String> = crate::script::apply::args(&p)
        .into_iter()
        .map(|a| String::from_utf8(a).unwrap_or_default())
        .collect();
    assert_eq!(
        args,
        ["1", "S", "1", "1", "a", "1", "HSET", "1", "1", "a", "1"]
    );
}
