//! An SVG chart of a run: burst events/s and light-load p99 latency against N, one line per server,
//! both axes logarithmic. Hand-written SVG: no plotting dependency.

use std::fmt::Write as _;

use crate::cases::{Case, CaseKind};
use crate::measure::Measurement;
use crate::report::{Results, metric};
use crate::servers::ServerKind;

const PANEL_WIDTH: f64 = 440.0;
const PANEL_HEIGHT: f64 = 300.0;
const MARGIN_LEFT: f64 = 70.0;
const MARGIN_TOP: f64 = 50.0;
const GAP: f64 = 90.0;
const MARGIN_BOTTOM: f64 = 90.0;

fn color(server: ServerKind) -> &'static str {
    match server {
        ServerKind::SseHandler => "#d62728",
        ServerKind::Axum => "#1f77b4",
        ServerKind::Limit => "#7f7f7f",
    }
}

/// One panel: a metric of one kind of case against N.
struct Panel {
    title: &'static str,
    unit: &'static str,
    kind: CaseKind,
    metric: fn(&Measurement) -> Option<f64>,
}

const PANELS: [Panel; 2] = [
    Panel {
        title: "Burst: delivered events/s",
        unit: "events/s",
        kind: CaseKind::Burst,
        metric: metric::events_per_s,
    },
    Panel {
        title: "Light load: p99 fan-out latency",
        unit: "ms",
        kind: CaseKind::Light,
        metric: metric::p99,
    },
];

/// The chart as an SVG document; `caption` goes under it (the command and the machine).
pub fn svg(results: &Results, caption: &[String]) -> String {
    let width = MARGIN_LEFT + 2.0 * PANEL_WIDTH + GAP + 20.0;
    let height = MARGIN_TOP + PANEL_HEIGHT + MARGIN_BOTTOM + 16.0 * caption.len() as f64;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    for (index, panel) in PANELS.iter().enumerate() {
        let left = MARGIN_LEFT + index as f64 * (PANEL_WIDTH + GAP);
        draw_panel(&mut out, results, panel, left);
    }
    let legend_y = MARGIN_TOP + PANEL_HEIGHT + 45.0;
    for (index, &server) in results.servers.iter().enumerate() {
        let x = MARGIN_LEFT + index as f64 * 150.0;
        let _ = writeln!(
            out,
            r#"<line x1="{x}" y1="{legend_y}" x2="{}" y2="{legend_y}" stroke="{}" stroke-width="3"/><text x="{}" y="{}">{}</text>"#,
            x + 24.0,
            color(server),
            x + 30.0,
            legend_y + 4.0,
            server.name()
        );
    }
    for (index, line) in caption.iter().enumerate() {
        let y = legend_y + 30.0 + 16.0 * index as f64;
        let _ = writeln!(out, r##"<text x="{MARGIN_LEFT}" y="{y}" fill="#444">{}</text>"##, escape(line));
    }
    out.push_str("</svg>\n");
    out
}

/// A logarithmic axis over `[low, high]` (powers of ten around the data).
#[derive(Debug, Clone, Copy)]
struct LogAxis {
    low: f64,
    high: f64,
}

impl LogAxis {
    fn around(values: impl IntoIterator<Item = f64>) -> LogAxis {
        let (mut low, mut high) = (f64::MAX, f64::MIN);
        for v in values.into_iter().filter(|v| *v > 0.0 && v.is_finite()) {
            low = low.min(v);
            high = high.max(v);
        }
        if low > high {
            return LogAxis { low: 1.0, high: 10.0 };
        }
        let low = 10f64.powf(low.log10().floor());
        let high = 10f64.powf(high.log10().ceil()).max(low * 10.0);
        LogAxis { low, high }
    }

    /// Where `value` falls, from 0 (low) to 1 (high).
    fn position(&self, value: f64) -> f64 {
        (value.log10() - self.low.log10()) / (self.high.log10() - self.low.log10())
    }

    fn decades(&self) -> impl Iterator<Item = f64> {
        let (first, last) = (self.low.log10().round() as i32, self.high.log10().round() as i32);
        (first..=last).map(|e| 10f64.powi(e))
    }
}

fn draw_panel(out: &mut String, results: &Results, panel: &Panel, left: f64) {
    let cases: Vec<Case> = results.cases.iter().copied().filter(|c| c.kind == panel.kind).collect();
    let (top, bottom, right) = (MARGIN_TOP, MARGIN_TOP + PANEL_HEIGHT, left + PANEL_WIDTH);
    let _ = writeln!(
        out,
        r#"<text x="{left}" y="{}" font-size="14" font-weight="bold">{}</text>"#,
        top - 15.0,
        panel.title
    );
    let _ = writeln!(
        out,
        r##"<rect x="{left}" y="{top}" width="{PANEL_WIDTH}" height="{PANEL_HEIGHT}" fill="none" stroke="#888"/>"##
    );

    let points: Vec<(ServerKind, Vec<(f64, f64)>)> = results
        .servers
        .iter()
        .map(|&server| {
            let line = cases
                .iter()
                .filter_map(|&case| Some((case.clients as f64, results.median(server, case, panel.metric)?)))
                .collect();
            (server, line)
        })
        .collect();
    if cases.is_empty() {
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{}">no {} cases in this run</text>"#,
            left + 20.0,
            top + 30.0,
            panel.kind.name()
        );
        return;
    }
    let x_axis = LogAxis::around(cases.iter().map(|c| c.clients as f64));
    let y_axis = LogAxis::around(points.iter().flat_map(|(_, line)| line.iter().map(|p| p.1)));
    let x_at = |n: f64| left + x_axis.position(n) * PANEL_WIDTH;
    let y_at = |v: f64| bottom - y_axis.position(v) * PANEL_HEIGHT;

    for decade in y_axis.decades() {
        let y = y_at(decade);
        let _ = writeln!(out, r##"<line x1="{left}" y1="{y:.1}" x2="{right}" y2="{y:.1}" stroke="#ddd"/>"##);
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
            left - 6.0,
            y + 4.0,
            label(decade)
        );
    }
    let mut seen = Vec::new();
    for case in &cases {
        if seen.contains(&case.clients) {
            continue;
        }
        seen.push(case.clients);
        let x = x_at(case.clients as f64);
        let _ = writeln!(out, r##"<line x1="{x:.1}" y1="{top}" x2="{x:.1}" y2="{bottom}" stroke="#eee"/>"##);
        let _ = writeln!(
            out,
            r#"<text x="{x:.1}" y="{}" text-anchor="middle">{}</text>"#,
            bottom + 16.0,
            case.clients
        );
    }
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle">N (clients)</text>"#,
        left + PANEL_WIDTH / 2.0,
        bottom + 34.0
    );
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle" transform="rotate(-90 {} {})">{}</text>"#,
        left - 50.0,
        top + PANEL_HEIGHT / 2.0,
        left - 50.0,
        top + PANEL_HEIGHT / 2.0,
        panel.unit
    );
    for (server, line) in points {
        if line.is_empty() {
            continue;
        }
        let path: Vec<String> = line.iter().map(|&(n, v)| format!("{:.1},{:.1}", x_at(n), y_at(v))).collect();
        let _ = writeln!(
            out,
            r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2.5"/>"#,
            path.join(" "),
            color(server)
        );
        for &(n, v) in &line {
            let _ = writeln!(
                out,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="{}"><title>{} N={n}: {}</title></circle>"#,
                x_at(n),
                y_at(v),
                color(server),
                server.name(),
                label(v)
            );
        }
    }
}

