//! Small hand-written SVG charts: no plotting dependency, readable in any browser or
//! Markdown viewer.
//!
//! Margins are computed from the labels they hold, and numbers are written compactly
//! ("80k"), because a fixed margin clipped "80,300" to "300" once.

use std::fmt::Write as _;

/// Font size of labels; titles are larger.
const FONT: f64 = 12.0;
/// Width of the plotting area of every chart.
const PLOT_W: f64 = 620.0;
const COLORS: [&str; 3] = ["#4c78a8", "#f58518", "#e45756"];
const GRID: &str = "#ddd";
const INK: &str = "#444";
/// Where a chart's legend row sits, under the title.
const LEGEND_Y: f64 = 42.0;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// An upper bound on the rendered width of `s`: DejaVu Sans, the widest usual fallback
/// for `sans-serif`, averages about 0.62 em over digits and lower case; 0.65 leaves room,
/// so a margin sized with it holds its labels in any viewer.
fn text_w(s: &str, size: f64) -> f64 {
    s.chars().count() as f64 * size * 0.65
}

fn header(w: f64, h: f64, title: &str) -> String {
    // A long title is set smaller rather than cut at the edges (bold is about a tenth wider).
    let size = (15.0f64)
        .min((w - 20.0) / (text_w(title, 1.0) * 1.1))
        .max(FONT)
        .floor();
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w:.0}\" height=\"{h:.0}\" viewBox=\"0 0 {w:.0} {h:.0}\" font-family=\"sans-serif\" font-size=\"{FONT}\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"{:.1}\" y=\"22\" font-size=\"{size}\" font-weight=\"bold\" text-anchor=\"middle\">{}</text>\n",
        w / 2.0,
        esc(title)
    )
}

/// A number in at most three significant digits with a k / M suffix: "80k", "96.6k",
/// "2.5", "1.2M".
pub fn compact(v: f64) -> String {
    let a = v.abs();
    let (div, suffix) = if a >= 999_500.0 {
        (1e6, "M")
    } else if a >= 999.5 {
        (1e3, "k")
    } else {
        (1.0, "")
    };
    let x = v / div;
    let decimals = match x.abs() {
        x if x >= 99.95 => 0,
        x if x >= 9.995 => 1,
        _ => 2,
    };
    let mut s = format!("{x:.decimals$}");
    if s.contains('.') {
        s = s.trim_end_matches('0').trim_end_matches('.').to_owned();
    }
    if s == "-0" {
        s = "0".into();
    }
    format!("{s}{suffix}")
}

/// A latency in µs as "850 µs", "2.4 ms", "1 s".
pub fn duration_us(v: f64) -> String {
    if v >= 1e6 {
        format!("{} s", compact(v / 1e6))
    } else if v >= 1e3 {
        format!("{} ms", compact(v / 1e3))
    } else {
        format!("{} µs", compact(v))
    }
}

/// Evenly spaced ticks from 0 covering `max`, about `n` of them, on 1 / 2 / 2.5 / 5 × 10^k
/// steps so the labels are round.
pub fn ticks(max: f64, n: usize) -> Vec<f64> {
    let max = if max > 0.0 && max.is_finite() {
        max
    } else {
        1.0
    };
    let raw = max / n.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|f| f * mag)
        .find(|s| *s >= raw * (1.0 - 1e-9))
        .unwrap_or(10.0 * mag);
    let count = (max / step - 1e-9).ceil().max(1.0) as usize;
    (0..=count).map(|k| k as f64 * step).collect()
}

/// One legend entry: a swatch (a filled box, or a dashed line) and its text.
pub struct Key<'a> {
    /// Its colour.
    pub color: &'a str,
    /// What it stands for.
    pub label: String,
    /// Drawn as a dashed line (a mark) rather than a box (a series).
    pub dashed: bool,
}

/// A legend row from `x`, wrapping to a new row past `max_x`; returns the SVG and the y
/// under its last row.
fn legend(keys: &[Key], x0: f64, max_x: f64) -> (String, f64) {
    let mut s = String::new();
    let (mut x, mut y) = (x0, LEGEND_Y);
    for k in keys {
        let w = 26.0 + text_w(&k.label, FONT) + 18.0;
        if x > x0 && x + w > max_x {
            x = x0;
            y += 18.0;
        }
        if k.dashed {
            let _ = write!(
                s,
                "<line x1=\"{x:.1}\" y1=\"{0:.1}\" x2=\"{1:.1}\" y2=\"{0:.1}\" stroke=\"{2}\" stroke-width=\"2\" stroke-dasharray=\"4\"/>",
                y - 4.0,
                x + 20.0,
                k.color
            );
        } else {
            let _ = write!(
                s,
                "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"20\" height=\"10\" fill=\"{}\"/>",
                y - 9.0,
                k.color
            );
        }
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{y:.1}\">{}</text>",
            x + 26.0,
            esc(&k.label)
        );
        x += w;
    }
    (s, y + 8.0)
}

