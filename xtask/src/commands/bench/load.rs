//! The load generator: keep-alive HTTP/1.1 connections with one request in flight each,
//! a fixed duration after a warm-up, HDR latency histograms and a timeline. Two modes:
//!
//! - Closed loop (`Spec::rate` = `None`, like `wrk`): each connection sends its next
//!   request as soon as the previous answer is in. Latency runs from just before the
//!   request is written to the last byte of the response. This finds the throughput, but
//!   does not correct for coordinated omission: a stall delays the next requests instead
//!   of recording them as late, so tail figures are lower bounds during stalls, and at
//!   saturation latency is mostly queueing (mean ≈ connections / throughput).
//! - Paced, open loop (`Spec::rate` = total requests per second, like `wrk2`): connection
//!   `i` sends its `k`-th request at `start + phase_i + k × conns / rate`, the phases
//!   spreading the connections evenly over one interval. An early connection waits; a late
//!   one (its previous answer took longer than an interval) sends at once, and latency is
//!   always measured from the intended send time, so a stall counts against every request
//!   it held up (coordinated omission corrected). The time from the actual send (service
//!   time) and the send lag are kept as well. Send times are kept by a spinning
//!   [`Pacer`], not by a sleep per request (see there for why).
//!
//! It runs on its own thread with a current-thread tokio runtime, pinned to the client
//! cores, so it never competes with the server for a core. Requests are in the measured
//! window by their send time (closed loop) or intended send time (paced).

use std::cell::{Cell, RefCell};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;

use super::http::{self, Head};
use super::procs;
use super::zipf::{Rng, Zipf};

/// Which path each request asks for.
#[derive(Clone)]
pub enum Paths {
    /// Always the same.
    Fixed(String),
    /// `prefix` + a number never used before in this run (starting at `start`).
    Unique {
        /// Path up to the id.
        prefix: String,
        /// First id.
        start: u64,
    },
    /// `prefix` + a Zipf-distributed id.
    Zipf {
        /// Path up to the id.
        prefix: String,
        /// The distribution.
        zipf: Arc<Zipf>,
    },
    /// `prefix` + a uniformly random id below `keys`.
    Uniform {
        /// Path up to the id.
        prefix: String,
        /// Number of ids.
        keys: u64,
    },
    /// Requests prepared in advance (each its own path and headers), taken in `order`.
    List {
        /// The requests.
        items: Arc<Vec<Listed>>,
        /// Which one each request is.
        order: Order,
    },
}

/// One prepared request of [`Paths::List`].
#[derive(Clone, Debug)]
pub struct Listed {
    /// Path and query.
    pub path: String,
    /// Header lines sent with it (each `name: value\r\n`), after the spec's own.
    pub headers: String,
}

impl Listed {
    /// `path` with these headers.
    pub fn new(path: String, headers: &[(&str, &str)]) -> Self {
        Self {
            path,
            headers: headers
                .iter()
                .map(|(k, v)| format!("{k}: {v}\r\n"))
                .collect(),
        }
    }
}

/// How [`Paths::List`] picks.
#[derive(Clone)]
pub enum Order {
    /// In list order, each once over all connections; the run ends when the list does.
    Once,
    /// In list order, starting over at the end.
    Cycle,
    /// Item `i` with Zipf probability of id `i` (item 0 the most popular).
    Zipf(Arc<Zipf>),
}

/// One load run.
#[derive(Clone)]
pub struct Spec {
    /// Server.
    pub addr: SocketAddr,
    /// Concurrent keep-alive connections.
    pub conns: usize,
    /// Measured time.
    pub duration: Duration,
    /// Unmeasured time before it (same load).
    pub warmup: Duration,
    /// Paths.
    pub paths: Paths,
    /// Extra request headers.
    pub headers: Vec<(String, String)>,
    /// Timeline resolution.
    pub bucket: Duration,
    /// A request taking longer fails (and its connection is reopened).
    pub timeout: Duration,
    /// Stop after this many requests (the memory fill), whatever the duration.
    pub max_requests: Option<u64>,
    /// Server process whose CPU time is read around the measured window.
    pub server_pid: Option<u32>,
    /// Cores to pin the generator thread to.
    pub pin: Option<Vec<usize>>,
    /// Paced (open loop): total requests per second over all connections. `None`: closed
    /// loop.
    pub rate: Option<f64>,
}

