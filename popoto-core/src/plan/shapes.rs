//! Plans of every model shape, without a server: the exact keys, checks and writes of a
//! create, a save that moves partitions, a delete and a key move.

use super::write::{self, Stored, Target};
use super::*;
use crate::model::{field, FieldKind, FieldMeta, Record};

/// Every indexed shape: tenant key `org`, auto key `id`, unique key `email`, a sorted field
/// partitioned by the tenant (`score`), one unpartitioned (`rank`), one partitioned by a
/// plain field (`by_team`, movable), a confidence field partitioned by the tenant, the team.
static TICKET: ModelMeta = ModelMeta {
    name: "Ticket",
    fields: &[
        field("org", FieldKind::Key, &[]),
        field("id", FieldKind::AutoKey, &[]),
        field("email", FieldKind::UniqueKey, &[]),
        field("score", FieldKind::Sorted, &[0]),
        field("rank", FieldKind::Sorted, &[]),
        field("by_team", FieldKind::Sorted, &[7]),
        field(
            "trust",
            FieldKind::Confidence {
                initial: 0.5,
                evidence_cap: 10,
            },
            &[0],
        ),
        field("team", FieldKind::Plain, &[]),
    ],
    key_fields: &[2, 1, 0],
    tenant: Some(0),
    version: None,
    ttl: None,
    expire_at: false,
};

/// No key field (popoto's hidden `_auto_key`), a version and a ttl.
static NOTE: ModelMeta = ModelMeta {
    name: "Note",
    fields: &[
        field("text", FieldKind::Plain, &[]),
        field("v", FieldKind::Plain, &[]),
        FieldMeta {
            hidden: true,
            ..field("_auto_key", FieldKind::AutoKey, &[])
        },
    ],
    key_fields: &[2],
    tenant: None,
    version: Some(1),
    ttl: Some(60),
    expire_at: false,
};

/// A stored partition value's segment: the bytes as text (the tests store text).
fn segment(_key: &str, _field: usize, raw: &[u8]) -> crate::error::Result<String> {
    Ok(String::from_utf8_lossy(raw).into_owned())
}

fn target<'a>(meta: &'static ModelMeta, key: &'a str) -> Target<'a> {
    Target {
        layout: crate::keys::Layout::Popoto,
        meta,
        key,
        segment,
    }
}

/// A ticket of `org` in `team`, with key `Ticket:<email>:<id>:<org>`.
fn ticket(org: &str, team: &str) -> (String, Record) {
    let seg = |s: &str| Some(s.to_owned());
    let record = Record {
        values: ["o", "i", "e", "1", "2", "3", "t", "m"]
            .map(|v| v.as_bytes().to_vec())
            .to_vec(),
        segments: vec![
            seg(org),
            seg("i1"),
            seg("a@x"),
            None,
            None,
            None,
            None,
            seg(team),
        ],
        scores: vec![
            None,
            None,
            None,
            Some(1.0),
            Some(2.0),
            Some(3.0),
            None,
            None,
        ],
        expire_at: None,
    };
    (format!("Ticket:a@x:i1:{org}"), record)
}

/// The plan as text: one line per check, then per write, keys by name.
fn show(p: &Plan) -> Vec<String> {
    let k = |i: &usize| p.keys[*i].as_str();
    let mut out: Vec<String> = p
        .checks
        .iter()
        .map(|c| match c {
            Check::Absent(i) => format!("absent {}", k(i)),
            Check::Present(i) => format!("present {}", k(i)),
            Check::Unique { set, within, .. } => format!("unique {} within {within}", k(set)),
            Check::Field { key, field, value } => {
                format!(
                    "field {} {field} {:?}",
                    k(key),
                    value.as_deref().map(String::from_utf8_lossy)
                )
            }
            Check::FieldOrNew { key, field, .. } => format!("field-or-new {} {field}", k(key)),
            Check::Type { key, ty } => format!("type {} {ty}", k(key)),
            Check::Version { key, expected, .. } => format!("version {} {expected}", k(key)),
            Check::Same { key, .. } => format!("same {}", k(key)),
        })
        .collect();
    out.extend(p.writes.iter().map(|w| match w {
        Write::HSet { key, pairs } => format!("HSET {} {}", k(key), pairs.len()),
        Write::SAdd { key, member } => format!("SADD {} {member}", k(key)),
        Write::SRem { key, member } => format!("SREM {} {member}", k(key)),
        Write::ZAdd { key, score, member } => format!("ZADD {} {score} {member}", k(key)),
        Write::ZRem { key, member } => format!("ZREM {} {member}", k(key)),
        Write::Del { key } => format!("DEL {}", k(key)),
        Write::HSetNx { key, field, .. } => format!("HSETNX {} {field}", k(key)),
        Write::HDel { key, field } => format!("HDEL {} {field}", k(key)),
        Write::HMove { from, to, .. } => format!("HMOVE {} {}", k(from), k(to)),
        Write::Rename { from, to } => format!("RENAME {} {}", k(from), k(to)),
        Write::HMoveNx { from, to, .. } => format!("HMOVENX {} {}", k(from), k(to)),
        Write::ZMoveNx { from, to, .. } => format!("ZMOVENX {} {}", k(from), k(to)),
        Write::Expire { key, zset, expiry } => {
            format!("EXPIRE {} {} {}", k(key), k(zset), expiry.arg())
        }
        Write::ZRename { from, to, .. } => format!("ZRENAME {} {}", k(from), k(to)),
        Write::Feed { stream, .. } => format!("FEED {}", k(stream)),
    }));
    out
}

