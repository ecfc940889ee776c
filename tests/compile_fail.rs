//! Compile-fail tests of `#[derive(Model)]`: each misuse must be a compile error at the token
//! that causes it. Cases are grouped by kind of mistake under `tests/ui/`; the expected output is
//! the `.stderr` beside each case (regenerate with `TRYBUILD=overwrite`, then read every diff,
//! and set `SNAPSHOT_RUSTC` to the compiler that wrote them).
//!
//! The `.stderr` text belongs to one compiler: another rustc words and renders some errors
//! differently. So the exact comparison runs only on `SNAPSHOT_RUSTC` (or when `TRYBUILD` is
//! set, to record). On any other rustc a compiler update must not turn the suite red, yet the
//! cases still prove something: each is compiled from a copy without its `.stderr`, must fail,
//! and its first error must sit at the line and column the snapshot has (the offending token).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The rustc whose output the `.stderr` files under `tests/ui/` are.
const SNAPSHOT_RUSTC: &str = "1.95.0";

#[test]
fn ui() {
    let rustc = rustc_version();
    if rustc == SNAPSHOT_RUSTC || std::env::var_os("TRYBUILD").is_some() {
        let t = trybuild::TestCases::new();
        t.compile_fail("tests/ui/**/*.rs");
        return;
    }
    eprintln!(
        "tests/ui/*.stderr were recorded with rustc {SNAPSHOT_RUSTC}, this is rustc {rustc}: \
         checking that every case still fails to compile with its first error at the recorded \
         place, not the exact text. To compare the text again, rerun with TRYBUILD=overwrite, \
         read the diff and set SNAPSHOT_RUSTC in tests/compile_fail.rs."
    );
    locations_only(&rustc);
}

/// `X.Y.Z` of the rustc that cargo (and so trybuild) builds with: `$RUSTC`, else `rustc`.
fn rustc_version() -> String {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let out = Command::new(&rustc)
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {rustc:?} --version: {e}"));
    assert!(out.status.success(), "{rustc:?} --version: {}", out.status);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    match text.split_whitespace().nth(1) {
        Some(v) => v.to_owned(),
        None => panic!("unexpected {rustc:?} --version output: {text:?}"),
    }
}

/// The cases under `tests/ui/`, relative to it, sorted.
fn cases(dir: &Path, rel: &Path, out: &mut Vec<PathBuf>) {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
    for entry in entries {
        let entry = entry.unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
        let path = entry.path();
        let name = rel.join(entry.file_name());
        if path.is_dir() {
            cases(&path, &name, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(name);
        }
    }
    out.sort();
}

/// Line and column of the first error of a rendered `.stderr` (`--> file:L:C` under it).
fn first_error_at(stderr: &str) -> Option<String> {
    let mut lines = stderr.lines().skip_while(|l| !l.starts_with("error"));
    lines.next()?;
    let arrow = lines.find_map(|l| l.trim_start().strip_prefix("--> "))?;
    let mut parts = arrow.rsplitn(3, ':');
    let col = parts.next()?;
    let line = parts.next()?;
    Some(format!("{line}:{col}"))
}

/// Compiles a copy of every case without its `.stderr` (trybuild records the new output next
/// to the copy) and checks that each fails with its first error where the snapshot has it.
fn locations_only(rustc: &str) {
    let ui = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("ui");
    let copy = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("ui-rustc-{rustc}"));
    if copy.exists() {
        fs::remove_dir_all(&copy).unwrap_or_else(|e| panic!("removing {}: {e}", copy.display()));
    }
    let mut all = Vec::new();
    cases(&ui, Path::new(""), &mut all);
    assert!(!all.is_empty(), "no cases under {}", ui.display());
    for case in &all {
        let to = copy.join(case);
        let parent = to.parent().unwrap_or(&copy);
        fs::create_dir_all(parent).unwrap_or_else(|e| panic!("creating {}: {e}", parent.display()));
        fs::copy(ui.join(case), &to).unwrap_or_else(|e| panic!("copying {}: {e}", case.display()));
    }
    // Only this test runs in this binary, so no other thread reads the environment meanwhile.
    std::env::set_var("TRYBUILD", "overwrite");
    let t = trybuild::TestCases::new();
    t.compile_fail(copy.join("**").join("*.rs"));
    drop(t); // runs the cases: a case that compiles fails the test here
    let mut moved = Vec::new();
    for case in &all {
        let read = |p: PathBuf| {
            fs::read_to_string(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
        };
        let want = first_error_at(&read(ui.join(case).with_extension("stderr")));
        let got = first_error_at(&read(copy.join(case).with_extension("stderr")));
        assert!(
            want.is_some(),
            "{}: the snapshot has no located error",
            case.display()
        );
        if want != got {
            moved.push(format!(
                "{}: first error at {} in the snapshot, at {} with rustc {rustc}",
                case.display(),
                want.as_deref().unwrap_or("?"),
                got.as_deref().unwrap_or("(no location)")
            ));
        }
    }
    assert!(
        moved.is_empty(),
        "with rustc {rustc}, errors moved away from the offending token:\n{}",
        moved.join("\n")
    );
}