impl Spec {
    /// A spec with the defaults: no warm-up, 250 ms buckets, 5 s timeout.
    pub fn new(addr: SocketAddr, conns: usize, duration: Duration, paths: Paths) -> Self {
        Self {
            addr,
            conns,
            duration,
            warmup: Duration::ZERO,
            paths,
            headers: Vec::new(),
            bucket: Duration::from_millis(250),
            timeout: Duration::from_secs(5),
            max_requests: None,
            server_pid: None,
            pin: None,
            rate: None,
        }
    }
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Percentiles {
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 90th.
    pub p90: f64,
    /// 99th.
    pub p99: f64,
    /// 99.9th.
    pub p999: f64,
    /// Largest.
    pub max: f64,
}

impl Percentiles {
    /// From a histogram of nanoseconds.
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let us = |v: u64| v as f64 / 1000.0;
        Self {
            mean: h.mean() / 1000.0,
            p50: us(h.value_at_quantile(0.5)),
            p90: us(h.value_at_quantile(0.9)),
            p99: us(h.value_at_quantile(0.99)),
            p999: us(h.value_at_quantile(0.999)),
            max: us(h.max()),
        }
    }
}

/// One timeline bucket.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Bucket {
    /// Start, seconds into the measured window.
    pub t: f64,
    /// Completed requests started in it.
    pub requests: u64,
    /// Of which answered from the cache (`Cache-Status: ...; hit`).
    pub hits: u64,
    /// Of which failed (I/O error, timeout, 5xx).
    pub failed: u64,
    /// Slowest, µs.
    pub max_us: f64,
    #[serde(skip)]
    sum_us: f64,
    /// Mean, µs.
    pub mean_us: f64,
}

/// What only a paced run has.
#[derive(Debug, Clone, Serialize)]
pub struct Paced {
    /// Requests per second asked for (all connections).
    pub target_rps: f64,
    /// Requests per second completed (the same as `LoadResult::rps`).
    pub achieved_rps: f64,
    /// Time between two sends of one connection, µs.
    pub interval_us: f64,
    /// Requests whose intended send time fell in the measured window but that were never
    /// sent, because their connection was still behind when the window ended.
    pub unsent: u64,
    /// From the actual send to the last byte, µs: what a closed-loop generator would
    /// record (the headline `latency` counts from the intended send time).
    pub service_latency: Percentiles,
    /// How late requests were sent (actual − intended), µs: the generator's timer error
    /// plus any backlog behind a slow answer.
    pub send_lag: Percentiles,
    /// How send times were kept: `spin` (precise; the generator's own core) or `tokio
    /// timer` (unpinned; 1 ms ticks, so latencies include up to ~1 ms of oversleep).
    pub pacer: &'static str,
}

/// What a load run measured.
#[derive(Debug, Clone, Serialize)]
pub struct LoadResult {
    /// `closed` (next request when the answer is in) or `paced` (open loop, latency from
    /// the intended send time).
    pub mode: &'static str,
    /// Connections.
    pub conns: usize,
    /// Requests completed in the measured window.
    pub requests: u64,
    /// Requests that failed: I/O errors, timeouts, 5xx.
    pub failed: u64,
    /// Of the failed, those that never got a response.
    pub io_errors: u64,
    /// 4xx answers (counted as completed, reported).
    pub status_4xx: u64,
    /// Answers from the cache, fresh or stale.
    pub hits: u64,
    /// Answers served stale (`detail=stale-...`).
    pub stale: u64,
    /// Body bytes received.
    pub body_bytes: u64,
    /// Measured window, seconds.
    pub seconds: f64,
    /// Completed requests per second (in a paced run: the achieved rate).
    pub rps: f64,
    /// Latency, µs (in a paced run: from the intended send time).
    pub latency: Percentiles,
    /// Pacing details; `None` in a closed-loop run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paced: Option<Paced>,
    /// Server CPU time per request, µs (user + system, all threads).
    pub server_cpu_us_per_req: Option<f64>,
    /// Server CPU use over the window, in cores.
    pub server_cores_busy: Option<f64>,
    /// Per-bucket counts.
    pub timeline: Vec<Bucket>,
    /// Raw histogram (ns), for merging.
    #[serde(skip)]
    pub hist: Histogram<u64>,
}

impl LoadResult {
    /// Hits / requests.
    pub fn hit_ratio(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.hits as f64 / self.requests as f64
        }
    }
}

