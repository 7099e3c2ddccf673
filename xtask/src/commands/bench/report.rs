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
    /// For the ratios.
    pub ceiling_rps: Option<f64>,
    /// See `ceiling_rps`.
    pub l1_rps: Option<f64>,
    /// quick_cache vs LRU.
    pub zipf_offline: Vec<HitRatioRow>,
    /// Redis kill and restart times (s) in the outage run.
    pub outage_marks: (f64, f64),
    /// Per algorithm: no compression on hits.
    pub compression_checks: Vec<(String, bool)>,
    /// How to read the bars: method notes shown under them.
    pub notes: Vec<String>,
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
            "  bar: {} — {} — {}",
            b.target,
            b.measured,
            if b.met { "met" } else { "NOT met" }
        );
        self.bars.push(b);
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
        let mut s = String::from("| bar | measured | |\n|---|---|---|\n");
        for b in &self.bars {
            let _ = writeln!(
                s,
                "| {} | {} | {} |",
                b.target,
                b.measured,
                if b.met { "met" } else { "**not met**" }
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

    /// Writes `report.md`, `report.json` and the charts into `dir`; returns the Markdown.
    pub fn write(&self, dir: &Path, meta: &Value) -> anyhow::Result<String> {
        std::fs::create_dir_all(dir)?;
        let mut charts: Vec<(&str, &str, String)> = Vec::new();
        let lat: Vec<(String, [f64; 3])> = self
            .rows
            .iter()
            .filter_map(|r| {
                Some((
                    r.scenario.clone(),
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
                    name: r.scenario.clone(),
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
            std::fs::write(dir.join("throughput.svg"), svg::throughput(&thr, None))?;
            charts.push((
                "Throughput per scenario",
                "throughput.svg",
                "Requests per second per table row. Grey bars are the bare poem handler's rounds: each is the divisor of the Larder scenario it alternated with, so compare a Larder bar with the grey bar of its own rounds. Paced rows ran at a chosen rate, which says nothing about capacity.".into(),
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
        let mut md = String::from("# Larder benchmark report\n\n");
        let _ = writeln!(
            md,
            "Run {} (`{}`), {} mode, {:.0} s. Machine: {}.\n",
            meta["finished"].as_str().unwrap_or(""),
            meta["command"].as_str().unwrap_or(""),
            if meta["quick"].as_bool().unwrap_or(false) {
                "quick"
            } else {
                "full"
            },
            meta["wall_seconds"].as_f64().unwrap_or(0.0),
            meta["machine"]["summary"].as_str().unwrap_or("")
        );
        let _ = writeln!(md, "{}\n", meta["setup"].as_str().unwrap_or(""));
        md.push_str("## Results\n\n");
        md.push_str(&self.table());
        md.push_str("\n## The bar\n\n");
        md.push_str(&self.bars_md());
        if !self.notes.is_empty() {
            md.push('\n');
            for n in &self.notes {
                let _ = writeln!(md, "- {n}");
            }
        }
        if let Some(w) = self.sections.get("ceiling").map(|c| &c["wrk"]) {
            md.push_str("\n## Load generator check\n\n");
            match w.get("ratio").and_then(Value::as_f64) {
                Some(r) => {
                    let _ = writeln!(
                        md,
                        "Against the ceiling, the built-in generator reached {:.0} req/s and `wrk -t1` {:.0} req/s: {:.1}% ({}).",
                        w["ours_rps"].as_f64().unwrap_or(0.0),
                        w["wrk_rps"].as_f64().unwrap_or(0.0),
                        r * 100.0,
                        if r >= 0.9 {
                            "within 10%"
                        } else {
                            "NOT within 10%"
                        }
                    );
                }
                None => {
                    let _ = writeln!(md, "Skipped: {}", w["skipped"].as_str().unwrap_or("?"));
                }
            }
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
            "meta": meta,
            "table": self.rows,
            "bars": self.bars,
            "notes": self.notes,
            "scenarios": self.sections,
            "zipf_offline": self.zipf_offline,
            "errors": self.errors.iter().map(|(n, e)| json!({"scenario": n, "error": e})).collect::<Vec<_>>(),
        });
        std::fs::write(dir.join("report.json"), serde_json::to_string_pretty(&j)?)?;
        Ok(md)
    }
}
