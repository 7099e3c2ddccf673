//! `cargo xtask bench`: what the cache buys, measured end to end.
//!
//! Flow: build `larder` and the bench plugin in release (one cargo invocation, so the
//! loader accepts the plugin), re-run this command from a release build of xtask (the load
//! generator must not be a debug build), start a private `redis-server`, then per scenario
//! a fresh `larder serve` with a bench config that loads `plugins/bench` as a dynamic
//! plugin, drive it, and write `report.md`, `report.json` and SVG charts under `--out`.
//!
//! Modules: [`procs`] (children, pinning, cleanup), [`load`] (the generator), [`http`]
//! (framing and control calls), [`otlp`] (the trace sink `l1-hit-traced` exports to),
//! [`scenarios`], [`zipf`] (keys and the offline hit-ratio comparison), [`report`] and
//! [`svg`].

mod http;
mod load;
mod otlp;
mod procs;
mod report;
mod scenarios;
mod svg;
mod zipf;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::json;

use procs::{Pinning, Redis, Server};

/// The write-role admin key every bench Larder gets (`LARDER_ADMIN_KEY`).
pub const ADMIN_KEY: &str = "larder-bench-admin-key";

/// Measured seconds per throughput run in a full run: what the bars are judged on.
const FULL_SECONDS: f64 = 10.0;

/// `cargo xtask bench` options.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Short durations and fewer keys: under a minute once the release build exists.
    #[arg(long)]
    quick: bool,
    /// Scenarios to run (default: all): ceiling, l1-hit, l1-hit-traced, l1-hit-auth, l2-hit,
    /// miss, zipf, stampede, swr, compression, routes, invalidation, redis-outage, memory,
    /// analytics.
    #[arg(long = "scenario", value_name = "NAME", num_args = 1..)]
    scenarios: Vec<String>,
    /// Where the report and charts go.
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
    /// Size of every JSON answer, in bytes.
    #[arg(long, default_value_t = 2048)]
    payload_bytes: usize,
    /// Connections for the throughput scenarios.
    #[arg(long, default_value_t = 64)]
    conns: usize,
    /// Measured seconds per throughput run (default 10, quick 1.5).
    #[arg(long)]
    seconds: Option<f64>,
    /// Skip the release build (the binaries must exist).
    #[arg(long)]
    no_build: bool,
}

/// How to start one Larder.
#[derive(Clone)]
pub struct LarderOpts {
    /// L1 byte budget.
    pub l1_bytes: u64,
    /// Redis URL; `None` = memory mode.
    pub redis: Option<String>,
    /// Extra environment (after every inherited `OTEL_*` variable is removed).
    pub env: Vec<(String, String)>,
    /// Extra top-level config sections (YAML), appended to the generated file.
    pub config: String,
    /// The built-in `analytics` plugin on this SQLite file (its policy copied next to the
    /// bench's); `None` = the plugin disabled, as `aliexpress` and `booking` always are.
    pub analytics: Option<PathBuf>,
    /// How long `/ready` may take (plugins started, start-up warm jobs done).
    pub ready_timeout: Duration,
    /// The built-in `booking` and `aliexpress` plugins on (their shipped policies, rate
    /// limits off, AliExpress in mock mode), for the scenarios on real routes.
    pub builtins: bool,
}

impl LarderOpts {
    /// Memory only, a large L1.
    pub fn memory() -> Self {
        Self {
            l1_bytes: 512 << 20,
            redis: None,
            env: Vec::new(),
            config: String::new(),
            analytics: None,
            ready_timeout: Duration::from_secs(10),
            builtins: false,
        }
    }

    /// L1 over this Redis.
    pub fn hybrid(url: String) -> Self {
        Self {
            redis: Some(url),
            ..Self::memory()
        }
    }
}