struct Shared {
    spec: Spec,
    start: Instant,
    measure_from: Instant,
    end: Instant,
    issued: Cell<u64>,
    next_unique: Cell<u64>,
    stats: RefCell<Stats>,
}

struct Stats {
    hist: Histogram<u64>,
    requests: u64,
    failed: u64,
    io_errors: u64,
    status_4xx: u64,
    hits: u64,
    stale: u64,
    body_bytes: u64,
    timeline: Vec<Bucket>,
    service: Histogram<u64>,
    lag: Histogram<u64>,
    unsent: u64,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1_000, 120_000_000_000, 3).expect("valid bounds")
}

/// A load run in progress on its own thread.
pub struct Running {
    handle: std::thread::JoinHandle<anyhow::Result<LoadResult>>,
}

impl Running {
    /// Waits for the end and returns the measurements.
    pub fn join(self) -> anyhow::Result<LoadResult> {
        self.handle
            .join()
            .map_err(|_| anyhow::anyhow!("the load generator panicked"))?
    }
}

/// Starts a run in the background (the caller may act on the servers meanwhile).
pub fn start(spec: Spec) -> Running {
    let handle = std::thread::spawn(move || {
        if let Some(cores) = &spec.pin {
            let _ = procs::pin_current(cores);
        }
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(tokio::task::LocalSet::new().run_until(drive(spec)))
    });
    Running { handle }
}

/// Runs to completion.
pub fn run(spec: Spec) -> anyhow::Result<LoadResult> {
    start(spec).join()
}

async fn drive(spec: Spec) -> anyhow::Result<LoadResult> {
    let now = Instant::now();
    let measure_from = now + spec.warmup;
    let end = measure_from + spec.duration;
    let buckets = (spec.duration.as_secs_f64() / spec.bucket.as_secs_f64()).ceil() as usize;
    let shared = Rc::new(Shared {
        start: now,
        measure_from,
        end,
        issued: Cell::new(0),
        next_unique: Cell::new(match &spec.paths {
            Paths::Unique { start, .. } => *start,
            _ => 0,
        }),
        stats: RefCell::new(Stats {
            hist: histogram(),
            requests: 0,
            failed: 0,
            io_errors: 0,
            status_4xx: 0,
            hits: 0,
            stale: 0,
            body_bytes: 0,
            service: histogram(),
            lag: histogram(),
            unsent: 0,
            timeline: (0..buckets.max(1))
                .map(|i| Bucket {
                    t: i as f64 * spec.bucket.as_secs_f64(),
                    ..Bucket::default()
                })
                .collect(),
        }),
        spec,
    });
    let cpu = {
        let pid = shared.spec.server_pid;
        tokio::task::spawn_local(async move {
            tokio::time::sleep_until(measure_from.into()).await;
            pid.and_then(procs::cpu_time).map(|c| (c, Instant::now()))
        })
    };
    let pacer = shared
        .spec
        .rate
        .map(|_| Rc::new(Pacer::new(shared.spec.conns, shared.spec.pin.is_some())));
    let pacing = pacer
        .clone()
        .map(|p| tokio::task::spawn_local(async move { p.run().await }));
    let tasks: Vec<_> = (0..shared.spec.conns)
        .map(|i| tokio::task::spawn_local(connection(i as u64, shared.clone(), pacer.clone())))
        .collect();
    for t in tasks {
        t.await?;
    }
    if let (Some(p), Some(t)) = (&pacer, pacing) {
        p.done.set(true);
        t.await?;
    }
    let finished = Instant::now();
    let cpu_end = shared.spec.server_pid.and_then(procs::cpu_time);
    let cpu_start = cpu.await?;
    let spec = &shared.spec;
    let mut s = shared.stats.borrow_mut();
    let seconds = finished
        .min(end)
        .saturating_duration_since(measure_from)
        .as_secs_f64()
        .max(1e-9);
    for b in &mut s.timeline {
        if b.requests > 0 {
            b.mean_us = b.sum_us / b.requests as f64;
        }
    }
    // A run cut short by `max_requests` keeps only the buckets it reached.
    let reached = ((seconds / spec.bucket.as_secs_f64()).ceil() as usize).max(1);
    s.timeline.truncate(reached);
    let (cpu_per_req, busy) = match (cpu_start, cpu_end) {
        (Some((c0, t0)), Some(c1)) if s.requests > 0 => {
            let used = c1.saturating_sub(c0).as_secs_f64();
            let wall = finished.duration_since(t0).as_secs_f64().max(1e-9);
            (Some(used * 1e6 / s.requests as f64), Some(used / wall))
        }
        _ => (None, None),
    };
    let paced = spec.rate.map(|rate| Paced {
        target_rps: rate,
        achieved_rps: s.requests as f64 / seconds,
        interval_us: spec.conns as f64 / rate * 1e6,
        unsent: s.unsent,
        service_latency: Percentiles::of(&s.service),
        send_lag: Percentiles::of(&s.lag),
        pacer: if spec.pin.is_some() {
            "spin"
        } else {
            "tokio timer"
        },
    });
    Ok(LoadResult {
        mode: if paced.is_some() { "paced" } else { "closed" },
        conns: spec.conns,
        requests: s.requests,
        failed: s.failed,
        io_errors: s.io_errors,
        status_4xx: s.status_4xx,
        hits: s.hits,
        stale: s.stale,
        body_bytes: s.body_bytes,
        seconds,
        rps: s.requests as f64 / seconds,
        latency: Percentiles::of(&s.hist),
        paced,
        server_cpu_us_per_req: cpu_per_req,
        server_cores_busy: busy,
        timeline: std::mem::take(&mut s.timeline),
        hist: s.hist.clone(),
    })
}