/// An axis title under a horizontal axis.
fn x_title(s: &mut String, left: f64, y: f64, text: &str) {
    let _ = writeln!(
        s,
        "<text x=\"{:.1}\" y=\"{y:.1}\" text-anchor=\"middle\" fill=\"{INK}\">{}</text>",
        left + PLOT_W / 2.0,
        esc(text)
    );
}

/// Horizontal bars: p50 / p99 / p99.9 per scenario, log scale in µs.
pub fn latency(rows: &[(String, [f64; 3])]) -> String {
    let row_h = 36.0;
    let left = rows.iter().map(|r| text_w(&r.0, FONT)).fold(60.0, f64::max) + 16.0;
    let w = left + PLOT_W + 40.0;
    let keys: Vec<Key> = ["p50", "p99", "p99.9"]
        .iter()
        .zip(COLORS)
        .map(|(l, c)| Key {
            color: c,
            label: (*l).into(),
            dashed: false,
        })
        .collect();
    let (legend_svg, top) = legend(&keys, left, w - 10.0);
    let top = top + 6.0;
    let plot_bottom = top + rows.len() as f64 * row_h;
    let h = plot_bottom + 52.0;
    let decades = rows
        .iter()
        .flat_map(|r| r.1)
        .fold(1.0f64, f64::max)
        .log10()
        .ceil()
        .max(1.0);
    let x = |v: f64| left + (v.max(1.0).log10() / decades) * PLOT_W;
    let mut s = header(w, h, "Latency per scenario: p50 / p99 / p99.9");
    s.push_str(&legend_svg);
    for d in 0..=decades as i32 {
        let px = x(10f64.powi(d));
        let _ = writeln!(
            s,
            "<line x1=\"{px:.1}\" y1=\"{top:.1}\" x2=\"{px:.1}\" y2=\"{plot_bottom:.1}\" stroke=\"{GRID}\"/><text x=\"{px:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"{INK}\">{}</text>",
            plot_bottom + 16.0,
            duration_us(10f64.powi(d))
        );
    }
    x_title(
        &mut s,
        left,
        plot_bottom + 38.0,
        "latency (log scale; paced rows count from the intended send time)",
    );
    for (i, (name, v)) in rows.iter().enumerate() {
        let y = top + 4.0 + i as f64 * row_h;
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            left - 8.0,
            y + 18.0,
            esc(name)
        );
        for (k, val) in v.iter().enumerate() {
            let _ = writeln!(
                s,
                "<rect x=\"{left:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"9\" fill=\"{}\"><title>{name} {} {}</title></rect>",
                y + k as f64 * 10.0,
                (x(*val) - left).max(1.0),
                COLORS[k],
                ["p50", "p99", "p99.9"][k],
                duration_us(*val),
                name = esc(name),
            );
        }
    }
    s.push_str("</svg>\n");
    s
}

/// What a throughput bar measured, which sets its colour.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Larder, closed loop: as fast as it answers.
    Closed,
    /// The bare poem handler, closed loop: ceiling rounds.
    BarePoem,
    /// Paced (open loop): the rate was chosen, not how fast the server answered.
    Paced,
}

impl Kind {
    fn color(self) -> &'static str {
        match self {
            Kind::Closed => COLORS[0],
            Kind::BarePoem => "#9e9e9e",
            Kind::Paced => COLORS[1],
        }
    }
}

/// One bar of the throughput chart.
pub struct Throughput {
    /// Scenario.
    pub name: String,
    /// Requests per second.
    pub rps: f64,
    /// What it measured.
    pub kind: Kind,
}

