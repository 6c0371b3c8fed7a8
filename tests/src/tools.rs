//! Finding the external programs the tests drive (memcached, python3, libmemcached's tools).
//!
//! A missing tool is a test failure with the command that installs it, never a skip:
//! `scripts/test.sh` installs everything, so a missing tool means a broken setup.

use std::path::PathBuf;
use std::process::{Command, Stdio};

/// Finds `name` on `PATH` (like `command -v`); panics with `install` as the fix when it is absent.
pub fn require_command(name: &str, install: &str) -> PathBuf {
    find_command(name).unwrap_or_else(|| {
        panic!("`{name}` is not installed (not found on PATH); install it with `{install}`, or run scripts/test.sh, which installs every test dependency")
    })
}

/// Finds `name` on `PATH`.
pub fn find_command(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Finds `python3` and checks that it can import `module`; panics with `install` as the fix otherwise.
pub fn require_python_module(module: &str, install: &str) -> PathBuf {
    let python = require_command("python3", "apt-get install python3");
    let ok = Command::new(&python)
        .args(["-c", &format!("import {module}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "the Python module `{module}` is not importable by {}; install it with `{install}`, or run scripts/test.sh",
        python.display()
    );
    python
}

/// The workspace root (the parent of this crate's directory).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}