/// Writes the next request's path and its own header lines (if any) into `req`; `false`
/// when a [`Order::Once`] list is used up.
fn next_request(shared: &Shared, rng: &mut Rng, req: &mut Vec<u8>, extra: &mut String) -> bool {
    let path = match &shared.spec.paths {
        Paths::Fixed(p) => p.clone(),
        Paths::Unique { prefix, .. } => {
            let id = shared.next_unique.get();
            shared.next_unique.set(id + 1);
            format!("{prefix}{id}")
        }
        Paths::Zipf { prefix, zipf } => format!("{prefix}{}", zipf.sample(rng)),
        Paths::Uniform { prefix, keys } => format!("{prefix}{}", rng.next_u64() % keys),
        Paths::List { items, order } => {
            let i = match order {
                Order::Once | Order::Cycle => {
                    let i = shared.next_unique.get();
                    shared.next_unique.set(i + 1);
                    match order {
                        Order::Once if i as usize >= items.len() => return false,
                        _ => i as usize % items.len().max(1),
                    }
                }
                Order::Zipf(zipf) => zipf.sample(rng) as usize,
            };
            let Some(item) = items.get(i) else {
                return false;
            };
            req.extend_from_slice(item.path.as_bytes());
            extra.push_str(&item.headers);
            return true;
        }
    };
    req.extend_from_slice(path.as_bytes());
    true
}

/// Wakes paced connections at their intended send times.
///
/// Why not a timer per connection: tokio's timer wheel has 1 ms ticks, and as latency
/// counts from the intended time, oversleeping would add up to a millisecond to nearly
/// every request; a `timerfd` per connection is precise but costs a wake-up of the idle
/// generator per request, which on the 2-core VM this was written on saturated its core at
/// half the ceiling's rate (send lag p50 ≈ 550 µs at 50k req/s). So one task spins
/// instead, yielding to the runtime (which polls the sockets with a zero timeout each turn)
/// and waking the connections whose time has come: send lag p50 ≈ 1 µs there. That burns the generator's core, which is its own when
/// pinned; unpinned, it would take CPU from the server, so it falls back to tokio's timer.
struct Pacer {
    due: RefCell<BinaryHeap<Reverse<(Instant, usize)>>>,
    wake: Vec<Notify>,
    spin: bool,
    done: Cell<bool>,
}

impl Pacer {
    fn new(conns: usize, spin: bool) -> Self {
        Self {
            due: RefCell::new(BinaryHeap::with_capacity(conns)),
            wake: (0..conns).map(|_| Notify::new()).collect(),
            spin,
            done: Cell::new(false),
        }
    }

    async fn wait_until(&self, conn: usize, at: Instant) {
        if Instant::now() >= at {
            return;
        }
        self.due.borrow_mut().push(Reverse((at, conn)));
        self.wake[conn].notified().await;
    }

