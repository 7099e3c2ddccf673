//! Schemathesis, the property-based OpenAPI fuzzer (Python), for the conformance test.
//!
//! [`st`] gives its `st` command: `LARDER_SCHEMATHESIS` when set (`.ci/run` sets it), else
//! a venv in the target directory, made on first use by `tests/schemathesis/install.sh`,
//! which pins the version and finds a Python for it. Only pip reaches past loopback.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, bail};

use crate::server::{target_dir, workspace_root};

/// The variable naming the `st` command to run.
pub const ENV: &str = "LARDER_SCHEMATHESIS";

/// The `st` command: `LARDER_SCHEMATHESIS`, else the target directory's venv, installed
/// now if it is not yet. The error says how to install it by hand.
pub fn st() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os(ENV) {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!(
                "{ENV}={} is not a file; unset it to let the test make its own venv, or \
                 run tests/schemathesis/install.sh DIR and set it to what that prints",
                path.display()
            );
        }
        return Ok(path);
    }
    let target = target_dir()?;
    std::fs::create_dir_all(&target)?;
    // Test processes run at once: one makes the venv, the others wait for it.
    let lock = std::fs::File::create(target.join("schemathesis.lock"))?;
    lock.lock()?;
    let script = workspace_root().join("tests/schemathesis/install.sh");
    let out = no_fake_clock(Command::new("bash"))
        .arg(&script)
        .arg(target.join("schemathesis"))
        .output()
        .context("running tests/schemathesis/install.sh")?;
    if !out.status.success() {
        bail!(
            "schemathesis is not installed and {} could not install it ({}); set {ENV} to \
             an `st` command of schemathesis 4.32.5, or fix what it says:\n{}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(PathBuf::from(String::from_utf8(out.stdout)?.trim()))
}

/// `cmd` on the real clock: under `tests/faketime` the test binary's environment fakes it,
/// and pip (TLS certificates) and hypothesis (deadlines) need the real one. The servers
/// under test keep their own `server.clock_start`.
pub fn no_fake_clock(mut cmd: Command) -> Command {
    cmd.env_remove("LD_PRELOAD").env_remove("FAKETIME");
    cmd
}