/// What scenarios share.
pub struct Ctx {
    root: PathBuf,
    bin: PathBuf,
    tmp: PathBuf,
    redis: Option<Redis>,
    starts: usize,
    /// Core split, when the machine has at least two cores.
    pub pinning: Option<Pinning>,
    /// Connections for throughput runs.
    pub conns: usize,
    /// Measured time per throughput run.
    pub duration: Duration,
    /// Warm-up before it.
    pub warmup: Duration,
    /// Alternating ceiling / l1-hit closed-loop rounds for the throughput ratio.
    pub rounds: usize,
    /// The same for l1-hit-traced.
    pub traced_rounds: usize,
    /// Paced (open-loop) rounds per server; the latency bar takes the median round.
    pub paced_rounds: usize,
    /// Measured time per paced (open-loop) latency run.
    pub paced_duration: Duration,
    /// Answer size.
    pub payload_bytes: usize,
    /// Slow origin latency.
    pub slow_ms: u64,
    /// Zipf key space.
    pub zipf_keys: usize,
    /// Zipf run time.
    pub zipf_duration: Duration,
    /// Offline trace length.
    pub zipf_trace: usize,
    /// Concurrent cold requests.
    pub stampede_n: usize,
    /// Stampede repetitions.
    pub stampede_rounds: usize,
    /// SWR run time.
    pub swr_duration: Duration,
    /// Invalidation round trips.
    pub invalidation_iters: usize,
    /// Entries purged by one wide tag.
    pub invalidation_wide: usize,
    /// Outage run time.
    pub outage_duration: Duration,
    /// L1 budget of the memory scenario.
    pub memory_budget: u64,
    /// Where the analytics scenario keeps its generated SQLite dataset, across runs.
    pub analytics_dir: PathBuf,
}

impl Ctx {
    /// The shared Redis (started on first use); its URL.
    pub fn redis(&mut self) -> anyhow::Result<String> {
        Ok(self.redis_mut()?.url())
    }

    /// The shared Redis (started on first use); its unix socket URL.
    pub fn redis_unix(&mut self) -> anyhow::Result<String> {
        self.redis_mut()?.unix_url()
    }

    /// The shared Redis handle (started on first use).
    pub fn redis_mut(&mut self) -> anyhow::Result<&mut Redis> {
        if self.redis.is_none() {
            let cores = self.pinning.as_ref().map(|p| p.client.clone());
            self.redis = Some(Redis::start(&self.tmp, cores)?);
        }
        Ok(self.redis.as_mut().expect("started above"))
    }

    /// Starts the bare poem server.
    pub fn ceiling(&self) -> anyhow::Result<Server> {
        let mut cmd = Command::new(self.bin.join("larder-bench-ceiling"));
        cmd.args(["--listen", "127.0.0.1:0", "--payload-bytes"])
            .arg(self.payload_bytes.to_string());
        Server::spawn(cmd, self.pinning.as_ref().map(|p| p.server.clone()))
    }

    /// The ceiling answering `GET /raw` with the bytes of `body` (a file) and this
    /// `Content-Encoding`: what a real route's answer costs a bare handler.
    pub fn ceiling_serving(
        &self,
        body: &Path,
        content_type: &str,
        content_encoding: Option<&str>,
    ) -> anyhow::Result<Server> {
        let mut cmd = Command::new(self.bin.join("larder-bench-ceiling"));
        cmd.args(["--listen", "127.0.0.1:0", "--body"])
            .arg(body)
            .args(["--content-type", content_type]);
        if let Some(enc) = content_encoding {
            cmd.args(["--content-encoding", enc]);
        }
        Server::spawn(cmd, self.pinning.as_ref().map(|p| p.server.clone()))
    }