    async fn run(&self) {
        while !self.done.get() {
            let now = Instant::now();
            let next = {
                let mut due = self.due.borrow_mut();
                while let Some(&Reverse((at, conn))) = due.peek() {
                    if at > now {
                        break;
                    }
                    due.pop();
                    self.wake[conn].notify_one();
                }
                due.peek().map(|r| r.0.0)
            };
            if self.spin {
                tokio::task::yield_now().await;
            } else {
                // A connection may queue an earlier time meanwhile: look again soon.
                let soon = now + Duration::from_millis(1);
                tokio::time::sleep_until(next.map_or(soon, |n| n.min(soon)).into()).await;
            }
        }
    }
}

async fn connection(index: u64, shared: Rc<Shared>, pacer: Option<Rc<Pacer>>) {
    let spec = &shared.spec;
    let mut rng = Rng::new(0x9E37_79B9_7F4A_7C15 ^ (index + 1).wrapping_mul(0xBF58_476D));
    let mut stream: Option<TcpStream> = None;
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut req: Vec<u8> = Vec::with_capacity(512);
    let mut extra = String::new();
    // A listed request's own header lines.
    let mut own = String::new();
    for (k, v) in &spec.headers {
        extra.push_str(&format!("{k}: {v}\r\n"));
    }
    // (interval, first intended send) when paced.
    let pacing = spec.rate.map(|rate| {
        let interval = Duration::from_secs_f64(spec.conns as f64 / rate);
        let phase = interval.mul_f64(index as f64 / spec.conns as f64);
        (interval, shared.start + phase)
    });
    let mut k: u32 = 0;
    loop {
        let intended = pacing
            .as_ref()
            .map(|(interval, first)| *first + *interval * k);
        k += 1;
        let now = Instant::now();
        if let (Some(at), Some((interval, _)), Some(pacer)) = (intended, &pacing, &pacer) {
            if at >= shared.end {
                break;
            }
            if now >= shared.end {
                // Still behind at the end: say how many sends the schedule wanted.
                let from = at.max(shared.measure_from);
                let left = shared.end.duration_since(from).as_secs_f64();
                shared.stats.borrow_mut().unsent += (left / interval.as_secs_f64()).ceil() as u64;
                break;
            }
            pacer.wait_until(index as usize, at).await;
        } else if now >= shared.end {
            break;
        }
        if spec
            .max_requests
            .is_some_and(|max| shared.issued.get() >= max)
        {
            break;
        }
        req.clear();
        req.extend_from_slice(b"GET ");
        own.clear();
        if !next_request(&shared, &mut rng, &mut req, &mut own) {
            break;
        }
        shared.issued.set(shared.issued.get() + 1);
        req.extend_from_slice(b" HTTP/1.1\r\nHost: bench\r\n");
        req.extend_from_slice(extra.as_bytes());
        req.extend_from_slice(own.as_bytes());
        req.extend_from_slice(b"\r\n");
        let sent = Instant::now();
        let result = tokio::time::timeout(spec.timeout, async {
            if stream.is_none() {
                let s = TcpStream::connect(spec.addr).await?;
                s.set_nodelay(true)?;
                stream = Some(s);
            }
            let s = stream.as_mut().expect("connected above");
            exchange(s, &req, &mut buf).await
        })
        .await;
        let done = Instant::now();
        let t0 = intended.unwrap_or(sent);
        let latency = done - t0;
        let outcome = match result {
            Ok(Ok(r)) => Some(r),
            _ => {
                stream = None;
                None
            }
        };
        if t0 >= shared.measure_from {
            let mut s = shared.stats.borrow_mut();
            let slot =
                ((t0 - shared.measure_from).as_secs_f64() / spec.bucket.as_secs_f64()) as usize;
            let failed = match &outcome {
                None => {
                    s.io_errors += 1;
                    true
                }
                Some((head, _)) => head.status >= 500,
            };
            let ns = latency.as_nanos() as u64;
            s.requests += 1;
            let _ = s.hist.record(ns.max(1_000));
            if intended.is_some() {
                let _ = s
                    .service
                    .record(((done - sent).as_nanos() as u64).max(1_000));
                let _ = s.lag.record(((sent - t0).as_nanos() as u64).max(1_000));
            }
            if failed {
                s.failed += 1;
            }
            let (mut hit, mut stale) = (false, false);
            if let Some((head, body)) = &outcome {
                s.body_bytes += *body as u64;
                if (400..500).contains(&head.status) {
                    s.status_4xx += 1;
                }
                if let Some(cs) = &head.cache_status {
                    hit = http::is_hit(cs);
                    stale = cs.contains("detail=stale");
                }
            }
            s.hits += u64::from(hit);
            s.stale += u64::from(stale);
            if let Some(b) = s.timeline.get_mut(slot) {
                b.requests += 1;
                b.hits += u64::from(hit);
                b.failed += u64::from(failed);
                let us = ns as f64 / 1000.0;
                b.max_us = b.max_us.max(us);
                b.sum_us += us;
            }
        }
        if outcome.is_none() {
            // Do not spin on a refused connection.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

/// Writes one request and reads its whole response; returns the head and body length.
async fn exchange(
    s: &mut TcpStream,
    req: &[u8],
    buf: &mut Vec<u8>,
) -> anyhow::Result<(Head, usize)> {
    s.write_all(req).await?;
    buf.clear();
    let mut head: Option<Head> = None;
    loop {
        if let Some(h) = &head {
            let body = &buf[h.len..];
            if let Some(len) = h.content_length {
                if body.len() >= len {
                    return Ok((head.take().expect("set"), len));
                }
            } else if h.chunked {
                if let Some((_, len)) = http::chunked_end(body) {
                    return Ok((head.take().expect("set"), len));
                }
            } else {
                return Ok((head.take().expect("set"), 0));
            }
        }
        if buf.capacity() - buf.len() < 16 * 1024 {
            buf.reserve(64 * 1024);
        }
        let n = s.read_buf(buf).await?;
        if n == 0 {
            anyhow::bail!("connection closed mid-response");
        }
        if head.is_none() {
            head = http::parse_head(buf)?;
        }
    }
}

/// What a burst of simultaneous requests got.
#[derive(Debug, Clone, Serialize)]
pub struct BurstResult {
    /// Requests sent.
    pub requests: usize,
    /// 2xx answers.
    pub ok: usize,
    /// Anything else (errors included).
    pub failed: usize,
    /// Answers by `Cache-Status` kind: `collapsed` (waited on the one load), `stored`
    /// (made the load), `hit`.
    pub collapsed: usize,
    /// See `collapsed`.
    pub stored: usize,
    /// See `collapsed`.
    pub hit: usize,
    /// Latency of the burst's requests, µs.
    pub latency: Percentiles,
}

/// Opens `n` connections, then sends one request on each at the same moment.
pub fn burst(
    addr: SocketAddr,
    path: &str,
    n: usize,
    pin: Option<Vec<usize>>,
) -> anyhow::Result<BurstResult> {
    let path = path.to_owned();
    std::thread::spawn(move || {
        if let Some(cores) = &pin {
            let _ = procs::pin_current(cores);
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(tokio::task::LocalSet::new().run_until(async move {
            let barrier = Rc::new(tokio::sync::Barrier::new(n + 1));
            let req = format!("GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n").into_bytes();
            let req = Rc::new(req);
            let mut tasks = Vec::new();
            for _ in 0..n {
                let s = TcpStream::connect(addr).await?;
                s.set_nodelay(true)?;
                let (barrier, req) = (barrier.clone(), req.clone());
                tasks.push(tokio::task::spawn_local(async move {
                    let mut s = s;
                    barrier.wait().await;
                    let t0 = Instant::now();
                    let mut buf = Vec::with_capacity(16 * 1024);
                    let r = tokio::time::timeout(
                        Duration::from_secs(30),
                        exchange(&mut s, &req, &mut buf),
                    )
                    .await;
                    (r.ok().and_then(Result::ok), t0.elapsed())
                }));
            }
            barrier.wait().await;
            let mut out = BurstResult {
                requests: n,
                ok: 0,
                failed: 0,
                collapsed: 0,
                stored: 0,
                hit: 0,
                latency: Percentiles::default(),
            };
            let mut hist = histogram();
            for t in tasks {
                let (r, lat) = t.await?;
                let _ = hist.record((lat.as_nanos() as u64).max(1_000));
                match r {
                    Some((head, _)) if (200..300).contains(&head.status) => {
                        out.ok += 1;
                        let cs = head.cache_status.unwrap_or_default();
                        if cs.contains("collapsed") {
                            out.collapsed += 1;
                        } else if cs.contains("stored") {
                            out.stored += 1;
                        } else if http::is_hit(&cs) {
                            out.hit += 1;
                        }
                    }
                    _ => out.failed += 1,
                }
            }
            out.latency = Percentiles::of(&hist);
            Ok(out)
        }))
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the burst thread panicked"))?
}
