//! Private `redis-server` processes for integration tests.
//!
//! Tests never touch a Redis they did not start: each [`RedisServer`] runs on a free
//! loopback port with persistence off and its own temp dir, and dies with its handle.
//! [`RedisServer::kill`] and [`RedisServer::restart`] (same port), and
//! [`RedisServer::pause`]/[`RedisServer::resume`] (SIGSTOP/SIGCONT), drive outage tests.
//! [`RedisCluster`] starts three masters and joins them with `redis-cli --cluster create`.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// How long a server gets to start answering before the test fails.
const START_DEADLINE: Duration = Duration::from_secs(15);

/// Asks the OS for a free loopback port. The port is released before redis binds it, so a
/// rare collision is possible; callers retry via [`RedisServer::spawn`]'s own retries.
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("bind 127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

fn start_redis(port: u16, dir: &Path, extra: &[&str]) -> Result<Child> {
    let mut cmd = Command::new("redis-server");
    cmd.arg("--port")
        .arg(port.to_string())
        .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .args(["--protected-mode", "yes", "--daemonize", "no"])
        .arg("--dir")
        .arg(dir)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd.spawn()
        .context("spawn redis-server (is it installed and on PATH?)")
}

/// Sends one inline command over a fresh connection and returns the raw reply.
pub fn raw_command(port: u16, command: &str) -> Result<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.write_all(format!("{command}\r\n").as_bytes())?;
    let mut buf = vec![0u8; 64 * 1024];
    let n = stream.read(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

fn wait_for_ping(port: u16, child: &mut Child) -> Result<()> {
    let deadline = Instant::now() + START_DEADLINE;
    loop {
        if let Ok(reply) = raw_command(port, "PING")
            && reply.starts_with("+PONG")
        {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            bail!("redis-server on port {port} exited early: {status}");
        }
        if Instant::now() > deadline {
            bail!("redis-server on port {port} did not answer PING within {START_DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A private redis-server on a free port; killed on drop.
pub struct RedisServer {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server and waits until it answers PING.
    pub fn spawn() -> Result<RedisServer> {
        let dir = tempfile::tempdir()?;
        let mut last = None;
        for _ in 0..5 {
            let port = free_port()?;
            let mut child = start_redis(port, dir.path(), &[])?;
            match wait_for_ping(port, &mut child) {
                Ok(()) => {
                    return Ok(RedisServer {
                        port,
                        dir,
                        child: Some(child),
                    });
                }
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    last = Some(e);
                }
            }
        }
        Err(last.expect("at least one attempt"))
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Sends one inline command (e.g. `SET k v`) and returns the raw RESP reply, for tests
    /// that poke at stored bytes behind the client's back.
    pub fn command(&self, command: &str) -> Result<String> {
        raw_command(self.port, command)
    }

    /// Stores raw bytes under `key` (a RESP-encoded SET), for tests that plant corrupt or
    /// foreign values.
    pub fn set_bytes(&self, key: &str, value: &[u8]) -> Result<String> {
        use std::io::{Read, Write};
        let mut req = Vec::new();
        req.extend_from_slice(
            format!(
                "*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n${}\r\n",
                key.len(),
                value.len()
            )
            .as_bytes(),
        );
        req.extend_from_slice(value);
        req.extend_from_slice(b"\r\n");
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        stream.write_all(&req)?;
        let mut buf = [0u8; 256];
        let n = stream.read(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Stops the process (SIGSTOP): connections stay open but nothing answers, as with a
    /// stalled or partitioned Redis. [`RedisServer::resume`] continues it.
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// Continues a paused process (SIGCONT).
    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&self, signal: i32) {
        if let Some(child) = &self.child {
            // SAFETY: kill(2) on the pid of a child this handle owns and has not reaped.
            unsafe {
                libc::kill(child.id() as i32, signal);
            }
        }
    }

    /// Kills the process (SIGKILL) and reaps it: an abrupt outage.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a new, empty server on the same port and waits for PING.
    pub fn restart(&mut self) -> Result<()> {
        self.kill();
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            let mut child = start_redis(self.port, self.dir.path(), &[])?;
            match wait_for_ping(self.port, &mut child) {
                Ok(()) => {
                    self.child = Some(child);
                    return Ok(());
                }
                // The old socket may linger briefly; retry until the deadline.
                Err(e) if Instant::now() < deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A 3-master Redis Cluster on free ports; every node is killed on drop.
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts three cluster-enabled servers, creates the cluster and waits for
    /// `cluster_state:ok` on every node.
    pub fn spawn() -> Result<RedisCluster> {
        let mut nodes = Vec::new();
        for _ in 0..3 {
            let dir = tempfile::tempdir()?;
            let port = free_port()?;
            let conf = dir.path().join("nodes.conf");
            let conf = conf.to_str().context("temp path is not UTF-8")?.to_string();
            let mut child = start_redis(
                port,
                dir.path(),
                &[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    &conf,
                    "--cluster-node-timeout",
                    "2000",
                ],
            )?;
            wait_for_ping(port, &mut child)?;
            nodes.push(RedisServer {
                port,
                dir,
                child: Some(child),
            });
        }
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .context("run redis-cli --cluster create")?;
        if !out.status.success() {
            bail!(
                "redis-cli --cluster create failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let deadline = Instant::now() + START_DEADLINE;
        for node in &nodes {
            loop {
                let info = raw_command(node.port, "CLUSTER INFO").unwrap_or_default();
                if info.contains("cluster_state:ok") {
                    break;
                }
                if Instant::now() > deadline {
                    bail!(
                        "cluster node {} never reached cluster_state:ok: {info}",
                        node.port
                    );
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(RedisCluster { nodes })
    }

    /// Ports of the three masters.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }

    /// `redis-cluster://127.0.0.1:P1?node=127.0.0.1:P2&node=127.0.0.1:P3`.
    pub fn url(&self) -> String {
        let ports = self.ports();
        format!(
            "redis-cluster://127.0.0.1:{}?node=127.0.0.1:{}&node=127.0.0.1:{}",
            ports[0], ports[1], ports[2]
        )
    }
}
