//! The report: a table on stdout, `report.md`, `report.json` and SVG charts.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;
use serde_json::{Map, Value, json};

use super::load::LoadResult;
use super::svg;
use super::zipf::HitRatioRow;

/// One line of the results table.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Scenario (or sub-run) name.
    pub scenario: String,
    /// What was measured, and the scenario's own figures.
    pub what: String,
    /// Connections (or concurrent requests).
    pub conns: usize,
    /// Requests per second.
    pub rps: Option<f64>,
    /// Latency, µs.
    pub p50: Option<f64>,
    /// See `p50`.
    pub p99: Option<f64>,
    /// See `p50`.
    pub p999: Option<f64>,
    /// See `p50`.
    pub max: Option<f64>,
    /// Failed requests.
    pub failed: u64,
    /// Paced (open loop): `rps` is the rate the generator chose, not what the server could
    /// do.
    pub paced: bool,
    /// Measured on the bare poem handler (a ceiling measurement), not on Larder.
    pub bare_poem: bool,
}

impl Row {
    /// From a load run.
    pub fn from_load(scenario: &str, what: &str, r: &LoadResult) -> Self {
        Self {
            scenario: scenario.into(),
            what: what.into(),
            conns: r.conns,
            rps: Some(r.rps),
            p50: Some(r.latency.p50),
            p99: Some(r.latency.p99),
            p999: Some(r.latency.p999),
            max: Some(r.latency.max),
            failed: r.failed,
            paced: r.paced.is_some(),
            bare_poem: false,
        }
    }
}

/// One bar of the performance target, met or not.
#[derive(Debug, Clone, Serialize)]
pub struct Bar {
    /// The target.
    pub target: String,
    /// The measured figure.
    pub measured: String,
    /// Whether it is met.
    pub met: bool,
}

impl Bar {
    /// A judged bar.
    pub fn new(target: &str, measured: String, met: bool) -> Self {
        Self {
            target: target.into(),
            measured,
            met,
        }
    }
}

/// The Larder scenario whose interleaved ceiling rounds are *the* ceiling of the report:
/// the one the l1-hit bar and the paced rate divide by, and the one shown at the top.
pub const CEILING_FROM: &str = "l1-hit";

/// The bare poem handler's rounds interleaved with one Larder scenario: the denominator
/// of that scenario's "× ceiling" ratio.
#[derive(Debug, Clone, Serialize)]
pub struct CeilingRounds {
    /// The Larder scenario the rounds alternated with.
    pub with: String,
    /// The median round, req/s: what the ratio divides by.
    pub median_rps: f64,
    /// Every round, req/s.
    pub rounds_rps: Vec<f64>,
}

/// A time series for a line chart.
#[derive(Debug, Clone, Serialize)]
pub struct Series {
    /// Its name.
    pub name: String,
    /// (seconds, value).
    pub points: Vec<(f64, f64)>,
}

impl Series {
    /// A named series.
    pub fn new(name: &str, points: Vec<(f64, f64)>) -> Self {
        Self {
            name: name.into(),
            points,
        }
    }
}

/// Everything collected over a run.
#[derive(Default)]
pub struct Report {
    /// Table rows, in run order.
    pub rows: Vec<Row>,
    /// Judged bars.
    pub bars: Vec<Bar>,
    /// Chart series.
    pub series: Vec<Series>,
    /// Per-scenario details.
    pub sections: Map<String, Value>,
    /// Scenarios that failed to run, with why.
    pub errors: Vec<(String, String)>,
    /// The standalone run of the bare poem handler (the `ceiling` scenario): the built-in
    /// generator against `wrk`, kept out of the results table because it is not the
    /// ceiling any ratio uses.
    pub generator_check: Option<Row>,
    /// The ceiling rounds of each interleaved scenario, in run order.
    pub ceilings: Vec<CeilingRounds>,
    /// The l1-hit median, for the L2 ratios.
    pub l1_rps: Option<f64>,
    /// quick_cache vs LRU.
    pub zipf_offline: Vec<HitRatioRow>,
    /// Redis kill and restart times (s) in the outage run.
    pub outage_marks: (f64, f64),
    /// Per algorithm: no compression on hits.
    pub compression_checks: Vec<(String, bool)>,
    /// How to read the bars: method notes shown under them.
    pub notes: Vec<String>,
    /// Set when the rounds are too short to judge the bars on (a quick run): said above
    /// the bars and on stdout.
    pub caveat: Option<String>,
    /// Its short form, said next to every verdict.
    pub verdict_caveat: Option<String>,
}

