//! Fuzzing without a server: the value decoders, the derive's `from_hash` and the key parsers
//! on arbitrary and mutated bytes, and the replay of the corpus (`tests/corpus/`).

use super::*;

proptest! {
    #![proptest_config(proptest_config(1500))]

    /// No decoder panics on arbitrary bytes.
    #[test]
    fn decoders_never_panic_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..96)) {
        decode_all(&bytes);
    }
}

proptest! {
    #![proptest_config(proptest_config(1500))]

    /// Valid encodings decode back (at least one decoder accepts them); their structural
    /// mutations never make a decoder panic.
    #[test]
    fn decoders_round_trip_and_survive_mutations(
        valid in valid_encoding(),
        mutations in prop::collection::vec(mutation(), 1..5),
    ) {
        prop_assert!(decode_all(&valid) > 0, "nothing decodes {:02x?}", valid);
        decode_all(&mutate(valid, &mutations));
    }
}

fn field_name() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        6 => prop::sample::select(EVERYTHING_FIELDS).prop_map(|s| s.as_bytes().to_vec()),
        1 => prop::sample::select(EVERYTHING_FIELDS).prop_map(|s| format!("{s}\0idxset").into_bytes()),
        1 => prop::collection::vec(any::<u8>(), 0..12),
    ]
}

fn field_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => valid_encoding(),
        2 => (valid_encoding(), prop::collection::vec(mutation(), 1..4)).prop_map(|(v, m)| mutate(v, &m)),
        1 => prop::collection::vec(any::<u8>(), 0..32),
    ]
}

proptest! {
    #![proptest_config(proptest_config(1000))]

    /// `from_hash` of a hash with any field names (declared, legacy NUL-suffixed, foreign,
    /// non-UTF-8) and any values either decodes or fails with `Error::Decode` naming the model,
    /// the key and a declared field.
    #[test]
    fn from_hash_never_panics_and_names_the_field(
        fields in prop::collection::vec((field_name(), field_value()), 0..30),
    ) {
        from_hash_checked(fields)?;
    }
}

/// Metas of models with one to three key fields and the hidden auto key.
fn metas() -> [&'static ModelMeta; 5] {
    [
        Item::META,
        Episode::META,
        Note::META,
        Poll::META,
        Everything::META,
    ]
}

fn key_text() -> impl Strategy<Value = String> {
    let atoms = prop::sample::select(
        &[
            ":",
            "/",
            "{&#58;}",
            "{",
            "}",
            "\\",
            "*",
            "-",
            "/-",
            "//",
            "/{",
            "{&#58;",
            "&#58;}",
            "Item",
            "Episode",
            "Note",
            "Poll",
            "Everything",
            "é",
            "\0",
        ][..],
    );
    prop_oneof![
        any::<String>(),
        prop::collection::vec(atoms.clone(), 0..12).prop_map(|v| v.concat()),
        (
            prop::sample::select(&["Item", "Episode", "Note", "Poll", "Everything"][..]),
            prop::collection::vec(any::<String>(), 0..4)
        )
            .prop_map(|(m, segs)| {
                let mut k = m.to_owned();
                for s in segs {
                    k.push(':');
                    k.push_str(&escape(&s));
                }
                k
            }),
        (key_text_mutable(), any::<Index>(), atoms).prop_map(|(k, at, atom)| {
            let mut cut = at.index(k.len() + 1);
            while !k.is_char_boundary(cut) {
                cut -= 1;
            }
            format!("{}{atom}{}", &k[..cut], &k[cut..])
        }),
    ]
}

fn key_text_mutable() -> impl Strategy<Value = String> {
    (any::<String>(), any::<String>())
        .prop_map(|(a, b)| Item::key_of(escape(&a).into_owned(), b).redis_key())
}

proptest! {
    #![proptest_config(proptest_config(1500))]

    /// `unescape`, `parse_instance_key` and `Key::parse` never panic on any text; whatever
    /// parses has the model's arity and re-renders to a canonical key that parses the same.
    #[test]
    fn key_parsers_never_panic_and_reparse_stably(text in key_text()) {
        check_key_text(&text)?;
    }
}

fn check_key_text(text: &str) -> Result<(), TestCaseError> {
    let _ = unescape(text);
    prop_assert_eq!(unescape(&escape(text)).into_owned(), text.to_owned());
    for meta in metas() {
        if let Ok(segments) = keys::parse_instance_key(meta, text) {
            prop_assert_eq!(segments.len(), meta.key_fields.len());
            let canonical = keys::instance_key(meta, &segments);
            prop_assert_eq!(
                keys::parse_instance_key(meta, &canonical).ok(),
                Some(segments)
            );
        }
    }
    fn typed<M: Model>(text: &str) -> Result<(), TestCaseError> {
        match Key::<M>::parse(text) {
            Ok(k) => prop_assert_eq!(Key::<M>::parse(&k.redis_key()).ok(), Some(k)),
            Err(Error::MalformedKey { model, key, .. }) => {
                prop_assert_eq!(model, M::META.name);
                prop_assert_eq!(key, text);
            }
            Err(e) => return Err(TestCaseError::fail(format!("untyped {e:?}"))),
        }
        Ok(())
    }
    typed::<Item>(text)?;
    typed::<Episode>(text)?;
    typed::<Note>(text)?;
    typed::<Everything>(text)?;
    let _ = keys::parse_index_key(Item::META, text);
    let _ = keys::is_index_key(Item::META, text);
    Ok(())
}

fn corpus(dir: &str) -> Vec<(String, Vec<u8>)> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(dir);
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .map(|e| {
            let p = e.unwrap().path();
            (p.display().to_string(), std::fs::read(&p).unwrap())
        })
        .collect();
    out.sort();
    out
}

#[test]
fn the_corpus_replays_without_a_panic_in_bounded_time() {
    let start = Instant::now();
    let decoder = corpus("decoder");
    assert!(decoder.len() >= 20, "{} decoder inputs", decoder.len());
    for (name, bytes) in &decoder {
        let t = Instant::now();
        decode_all(bytes);
        let fields = EVERYTHING_FIELDS
            .iter()
            .map(|f| (f.as_bytes().to_vec(), bytes.clone()))
            .collect();
        from_hash_checked(fields).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "{name} took {:?}",
            t.elapsed()
        );
    }
    let keys = corpus("keys");
    assert!(keys.len() >= 10, "{} key inputs", keys.len());
    for (name, bytes) in &keys {
        let text = String::from_utf8(bytes.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let t = Instant::now();
        check_key_text(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "{name} took {:?}",
            t.elapsed()
        );
    }
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );
}