/// `10M`, `100k`, `1`, `0.1`.
fn label(value: f64) -> String {
    if value >= 1e6 {
        format!("{}M", trim(value / 1e6))
    } else if value >= 1e3 {
        format!("{}k", trim(value / 1e3))
    } else {
        trim(value)
    }
}

fn trim(value: f64) -> String {
    let text = format!("{value:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_axes_span_whole_decades_around_the_data() {
        let axis = LogAxis::around([12.0, 5000.0]);
        assert_eq!((axis.low, axis.high), (10.0, 10_000.0));
        assert!((axis.position(100.0) - 1.0 / 3.0).abs() < 1e-9);
        assert_eq!(axis.decades().count(), 4);
        let flat = LogAxis::around([3.0]);
        assert_eq!((flat.low, flat.high), (1.0, 10.0));
    }

    #[test]
    fn labels_are_short() {
        assert_eq!(label(10_000_000.0), "10M");
        assert_eq!(label(100_000.0), "100k");
        assert_eq!(label(0.1), "0.1");
        assert_eq!(escape("a<b & c"), "a&lt;b &amp; c");
    }

    #[test]
    fn the_chart_draws_a_line_per_server_with_data() {
        let case = Case::burst(10, 5);
        let case2 = Case::burst(100, 5);
        let measurement = |server: ServerKind, case: Case, rate: f64| Measurement {
            server: server.name().into(),
            case: Some(case),
            status: "ok".into(),
            events_per_s: Some(rate),
            ..Measurement::default()
        };
        let results = Results {
            servers: ServerKind::ALL.to_vec(),
            cases: vec![case, case2],
            measurements: vec![
                measurement(ServerKind::SseHandler, case, 1e6),
                measurement(ServerKind::SseHandler, case2, 2e6),
                measurement(ServerKind::Limit, case, 1e7),
            ],
        };
        let svg = svg(&results, &["cmd <x>".into()]);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("no light cases"));
        assert!(svg.contains("cmd &lt;x&gt;"));
    }
}
