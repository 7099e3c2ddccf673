//! Small hand-written SVG charts: no plotting dependency, readable in any browser or
//! Markdown viewer.

use std::fmt::Write as _;

const W: f64 = 820.0;
const LEFT: f64 = 170.0;
const COLORS: [&str; 3] = ["#4c78a8", "#f58518", "#e45756"];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn header(h: f64, title: &str) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"{}\" y=\"20\" font-size=\"15\" text-anchor=\"middle\">{}</text>\n",
        W / 2.0,
        esc(title)
    )
}

/// Horizontal bars: p50 / p99 / p99.9 per scenario, log scale in µs.
pub fn latency(rows: &[(String, [f64; 3])]) -> String {
    let row_h = 36.0;
    let h = 70.0 + rows.len() as f64 * row_h;
    let max = rows
        .iter()
        .flat_map(|r| r.1)
        .fold(1.0f64, f64::max)
        .log10()
        .ceil()
        .max(1.0);
    let x = |v: f64| LEFT + (v.max(1.0).log10() / max) * (W - LEFT - 30.0);
    let mut s = header(h, "Latency (µs, log scale): p50 / p99 / p99.9");
    for d in 0..=max as i32 {
        let px = x(10f64.powi(d));
        let _ = writeln!(
            s,
            "<line x1=\"{px}\" y1=\"35\" x2=\"{px}\" y2=\"{}\" stroke=\"#ddd\"/><text x=\"{px}\" y=\"{}\" text-anchor=\"middle\" fill=\"#666\">{}</text>",
            h - 25.0,
            h - 10.0,
            10u64.pow(d as u32)
        );
    }
    for (i, (name, v)) in rows.iter().enumerate() {
        let y = 40.0 + i as f64 * row_h;
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
            LEFT - 6.0,
            y + 16.0,
            esc(name)
        );
        for (k, val) in v.iter().enumerate() {
            let _ = writeln!(
                s,
                "<rect x=\"{LEFT}\" y=\"{}\" width=\"{:.1}\" height=\"9\" fill=\"{}\"><title>{} {:.0} µs</title></rect>",
                y + k as f64 * 10.0,
                (x(*val) - LEFT).max(1.0),
                COLORS[k],
                ["p50", "p99", "p99.9"][k],
                val
            );
        }
    }
    s.push_str("</svg>\n");
    s
}

/// Horizontal bars: requests per second per scenario.
pub fn throughput(rows: &[(String, f64)]) -> String {
    let row_h = 26.0;
    let h = 60.0 + rows.len() as f64 * row_h;
    let max = rows.iter().map(|r| r.1).fold(1.0f64, f64::max);
    let mut s = header(h, "Throughput (requests per second)");
    for (i, (name, v)) in rows.iter().enumerate() {
        let y = 40.0 + i as f64 * row_h;
        let w = v / max * (W - LEFT - 110.0);
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text><rect x=\"{LEFT}\" y=\"{y}\" width=\"{w:.1}\" height=\"18\" fill=\"{}\"/><text x=\"{}\" y=\"{}\">{v:.0}</text>",
            LEFT - 6.0,
            y + 13.0,
            esc(name),
            COLORS[0],
            LEFT + w + 5.0,
            y + 13.0
        );
    }
    s.push_str("</svg>\n");
    s
}

/// A line over time, with optional vertical marks (red, green).
pub fn line(title: &str, unit: &str, points: &[(f64, f64)], marks: Option<(f64, f64)>) -> String {
    let (h, top, bottom, left) = (320.0, 40.0, 40.0, 70.0);
    let tmax = points.iter().map(|p| p.0).fold(0.1f64, f64::max);
    let vmax = points.iter().map(|p| p.1).fold(0.0f64, f64::max).max(1e-9) * 1.1;
    let x = |t: f64| left + t / tmax * (W - left - 20.0);
    let y = |v: f64| h - bottom - v / vmax * (h - top - bottom);
    let mut s = header(h, title);
    for k in 0..=4 {
        let v = vmax * k as f64 / 4.0;
        let _ = writeln!(
            s,
            "<line x1=\"{left}\" y1=\"{0:.1}\" x2=\"{1}\" y2=\"{0:.1}\" stroke=\"#ddd\"/><text x=\"{2}\" y=\"{3:.1}\" text-anchor=\"end\" fill=\"#666\">{4:.1} {unit}</text>",
            y(v),
            W - 20.0,
            left - 4.0,
            y(v) + 4.0,
            v
        );
    }
    for k in 0..=5 {
        let t = tmax * k as f64 / 5.0;
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\" fill=\"#666\">{t:.1} s</text>",
            x(t),
            h - bottom + 18.0
        );
    }
    if let Some((a, b)) = marks {
        for (t, c) in [(a, "#e45756"), (b, "#54a24b")] {
            let _ = writeln!(
                s,
                "<line x1=\"{0:.1}\" y1=\"{top}\" x2=\"{0:.1}\" y2=\"{1}\" stroke=\"{c}\" stroke-dasharray=\"4\"/>",
                x(t),
                h - bottom
            );
        }
    }
    let path: Vec<String> = points
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
