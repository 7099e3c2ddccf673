//! Spawning the real `larder` binary on `127.0.0.1:0` and reading what it prints.
//!
//! [`artifacts`] builds the binary and the workspace's dynamic plugins in **one** cargo
//! invocation (feature unification must be the same for host and plugins, or the loader
//! rightly refuses them), once per test process; cargo's own lock serialises concurrent
//! test processes and makes the later builds no-ops.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// Built binaries of the workspace.
#[derive(Debug, Clone)]
pub struct Artifacts {
    /// `target/<profile>/larder`.
    pub larder: PathBuf,
    /// `target/<profile>`, where the `lib*.so` plugins are.
    pub dir: PathBuf,
}

impl Artifacts {
    /// Path of a dynamic plugin library built from crate `name` (`hello-plugin` →
    /// `libhello_plugin.so`).
    pub fn cdylib(&self, name: &str) -> PathBuf {
        let stem = name.replace('-', "_");
        self.dir.join(format!(
            "{}{stem}{}",
            std::env::consts::DLL_PREFIX,
            std::env::consts::DLL_SUFFIX
        ))
    }
}

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("testkit lives at tests/testkit")
        .to_owned()
}

/// Builds (once per process) and returns the larder binary and the dynamic plugins.
pub fn artifacts() -> &'static Artifacts {
    static ONCE: OnceLock<Artifacts> = OnceLock::new();
    ONCE.get_or_init(|| build().expect("building larder and the dynamic plugins"))
}

/// `target/<profile>` of the running test binary (`target/<profile>/deps/<binary>`).
fn profile_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    Ok(exe
        .parent()
        .and_then(Path::parent)
        .context("test binary is not under target/<profile>/deps")?
        .to_owned())
}

/// The target directory the tests were built in (`target/`, or `CARGO_TARGET_DIR`).
pub fn target_dir() -> anyhow::Result<PathBuf> {
    Ok(profile_dir()?.parent().context("no target dir")?.to_owned())
}

fn build() -> anyhow::Result<Artifacts> {
    let profile_dir = profile_dir()?;
    let target_dir = target_dir()?;
    let profile = profile_dir
        .file_name()
        .and_then(|s| s.to_str())
        .unwrap_or("debug")
        .to_owned();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace_root())
        .args(["build", "--quiet", "--target-dir"])
        .arg(&target_dir)
        .args([
            "-p",
            "larder",
            "-p",
            "hello-plugin",
            "-p",
            "faulty-plugin",
            "-p",
            "bad-abi-plugin",
            "-p",
            "traced-plugin",
        ]);
    if profile == "release" {
        cmd.arg("--release");
    }
    let status = cmd.status().context("running cargo build")?;
    if !status.success() {
        bail!("cargo build failed: {status}");
    }
    Ok(Artifacts {
        larder: profile_dir.join(format!("larder{}", std::env::consts::EXE_SUFFIX)),
        dir: profile_dir,
    })
}

/// A running `larder serve`, killed on drop.
pub struct Larder {
    child: Child,
    /// The bound address.
    pub addr: SocketAddr,
    logs: Arc<Mutex<String>>,
    _dir: tempfile::TempDir,
}

/// How to start a server.
#[derive(Default)]
pub struct LarderOptions {
    /// Config file contents (YAML); none runs on embedded defaults.
    pub config: Option<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// Policy folder; defaults to the repository's `policies/`.
    pub policies: Option<PathBuf>,
}

impl Larder {
    /// Starts the server with a config file.
    pub fn start(config: &str) -> anyhow::Result<Self> {
        Self::start_with(LarderOptions {
            config: Some(config.to_owned()),
            ..Default::default()
        })
    }