fn us(v: Option<f64>) -> String {
    match v {
        None => "—".into(),
        Some(v) if v >= 10_000.0 => format!("{:.1} ms", v / 1000.0),
        Some(v) => format!("{v:.0} µs"),
    }
}

fn rps(v: Option<f64>) -> String {
    v.map_or("—".into(), |v| format!("{v:.0}"))
}

impl Report {
    /// Adds a table row (and echoes it).
    pub fn row(&mut self, r: Row) {
        eprintln!(
            "  {:<16} {:>9} req/s  p50 {:>8}  p99 {:>8}  failed {}  {}",
            r.scenario,
            rps(r.rps),
            us(r.p50),
            us(r.p99),
            r.failed,
            r.what
        );
        self.rows.push(r);
    }

    /// Adds a judged bar.
    pub fn bar(&mut self, b: Bar) {
        eprintln!(
            "  bar: {} — {} — {}{}",
            b.target,
            b.measured,
            if b.met { "met" } else { "NOT met" },
            self.caveat_suffix()
        );
        self.bars.push(b);
    }

    /// " (quick run: …)" after a verdict, or nothing on a full run.
    pub fn caveat_suffix(&self) -> String {
        self.verdict_caveat
            .as_ref()
            .map(|c| format!(" ({c})"))
            .unwrap_or_default()
    }

    /// The ceiling of the report: the rounds interleaved with [`CEILING_FROM`], when it ran.
    pub fn ceiling(&self) -> Option<&CeilingRounds> {
        self.ceilings.iter().find(|c| c.with == CEILING_FROM)
    }

    /// Adds a note shown under the bars (and echoes it).
    pub fn note(&mut self, n: String) {
        eprintln!("  note: {n}");
        self.notes.push(n);
    }

    /// Adds a scenario's details.
    pub fn section(&mut self, name: &str, v: Value) {
        self.sections.insert(name.into(), v);
    }

