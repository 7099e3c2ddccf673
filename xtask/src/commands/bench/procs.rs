//! The processes a bench run starts: `redis-server`, `larder serve`, the ceiling server.
//!
//! Every child is killed when its handle drops (also while a panic unwinds), dies with us
//! (`PR_SET_PDEATHSIG`, so even a `kill -9` of the bench leaves nothing behind), and is
//! listed for the SIGINT/SIGTERM handler, which kills them before exiting. Children are
//! always spawned from the main thread: the death signal follows the spawning thread.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// Pids the signal handler kills; 0 = free slot.
static CHILDREN: [AtomicI32; 32] = [const { AtomicI32::new(0) }; 32];

fn track(pid: i32) {
    for slot in &CHILDREN {
        if slot
            .compare_exchange(0, pid, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            return;
        }
    }
}

fn untrack(pid: i32) {
    for slot in &CHILDREN {
        let _ = slot.compare_exchange(pid, 0, Ordering::AcqRel, Ordering::Relaxed);
    }
}

extern "C" fn on_signal(sig: libc::c_int) {
    for slot in &CHILDREN {
        let pid = slot.load(Ordering::Acquire);
        if pid > 0 {
            // SAFETY: kill(2) is async-signal-safe; the pid is a child we spawned.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
    // SAFETY: _exit is async-signal-safe.
    unsafe { libc::_exit(128 + sig) }
}

/// Installs the SIGINT/SIGTERM handler that kills every tracked child.
pub fn install_signal_handler() {
    // SAFETY: the handler only calls async-signal-safe functions.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
}

/// Which cores the server side and the load generator run on.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Pinning {
    /// Cores for Larder / the ceiling server (their runtime sizes itself to these).
    pub server: Vec<usize>,
    /// Cores for the load generator and redis-server.
    pub client: Vec<usize>,
}

impl Pinning {
    /// Half the allowed cores each (server first); no pinning on a single core.
    pub fn detect() -> Option<Self> {
        let cores = allowed_cores();
        if cores.len() < 2 {
            return None;
        }
        let half = cores.len() / 2;
        Some(Self {
            server: cores[..half].to_vec(),
            client: cores[half..].to_vec(),
        })
    }
}

fn allowed_cores() -> Vec<usize> {
    // SAFETY: a zeroed cpu_set_t is valid; sched_getaffinity fills it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    }
}

/// Pins the calling thread (or, in `pre_exec`, the child) to `cores`.
pub fn pin_current(cores: &[usize]) -> std::io::Result<()> {
    // SAFETY: plain sched_setaffinity(2) on the calling thread with a valid set.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &c in cores {
            libc::CPU_SET(c, &mut set);
        }
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Dies with us, pinned to `cores` if given.
fn prepare(cmd: &mut Command, cores: Option<Vec<usize>>) {
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            if let Some(cores) = &cores {
                pin_current(cores)?;
            }
            Ok(())
        });
    }
}

/// A child process killed on drop.
pub struct Proc {
    child: Option<Child>,
}

