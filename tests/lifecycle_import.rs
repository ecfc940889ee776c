//! Imports are safe and idempotent: the uniqueness check of create, and an import cut at any
//! point (a reader error, a stream cut short, a dropped task, a killed connection) completed
//! by running it again, ending byte for byte in the state of one uninterrupted import.

mod lifecycle_common;
mod support;

use std::io::Read;

use lifecycle_common::*;
use popoto::testing::TestRedis;
use popoto::{Db, Error, ExportRecord, FindingKind};
use support::faults::kill_others;
use support::*;

const VICTIM: &str = "umbrella:eu-1";

/// A reader of `data` that fails (or ends, with `eof`) after `cut` bytes, and calls `at_cut`
/// once when it gets there.
struct Cut<'a, F: FnMut()> {
    data: &'a [u8],
    pos: usize,
    cut: usize,
    eof: bool,
    at_cut: Option<F>,
}

impl<'a, F: FnMut()> Cut<'a, F> {
    fn new(data: &'a [u8], cut: usize, eof: bool, at_cut: F) -> Self {
        Cut {
            data,
            pos: 0,
            cut,
            eof,
            at_cut: Some(at_cut),
        }
    }
}

impl<F: FnMut()> Read for Cut<'_, F> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos >= self.cut {
            if let Some(mut f) = self.at_cut.take() {
                f();
            }
            if self.eof {
                return Ok(0);
            }
            return Err(std::io::Error::other("connection to the backup store lost"));
        }
        let n = buf
            .len()
            .min(self.cut - self.pos)
            .min(self.data.len() - self.pos);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// The victim's export (hundreds of instances: several import batches), a server holding every
/// other tenant, and the reference: the same plus one clean import of the export.
struct Fixture {
    stream: Vec<u8>,
    reference: std::collections::BTreeMap<String, String>,
    others: std::collections::BTreeMap<String, String>,
    _source: TestRedis,
    _reference: TestRedis,
}

/// Every tenant but the victim.
async fn others(db: &Db) {
    seed_all_but(db, Some(VICTIM)).await;
}

async fn fixture() -> Fixture {
    let (source, source_db) = seeded(None).await;
    seed_items(&source_db, VICTIM, 450).await;
    let mut stream = Vec::new();
    source_db
        .admin()
        .export_tenant(&tid(VICTIM), &models(), &mut stream)
        .await
        .unwrap();
    let (reference, reference_db) = setup().await;
    others(&reference_db).await;
    let only_others = dump(&reference);
    reference_db
        .admin()
        .import_tenant(&tid(VICTIM), &models(), stream.as_slice())
        .await
        .unwrap();
    Fixture {
        stream,
        reference: dump(&reference),
        others: only_others,
        _source: source,
        _reference: reference,
    }
}

/// Whether the database holds part of the victim's data but not all of it.
fn partial(fx: &Fixture, server: &TestRedis) -> bool {
    let now = dump(server);
    now != fx.others && now != fx.reference
}

