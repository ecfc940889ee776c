//! The Python that runs the oracle scripts of `tests/interop/`: `$POPOTO_PYTHON` when it is set,
//! else a virtualenv with `tests/interop/requirements.txt` (popoto 1.10.1) that the first test to
//! need it creates at `<target>/tmp/popoto-venv`, so `cargo test` needs no set-up step.
//!
//! Creation is safe when several test processes start at once: each builds its own staging
//! venv beside the final one and moves it into place with one `rename`; a process that loses
//! the race uses the winner's venv. Nothing is ever skipped: a missing `python3`, a failed
//! `venv` or `pip`, or a python without popoto 1.10.1 fails the test with what is missing.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

/// What `tests/interop/requirements.txt` pins; a venv built from other contents is rebuilt.
const REQUIREMENTS: &str = include_str!("../interop/requirements.txt");

/// The venv's copy of the requirements it was built from, written last: its presence with the
/// current contents marks a complete venv.
const MARKER: &str = "popoto-requirements.txt";

/// Asserts, without touching Redis (importing popoto connects nowhere), that the interpreter
/// has popoto 1.10.1.
const CHECK: &str = "import importlib.metadata as m, popoto\n\
                     v = m.version('popoto')\n\
                     assert v == '1.10.1', 'popoto ' + v + ' is installed, the oracle is 1.10.1'";

/// The python to run the oracle scripts with (see the module doc). Panics with the reason when
/// there is none; every test of the process gets the same answer, computed once.
pub fn python() -> PathBuf {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match PYTHON.get_or_init(resolve) {
        Ok(path) => path.clone(),
        Err(why) => panic!("the interop tests have no Python oracle: {why}"),
    }
}

/// `$POPOTO_PYTHON` (checked), else the venv under the target directory, created if needed.
fn resolve() -> Result<PathBuf, String> {
    match std::env::var_os("POPOTO_PYTHON") {
        Some(p) if !p.is_empty() => {
            let path = PathBuf::from(p);
            check(&path).map_err(|e| format!("POPOTO_PYTHON={}: {e}", path.display()))?;
            Ok(path)
        }
        _ => ensure_venv(&venv_dir()),
    }
}

/// `<target>/tmp/popoto-venv` (`CARGO_TARGET_TMPDIR`, which cargo sets for integration tests).
fn venv_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("popoto-venv")
}

fn venv_python(dir: &Path) -> PathBuf {
    dir.join("bin").join("python")
}

/// Runs `cmd`, turning a failure to start it or a non-zero exit into a message naming `what`.
fn run(cmd: &mut Command, what: &str) -> Result<Output, String> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    if out.status.success() {
        return Ok(out);
    }
    let mut msg = format!("{what} failed ({})", out.status);
    for (name, text) in [("stderr", &out.stderr), ("stdout", &out.stdout)] {
        if !text.is_empty() {
            msg.push_str(&format!(
                "\n--- {name} ---\n{}",
                String::from_utf8_lossy(text)
            ));
        }
    }
    Err(msg)
}

/// Checks that `python` runs and imports popoto 1.10.1.
fn check(python: &Path) -> Result<(), String> {
    let what = format!("{} (checking for popoto 1.10.1)", python.display());
    run(
        Command::new(python)
            .args(["-c", CHECK])
            .env_remove("REDIS_URL"),
        &what,
    )
    .map(drop)
}

/// Whether `dir` holds a complete venv built from the current requirements that still works.
fn ready(dir: &Path) -> bool {
    fs::read_to_string(dir.join(MARKER)).is_ok_and(|m| m == REQUIREMENTS)
        && check(&venv_python(dir)).is_ok()
}

/// The python of the venv at `dir`, creating (or replacing a stale) one first.
fn ensure_venv(dir: &Path) -> Result<PathBuf, String> {
    if ready(dir) {
        return Ok(venv_python(dir));
    }
    let parent = dir
        .parent()
        .ok_or_else(|| format!("{} has no parent directory", dir.display()))?;
    fs::create_dir_all(parent).map_err(|e| format!("creating {}: {e}", parent.display()))?;
    let staging = parent.join(format!("popoto-venv.building-{}", unique()));
    eprintln!(
        "creating {} with popoto 1.10.1 (set POPOTO_PYTHON to use another python)",
        dir.display()
    );
    if let Err(e) = build(&staging) {
        // Best effort: a leftover staging dir only takes space under target/tmp.
        match fs::remove_dir_all(&staging) {
            Err(rm) if rm.kind() != std::io::ErrorKind::NotFound => {
                eprintln!("could not remove {}: {rm}", staging.display());
            }
            _ => {}
        }
        return Err(format!(
            "creating the venv {} failed: {e}\n(or set POPOTO_PYTHON to a python that has \
             popoto==1.10.1)",
            dir.display()
        ));
    }
    install(&staging, dir)?;
    Ok(venv_python(dir))
}

/// Moves the complete venv `staging` to `dir`, unless another process got there first.
fn install(staging: &Path, dir: &Path) -> Result<(), String> {
    for _ in 0..3 {
        let err = match fs::rename(staging, dir) {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        if ready(dir) {
            // Another test process installed its venv first: use that one.
            fs::remove_dir_all(staging)
                .map_err(|e| format!("removing the unused {}: {e}", staging.display()))?;
            return Ok(());
        }
        if !dir.exists() {
            return Err(format!(
                "moving {} to {}: {err}",
                staging.display(),
                dir.display()
            ));
        }
        // A venv of other requirements, or one whose base python is gone: move it aside
        // (atomically, so a concurrent process sees either it or ours) and retry.
        let stale = dir.with_file_name(format!("popoto-venv.stale-{}", unique()));
        match fs::rename(dir, &stale) {
            Ok(()) => fs::remove_dir_all(&stale)
                .map_err(|e| format!("removing the stale venv {}: {e}", stale.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(format!(
                    "moving the stale venv {} aside: {e}",
                    dir.display()
                ))
            }
        }
    }
    Err(format!(
        "could not install {} as {}: it kept being replaced",
        staging.display(),
        dir.display()
    ))
}

/// `python3 -m venv staging`, pip install of the requirements, the check, then the marker.
fn build(staging: &Path) -> Result<(), String> {
    match Command::new("python3").arg("--version").output() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(
                "python3 is not on PATH: install Python 3 with its venv module \
                        (Debian: apt-get install python3 python3-venv)"
                    .to_owned(),
            )
        }
        Err(e) => return Err(format!("cannot run python3: {e}")),
        Ok(_) => {}
    }
    run(
        Command::new("python3").args(["-m", "venv"]).arg(staging),
        "python3 -m venv (Debian: apt-get install python3-venv)",
    )?;
    let requirements = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("interop")
        .join("requirements.txt");
    run(
        Command::new(venv_python(staging))
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(["--no-input", "-r"])
            .arg(&requirements),
        &format!(
            "pip install -r {} (popoto==1.10.1 from PyPI)",
            requirements.display()
        ),
    )?;
    check(&venv_python(staging))?;
    fs::write(staging.join(MARKER), REQUIREMENTS)
        .map_err(|e| format!("writing {}: {e}", staging.join(MARKER).display()))
}

/// A name part no other process or call uses: pid and the clock in nanoseconds.
fn unique() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the system clock is before 1970")
        .as_nanos();
    format!("{}-{nanos}", std::process::id())
}