#[test]
fn a_create_checks_the_key_and_unique_values_then_writes_every_index() {
    let (key, record) = ticket("acme", "red");
    let plan = write::save(
        &target(&TICKET, &key),
        true,
        &record,
        None,
        &Stored::none(&TICKET),
        None,
    )
    .expect("a plan");
    let k = "Ticket:a@x:i1:acme";
    assert_eq!(
        show(&plan),
        [
            format!("absent {k}"),
            "unique $UniqueKeyF:Ticket:email:a@x within 0".into(),
            // A create of an instance assumed new: its movable partition is checked absent.
            format!("field {k} team None"),
            "type $Class:Ticket set".into(),
            "type $KeyF:Ticket:org:acme set".into(),
            "type $UniqueKeyF:Ticket:email:a@x set".into(),
            "type $SortF:Ticket:score:acme zset".into(),
            "type $SortF:Ticket:rank zset".into(),
            "type $SortF:Ticket:by_team:red zset".into(),
            "type $ConfidencF:Ticket:trust:data:acme hash".into(),
            format!("HSET {k} 8"),
            format!("SADD $Class:Ticket {k}"),
            format!("SADD $KeyF:Ticket:org:acme {k}"),
            format!("SADD $UniqueKeyF:Ticket:email:a@x {k}"),
            format!("ZADD $SortF:Ticket:score:acme 1 {k}"),
            format!("ZADD $SortF:Ticket:rank 2 {k}"),
            format!("ZADD $SortF:Ticket:by_team:red 3 {k}"),
            format!("HSETNX $ConfidencF:Ticket:trust:data:acme {k}"),
        ]
    );
}

#[test]
fn a_save_that_moves_a_partition_checks_the_stored_value_and_moves_the_entry() {
    let (key, record) = ticket("acme", "blue");
    let stored = Stored {
        raw: vec![(7, Some(b"red".to_vec()))],
        assumed: false,
    };
    let plan =
        write::save(&target(&TICKET, &key), false, &record, None, &stored, None).expect("a plan");
    let lines = show(&plan);
    let k = "Ticket:a@x:i1:acme";
    assert!(
        lines.contains(&format!("field {k} team Some(\"red\")")),
        "{lines:#?}"
    );
    assert!(
        lines.contains(&format!("ZREM $SortF:Ticket:by_team:red {k}")),
        "{lines:#?}"
    );
    assert!(
        lines.contains(&format!("ZADD $SortF:Ticket:by_team:blue 3 {k}")),
        "{lines:#?}"
    );
    assert!(
        !lines.iter().any(|l| l.starts_with("absent")),
        "a save is no create"
    );
    // The tenant partition did not move: no confidence move.
    assert!(!lines.iter().any(|l| l.starts_with("HMOVE")), "{lines:#?}");
}

#[test]
fn an_assumed_save_checks_the_assumption_and_moves_nothing() {
    let (key, record) = ticket("acme", "red");
    let plan = write::save(
        &target(&TICKET, &key),
        false,
        &record,
        None,
        &Stored::assumed(&TICKET, &record),
        None,
    )
    .expect("a plan");
    let lines = show(&plan);
    assert!(lines.contains(&"field-or-new Ticket:a@x:i1:acme team".to_owned()));
    assert!(!lines.iter().any(|l| l.starts_with("ZREM")), "{lines:#?}");
}