    /// The results table in Markdown.
    pub fn table(&self) -> String {
        let mut s = String::from(
            "| scenario | conns | req/s | p50 | p99 | p99.9 | max | failed | what |\n|---|--:|--:|--:|--:|--:|--:|--:|---|\n",
        );
        for r in &self.rows {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                r.scenario,
                r.conns,
                rps(r.rps),
                us(r.p50),
                us(r.p99),
                us(r.p999),
                us(r.max),
                r.failed,
                r.what
            );
        }
        s
    }

    fn bars_md(&self) -> String {
        let mut s = String::new();
        if let Some(c) = &self.caveat {
            let _ = writeln!(s, "**{c}.**\n");
        }
        s.push_str("| bar | measured | verdict |\n|---|---|---|\n");
        let suffix = self.caveat_suffix();
        for b in &self.bars {
            let _ = writeln!(
                s,
                "| {} | {} | {}{suffix} |",
                b.target,
                b.measured,
                if b.met { "met" } else { "**not met**" },
            );
        }
        s
    }

    fn offline_md(&self) -> String {
        let mut s = String::from(
            "| capacity (% of keys) | entries | quick_cache | plain LRU |\n|--:|--:|--:|--:|\n",
        );
        for r in &self.zipf_offline {
            let _ = writeln!(
                s,
                "| {:.2}% | {} | {:.2}% | {:.2}% |",
                r.capacity_pct,
                r.capacity,
                r.quick_cache * 100.0,
                r.lru * 100.0
            );
        }
        s
    }

    /// The ceiling in one line, for the top of the report.
    fn ceiling_md(&self) -> String {
        let own: Vec<String> = self
            .ceilings
            .iter()
            .filter(|c| c.with != CEILING_FROM)
            .map(|c| format!("{}'s", c.with))
            .collect();
        match self.ceiling() {
            Some(c) => format!(
                "**The ceiling: {:.0} req/s**, the median of {} of the bare poem handler interleaved with {CEILING_FROM} (a ceiling round, then an {CEILING_FROM} round, and so on). A ratio \"× the ceiling\" divides by this figure{}.",
                c.median_rps,
                rounds_text(c.rounds_rps.len()),
                if own.is_empty() {
                    String::new()
                } else {
                    format!(
                        ", except {}, which divide{} by the ceiling rounds interleaved with {} and say so (see \"The ceiling\" below)",
                        own.join(" and "),
                        if own.len() == 1 { "s" } else { "" },
                        if own.len() == 1 { "it" } else { "each" }
                    )
                }
            ),
            None if self.ceilings.is_empty() => format!(
                "**The ceiling:** not measured in this run ({CEILING_FROM} did not run), so no ratio to it is reported."
            ),
            None => format!(
                "**The ceiling:** {CEILING_FROM} did not run; each ratio below divides by the ceiling rounds interleaved with its own scenario (see \"The ceiling\")."
            ),
        }
    }

    /// Every set of interleaved ceiling rounds and what divides by it.
    fn ceilings_md(&self) -> String {
        let mut s = String::from(
            "The bare poem handler (`larder-bench-ceiling`, the same bytes with none of Larder's layers) measured in rounds alternating with a Larder scenario; each ratio divides by the median of the ceiling rounds it was interleaved with.\n\n| ceiling rounds interleaved with | median req/s | each round, req/s | divisor of |\n|---|--:|---|---|\n",
        );
        for c in &self.ceilings {
            let (name, used) = if c.with == CEILING_FROM {
                (
                    format!("{} (**the ceiling**)", c.with),
                    format!(
                        "the {} throughput bar; the paced latency runs' rate (50% of it)",
                        c.with
                    ),
                )
            } else {
                (c.with.clone(), format!("the {} throughput bar", c.with))
            };
            let _ = writeln!(
                s,
                "| {name} | {:.0} | {} | {used} |",
                c.median_rps,
                c.rounds_rps
                    .iter()
                    .map(|r| format!("{r:.0}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        s
    }

    /// The standalone `ceiling` scenario, shown as what it is: a check of the generator.
    fn generator_md(&self) -> Option<String> {
        let w = &self.sections.get("ceiling")?["wrk"];
        let mut s = String::from(
            "The `ceiling` scenario runs the bare poem handler alone, once, and `wrk -t1` on the same route, connections and duration, to show the built-in generator is not what limits the figures. Its req/s is **not the ceiling**: it is a single run made minutes apart from the others (on a VM such runs differ by a fifth), and no ratio uses it.\n\n",
        );
        let ours = self.generator_check.as_ref();
        match w.get("ratio").and_then(Value::as_f64) {
            Some(r) => {
                let _ = writeln!(
                    s,
                    "| generator | req/s | p50 | p99 |\n|---|--:|--:|--:|\n| built-in | {:.0} | {} | {} |\n| `wrk -t1` | {:.0} | — | — |\n\nBuilt-in / wrk: {:.1}% ({}).",
                    w["ours_rps"].as_f64().unwrap_or(0.0),
                    us(ours.and_then(|o| o.p50)),
                    us(ours.and_then(|o| o.p99)),
                    w["wrk_rps"].as_f64().unwrap_or(0.0),
                    r * 100.0,
                    if r >= 0.9 {
                        "within 10%"
                    } else {
                        "NOT within 10%: the generator may be what limits the figures"
                    }
                );
            }
            None => {
                let _ = writeln!(
                    s,
                    "Built-in generator: {} req/s. The comparison was skipped: {}",
                    rps(ours.and_then(|o| o.rps)),
                    w["skipped"].as_str().unwrap_or("?")
                );
            }
        }
        Some(s)
    }

    /// "How to read this report", for the top of `report.md`.
    fn how_to_read_md(&self, meta: &Value) -> String {
        let payload = meta["payload_bytes"].as_u64().unwrap_or(0);
        format!(
            "## How to read this report\n\n\
- **The ceiling** is a bare poem handler (`larder-bench-ceiling`) returning the same {payload}-byte JSON answer with none of Larder's layers: what this machine's HTTP stack does without a cache in the way. Throughput varies from one run to the next by more than the margins judged, so the ceiling is measured in rounds alternating with the Larder scenario it is compared to, and the median round counts. The ceiling of this report is the median of the rounds interleaved with `{CEILING_FROM}`; `l1-hit-traced` and `l1-hit-auth` divide by the median of their own interleaved ceiling rounds, and say so. The standalone `ceiling` scenario is a check of the load generator against `wrk` (its own section below), not a ceiling.\n\
- **The bars** are the performance targets (L1 hit throughput and paced p99, tracing and authentication overhead, L2 vs L1, stampede, Redis outage, memory, compression), each met or not met on this run's figures; every ratio names what it divides by, and the notes under the bars say how each was measured.\n\
- **Quick vs full.** `cargo xtask bench --quick` runs short rounds with fewer keys to check that the bench works in about a minute: its figures are noisy and its verdicts indicative only. A run with `--seconds` below a full run's is `shortened`, indicative only too. The bars are judged on a full run (`cargo xtask bench`, about 7 minutes). This run's mode is at the top of this file, next to every verdict when it is not full, and `mode` in `report.json`.\n\
- **Across machines, compare ratios** (× the ceiling, × l1-hit, × the L1 budget) and hit ratios, not req/s or latencies: absolute figures follow the CPU, and on a VM move by a fifth between runs.\n\
- **`report.json`**, next to this file, has everything here plus every round, histogram percentile, timeline and counter: `mode`, `ceiling` (the figure above), `ceilings` (every divisor), `bars`, `table`, and per scenario under `scenarios`.\n"
        )
    }

    /// A row's name on a chart. The table tells rows of the same name apart by their
    /// connections column; a chart has only the name, so it gets them too.
    fn chart_label(&self, r: &Row) -> String {
        if self
            .rows
            .iter()
            .filter(|o| o.scenario == r.scenario)
            .count()
            > 1
        {
            let plural = if r.conns == 1 { "" } else { "s" };
            format!("{}, {} conn{plural}", r.scenario, r.conns)
        } else {
            r.scenario.clone()
        }
    }

    /// Writes `report.md`, `report.json` and the charts into `dir`; returns the Markdown.
    pub fn write(&self, dir: &Path, meta: &Value) -> anyhow::Result<String> {
        std::fs::create_dir_all(dir)?;
        let mut charts: Vec<(&str, &str, String)> = Vec::new();
        let lat: Vec<(String, [f64; 3])> = self
            .rows
            .iter()
            .filter_map(|r| {
                Some((
                    self.chart_label(r),
                    [r.p50?, r.p99?, r.p999.unwrap_or(r.p99?)],
                ))
            })
            .collect();
        if !lat.is_empty() {
            std::fs::write(dir.join("latency.svg"), svg::latency(&lat))?;
            charts.push((
                "Latency per scenario (log scale)",
                "latency.svg",
                "p50, p99 and p99.9 per table row. Closed-loop rows at saturation are mostly queueing behind the other connections (see the latency note under the bars); the latency bar is judged on the paced rows.".into(),
            ));
        }
        let thr: Vec<svg::Throughput> = self
            .rows
            .iter()
            .filter_map(|r| {
                Some(svg::Throughput {
                    name: self.chart_label(r),
                    rps: r.rps?,
                    kind: if r.paced {
                        svg::Kind::Paced
                    } else if r.bare_poem {
                        svg::Kind::BarePoem
                    } else {
                        svg::Kind::Closed
                    },
                })
            })
            .collect();
        if !thr.is_empty() {
            let what = self.ceiling().map(|c| {
                (
                    c.median_rps,
                    format!("median of the rounds interleaved with {CEILING_FROM}"),
                )
            });
            std::fs::write(
                dir.join("throughput.svg"),
                svg::throughput(&thr, what.as_ref().map(|(c, w)| (*c, w.as_str()))),
            )?;
            charts.push((
                "Throughput per scenario",
                "throughput.svg",
                match self.ceiling() {
                    Some(c) => format!(
                        "Requests per second per table row; the dashed line is the ceiling ({:.0} req/s). Grey bars are the bare poem handler's rounds: each is the divisor of the Larder scenario it alternated with, so compare a Larder bar with the grey bar of its own rounds. Paced rows ran at a chosen rate (50% of the ceiling), which says nothing about capacity.",
                        c.median_rps
                    ),
                    None => "Requests per second per table row. Paced rows ran at a chosen rate, which says nothing about capacity.".into(),
                },
            ));
        }
        let percent = |v: f64| format!("{}%", svg::compact(v));
        let (killed, back) = self.outage_marks;
        for (series, file, chart, caption) in [
            (
                "zipf hit ratio",
                "hit_ratio.svg",
                svg::Line {
                    title: "Zipf: hit ratio over time, from a cold start",
                    series: "hit ratio per 500 ms",
                    y_title: "hit ratio (%)",
                    y_label: percent,
                    y_cap: Some(100.0),
                    points: &[],
                    marks: &[],
                },
                "Share of the answers that were hits, per 500 ms: it climbs as L1 fills, and levels off where L1's size allows.",
            ),
            (
                "analytics hit ratio",
                "analytics_hit_ratio.svg",
                svg::Line {
                    title: "Analytics Zipf mix: hit ratio over time",
                    series: "hit ratio per 500 ms",
                    y_title: "hit ratio (%)",
                    y_label: percent,
                    y_cap: Some(100.0),
                    points: &[],
                    marks: &[],
                },
                "Share of the answers that were hits, per 500 ms, on a Larder fresh from its start-up warm jobs.",
            ),
            (
                "outage req/s",
                "redis_outage.svg",
                svg::Line {
                    title: "Redis outage: throughput over time",
                    series: "req/s per 100 ms bucket",
                    y_title: "requests per second",
                    y_label: svg::compact,
                    y_cap: None,
                    points: &[],
                    marks: &[],
                },
                "The dashed lines mark Redis killed and back. Failed requests are in the table; the bar wants none.",
            ),
            (
                "swr max latency (ms)",
                "swr.svg",
                svg::Line {
                    title: "SWR: slowest request per 100 ms (TTL 1 s)",
                    series: "slowest request per 100 ms",
                    y_title: "slowest request (ms)",
                    y_label: svg::compact,
                    y_cap: None,
                    points: &[],
                    marks: &[],
                },
                "A request that waited for the origin would show as a spike to the origin's delay at each expiry; stale-while-revalidate answers it from the stale entry instead.",
            ),
        ] {
            if let Some(s) = self.series.iter().find(|s| s.name == series) {
                let marks = if file == "redis_outage.svg" {
                    vec![
                        svg::Mark {
                            t: killed,
                            color: "#e45756",
                            label: format!("Redis killed at {killed:.1} s"),
                        },
                        svg::Mark {
                            t: back,
                            color: "#54a24b",
                            label: format!("Redis back at {back:.1} s"),
                        },
                    ]
                } else {
                    Vec::new()
                };
                let svg = svg::Line {
                    points: &s.points,
                    marks: &marks,
                    ..chart
                }
                .render();
                std::fs::write(dir.join(file), svg)?;
                charts.push((chart.title, file, caption.into()));
            }
        }
        let mode = meta["mode"].as_str().unwrap_or("full");
        let mut md = String::from("# Larder benchmark report\n\n");
        if let Some(banner) = meta["mode_note"].as_str() {
            let _ = writeln!(md, "> **{banner}**\n");
        }
        let _ = writeln!(
            md,
            "Run {} (`{}`), **{mode}** mode, {:.0} s. Machine: {}.\n",
            meta["finished"].as_str().unwrap_or(""),
            meta["command"].as_str().unwrap_or(""),
            meta["wall_seconds"].as_f64().unwrap_or(0.0),
            meta["machine"]["summary"].as_str().unwrap_or("")
        );
        let _ = writeln!(md, "{}\n", self.ceiling_md());
        md.push_str(&self.how_to_read_md(meta));
        md.push_str("\n## Setup\n\n");
        let _ = writeln!(md, "{}", meta["setup"].as_str().unwrap_or(""));
        if !self.ceilings.is_empty() {
            md.push_str("\n## The ceiling\n\n");
            md.push_str(&self.ceilings_md());
        }
        md.push_str("\n## Results\n\n");
        md.push_str(&self.table());
        md.push_str("\n## The bar\n\n");
        md.push_str(&self.bars_md());
        if !self.notes.is_empty() {
            md.push('\n');
            for n in &self.notes {
                let _ = writeln!(md, "- {n}");
            }
        }
        if let Some(g) = self.generator_md() {
            md.push_str("\n## Load generator check (a standalone run, not the ceiling)\n\n");
            md.push_str(&g);
        }
        if !self.zipf_offline.is_empty() {
            md.push_str("\n## Zipf trace offline: quick_cache vs plain LRU\n\n");
            let z = &self.sections["zipf"];
            let _ = writeln!(
                md,
                "{} requests, Zipf s={} over {} keys, same trace for both (the last row is the capacity the live L1 reached).\n",
                z["offline_trace_requests"], z["exponent"], z["keys"]
            );
            md.push_str(&self.offline_md());
        }
        if !self.errors.is_empty() {
            md.push_str("\n## Scenarios that failed to run\n\n");
            for (n, e) in &self.errors {
                let _ = writeln!(md, "- `{n}`: {e}");
            }
        }
        md.push_str("\n## Charts\n\n");
        for (title, file, caption) in &charts {
            let _ = writeln!(md, "### {title}\n\n![{title}]({file})\n\n{caption}\n");
        }
        md.push_str("Details of every scenario (histogram percentiles, timelines, stats) are in `report.json`.\n");
        std::fs::write(dir.join("report.md"), &md)?;
        let j = json!({
            "mode": mode,
            "mode_note": meta["mode_note"],
            "meta": meta,
            "ceiling": self.ceiling().map(|c| json!({
                "rps": c.median_rps,
                "what": format!("median of the bare poem handler's closed-loop rounds interleaved with {CEILING_FROM}; the divisor of every \"× the ceiling\" ratio except those of scenarios with their own interleaved rounds (see ceilings)"),
                "rounds_rps": c.rounds_rps,
            })),
            "ceilings": self.ceilings,
            "generator_check": self.generator_check,
            "table": self.rows,
            "bars": self.bars,
            "bars_caveat": self.caveat,
            "notes": self.notes,
            "scenarios": self.sections,
            "zipf_offline": self.zipf_offline,
            "errors": self.errors.iter().map(|(n, e)| json!({"scenario": n, "error": e})).collect::<Vec<_>>(),
        });
        std::fs::write(dir.join("report.json"), serde_json::to_string_pretty(&j)?)?;
        Ok(md)
    }
}

/// "1 round", "3 rounds".
pub fn rounds_text(n: usize) -> String {
    if n == 1 {
        "1 round".into()
    } else {
        format!("{n} rounds")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(scenario: &str, rps: f64, p99: f64, paced: bool) -> Row {
        Row {
            scenario: scenario.into(),
            what: "test".into(),
            conns: 64,
            rps: Some(rps),
            p50: Some(p99 / 2.0),
            p99: Some(p99),
            p999: Some(p99 * 2.0),
            max: Some(p99 * 4.0),
            failed: 0,
            paced,
            bare_poem: false,
        }
    }

    /// A quick run's report, as the bench writes it; the charts stay in `dir`.
    fn quick_report(dir: &Path) -> (String, Value) {
        let mut r = Report {
            generator_check: Some(row("bare poem, standalone", 109_000.0, 800.0, false)),
            caveat: Some("quick run: short rounds, indicative only".into()),
            verdict_caveat: Some("quick run: indicative only".into()),
            ..Default::default()
        };
        r.section(
            "ceiling",
            json!({"wrk": {"wrk_rps": 112_000.0, "ours_rps": 109_000.0, "ratio": 0.973}}),
        );
        for (with, median) in [("l1-hit", 149_000.0), ("l1-hit-auth", 141_000.0)] {
            r.ceilings.push(CeilingRounds {
                with: with.into(),
                median_rps: median,
                rounds_rps: vec![median, median * 0.9],
            });
        }
        r.rows = vec![
            Row {
                bare_poem: true,
                ..row("ceiling", 149_000.0, 900.0, false)
            },
            row("l1-hit", 120_000.0, 850.0, false),
            row("l1-hit, paced", 74_500.0, 5_000.0, true),
            row(
                "analytics revenue 365 days weekly, uncached",
                300.0,
                90_000.0,
                false,
            ),
            Row {
                conns: 1,
                ..row(
                    "analytics revenue 30 days daily, cached",
                    11_000.0,
                    2_000.0,
                    false,
                )
            },
            row(
                "analytics revenue 30 days daily, cached",
                46_000.0,
                8_000.0,
                false,
            ),
        ];
        r.bar(Bar::new(
            "l1-hit throughput ≥ 0.84 × the ceiling",
            "0.81 × the ceiling".into(),
            false,
        ));
        r.series.push(Series::new(
            "outage req/s",
            (0..60).map(|i| (i as f64 * 0.1, 80_300.0)).collect(),
        ));
        r.outage_marks = (1.5, 3.6);
        let meta = json!({
            "mode": "quick", "mode_note": "Quick run (`--quick`): indicative only.",
            "payload_bytes": 2048, "setup": "test", "machine": {"summary": "test"},
        });
        let md = r.write(dir, &meta).expect("the report is written");
        let j = std::fs::read_to_string(dir.join("report.json")).expect("report.json");
        (md, serde_json::from_str(&j).expect("report.json is JSON"))
    }

    #[test]
    fn a_quick_report_says_so_and_names_its_ceiling() {
        let dir = std::env::temp_dir().join(format!("larder-report-test-{}", std::process::id()));
        let (md, j) = quick_report(&dir);
        let top: String = md.lines().take(8).collect::<Vec<_>>().join("\n");
        assert!(top.contains("Quick run"), "{top}");
        assert!(top.contains("**The ceiling: 149000 req/s**"), "{top}");
        assert!(md.contains("## How to read this report"));
        assert!(md.contains("**quick run: short rounds, indicative only.**"));
        assert!(md.contains("| **not met** (quick run: indicative only) |"));
        // The standalone run is a generator check, out of the results table.
        let results = md.split("## Results").nth(1).unwrap();
        let results = results.split("\n## ").next().unwrap();
        assert!(!results.contains("standalone"), "{results}");
        assert!(md.contains("## Load generator check (a standalone run, not the ceiling)"));
        assert_eq!(j["mode"], "quick");
        assert_eq!(j["ceiling"]["rps"], 149_000.0);
        assert_eq!(j["ceilings"][1]["with"], "l1-hit-auth");
        for chart in ["latency.svg", "throughput.svg", "redis_outage.svg"] {
            assert!(dir.join(chart).exists(), "{chart}");
        }
        // Rows of the same name are told apart on the charts, as the table does.
        let thr = std::fs::read_to_string(dir.join("throughput.svg")).unwrap();
        assert!(thr.contains(">analytics revenue 30 days daily, cached, 1 conn</text>"));
        assert!(thr.contains(">analytics revenue 30 days daily, cached, 64 conns</text>"));
        assert!(thr.contains(">l1-hit</text>"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
