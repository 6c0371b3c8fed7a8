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

/// What a finished external command printed.
#[derive(Debug)]
pub struct Ran {
    /// Exit status.
    pub status: std::process::ExitStatus,
    /// Standard output, lossily decoded.
    pub stdout: String,
    /// Standard error, lossily decoded.
    pub stderr: String,
}

/// Runs `cmd` to completion with no stdin; kills it and panics if it runs longer than `timeout`.
pub fn run_bounded(cmd: &mut Command, timeout: std::time::Duration) -> Ran {
    use std::io::Read;
    let shown = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"));
    // Drain both pipes on threads so a chatty child cannot block on a full pipe.
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let t_out = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = out.read_to_end(&mut b);
        b
    });
    let t_err = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = err.read_to_end(&mut b);
        b
    });
    let mut status = None;
    crate::poll_until(timeout, std::time::Duration::from_millis(10), || {
        status = child.try_wait().ok().flatten();
        status.is_some()
    });
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{shown} did not finish within {timeout:?}");
    };
    Ran {
        status,
        stdout: String::from_utf8_lossy(&t_out.join().unwrap_or_default()).into_owned(),
        stderr: String::from_utf8_lossy(&t_err.join().unwrap_or_default()).into_owned(),
    }
}