    /// Starts a Larder with the bench plugin and policy.
    pub fn larder(&mut self, o: LarderOpts) -> anyhow::Result<Server> {
        self.starts += 1;
        let dir = self.tmp.join(format!("larder-{}", self.starts));
        let policies = dir.join("policies");
        std::fs::create_dir_all(&policies)?;
        std::fs::copy(
            self.root.join("plugins/bench/policy.yaml"),
            policies.join("bench.yaml"),
        )
        .context("copying plugins/bench/policy.yaml")?;
        let analytics = match &o.analytics {
            Some(db) => {
                std::fs::copy(
                    self.root.join("policies/analytics.yaml"),
                    policies.join("analytics.yaml"),
                )
                .context("copying policies/analytics.yaml")?;
                // Off: the plugin's default (the seed's 100 a minute per client) would
                // refuse a load generator after its first hundred requests.
                format!(
                    "  analytics:\n    rate_limit: {{ per_second: 0, per_minute: 0 }}\n    settings: {{ database: {} }}\n",
                    yaml_str(&db.to_string_lossy())
                )
            }
            None => "  analytics: { enabled: false }\n".into(),
        };
        let builtins = if o.builtins {
            for f in ["booking.yaml", "aliexpress.yaml"] {
                std::fs::copy(self.root.join("policies").join(f), policies.join(f))
                    .with_context(|| format!("copying policies/{f}"))?;
            }
            // Off for the same reason as analytics'; AliExpress without credentials answers
            // from its mock catalogue, so nothing leaves the machine.
            "  booking:\n    rate_limit: { per_second: 0, per_minute: 0 }\n  aliexpress:\n    rate_limit: { per_second: 0, per_minute: 0 }\n"
        } else {
            "  aliexpress: { enabled: false }\n  booking: { enabled: false }\n"
        };
        let lib = self.bin.join("liblarder_bench_plugin.so");
        let storage = match &o.redis {
            Some(url) => format!(
                "  mode: hybrid\n  redis:\n    url: {}\n    key_prefix: bench{}\n",
                yaml_str(url),
                std::process::id()
            ),
            None => "  mode: memory\n".into(),
        };
        let config = format!(
            "listen: 127.0.0.1:0\npolicies: {policies}\nplugins:\n{builtins}  products: {{ enabled: false }}\n{analytics}  bench:\n    library: {lib}\n    prefix: /bench\n    settings: {{ payload_bytes: {pb}, slow_ms: {slow} }}\nstorage:\n  l1_capacity_bytes: {l1}\n{storage}{extra}",
            policies = yaml_str(&policies.to_string_lossy()),
            lib = yaml_str(&lib.to_string_lossy()),
            pb = self.payload_bytes,
            slow = self.slow_ms,
            l1 = o.l1_bytes,
            extra = o.config,
        );
        let path = dir.join("larder.yaml");
        std::fs::write(&path, config)?;
        let mut cmd = Command::new(self.bin.join("larder"));
        cmd.arg("serve")
            .arg("--config")
            .arg(&path)
            .args(["--listen", "127.0.0.1:0"])
            .env("LARDER_ADMIN_KEY", ADMIN_KEY)
            .env_remove("LARDER_CONFIG")
            .env_remove("LARDER_POLICIES")
            .env_remove("LARDER_LISTEN")
            .env_remove("REDIS_URL")
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1")
            .current_dir(&dir);
        // No endpoint, sampler or switch from the caller's shell: export is on only where a
        // scenario asks for it.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("OTEL_") {
                cmd.env_remove(k);
            }
        }
        cmd.envs(o.env.iter().map(|(k, v)| (k, v)));
        let s = Server::spawn_within(
            cmd,
            self.pinning.as_ref().map(|p| p.server.clone()),
            o.ready_timeout.max(Duration::from_secs(60)),
        )?;
        // Ready means plugins started and start-up warm jobs done; the address line comes
        // after the plugins started, but be sure.
        let deadline = Instant::now() + o.ready_timeout;
        while !http::get(s.addr, "/ready").is_ok_and(|r| r.head.status == 200) {
            if Instant::now() > deadline {
                bail!("larder never became ready; its log:\n{}", s.logs());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(s)
    }
}

/// A YAML double-quoted scalar: a JSON string is one, whatever the text holds.
fn yaml_str(s: &str) -> String {
    serde_json::to_string(s).expect("a string serialises")
}

fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| if p.is_absolute() { p } else { root.join(p) })
        .unwrap_or_else(|| root.join("target"))
}

fn machine() -> serde_json::Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map_or(0.0, |kb| kb as f64 / 1048576.0);
    let out = |c: &str, a: &[&str]| {
        Command::new(c)
            .args(a)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    let kernel = out("uname", &["-sr"]);
    let rustc = out("rustc", &["--version"]);
    let redis = Redis::version();
    json!({
        "cpu": model, "cores": cores, "memory_gib": mem_gib, "kernel": kernel,
        "rustc": rustc, "redis": redis,
        "summary": format!("{model}, {cores} cores, {mem_gib:.0} GiB, {kernel}, {rustc}"),
    })
}

