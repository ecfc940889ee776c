//! What `#[derive(Model)]` generates: metadata, records, decoding, handles and `key_of`.
//! No Redis needed. Compiled with `deny(warnings)` so that generated code stays warning-free.
#![deny(warnings, missing_docs)]

use std::collections::BTreeMap;

use popoto::{
    ConfidenceField, Error, Field, FieldKind, FieldMeta, Key, KeyField, Model, SortedField,
};
use serde::{Deserialize, Serialize};

/// The design's episode: tenant key, auto key, plain title, per-tenant sorted score.
#[derive(Model, Debug, Clone, PartialEq, Default)]
pub struct Episode {
    #[popoto(key, tenant)]
    project_id: String,
    #[popoto(auto_key)]
    episode_id: String,
    title: String,
    #[popoto(sorted, partition_by = "project_id")]
    score: f64,
}

/// The design's memory: unique key sorting before the tenant key, confidence partitioned.
#[derive(Model, Debug, Clone, PartialEq)]
struct Memory {
    #[popoto(key, tenant)]
    project: String,
    #[popoto(unique_key)]
    key: String,
    content: Option<String>,
    #[popoto(confidence(initial = 0.25, evidence_cap = 7), partition_by = "project")]
    certainty: f64,
    #[popoto(confidence)]
    relevance: f64,
}

/// No key field: popoto's hidden `_auto_key` is appended.
#[derive(Model, Debug, Clone, PartialEq, Default)]
struct Note {
    text: String,
    #[popoto(sorted)]
    at: i64,
}

/// Class name override, raw identifiers, several partition fields in a chosen order, a plain
/// field used as partition.
#[derive(Model, Debug, Clone, PartialEq, Default)]
#[popoto(name = "Thing")]
struct RawThing {
    #[popoto(key)]
    r#type: String,
    #[popoto(key)]
    zone: i64,
    region: String,
    #[popoto(sorted, partition_by("region", "type"))]
    rank: i64,
    #[popoto(key)]
    bucket: bool,
}

/// A field type without `Default`: missing from a hash, it is an error.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Payload {
    size: u32,
}

/// A model holding a serde struct (stored through rmp-serde).
#[derive(Model, Debug, Clone, PartialEq)]
struct Blob {
    #[popoto(key)]
    id: String,
    payload: Payload,
}

/// An empty struct is a model with only the hidden key.
#[derive(Model, Debug, PartialEq)]
struct Empty {}

mod aliased {
    use popoto as pp;

    /// A model whose derive reaches popoto through `#[popoto(crate = "...")]`.
    #[derive(pp::Model, Debug, PartialEq)]
    #[popoto(crate = "pp")]
    pub(crate) struct Aliased {
        #[popoto(key)]
        pub(crate) id: String,
    }
}

fn names(fields: &[FieldMeta]) -> Vec<&'static str> {
    fields.iter().map(|f| f.name).collect()
}

fn hash(record: &popoto::Record, meta: &popoto::ModelMeta) -> Vec<(Vec<u8>, Vec<u8>)> {
    meta.fields
        .iter()
        .zip(&record.values)
        .map(|(f, v)| (f.name.as_bytes().to_vec(), v.clone()))
        .collect()
}

fn episode() -> Episode {
    Episode {
        project_id: "acme".into(),
        episode_id: "0123456789abcdef0123456789abcdef".into(),
        title: "kickoff".into(),
        score: 0.75,
    }
}

#[test]
fn episode_meta() {
    let meta = Episode::META;
    assert_eq!(meta.name, "Episode");
    assert_eq!(
        names(meta.fields),
        ["project_id", "episode_id", "title", "score"]
    );
    let kinds: Vec<FieldKind> = meta.fields.iter().map(|f| f.kind).collect();
    assert_eq!(
        kinds,
        [
            FieldKind::Key,
            FieldKind::AutoKey,
            FieldKind::Plain,
            FieldKind::Sorted
        ]
    );
    assert!(meta.fields.iter().all(|f| !f.hidden));
    assert_eq!(meta.fields[3].partition_by, [0]);
    assert!(meta.fields[0].partition_by.is_empty());
    // Alphabetical: episode_id < project_id.
    assert_eq!(meta.key_fields, [1, 0]);
    assert_eq!(meta.tenant, Some(0));
    assert!(!meta.has_hidden_key());
    assert_eq!(meta.declared_len(), 4);
}