#[test]
fn a_delete_removes_the_hash_and_every_entry_of_its_stored_partitions() {
    let key = "Ticket:a@x:i1:acme";
    let stored = Stored {
        raw: vec![(7, Some(b"red".to_vec()))],
        assumed: false,
    };
    let segments = ["a@x", "i1", "acme"].map(String::from);
    let (plan, record) =
        write::delete(&target(&TICKET, key), &segments, &stored, None).expect("a plan");
    assert_eq!(record.segments[7].as_deref(), Some("red"));
    assert_eq!(record.segments[0].as_deref(), Some("acme"));
    let lines = show(&plan);
    for want in [
        format!("field {key} team Some(\"red\")"),
        format!("DEL {key}"),
        format!("SREM $Class:Ticket {key}"),
        format!("SREM $KeyF:Ticket:org:acme {key}"),
        format!("SREM $UniqueKeyF:Ticket:email:a@x {key}"),
        format!("ZREM $SortF:Ticket:score:acme {key}"),
        format!("ZREM $SortF:Ticket:rank {key}"),
        format!("ZREM $SortF:Ticket:by_team:red {key}"),
        format!("HDEL $ConfidencF:Ticket:trust:data:acme {key}"),
    ] {
        assert!(lines.contains(&want), "{want} missing from {lines:#?}");
    }
    assert_eq!(lines.iter().filter(|l| l.starts_with("absent")).count(), 0);
}

#[test]
fn a_key_move_renames_the_hash_and_moves_entries_and_confidence() {
    let (old_key, old) = ticket("acme", "red");
    let (new_key, new) = ticket("beta", "red");
    let stored = Stored {
        raw: vec![(7, Some(b"red".to_vec()))],
        assumed: false,
    };
    let plan = write::relocate(
        &target(&TICKET, &old_key),
        &old,
        &new_key,
        &new,
        &stored,
        None,
    )
    .expect("a plan");
    let lines = show(&plan);
    for want in [
        format!("present {old_key}"),
        format!("absent {new_key}"),
        format!("RENAME {old_key} {new_key}"),
        format!("SREM $KeyF:Ticket:org:acme {old_key}"),
        format!("SADD $KeyF:Ticket:org:beta {new_key}"),
        "HMOVE $ConfidencF:Ticket:trust:data:acme $ConfidencF:Ticket:trust:data:beta".into(),
    ] {
        assert!(lines.contains(&want), "{want} missing from {lines:#?}");
    }
    // The unique value may be held by the old key (the instance itself).
    assert!(matches!(
        plan.checks.iter().find(|c| matches!(c, Check::Unique { .. })),
        Some(Check::Unique { allowed, .. }) if allowed[1] == old_key
    ));
}

#[test]
fn a_versioned_expiring_model_without_keys_checks_its_version_and_expires() {
    let key = "Note:0123";
    let record = Record {
        values: vec![b"t".to_vec(), vec![0x02]],
        segments: vec![None, None, Some("0123".into())],
        scores: vec![None, None, None],
        expire_at: None,
    };
    let plan = write::save(
        &target(&NOTE, key),
        false,
        &record,
        Some("0123"),
        &Stored::none(&NOTE),
        Some(1),
    )
    .expect("a plan");
    let lines = show(&plan);
    assert!(lines.contains(&format!("version {key} 1")), "{lines:#?}");
    assert!(
        lines.contains(&format!("EXPIRE {key} $ExpireF:Note R60000")),
        "{lines:#?}"
    );
    // The hidden `_auto_key` is stored with the declared fields.
    assert!(lines.contains(&format!("HSET {key} 3")), "{lines:#?}");
}

#[test]
fn orphan_removals_and_migration_moves_are_checked() {
    use crate::keys::IndexKind;
    let plan = entries::remove_orphan("$SortF:Ticket:rank", "Ticket:x", IndexKind::Sorted(4));
    assert_eq!(
        show(&plan),
        [
            "absent Ticket:x",
            "type $SortF:Ticket:rank zset",
            "ZREM $SortF:Ticket:rank Ticket:x"
        ]
    );
    let plan = entries::move_entry(
        &TICKET,
        entries::Moved::Confidence,
        (
            "Ticket:x",
            "$ConfidencF:Ticket:trust:data",
            "$ConfidencF:Ticket:trust:data:acme",
        ),
        &[0],
        &[Some(b"acme".to_vec())],
    );
    assert_eq!(
        show(&plan),
        [
            "present Ticket:x",
            "field Ticket:x org Some(\"acme\")",
            "type $ConfidencF:Ticket:trust:data hash",
            "type $ConfidencF:Ticket:trust:data:acme hash",
            "HMOVENX $ConfidencF:Ticket:trust:data $ConfidencF:Ticket:trust:data:acme"
        ]
    );
}