impl Proc {
    fn new(child: Child) -> Self {
        track(child.id() as i32);
        Self { child: Some(child) }
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            untrack(c.id() as i32);
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then SIGKILL after `grace`.
    pub fn stop(&mut self, grace: Duration) {
        if let Some(c) = &mut self.child {
            // SAFETY: kill(2) on our own child.
            unsafe {
                libc::kill(c.id() as i32, libc::SIGTERM);
            }
            let deadline = Instant::now() + grace;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    untrack(c.id() as i32);
                    self.child = None;
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        self.kill();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A free loopback port (released before the caller binds it).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Waits until the port, and the unix socket if given, accept connections.
fn wait_ready(port: u16, socket: Option<&Path>, deadline: Duration) -> bool {
    let end = Instant::now() + deadline;
    while Instant::now() < end {
        if TcpStream::connect(("127.0.0.1", port)).is_ok()
            && socket.is_none_or(|p| UnixStream::connect(p).is_ok())
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// A private `redis-server`: loopback, a free port, a unix socket in its own directory, no
/// persistence.
pub struct Redis {
    proc: Proc,
    /// Its port (kept across restarts).
    pub port: u16,
    dir: PathBuf,
    /// Its unix socket (kept across restarts); `None` when the path is unusable.
    socket: Option<PathBuf>,
    cores: Option<Vec<usize>>,
}

impl Redis {
    /// Starts one on a free port (never 6379), with a unix socket `redis.sock` in its
    /// directory.
    pub fn start(dir: &Path, cores: Option<Vec<usize>>) -> anyhow::Result<Self> {
        let dir = dir.join("redis");
        std::fs::create_dir_all(&dir)?;
        let dir = std::fs::canonicalize(&dir)?;
        let socket = Some(dir.join("redis.sock")).filter(|p| {
            let s = p.to_string_lossy();
            // sun_path holds 108 bytes; and fred takes the URL's path without
            // percent-decoding it, so only characters a URL keeps as they are will do.
            let usable = s.len() < 100
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"/._-~".contains(&b));
            if !usable {
                eprintln!("  redis: no unix socket, its path is too long or needs escaping: {s}");
            }
            usable
        });
        for _ in 0..5 {
            let port = free_port()?;
            if port == 6379 {
                continue;
            }
            let proc = Self::spawn(port, &dir, socket.as_deref(), cores.clone())?;
            if wait_ready(port, socket.as_deref(), Duration::from_secs(10)) {
                return Ok(Self {
                    proc,
                    port,
                    dir,
                    socket,
                    cores,
                });
            }
        }
        bail!("redis-server did not start (is it installed? `apt-get install redis-server`)")
    }

    fn spawn(
        port: u16,
        dir: &Path,
        socket: Option<&Path>,
        cores: Option<Vec<usize>>,
    ) -> anyhow::Result<Proc> {
        let mut cmd = Command::new("redis-server");
        cmd.arg("--port")
            .arg(port.to_string())
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--protected-mode", "yes", "--daemonize", "no"])
            .arg("--dir")
            .arg(dir);
        if let Some(socket) = socket {
            // Redis unlinks a leftover socket file before binding, so a restart after a
            // SIGKILL gets it back.
            cmd.arg("--unixsocket")
                .arg(socket)
                .args(["--unixsocketperm", "700"]);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        prepare(&mut cmd, cores);
        Ok(Proc::new(cmd.spawn().context(
            "spawning redis-server (is it installed and on PATH?)",
        )?))
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// `redis+unix:///ABSOLUTE/PATH/redis.sock`.
    pub fn unix_url(&self) -> anyhow::Result<String> {
        match &self.socket {
            Some(p) => Ok(format!("redis+unix://{}", p.display())),
            None => bail!(
                "redis-server runs without a unix socket: the path under {} is unusable",
                self.dir.display()
            ),
        }
    }

    /// SIGKILL: an outage, not a shutdown.
    pub fn kill(&mut self) {
        self.proc.kill();
    }

    /// Starts it again on the same port; returns once it accepts connections.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.proc.kill();
        self.proc = Self::spawn(
            self.port,
            &self.dir,
            self.socket.as_deref(),
            self.cores.clone(),
        )?;
        if !wait_ready(self.port, self.socket.as_deref(), Duration::from_secs(10)) {
            bail!("redis-server did not come back on port {}", self.port);
        }
        Ok(())
    }

    /// `redis-server --version`.
    pub fn version() -> String {
        Command::new("redis-server")
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_else(|_| "unknown".into())
    }
}

/// A server process that prints `listening on http://ADDR` (larder or the ceiling).
pub struct Server {
    proc: Proc,
    /// The bound address.
    pub addr: SocketAddr,
    logs: Arc<Mutex<String>>,
}

impl Server {
    /// Spawns `cmd` (stdout/stderr piped) and waits for its listening line (a minute).
    pub fn spawn(cmd: Command, cores: Option<Vec<usize>>) -> anyhow::Result<Self> {
        Self::spawn_within(cmd, cores, Duration::from_secs(60))
    }

    /// [`Server::spawn`], waiting up to `wait` for the listening line (plugins start
    /// before it: the analytics plugin may first generate its dataset).
    pub fn spawn_within(
        mut cmd: Command,
        cores: Option<Vec<usize>>,
        wait: Duration,
    ) -> anyhow::Result<Self> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        prepare(&mut cmd, cores);
        let mut child = cmd.spawn().with_context(|| format!("spawning {cmd:?}"))?;
        let logs = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().context("piped stderr")?;
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut s = sink.lock().expect("log lock");
                // Keep the tail only: a long run must not grow without bound.
                if s.len() > 64 * 1024 {
                    s.drain(..32 * 1024);
                }
                s.push_str(&line);
                s.push('\n');
            }
        });
        let stdout = child.stdout.take().context("piped stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("listening on http://") {
                    let _ = tx.send(addr.trim().to_owned());
                }
            }
        });
        let mut proc = Proc::new(child);
        match rx.recv_timeout(wait) {
            Ok(a) => Ok(Self {
                proc,
                addr: a.parse().context("parsing the listening address")?,
                logs,
            }),
            Err(_) => {
                proc.kill();
                std::thread::sleep(Duration::from_millis(100));
                bail!(
                    "the server did not report a listening address; its output:\n{}",
                    logs.lock().expect("log lock")
                )
            }
        }
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// The tail of what it logged.
    pub fn logs(&self) -> String {
        self.logs.lock().expect("log lock").clone()
    }

    /// Graceful stop (SIGTERM), then SIGKILL.
    pub fn stop(mut self) {
        self.proc.stop(Duration::from_secs(5));
    }
}

/// Resident set size of a process, in bytes (`VmRSS` of `/proc/PID/status`).
pub fn rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS in /proc/PID/status")?;
    Ok(kb * 1024)
}

/// CPU time (user + system) a process has used, from `/proc/PID/stat`.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the `(comm)`, which may contain spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf is always safe to call.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some(Duration::from_micros(ticks * 1_000_000 / hz))
}