#[test]
fn memory_meta() {
    let meta = Memory::META;
    assert_eq!(
        names(meta.fields),
        ["project", "key", "content", "certainty", "relevance"]
    );
    assert_eq!(meta.fields[1].kind, FieldKind::UniqueKey);
    assert_eq!(
        meta.fields[3].kind,
        FieldKind::Confidence {
            initial: 0.25,
            evidence_cap: 7
        }
    );
    assert_eq!(
        meta.fields[4].kind,
        FieldKind::Confidence {
            initial: 0.5,
            evidence_cap: 20
        }
    );
    assert_eq!(meta.fields[3].partition_by, [0]);
    assert!(meta.fields[4].partition_by.is_empty());
    // `key` < `project`.
    assert_eq!(meta.key_fields, [1, 0]);
    assert_eq!(meta.tenant, Some(0));
}

#[test]
fn hidden_auto_key() {
    let meta = Note::META;
    assert_eq!(names(meta.fields), ["text", "at", "_auto_key"]);
    let hidden = &meta.fields[2];
    assert!(hidden.hidden);
    assert_eq!(hidden.kind, FieldKind::AutoKey);
    assert!(hidden.partition_by.is_empty());
    assert_eq!(meta.key_fields, [2]);
    assert_eq!(meta.tenant, None);
    assert!(meta.has_hidden_key());
    assert_eq!(meta.declared_len(), 2);

    let key: Key<Note> = Note::key_of("0123456789abcdef0123456789abcdef");
    assert_eq!(key.segments(), ["0123456789abcdef0123456789abcdef"]);
    assert_eq!(key.redis_key(), "Note:0123456789abcdef0123456789abcdef");

    // The hidden key is not part of the record: only declared fields are.
    let note = Note {
        text: "hi".into(),
        at: 3,
    };
    let record = note.to_record().unwrap();
    assert_eq!(record.values.len(), 2);
    assert_eq!(record.segments, [None, None]);
    assert_eq!(record.scores, [None, Some(3.0)]);

    // Its stored value still renders a segment.
    let raw = [0xa3, b'a', b'b', b'c'];
    assert_eq!(
        Note::segment_from_stored("Note:abc", 2, &raw).unwrap(),
        "abc"
    );

    let meta = Empty::META;
    assert_eq!(names(meta.fields), ["_auto_key"]);
    assert_eq!(meta.key_fields, [0]);
    assert_eq!(Empty::from_hash("Empty:x", vec![]).unwrap(), Empty {});
    let record = Empty {}.to_record().unwrap();
    assert!(record.values.is_empty() && record.segments.is_empty() && record.scores.is_empty());
}

