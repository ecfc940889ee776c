//! Confidence fields against the real Python popoto 1.10.1 (`tests/interop/confidence.py`,
//! run with `$POPOTO_PYTHON`, else a venv the harness creates under `target/tmp`; the tests
//! fail, never skip, when there is none).
//!
//! * `popoto_legacy_data_migrates_and_popoto_reads_it_back`: popoto writes an unpartitioned
//!   companion hash (updated a few times, two instances deleted), Rust migrates it into
//!   partitions, and popoto's partitioned model reads every entry with its own
//!   `get_confidence`/`get_confidence_data` and agrees, to the last bit.
//! * `interleaved_python_and_rust_updates_follow_the_formula_to_the_bit`: popoto and Rust
//!   update one instance in turns; after every step the stored bytes decode to exactly the
//!   state a plain-Python computation of the formula expects.
//!
//! Byte equality of everything both write is `tests/interop_confidence_bytes.rs`.

#[allow(dead_code)]
mod interop_support;

use std::collections::BTreeMap;

use interop_support::confidence::PartitionedMemory;
use interop_support::{start_server, unhex};
use popoto::testing::TestRedis;
use popoto::{ConfidenceState, DryRun, MigrationError};
use serde_json::{json, Value as Json};

/// Runs `confidence.py <command>` with `input` on stdin against `url`; returns its JSON.
fn py(command: &str, url: Option<&str>, input: &Json) -> Json {
    let out = interop_support::run_script("confidence.py", &[command], url, &input.to_string());
    serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("confidence.py {command}: bad JSON ({e}): {out}"))
}

fn bits(x: f64) -> String {
    format!("{:016x}", x.to_bits())
}

fn hget(server: &TestRedis, key: &str, field: &str) -> Option<Vec<u8>> {
    let mut conn = server.raw();
    redis::cmd("HGET")
        .arg(key)
        .arg(field)
        .query(&mut conn)
        .unwrap()
}

/// A Python state (`get_confidence_data` or `expect`) as a ConfidenceState, bit-exact.
fn py_state(v: &Json, bits_field: &str, data: &Json) -> (String, u64, u64, u64) {
    (
        v[bits_field].as_str().unwrap().to_owned(),
        data["evidence_count"].as_u64().unwrap(),
        data["corroborations"].as_u64().unwrap(),
        data["contradictions"].as_u64().unwrap(),
    )
}

fn rust_state(s: &ConfidenceState) -> (String, u64, u64, u64) {
    (
        bits(s.confidence),
        s.evidence_count,
        s.corroborations,
        s.contradictions,
    )
}

#[tokio::test]
async fn popoto_legacy_data_migrates_and_popoto_reads_it_back() {
    let server = start_server();
    let url = server.url().to_owned();
    let projects = ["atlas", "zeus", "umbrella:eu-1", "a*"];
    let items: Vec<Json> = (0..12)
        .map(|i| json!({"project": projects[i % 4], "key": format!("fact{i}"), "content": format!("c{i}")}))
        .collect();
    let seeded = py(
        "legacy-seed",
        Some(&url),
        &json!({
            "items": items,
            "signals": {
                "fact0": [0.9],
                "fact1": [0.9, 0.1, 1.0, 0.5, 0.0, 0.75],
                "fact2": [1.0, 1.0],
                "fact5": [0.3],
                "fact6": [0.0],
                "fact11": [0.5, 0.6, 0.7]
            },
            "drop_instances": ["fact3", "fact9"]
        }),
    );
    let legacy_key = seeded["hash"].as_str().unwrap().to_owned();
    assert_eq!(legacy_key, "$ConfidencF:Memory:certainty:data");
    let legacy: BTreeMap<String, Vec<u8>> = seeded["entries"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), unhex(v.as_str().unwrap())))
        .collect();
    assert_eq!(legacy.len(), 12);

    let db = server.db().await;
    let report = db
        .admin()
        .migrate_to_partitioned(PartitionedMemory::certainty(), DryRun::No, |_| {})
        .await
        .unwrap();
    let member =
        |i: usize| PartitionedMemory::key_of(projects[i % 4], format!("fact{i}")).redis_key();
    let mut errors = report.errors.clone();
    errors.sort_by(|a, b| a.member_key.cmp(&b.member_key));
    let mut expected_errors: Vec<MigrationError> = [3, 9]
        .into_iter()
        .map(|i| MigrationError {
            member_key: member(i),
            error: "Instance not found in Redis".into(),
        })
        .collect();
    expected_errors.sort_by(|a, b| a.member_key.cmp(&b.member_key));
    assert_eq!(errors, expected_errors);
    assert_eq!((report.total, report.migrated), (12, 10));
    let expected_partitions: BTreeMap<String, u64> =
        [("a*", 2), ("atlas", 3), ("umbrella:eu-1", 3), ("zeus", 2)]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
    assert_eq!(report.partitions, expected_partitions);

    // Raw bytes moved unchanged; the missing instances' entries stayed in the legacy hash.
    for i in 0..12 {
        let m = member(i);
        let partition = format!("{legacy_key}:{}", projects[i % 4]);
        if i == 3 || i == 9 {
            assert_eq!(hget(&server, &legacy_key, &m).as_ref(), legacy.get(&m));
            assert_eq!(hget(&server, &partition, &m), None);
        } else {
            assert_eq!(
                hget(&server, &partition, &m).as_ref(),
                legacy.get(&m),
                "{m}"
            );
        }
    }

    // popoto's partitioned model reads every entry and agrees with the legacy data.
    let wanted: Vec<Json> = (0..12)
        .map(|i| json!({"project": projects[i % 4], "key": format!("fact{i}")}))
        .collect();
    let read = py("read", Some(&url), &Json::Array(wanted));
    let admin = db.admin();
    for i in 0..12 {
        let r = &read[i];
        if i == 3 || i == 9 {
            assert!(r.is_null(), "fact{i}: {r}");
            continue;
        }
        let m = member(i);
        assert_eq!(r["key"], json!(m));
        assert_eq!(
            r["hash"],
            json!(format!("{legacy_key}:{}", projects[i % 4]))
        );
        let before = ConfidenceState::decode(&legacy[&m], 0.5).unwrap();
        let python = py_state(r, "data_confidence_bits", &r["data"]);
        assert_eq!(
            python,
            rust_state(&before),
            "fact{i}: popoto reads the moved entry"
        );
        assert_eq!(r["confidence_bits"], r["data_confidence_bits"]);
        let value = PartitionedMemory {
            project: projects[i % 4].into(),
            key: format!("fact{i}"),
            ..Default::default()
        };
        let rust = admin
            .confidence(&value, PartitionedMemory::certainty())
            .unwrap()
            .state()
            .await
            .unwrap();
        assert_eq!(rust_state(&rust), python, "fact{i}: Rust reads the same");
    }
    // An updated entry really carries its history (popoto's verified trajectory).
    let fact1 = &read[1]["data"];
    assert_eq!(
        read[1]["data_confidence_bits"],
        json!(bits(0.5357142857142857))
    );
    assert_eq!(fact1["evidence_count"], json!(6));
}

