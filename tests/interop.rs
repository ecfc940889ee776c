//! Interop with the real Python popoto 1.10.1 (the oracle), through the scripts of
//! `tests/interop/` run with the oracle python (`$POPOTO_PYTHON`, else the venv the harness
//! creates under `target/tmp`: `interop_support::python`).
//!
//! * `python_writes_rust_reads`: popoto writes the fixture; Rust reads every instance by key,
//!   counts per tenant, and runs a set of queries that `query.py` runs too: same keys, same
//!   order where the order is defined, same values.
//! * `rust_writes_python_reads`: Rust creates the fixture; `query.py` runs the same queries on
//!   it and must answer exactly as on a database popoto wrote itself, and as Rust does.
//! * `byte_identical_layout`: popoto and Rust each write the fixture into their own server;
//!   `dump.py` of both must be equal key by key, byte for byte.
//!
//! Both sides use the same data: the Rust values are built from `fixture.py --json`.
//!
//! Values are compared in a canonical typed-JSON form (`interop_support::canon`): floats
//! bit-exact, datetimes/times as Python's `isoformat()` text, decimals as Python's `str()`
//! (`popoto::codec::PyDecimal` keeps the exponent, so even `1E+2` is exact).
//!
//! The models, the fixture, the query cases and the dump comparison are modules of this test
//! in `tests/interop_cases/`.

mod interop_support;

#[path = "interop_cases/admin_queries.rs"]
mod admin_queries;
#[path = "interop_cases/dumps.rs"]
mod dumps;
#[path = "interop_cases/episode_queries.rs"]
mod episode_queries;
#[path = "interop_cases/fixture.rs"]
mod fixture;
#[path = "interop_cases/models.rs"]
mod models;
#[path = "interop_cases/queries.rs"]
mod queries;
#[path = "interop_cases/sink_queries.rs"]
mod sink_queries;

use serde_json::Map;

use crate::dumps::compare_dumps;
use crate::fixture::{
    check_counts, check_fixture_parsing, check_gets, python_write_checked, rust_write, Fixture,
};
use crate::queries::{cases, check_cases_meaningful, compare_results, run_rust, specs};
use interop_support::*;

#[tokio::test]
async fn python_writes_rust_reads() {
    let fx = Fixture::load();
    let mut p = Problems::new();
    check_fixture_parsing(&fx, &mut p);
    let server = start_server();
    python_write_checked(&server, &fx, &mut p);
    let db = server.db().await;
    check_gets(&db, &fx, &mut p).await;
    check_counts(&db, &fx, &mut p).await;

    let cases = cases(&fx);
    let py = python_query(server.url(), &specs(&cases));
    check_cases_meaningful(&cases, &py, &mut p);
    let rust = run_rust(&db, &cases).await;
    compare_results(
        &cases,
        &fx.expected(),
        ("popoto", &py),
        ("Rust", &rust),
        &mut p,
    );
    p.assert_none("python_writes_rust_reads");
}

#[tokio::test]
async fn rust_writes_python_reads() {
    let fx = Fixture::load();
    let mut p = Problems::new();
    let rust_server = start_server();
    let db = rust_server.db().await;
    rust_write(&db, &fx).await;
    // The oracle: popoto's answers on a database it wrote itself.
    let py_server = start_server();
    python_write_checked(&py_server, &fx, &mut p);

    let cases = cases(&fx);
    let specs = specs(&cases);
    let on_rust = python_query(rust_server.url(), &specs);
    let on_py = python_query(py_server.url(), &specs);
    check_cases_meaningful(&cases, &on_py, &mut p);
    let rust = run_rust(&db, &cases).await;
    let expected = fx.expected();
    compare_results(
        &cases,
        &expected,
        ("popoto on Rust-written data", &on_rust),
        ("popoto on popoto-written data", &on_py),
        &mut p,
    );
    compare_results(
        &cases,
        &expected,
        ("popoto on Rust-written data", &on_rust),
        ("Rust", &rust),
        &mut p,
    );
    p.assert_none("rust_writes_python_reads");
}

#[tokio::test]
async fn byte_identical_layout() {
    let fx = Fixture::load();
    let mut p = Problems::new();
    let py_server = start_server();
    python_write_checked(&py_server, &fx, &mut p);
    let rust_server = start_server();
    let db = rust_server.db().await;
    rust_write(&db, &fx).await;

    let py = python_dump(py_server.url());
    let rs = python_dump(rust_server.url());
    let n = py.as_object().map_or(0, Map::len);
    p.check(n == 68, || {
        format!("popoto wrote {n} keys, the README says 68")
    });
    compare_dumps(&py, &rs, &mut p);
    eprintln!(
        "compared {} keys of popoto's dump with {} of Rust's",
        n,
        rs.as_object().map_or(0, Map::len)
    );
    p.assert_none("byte_identical_layout");
}