#[test]
fn names_partitions_and_raw_identifiers() {
    let meta = RawThing::META;
    assert_eq!(meta.name, "Thing");
    assert_eq!(
        names(meta.fields),
        ["type", "zone", "region", "rank", "bucket"]
    );
    // Partition indices in `partition_by` order, not declaration order.
    assert_eq!(meta.fields[3].partition_by, [2, 0]);
    // bucket < type < zone.
    assert_eq!(meta.key_fields, [4, 0, 1]);
    assert_eq!(meta.tenant, None);

    let thing = RawThing {
        r#type: "a:b".into(),
        zone: -1,
        region: "eu".into(),
        rank: 9,
        bucket: true,
    };
    let record = thing.to_record().unwrap();
    // Key fields and the plain partition field `region` render segments (unescaped).
    assert_eq!(
        record.segments,
        [
            Some("a:b".to_owned()),
            Some("-1".to_owned()),
            Some("eu".to_owned()),
            None,
            Some("True".to_owned())
        ]
    );
    assert_eq!(record.scores, [None, None, None, Some(9.0), None]);

    // key_of takes the key fields in declaration order and renders them in key order.
    let key = RawThing::key_of("a:b", -1, true);
    assert_eq!(key.segments(), ["True", "a:b", "-1"]);
    assert_eq!(key.redis_key(), "Thing:True:a{&#58;}b:/-1");

    let back = RawThing::from_hash("Thing:True:a{&#58;}b:/-1", hash(&record, meta)).unwrap();
    assert_eq!(back, thing);
    assert_eq!(RawThing::r#type().name(), "type");
}

#[test]
fn handles() {
    let h: KeyField<Episode, String> = Episode::project_id();
    assert_eq!(h.index(), 0);
    assert_eq!(h.name(), "project_id");
    let h: KeyField<Episode, String> = Episode::episode_id();
    assert_eq!(h.index(), 1);
    let h: Field<Episode, String> = Episode::title();
    assert_eq!(h.index(), 2);
    let h: SortedField<Episode, f64> = Episode::score();
    assert_eq!((h.index(), h.name()), (3, "score"));
    assert_eq!(h.meta().partition_by, [0]);

    let h: KeyField<Memory, String> = Memory::key();
    assert_eq!(h.index(), 1);
    let h: Field<Memory, Option<String>> = Memory::content();
    assert_eq!(h.index(), 2);
    let h: ConfidenceField<Memory, f64> = Memory::certainty();
    assert_eq!(h.index(), 3);

    let h: SortedField<Note, i64> = Note::at();
    assert_eq!(h.index(), 1);

    // Handles are usable in constants.
    const SCORE: SortedField<Episode, f64> = Episode::score();
    assert_eq!(SCORE.index(), 3);
}

#[test]
fn key_of_orders_segments_by_field_name() {
    let key = Episode::key_of("acme", "e1");
    assert_eq!(key.segments(), ["e1", "acme"]);
    assert_eq!(key.redis_key(), "Episode:e1:acme");
    assert_eq!(key.tenant(), Some("acme"));

    let key = Memory::key_of("acme", String::from("k-1"));
    assert_eq!(key.segments(), ["k-1", "acme"]);
    assert_eq!(key.redis_key(), "Memory:k/-1:acme");

    let key = aliased::Aliased::key_of("x");
    assert_eq!(key.redis_key(), "Aliased:x");
}

#[test]
fn record_of_episode() {
    let ep = episode();
    let record = ep.to_record().unwrap();
    assert_eq!(record.values.len(), 4);
    assert_eq!(record.values[0], b"\xa4acme");
    assert_eq!(record.values[2], b"\xa7kickoff");
    assert_eq!(record.values[3], b"\xcb\x3f\xe8\x00\x00\x00\x00\x00\x00");
    assert_eq!(
        record.segments,
        [
            Some("acme".to_owned()),
            Some("0123456789abcdef0123456789abcdef".to_owned()),
            None,
            None
        ]
    );
    assert_eq!(record.scores, [None, None, None, Some(0.75)]);
}

#[test]
fn nan_score_is_refused() {
    let ep = Episode {
        score: f64::NAN,
        ..episode()
    };
    match ep.to_record() {
        Err(Error::InvalidValue { model, field, .. }) => {
            assert_eq!((model, field), ("Episode", "score"));
        }
        other => panic!("expected InvalidValue, got {other:?}"),
    }
}

#[test]
fn round_trips() {
    let ep = episode();
    let fields = hash(&ep.to_record().unwrap(), Episode::META);
    assert_eq!(Episode::from_hash("Episode:e:acme", fields).unwrap(), ep);

    let memory = Memory {
        project: "acme".into(),
        key: "k".into(),
        content: None,
        certainty: 0.5,
        relevance: 1.0,
    };
    let fields = hash(&memory.to_record().unwrap(), Memory::META);
    assert_eq!(Memory::from_hash("Memory:k:acme", fields).unwrap(), memory);

    let blob = Blob {
        id: "b".into(),
        payload: Payload { size: 3 },
    };
    let fields = hash(&blob.to_record().unwrap(), Blob::META);
    assert_eq!(Blob::from_hash("Blob:b", fields).unwrap(), blob);

    let x = aliased::Aliased { id: "x".into() };
    let fields = hash(&x.to_record().unwrap(), aliased::Aliased::META);
    assert_eq!(aliased::Aliased::from_hash("Aliased:x", fields).unwrap(), x);
}

#[test]
fn missing_fields_take_their_default() {
    let fields = vec![(b"project_id".to_vec(), b"\xa4acme".to_vec())];
    let ep = Episode::from_hash("Episode:e:acme", fields).unwrap();
    assert_eq!(
        ep,
        Episode {
            project_id: "acme".into(),
            ..Episode::default()
        }
    );
}

#[test]
fn missing_field_without_default_is_an_error() {
    let fields = vec![(b"id".to_vec(), b"\xa1b".to_vec())];
    match Blob::from_hash("Blob:b", fields) {
        Err(Error::Decode {
            model, key, field, ..
        }) => {
            assert_eq!(
                (model, key.as_str(), field.as_str()),
                ("Blob", "Blob:b", "payload")
            );
        }
        other => panic!("expected Decode, got {other:?}"),
    }
}

#[test]
fn unknown_and_nul_fields_are_ignored() {
    let ep = episode();
    let mut fields = hash(&ep.to_record().unwrap(), Episode::META);
    fields.push((b"added_by_python".to_vec(), b"\x01".to_vec()));
    fields.push((b"_auto_key".to_vec(), b"\xa1x".to_vec()));
    // Legacy index marker: never decoded, even though its prefix is a field name.
    fields.push((b"title\x00idxset".to_vec(), b"not msgpack \xc1".to_vec()));
    fields.push((b"\x00".to_vec(), b"\xc1".to_vec()));
    assert_eq!(Episode::from_hash("Episode:e:acme", fields).unwrap(), ep);
}

#[test]
fn decode_error_names_model_key_and_field() {
    let fields = vec![
        (b"project_id".to_vec(), b"\xa4acme".to_vec()),
        (b"score".to_vec(), b"\xa3abc".to_vec()),
    ];
    match Episode::from_hash("Episode:e1:acme", fields) {
        Err(Error::Decode {
            model, key, field, ..
        }) => {
            assert_eq!(model, "Episode");
            assert_eq!(key, "Episode:e1:acme");
            assert_eq!(field, "score");
        }
        other => panic!("expected Decode, got {other:?}"),
    }
}

#[test]
fn segment_from_stored() {
    let record = RawThing {
        r#type: "t".into(),
        zone: 7,
        region: "eu".into(),
        rank: 1,
        bucket: false,
    }
    .to_record()
    .unwrap();
    let stored: BTreeMap<usize, String> = [0, 1, 2, 4]
        .into_iter()
        .map(|i| {
            let s = RawThing::segment_from_stored("k", i, &record.values[i]).unwrap();
            (i, s)
        })
        .collect();
    assert_eq!(stored[&0], "t");
    assert_eq!(stored[&1], "7");
    assert_eq!(stored[&2], "eu");
    assert_eq!(stored[&4], "False");

    // The sorted field itself is neither a key nor a partition field.
    match RawThing::segment_from_stored("k", 3, &record.values[3]) {
        Err(Error::InvalidValue { model, field, .. }) => {
            assert_eq!((model, field), ("Thing", "rank"))
        }
        other => panic!("expected InvalidValue, got {other:?}"),
    }
    assert!(RawThing::segment_from_stored("k", 99, b"\xa1x").is_err());

    match Episode::segment_from_stored("Episode:e:acme", 0, b"\xc1") {
        Err(Error::Decode { field, key, .. }) => {
            assert_eq!(
                (field.as_str(), key.as_str()),
                ("project_id", "Episode:e:acme")
            );
        }
        other => panic!("expected Decode, got {other:?}"),
    }
}

#[test]
fn auto_keys_and_tenant() {
    let mut ep = Episode::default();
    ep.fill_auto_keys();
    assert_eq!(ep.episode_id.len(), 32);
    assert!(ep
        .episode_id
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    let id = ep.episode_id.clone();
    ep.fill_auto_keys();
    assert_eq!(ep.episode_id, id, "a set auto key is kept");

    assert_eq!(ep.tenant_id(), Some(""));
    ep.set_tenant_id("acme");
    assert_eq!(ep.project_id, "acme");
    assert_eq!(ep.tenant_id(), Some("acme"));

    let mut note = Note::default();
    note.fill_auto_keys();
    assert_eq!(note, Note::default());
    assert_eq!(note.tenant_id(), None);
    note.set_tenant_id("acme");
    assert_eq!(note, Note::default());
}