fn now_utc() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// Runs the benchmark.
pub fn run(args: Args) -> anyhow::Result<()> {
    procs::install_signal_handler();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("xtask lives in the workspace root")?
        .to_owned();
    let target = target_dir(&root);
    let bin = target.join("release");
    let cargo = super::cargo();
    if !args.no_build {
        let t = Instant::now();
        // One invocation: the host and the dynamic plugin must share feature unification.
        super::run(
            &cargo,
            &[
                "build",
                "--release",
                "-p",
                "larder",
                "-p",
                "larder-bench-plugin",
            ],
        )?;
        eprintln!("release build: {:.1} s", t.elapsed().as_secs_f64());
    }
    if cfg!(debug_assertions) {
        // The generator must be optimised: re-run this command from a release xtask.
        super::run(&cargo, &["build", "--release", "-p", "xtask"])?;
        let mut forwarded: Vec<String> = std::env::args().skip(1).collect();
        if !forwarded.iter().any(|a| a == "--no-build") {
            forwarded.push("--no-build".into());
        }
        let err = Command::new(bin.join("xtask"))
            .args(&forwarded)
            .current_dir(std::env::current_dir()?)
            .exec();
        bail!("re-running from the release xtask: {err}");
    }
    for b in [
        "larder",
        "larder-bench-ceiling",
        "liblarder_bench_plugin.so",
    ] {
        if !bin.join(b).exists() {
            bail!(
                "{} is missing: run without --no-build",
                bin.join(b).display()
            );
        }
    }
    let started = Instant::now();
    let q = args.quick;
    let secs = |full: f64, quick: f64| Duration::from_secs_f64(if q { quick } else { full });
    let duration = args
        .seconds
        .map(Duration::from_secs_f64)
        .unwrap_or(secs(FULL_SECONDS, 1.5));
    let tmp = std::env::temp_dir().join(format!("larder-bench-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let pinning = Pinning::detect();
    let mut ctx = Ctx {
        root: root.clone(),
        bin,
        tmp: tmp.clone(),
        redis: None,
        starts: 0,
        pinning: pinning.clone(),
        conns: args.conns,
        duration,
        warmup: secs(2.0, 0.5),
        rounds: if q { 2 } else { 3 },
        // Quick: one round, so the whole quick run stays under about a minute.
        traced_rounds: if q { 1 } else { 3 },
        paced_rounds: 3,
        paced_duration: duration.min(secs(5.0, 0.75)),
        payload_bytes: args.payload_bytes,
        slow_ms: 20,
        zipf_keys: if q { 20_000 } else { 100_000 },
        zipf_duration: secs(20.0, 3.0),
        zipf_trace: if q { 400_000 } else { 2_000_000 },
        stampede_n: 1000,
        stampede_rounds: if q { 1 } else { 3 },
        swr_duration: secs(10.0, 3.0),
        invalidation_iters: if q { 10 } else { 50 },
        invalidation_wide: if q { 300 } else { 2000 },
        outage_duration: secs(12.0, 6.0),
        // Quick stays at 32 MiB: below that, fixed costs (allocator arenas, runtime, metrics)
        // are a visible share of the growth and the ratio says less about entries.
        memory_budget: if q { 32 << 20 } else { 128 << 20 },
        analytics_dir: target.join("bench-data"),
    };
    let selected: Vec<String> = if args.scenarios.is_empty() {
        scenarios::ALL.iter().map(|s| (*s).to_owned()).collect()
    } else {
        for s in &args.scenarios {
            if !scenarios::ALL.contains(&s.as_str()) {
                bail!(
                    "unknown scenario `{s}`; known: {}",
                    scenarios::ALL.join(", ")
                );
            }
        }
        // Run order stays the canonical one: later bars use earlier results.
        scenarios::ALL
            .iter()
            .filter(|s| args.scenarios.iter().any(|a| a == *s))
            .map(|s| (*s).to_owned())
            .collect()
    };
    let setup = format!(
        "Payload {} B JSON; {} connections, {} s measured after {:.1} s warm-up per throughput run. {}. Larder runs with its default log level (info) and one fresh process per scenario; Redis {}. Throughput runs are closed loop (a connection sends its next request when the answer is in). The l1-hit / ceiling ratio compares medians of {} alternating rounds (ceiling, l1-hit, ceiling, …; both servers up with the same pinning, one loaded at a time), since run-to-run noise here exceeds the margins. The l1-hit latency bar is judged on paced open-loop runs ({} rounds of {} s per server, alternating, at 50% of the ceiling's throughput, latency from each request's intended send time, so coordinated omission is corrected, as in wrk2; the median round decides); saturated closed-loop latencies are reported too. l1-hit-traced repeats the interleaved rounds ({} of them) with Larder exporting traces over OTLP/HTTP (1% sampling, parent-based) to a sink inside the bench, on loopback, pinned with the generator. L2 hits are measured with Redis over loopback TCP and over a unix socket.",
        ctx.payload_bytes,
        ctx.conns,
        ctx.duration.as_secs_f64(),
        ctx.warmup.as_secs_f64(),
        match &pinning {
            Some(p) => format!(
                "Server (larder / ceiling) pinned to cores {:?}, load generator and redis-server to {:?}",
                p.server, p.client
            ),
            None => "Single core: nothing pinned, server and generator share it".into(),
        },
        Redis::version(),
        ctx.rounds,
        ctx.paced_rounds,
        ctx.paced_duration.as_secs_f64(),
        ctx.traced_rounds,
    );
    eprintln!("{setup}");
    // Short rounds make the verdicts noise: say so wherever a verdict is printed, so a
    // "NOT met" from a quick check is not read as a regression.
    let (mode, caveat, verdict_caveat, mode_note) = if q {
        (
            "quick",
            Some("quick run: short rounds, indicative only — judge the bars on a full run"),
            Some("quick run: indicative only"),
            Some(format!(
                "Quick run (`--quick`): {:.1} s rounds ({} interleaved, {} traced), fewer keys, shorter timelines. Its figures are noisy and its verdicts indicative only: judge the bars on a full run (`cargo xtask bench`).",
                duration.as_secs_f64(),
                ctx.rounds,
                ctx.traced_rounds
            )),
        )
    } else if duration.as_secs_f64() < FULL_SECONDS {
        (
            "shortened",
            Some(
                "shortened run: rounds shorter than a full run's, indicative only — judge the bars on a full run",
            ),
            Some("shortened run: indicative only"),
            Some(format!(
                "Shortened run (`--seconds {}`, a full run measures {FULL_SECONDS} s): its verdicts are indicative only; judge the bars on a full run (`cargo xtask bench`).",
                duration.as_secs_f64()
            )),
        )
    } else {
        ("full", None, None, None)
    };
    let mut report = report::Report {
        caveat: caveat.map(str::to_owned),
        verdict_caveat: verdict_caveat.map(str::to_owned),
        ..Default::default()
    };
    for name in &selected {
        eprintln!("== {name}");
        let t = Instant::now();
        if let Err(e) = scenarios::run(name, &mut ctx, &mut report) {
            eprintln!("  scenario {name} failed: {e:#}");
            report.errors.push((name.clone(), format!("{e:#}")));
        }
        eprintln!("  ({:.1} s)", t.elapsed().as_secs_f64());
    }
    if let Some(mut r) = ctx.redis.take() {
        r.kill();
    }
    if !report.compression_checks.is_empty() {
        let all = report.compression_checks.iter().all(|(_, ok)| *ok);
        report.bar(report::Bar::new(
            "compression: zero compressions on hits",
            report
                .compression_checks
                .iter()
                .map(|(n, ok)| {
                    format!(
                        "{n}: {}",
                        if *ok { "0 stores" } else { "stored under load" }
                    )
                })
                .collect::<Vec<_>>()
                .join(", "),
            all,
        ));
    }
    let wall = started.elapsed().as_secs_f64();
    let meta = json!({
        "finished": now_utc(),
        "command": format!("cargo xtask bench{}", std::env::args().skip(2).filter(|a| a != "--no-build").map(|a| format!(" {a}")).collect::<String>()),
        "quick": q,
        "mode": mode,
        "mode_note": mode_note,
        "payload_bytes": ctx.payload_bytes,
        "wall_seconds": wall,
        "machine": machine(),
        "pinning": pinning,
        "setup": setup,
        "scenarios": selected,
    });
    let out = if args.out.is_absolute() {
        args.out.clone()
    } else {
        std::env::current_dir()?.join(&args.out)
    };
    let md = report.write(&out, &meta)?;
    let _ = std::fs::remove_dir_all(&tmp);
    println!("{}", report.table());
    if let Some(c) = &report.caveat {
        println!("{c}:");
    }
    let suffix = report.caveat_suffix();
    for b in &report.bars {
        println!(
            "{} {} — {}{suffix}",
            if b.met { "[met]    " } else { "[NOT met]" },
            b.target,
            b.measured
        );
    }
    for n in &report.notes {
        println!("\nnote: {n}");
    }
    println!(
        "\nreport: {} (+ report.json, charts) — {:.0} s",
        out.join("report.md").display(),
        wall
    );
    let _ = md;
    if !report.errors.is_empty() {
        bail!("{} scenario(s) failed to run", report.errors.len());
    }
    Ok(())
}