    /// Starts the server and waits (with a deadline) for its "listening on" line.
    pub fn start_with(opts: LarderOptions) -> anyhow::Result<Self> {
        let art = artifacts();
        let dir = tempfile::tempdir()?;
        let mut cmd = Command::new(&art.larder);
        cmd.arg("serve").args(["--listen", "127.0.0.1:0"]);
        if let Some(config) = &opts.config {
            let path = dir.path().join("larder.yaml");
            std::fs::write(&path, config)?;
            cmd.arg("--config").arg(path);
        }
        let policies = opts
            .policies
            .clone()
            .unwrap_or_else(|| workspace_root().join("policies"));
        cmd.env("LARDER_POLICIES", policies)
            .env_remove("LARDER_CONFIG")
            .env_remove("REDIS_URL")
            .env("RUST_LOG", "info")
            .env("RUST_BACKTRACE", "0")
            .env("NO_COLOR", "1")
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // Plugins whose data takes a while to make (a generated dataset, a warmed catalog)
        // run only in the tests that name them.
        for (plugin, off) in HEAVY_PLUGINS {
            if !wants(
                plugin,
                opts.config.as_deref(),
                opts.env.iter().map(|(k, _)| k.as_str()),
            ) {
                cmd.env(off.0, off.1);
            }
        }
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().context("spawning larder")?;
        let logs = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().expect("piped stderr");
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut s = sink.lock().expect("log lock");
                s.push_str(&line);
                s.push('\n');
            }
        });
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("listening on http://") {
                    let _ = tx.send(addr.trim().to_owned());
                }
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(a) => a.parse()?,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                // Give the stderr reader a moment to drain what the process printed.
                let deadline = Instant::now() + Duration::from_secs(2);
                while Instant::now() < deadline && logs.lock().expect("log lock").is_empty() {
                    std::thread::yield_now();
                }
                bail!(
                    "larder did not report a listening address; its output:\n{}",
                    logs.lock().expect("log lock")
                );
            }
        };
        Ok(Self {
            child,
            addr,
            logs,
            _dir: dir,
        })
    }

    /// `http://addr{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Warming job `name` as `/admin/cache/jobs` shows it (read with admin key `key`), once
    /// it has run: start-up jobs run one after the other, so a later one may still be
    /// waiting. Polls until `within`; panics if the job is not loaded or never runs.
    pub async fn warm_job_after_first_run(
        &self,
        key: &str,
        name: &str,
        within: Duration,
    ) -> serde_json::Value {
        let c = reqwest::Client::new();
        let deadline = Instant::now() + within;
        loop {
            let jobs: serde_json::Value = c
                .get(self.url("/admin/cache/jobs"))
                .header("x-admin-key", key)
                .send()
                .await
                .expect("admin API answers")
                .json()
                .await
                .expect("job list is JSON");
            let job = jobs
                .as_array()
                .and_then(|all| all.iter().find(|j| j["name"] == name))
                .cloned()
                .unwrap_or_else(|| panic!("no warming job `{name}` in {jobs}"));
            if job["runs"].as_u64().unwrap_or(0) >= 1 {
                return job;
            }
            assert!(Instant::now() < deadline, "job `{name}` never ran: {job}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Everything the server logged so far.
    pub fn logs(&self) -> String {
        self.logs.lock().expect("log lock").clone()
    }

    /// Sends a signal (e.g. `libc::SIGTERM`) to the process.
    pub fn signal(&self, signal: i32) {
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, signal);
        }
    }

    /// Waits for the process to exit, up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("larder did not exit within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Larder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `analytics` plugin generates a million order lines on a fresh start; a test that
/// does not ask for it (in its config or environment) runs without it.
/// Plugins left off unless a test's config or environment names them, and how.
const HEAVY_PLUGINS: &[(&str, (&str, &str))] = &[
    ("analytics", ("LARDER_PLUGINS__ANALYTICS__ENABLED", "false")),
    ("products", ("LARDER_PLUGINS__PRODUCTS__ENABLED", "false")),
];

/// Environment for a small products catalog (60 products, 5 users with preferences): a
/// quick first start and warm run.
pub const PRODUCTS_SMALL: &[(&str, &str)] = &[
    ("LARDER_PLUGINS__PRODUCTS__SETTINGS__PRODUCTS", "60"),
    ("LARDER_PLUGINS__PRODUCTS__SETTINGS__USERS", "5"),
];

/// Environment for a small analytics dataset (the generator's own code path, a fraction of
/// the rows): enough for every query to return something.
pub const ANALYTICS_SMALL: &[(&str, &str)] = &[
    ("LARDER_PLUGINS__ANALYTICS__SETTINGS__DATASET__TENANTS", "2"),
    (
        "LARDER_PLUGINS__ANALYTICS__SETTINGS__DATASET__CUSTOMERS_PER_TENANT",
        "200",
    ),
    (
        "LARDER_PLUGINS__ANALYTICS__SETTINGS__DATASET__PRODUCTS_PER_TENANT",
        "40",
    ),
    (
        "LARDER_PLUGINS__ANALYTICS__SETTINGS__DATASET__ORDER_LINES",
        "20000",
    ),
    ("LARDER_PLUGINS__ANALYTICS__SETTINGS__DATASET__DAYS", "120"),
];

fn wants<'a>(plugin: &str, config: Option<&str>, mut env: impl Iterator<Item = &'a str>) -> bool {
    let upper = plugin.to_uppercase();
    config.is_some_and(|c| c.contains(plugin)) || env.any(|k| k.contains(&upper))
}

/// Runs `larder` with arguments to completion (for `check`, `openapi`, ...).
pub fn run_larder(args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<std::process::Output> {
    let art = artifacts();
    // A fresh working directory: plugins create local data (the booking database) relative
    // to it, and concurrent tests must not share those files.
    let cwd = tempfile::tempdir()?;
    let mut cmd = Command::new(&art.larder);
    cmd.current_dir(cwd.path())
        .args(args)
        .env_remove("LARDER_CONFIG")
        .env_remove("REDIS_URL")
        .env("NO_COLOR", "1")
        .env("LARDER_POLICIES", workspace_root().join("policies"));
    // Only analytics is heavy here: products builds an in-memory catalog when inspected.
    let (plugin, off) = HEAVY_PLUGINS[0];
    if !wants(plugin, None, env.iter().map(|(k, _)| *k)) {
        cmd.env(off.0, off.1);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    Ok(cmd.output()?)
}