/// Horizontal bars: requests per second per scenario, the ceiling as a dashed line.
pub fn throughput(rows: &[Throughput], ceiling: Option<(f64, &str)>) -> String {
    let row_h = 26.0;
    let left = rows
        .iter()
        .map(|r| text_w(&r.name, FONT))
        .fold(60.0, f64::max)
        + 16.0;
    let w = left + PLOT_W + 60.0;
    // A legend entry per kind drawn, in a fixed order.
    let mut keys: Vec<Key> = [
        (Kind::Closed, "Larder, closed loop: as fast as it answers"),
        (
            Kind::BarePoem,
            "bare poem handler, closed loop: ceiling rounds",
        ),
        (
            Kind::Paced,
            "paced: a chosen rate (open loop), not a capacity",
        ),
    ]
    .into_iter()
    .filter(|(k, _)| rows.iter().any(|r| r.kind == *k))
    .map(|(k, l)| Key {
        color: k.color(),
        label: l.into(),
        dashed: false,
    })
    .collect();
    if let Some((c, what)) = ceiling {
        keys.push(Key {
            color: COLORS[2],
            label: format!("the ceiling, {} req/s ({what})", compact(c)),
            dashed: true,
        });
    }
    let (legend_svg, top) = legend(&keys, left, w - 10.0);
    let top = top + 8.0;
    let plot_bottom = top + rows.len() as f64 * row_h;
    let h = plot_bottom + 52.0;
    let max = rows
        .iter()
        .map(|r| r.rps)
        .chain(ceiling.map(|c| c.0))
        .fold(1.0f64, f64::max);
    let ticks = ticks(max, 6);
    let top_v = *ticks.last().expect("ticks are never empty");
    let x = |v: f64| left + v / top_v * PLOT_W;
    let mut s = header(w, h, "Throughput per scenario");
    s.push_str(&legend_svg);
    for t in &ticks {
        let px = x(*t);
        let _ = writeln!(
            s,
            "<line x1=\"{px:.1}\" y1=\"{top:.1}\" x2=\"{px:.1}\" y2=\"{plot_bottom:.1}\" stroke=\"{GRID}\"/><text x=\"{px:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"{INK}\">{}</text>",
            plot_bottom + 16.0,
            compact(*t)
        );
    }
    x_title(&mut s, left, plot_bottom + 38.0, "requests per second");
    for (i, r) in rows.iter().enumerate() {
        let y = top + 4.0 + i as f64 * row_h;
        let bw = x(r.rps) - left;
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text><rect x=\"{left:.1}\" y=\"{y:.1}\" width=\"{bw:.1}\" height=\"18\" fill=\"{}\"><title>{} {:.0} req/s</title></rect><text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            left - 8.0,
            y + 13.0,
            esc(&r.name),
            r.kind.color(),
            esc(&r.name),
            r.rps,
            left + bw + 5.0,
            y + 13.0,
            compact(r.rps)
        );
    }
    if let Some((c, _)) = ceiling {
        let _ = writeln!(
            s,
            "<line x1=\"{0:.1}\" y1=\"{1:.1}\" x2=\"{0:.1}\" y2=\"{plot_bottom:.1}\" stroke=\"{2}\" stroke-width=\"2\" stroke-dasharray=\"4\"/>",
            x(c),
            top - 4.0,
            COLORS[2]
        );
    }
    s.push_str("</svg>\n");
    s
}

/// A vertical mark on a line chart.
pub struct Mark {
    /// Seconds.
    pub t: f64,
    /// Its colour.
    pub color: &'static str,
    /// What happened then.
    pub label: String,
}

/// A line over time.
pub struct Line<'a> {
    /// The chart's title.
    pub title: &'a str,
    /// The series' name, for the legend (drawn when there are marks).
    pub series: &'a str,
    /// The vertical axis' title, with its unit.
    pub y_title: &'a str,
    /// Writes a vertical tick label.
    pub y_label: fn(f64) -> String,
    /// The vertical axis never goes above this (100 for a percentage).
    pub y_cap: Option<f64>,
    /// (seconds, value).
    pub points: &'a [(f64, f64)],
    /// Vertical marks.
    pub marks: &'a [Mark],
}