#[tokio::test]
async fn interleaved_python_and_rust_updates_follow_the_formula_to_the_bit() {
    let server = start_server();
    let url = server.url().to_owned();
    let created = py(
        "create",
        Some(&url),
        &json!({"project": "umbrella:eu-1", "key": "fact", "content": "The sky is blue"}),
    );
    let member = created["key"].as_str().unwrap().to_owned();
    let companion = "$ConfidencF:Memory:certainty:data:umbrella:eu-1";
    // 26 signals: past the evidence cap of 20, where the gain freezes.
    let signals: Vec<f64> = interop_support::LONG_SIGNALS.to_vec();
    let expected = py(
        "expect",
        None,
        &json!({"initial": 0.5, "cap": 20, "signals": signals}),
    );
    let db = server.db().await;
    let tenant = db.tenant("umbrella:eu-1").unwrap();
    let value = PartitionedMemory {
        key: "fact".into(),
        ..Default::default()
    };
    let value = PartitionedMemory {
        project: "umbrella:eu-1".into(),
        ..value
    };
    let handle = tenant
        .confidence(&value, PartitionedMemory::certainty())
        .unwrap();
    assert_eq!(handle.companion_key(), companion);
    for (step, signal) in signals.iter().enumerate() {
        let want = &expected[step];
        let want = py_state(want, "bits", want);
        if step % 2 == 0 {
            let out = py(
                "update",
                Some(&url),
                &json!({"project": "umbrella:eu-1", "key": "fact", "signal": signal}),
            );
            // popoto returns Lua's 14 significant digits of the same value.
            let returned = out["returned"].as_f64().unwrap();
            let exact = f64::from_bits(u64::from_str_radix(&want.0, 16).unwrap());
            assert!(
                (returned - exact).abs() <= exact.abs() * 1e-13,
                "step {step}: popoto returned {returned}, formula {exact}"
            );
        } else {
            let s = handle.update(*signal).await.unwrap();
            assert_eq!(rust_state(&s), want, "step {step}: Rust's returned state");
        }
        let raw = hget(&server, companion, &member).unwrap();
        let stored = ConfidenceState::decode(&raw, 0.5).unwrap();
        assert_eq!(
            rust_state(&stored),
            want,
            "step {step} ({}): stored bytes {raw:02x?}",
            if step % 2 == 0 { "python" } else { "rust" }
        );
    }
    let read = py(
        "read",
        Some(&url),
        &json!([{"project": "umbrella:eu-1", "key": "fact"}]),
    );
    let last = &expected[signals.len() - 1];
    assert_eq!(read[0]["data_confidence_bits"], last["bits"]);
    assert_eq!(read[0]["data"]["evidence_count"], json!(26));
}