#[tokio::test]
async fn an_import_cut_by_a_failing_or_short_reader_completes_when_run_again() {
    let fx = fixture().await;
    let (server, db) = setup().await;
    let len = fx.stream.len();
    let mut partial_cuts = 0;
    for (cut, eof) in [
        (40, false),
        (len / 10, false),
        (len / 3, true),
        (len / 2, false),
        (len * 3 / 4, true),
        (len - 1, false),
        (len - 3, true),
    ] {
        redis::cmd("FLUSHALL").exec(&mut server.raw()).unwrap();
        others(&db).await;
        assert_eq!(dump(&server), fx.others);
        let reader = Cut::new(&fx.stream, cut, eof, || {});
        let err = db
            .admin()
            .import_tenant(&tid(VICTIM), &models(), reader)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Stream(_)), "cut at {cut}: {err:?}");
        partial_cuts += usize::from(partial(&fx, &server));
        db.admin()
            .import_tenant(&tid(VICTIM), &models(), fx.stream.as_slice())
            .await
            .unwrap_or_else(|e| panic!("rerun after the cut at {cut}/{len}: {e}"));
        assert_eq!(
            dump(&server),
            fx.reference,
            "rerun after the cut at {cut}/{len}"
        );
    }
    assert!(
        partial_cuts >= 3,
        "only {partial_cuts} cuts left a partial import"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_cut_by_a_dropped_task_or_a_killed_connection_completes_when_run_again() {
    let fx = fixture().await;
    let server = start_server();
    // The kill from the reader, between two calls, must cut the import.
    let db = lanes_only(&server);
    let len = fx.stream.len();
    let mut partial_cuts = 0;
    // Cut points leave at least one full batch to read after them.
    for cut in [len / 5, len * 2 / 5, len * 3 / 5] {
        // The task is dropped while a batch is in flight: the reader fires the signal, and the
        // import is dropped at its next await (sending the batch it was filling).
        redis::cmd("FLUSHALL").exec(&mut server.raw()).unwrap();
        others(&db).await;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let mut tx = Some(tx);
        let reader = Cut::new(&fx.stream, len, true, || {});
        let reader = Signal {
            inner: reader,
            read: 0,
            at: cut,
            signal: move || {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(());
                }
            },
        };
        let admin = db.admin();
        let tenant = tid(VICTIM);
        let set = models();
        let import = admin.import_tenant(&tenant, &set, reader);
        tokio::select! {
            biased;
            // Under load every reply can be ready when polled, so the import may finish first:
            // then this cut left nothing partial (counted below, and the rerun is a no-op).
            r = import => {
                r.unwrap_or_else(|e| panic!("an uncut import failed: {e}"));
            }
            _ = rx => {}
        }
        partial_cuts += usize::from(partial(&fx, &server));
        db.admin()
            .import_tenant(&tid(VICTIM), &models(), fx.stream.as_slice())
            .await
            .unwrap_or_else(|e| panic!("rerun after dropping at {cut}/{len}: {e}"));
        assert_eq!(dump(&server), fx.reference, "rerun after dropping at {cut}");

        // The connection is killed (CLIENT KILL of every client but the killer's) mid-import.
        redis::cmd("FLUSHALL").exec(&mut server.raw()).unwrap();
        others(&db).await;
        let killer = &server;
        let reader = Cut::new(&fx.stream, len, true, || {});
        let reader = Signal {
            inner: reader,
            read: 0,
            at: cut,
            signal: || {
                let killed = kill_others(&mut killer.raw());
                assert!(killed >= 1, "no connection to kill");
            },
        };
        let err = db
            .admin()
            .import_tenant(&tid(VICTIM), &models(), reader)
            .await
            .unwrap_err();
        assert!(err.is_connection_error(), "killed at {cut}: {err:?}");
        partial_cuts += usize::from(partial(&fx, &server));
        db.admin()
            .import_tenant(&tid(VICTIM), &models(), fx.stream.as_slice())
            .await
            .unwrap_or_else(|e| panic!("rerun after the kill at {cut}/{len}: {e}"));
        assert_eq!(dump(&server), fx.reference, "rerun after the kill at {cut}");
    }
    assert!(
        // The three kills always cut; a drop cuts unless the import outran it (under load).
        partial_cuts >= 3,
        "only {partial_cuts} cuts left a partial import"
    );
}

/// A reader that calls `signal` once it has handed out `at` bytes.
struct Signal<R, F: FnMut()> {
    inner: R,
    read: usize,
    at: usize,
    signal: F,
}

impl<R: Read, F: FnMut()> Read for Signal<R, F> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let before = self.read;
        self.read += n;
        if before < self.at && self.read >= self.at {
            (self.signal)();
        }
        Ok(n)
    }
}