impl Line<'_> {
    /// The SVG.
    pub fn render(&self) -> String {
        let (h, bottom) = (340.0, 52.0);
        let vmax = self.points.iter().map(|p| p.1).fold(0.0f64, f64::max);
        let vmax = self.y_cap.map_or(vmax, |c| vmax.min(c));
        let y_ticks = ticks(vmax, 5);
        let y_top = *y_ticks.last().expect("ticks are never empty");
        let labels: Vec<String> = y_ticks.iter().map(|v| (self.y_label)(*v)).collect();
        // Room for the longest tick label, then the rotated axis title left of it.
        let left = 30.0 + labels.iter().map(|l| text_w(l, FONT)).fold(0.0, f64::max) + 8.0;
        let w = left + PLOT_W + 30.0;
        let mut keys = Vec::new();
        if !self.marks.is_empty() {
            keys.push(Key {
                color: COLORS[0],
                label: self.series.into(),
                dashed: false,
            });
            keys.extend(self.marks.iter().map(|m| Key {
                color: m.color,
                label: m.label.clone(),
                dashed: true,
            }));
        }
        let (legend_svg, under) = legend(&keys, left, w - 10.0);
        let top = if keys.is_empty() { 40.0 } else { under + 8.0 };
        let tmax = self.points.iter().map(|p| p.0).fold(0.0f64, f64::max);
        let x_ticks = ticks(tmax, 8);
        let t_top = *x_ticks.last().expect("ticks are never empty");
        let x = |t: f64| left + t / t_top * PLOT_W;
        let y = |v: f64| h - bottom - v.min(y_top) / y_top * (h - top - bottom);
        let mut s = header(w, h, self.title);
        s.push_str(&legend_svg);
        for (v, label) in y_ticks.iter().zip(&labels) {
            let _ = writeln!(
                s,
                "<line x1=\"{left:.1}\" y1=\"{0:.1}\" x2=\"{1:.1}\" y2=\"{0:.1}\" stroke=\"{GRID}\"/><text x=\"{2:.1}\" y=\"{3:.1}\" text-anchor=\"end\" fill=\"{INK}\">{label}</text>",
                y(*v),
                left + PLOT_W,
                left - 6.0,
                y(*v) + 4.0,
            );
        }
        let mid = (top + h - bottom) / 2.0;
        let _ = writeln!(
            s,
            "<text x=\"16\" y=\"{mid:.1}\" transform=\"rotate(-90 16 {mid:.1})\" text-anchor=\"middle\" fill=\"{INK}\">{}</text>",
            esc(self.y_title)
        );
        for t in &x_ticks {
            let _ = writeln!(
                s,
                "<line x1=\"{0:.1}\" y1=\"{1:.1}\" x2=\"{0:.1}\" y2=\"{2:.1}\" stroke=\"{INK}\"/><text x=\"{0:.1}\" y=\"{3:.1}\" text-anchor=\"middle\" fill=\"{INK}\">{4}</text>",
                x(*t),
                h - bottom,
                h - bottom + 4.0,
                h - bottom + 18.0,
                compact(*t)
            );
        }
        x_title(&mut s, left, h - 12.0, "seconds since the run started");
        for m in self.marks {
            let _ = writeln!(
                s,
                "<line x1=\"{0:.1}\" y1=\"{top:.1}\" x2=\"{0:.1}\" y2=\"{1:.1}\" stroke=\"{2}\" stroke-width=\"2\" stroke-dasharray=\"4\"/>",
                x(m.t),
                h - bottom,
                m.color
            );
        }
        let path: Vec<String> = self
            .points
            .iter()
            .map(|(t, v)| format!("{:.1},{:.1}", x(*t), y(*v)))
            .collect();
        let _ = writeln!(
            s,
            "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"1.5\" points=\"{}\"/>",
            COLORS[0],
            path.join(" ")
        );
        s.push_str("</svg>\n");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_numbers() {
        let cases = [
            (0.0, "0"),
            (0.25, "0.25"),
            (2.5, "2.5"),
            (20.0, "20"),
            (250.0, "250"),
            (2_811.0, "2.81k"),
            (80_000.0, "80k"),
            (80_300.0, "80.3k"),
            (96_594.0, "96.6k"),
            (115_103.0, "115k"),
            (999_700.0, "1M"),
            (1_250_000.0, "1.25M"),
        ];
        for (v, want) in cases {
            assert_eq!(compact(v), want, "{v}");
        }
        assert_eq!(duration_us(850.0), "850 µs");
        assert_eq!(duration_us(2_400.0), "2.4 ms");
        assert_eq!(duration_us(1e6), "1 s");
    }

    #[test]
    fn ticks_are_round_and_cover_the_maximum() {
        assert_eq!(ticks(88.0, 5), vec![0.0, 20.0, 40.0, 60.0, 80.0, 100.0]);
        assert_eq!(ticks(100.0, 4), vec![0.0, 25.0, 50.0, 75.0, 100.0]);
        assert_eq!(
            ticks(80_300.0, 5),
            vec![0.0, 20_000.0, 40_000.0, 60_000.0, 80_000.0, 100_000.0]
        );
        assert_eq!(ticks(0.0, 5).last(), Some(&1.0));
        for max in [0.3, 7.0, 12.9, 149_000.0, 5.5e6] {
            let t = ticks(max, 5);
            assert!(*t.last().unwrap() >= max, "{max}: {t:?}");
            assert!(t.len() <= 11, "{max}: {t:?}");
        }
    }

    /// Every text's estimated extent stays inside the picture: a label wider than its
    /// margin is what clipped "80,300" to "300".
    fn assert_labels_inside(svg: &str) {
        let width: f64 = svg
            .split("width=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .and_then(|v| v.parse().ok())
            .expect("the svg has a width");
        for part in svg.split("<text ").skip(1) {
            let part = part.split("</text>").next().unwrap();
            let attr = |name: &str| -> Option<f64> {
                part.split(&format!(" {name}=\""))
                    .nth(1)
                    .or_else(|| part.strip_prefix(&format!("{name}=\"")))
                    .and_then(|r| r.split('"').next())
                    .and_then(|v| v.parse().ok())
            };
            if part.contains("rotate(") {
                continue;
            }
            let x = attr("x").expect("a text has x");
            let size = attr("font-size").unwrap_or(FONT);
            let body = part.split('>').nth(1).unwrap().split('<').next().unwrap();
            // Titles are bold: a little wider than the estimate's regular face.
            let bold = if part.contains("bold") { 1.1 } else { 1.0 };
            let tw = text_w(body, size) * bold;
            let (from, to) = if part.contains("text-anchor=\"end\"") {
                (x - tw, x)
            } else if part.contains("text-anchor=\"middle\"") {
                (x - tw / 2.0, x + tw / 2.0)
            } else {
                (x, x + tw)
            };
            assert!(
                from >= 0.0 && to <= width,
                "`{body}` spans {from:.0}..{to:.0} of {width}"
            );
        }
    }

    #[test]
    fn outage_chart_labels_fit_and_marks_have_a_legend() {
        let points: Vec<(f64, f64)> = (0..60).map(|i| (i as f64 * 0.1, 80_300.0)).collect();
        let marks = [
            Mark {
                t: 1.5,
                color: "#e45756",
                label: "Redis killed (1.5 s)".into(),
            },
            Mark {
                t: 3.6,
                color: "#54a24b",
                label: "Redis back (3.6 s)".into(),
            },
        ];
        let svg = Line {
            title: "Redis outage",
            series: "req/s per 100 ms",
            y_title: "requests per second",
            y_label: compact,
            y_cap: None,
            points: &points,
            marks: &marks,
        }
        .render();
        assert!(svg.contains(">80k</text>"), "{svg}");
        assert!(svg.contains(">Redis killed (1.5 s)</text>"));
        assert!(svg.contains(">req/s per 100 ms</text>"));
        assert!(svg.contains(">requests per second</text>"));
        assert_labels_inside(&svg);
    }

    #[test]
    fn latency_chart_has_a_legend_and_fits_long_names() {
        let rows = vec![
            ("l1-hit".to_owned(), [550.0, 897.0, 1_200.0]),
            (
                "analytics revenue 30 days daily, uncached".to_owned(),
                [20_000.0, 90_000.0, 150_000.0],
            ),
        ];
        let svg = latency(&rows);
        for key in ["p50", "p99", "p99.9"] {
            assert!(svg.contains(&format!(">{key}</text>")), "{key}");
        }
        assert!(svg.contains(">1 ms</text>"));
        assert_labels_inside(&svg);
    }

    #[test]
    fn throughput_chart_names_the_ceiling() {
        let rows = vec![
            Throughput {
                name: "ceiling".into(),
                rps: 115_103.0,
                kind: Kind::BarePoem,
            },
            Throughput {
                name: "l1-hit".into(),
                rps: 96_594.0,
                kind: Kind::Closed,
            },
            Throughput {
                name: "l1-hit, paced".into(),
                rps: 57_551.0,
                kind: Kind::Paced,
            },
        ];
        let svg = throughput(&rows, Some((115_103.0, "median of 3 interleaved rounds")));
        assert!(svg.contains("the ceiling, 115k req/s"));
        assert!(svg.contains("paced: a chosen rate"));
        assert!(svg.contains(">57.6k</text>"));
        assert_labels_inside(&svg);
    }
}
