//! Compile-fail tests of `#[derive(Model)]`: each misuse must be a compile error at the token
//! that causes it. Cases are grouped by kind of mistake under `tests/ui/`; the expected output is
//! the `.stderr` beside each case (regenerate with `TRYBUILD=overwrite`, then read every diff).

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/**/*.rs");
}