#[tokio::test]
async fn an_import_refuses_a_unique_value_another_tenant_holds_and_resumes_once_it_is_freed() {
    let (server, db) = setup().await;
    let a = db.tenant("a").unwrap();
    for sku in ["x", "y", "z"] {
        a.create(Item {
            sku: sku.into(),
            region: "eu".into(),
            level: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    }
    let before = dump(&server);
    let mut stream = Vec::new();
    db.admin()
        .export_tenant(&tid("a"), &models(), &mut stream)
        .await
        .unwrap();
    db.admin()
        .destroy_tenant(&tid("a"), &models())
        .await
        .unwrap();
    // Meanwhile tenant b took sku "y".
    let b = db.tenant("b").unwrap();
    let taken = b
        .create(Item {
            sku: "y".into(),
            region: "us".into(),
            level: 7,
            ..Default::default()
        })
        .await
        .unwrap();
    let b_before = dump(&server);
    let err = db
        .admin()
        .import_tenant(&tid("a"), &models(), stream.as_slice())
        .await
        .unwrap_err();
    // The admin sees which instance holds the value.
    match &err {
        Error::UniqueViolation {
            model,
            field,
            value,
            existing,
        } => {
            assert_eq!((*model, *field, value.as_str()), ("Item", "sku", "y"));
            assert_eq!(existing, &Item::key_of("b", "y").redis_key());
        }
        other => panic!("expected UniqueViolation, got {other:?}"),
    }
    // Nothing of a's "y" was written; b's instance is untouched; no value has two owners.
    assert!(hgetall(&server, &Item::key_of("a", "y").redis_key()).is_empty());
    assert_eq!(
        smembers(&server, "$UniqueKeyF:Item:sku:y"),
        [Item::key_of("b", "y").redis_key()]
    );
    for (k, v) in b_before.iter().filter(|(k, _)| k.contains(":b")) {
        assert_eq!(dump(&server).get(k), Some(v), "{k}");
    }
    let audit = db.admin().audit::<Item>().await.unwrap();
    assert_eq!(audit.count(FindingKind::CrossTenantUnique), 0, "{audit}");
    // Once b gives the value up, the same import completes a's tenant.
    b.delete(&taken).await.unwrap();
    db.admin()
        .import_tenant(&tid("a"), &models(), stream.as_slice())
        .await
        .unwrap();
    assert_eq!(dump(&server), before);
}

#[tokio::test]
async fn an_import_refuses_an_instance_changed_since_and_a_forged_end() {
    let (server, db) = seeded(None).await;
    let victim = tid("acme");
    let mut stream = Vec::new();
    db.admin()
        .export_tenant(&victim, &models(), &mut stream)
        .await
        .unwrap();
    // An instance whose stored fields differ from the stream's is not overwritten.
    let t = db.tenant("acme").unwrap();
    let mut item = t
        .get(&Item::key_of("acme", "acme#3"))
        .await
        .unwrap()
        .unwrap();
    item.note = Some("edited after the export".into());
    t.save(&item).await.unwrap();
    let edited = dump(&server);
    let err = db
        .admin()
        .import_tenant(&victim, &models(), stream.as_slice())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::AlreadyExists { key, .. } if *key == Item::key_of("acme", "acme#3").redis_key()),
        "{err:?}"
    );
    assert_eq!(dump(&server), edited);
    // A stream whose end record does not count its records is refused before anything runs.
    let mut forged: Vec<ExportRecord> = records(&stream);
    let last = forged.len() - 1;
    forged[last] = ExportRecord::End { records: 3 };
    let mut bytes = Vec::new();
    for r in &forged {
        rmp_serde::encode::write_named(&mut bytes, r).unwrap();
    }
    let (empty, empty_db) = setup().await;
    let err = empty_db
        .admin()
        .import_tenant(&victim, &models(), bytes.as_slice())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidValue { .. }), "{err:?}");
    assert!(
        dump(&empty).keys().all(|k| !k.contains("acme")),
        "the forged stream wrote data"
    );
}
