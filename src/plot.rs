//! Small SVG line charts (training curves, reliability diagrams): a few dozen lines of SVG
//! are simpler to own than a plotting stack that needs system fonts.

use std::fmt::Write;

/// One line on a panel.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    /// Draw markers as well as the line.
    pub markers: bool,
}

/// One chart with its axes.
#[derive(Debug, Clone)]
pub struct Panel {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
    /// Fixed y range; `None` fits the data.
    pub y_range: Option<(f64, f64)>,
}

const W: f64 = 640.0;
const H: f64 = 300.0;
const M: (f64, f64, f64, f64) = (60.0, 20.0, 30.0, 45.0); // left, right, top, bottom
const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

/// Escapes text for SVG/HTML.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn fmt_tick(v: f64) -> String {
    if v.abs() >= 1000.0 || v == v.trunc() {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// Panels stacked vertically in one SVG document.
pub fn svg(panels: &[Panel]) -> String {
    let mut out = String::new();
    let total_h = H * panels.len() as f64;
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{total_h}" viewBox="0 0 {W} {total_h}" font-family="sans-serif" font-size="11">"#
    );
    out.push_str(r#"<rect width="100%" height="100%" fill="white"/>"#);
    for (i, p) in panels.iter().enumerate() {
        panel(&mut out, p, H * i as f64);
    }
    out.push_str("</svg>\n");
    out
}

fn panel(out: &mut String, p: &Panel, top: f64) {
    let pts = p
        .series
        .iter()
        .flat_map(|s| s.points.iter())
        .filter(|(x, y)| x.is_finite() && y.is_finite());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in pts {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    if let Some((a, b)) = p.y_range {
        (y0, y1) = (a, b);
    }
    if x1 - x0 < 1e-12 {
        x1 = x0 + 1.0;
    }
    if y1 - y0 < 1e-12 {
        (y0, y1) = (y0 - 0.5, y1 + 0.5);
    }
    let (l, r, t, b) = M;
    let px = |x: f64| l + (x - x0) / (x1 - x0) * (W - l - r);
    let py = |y: f64| top + t + (1.0 - (y - y0) / (y1 - y0)) * (H - t - b);
    let _ = write!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle" font-size="13">{}</text>"#,
        W / 2.0,
        top + 18.0,
        escape(&p.title)
    );
    let _ = write!(
        out,
        r##"<rect x="{l}" y="{}" width="{}" height="{}" fill="none" stroke="#888"/>"##,
        top + t,
        W - l - r,
        H - t - b
    );
    for i in 0..=4 {
        let fx = x0 + (x1 - x0) * i as f64 / 4.0;
        let fy = y0 + (y1 - y0) * i as f64 / 4.0;
        let _ = write!(
            out,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            px(fx),
            top + H - b + 14.0,
            fmt_tick(fx),
            l - 4.0,
            py(fy) + 4.0,
            fmt_tick(fy)
        );
    }
    let _ = write!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text><text x="14" y="{}" text-anchor="middle" transform="rotate(-90 14 {})">{}</text>"#,
        l + (W - l - r) / 2.0,
        top + H - 8.0,
        escape(&p.x_label),
        top + t + (H - t - b) / 2.0,
        top + t + (H - t - b) / 2.0,
        escape(&p.y_label)
    );
    for (i, s) in p.series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let path: Vec<String> = s
            .points
            .iter()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
            .collect();
        let _ = write!(
            out,
            r#"<polyline fill="none" stroke="{color}" stroke-width="1.8" points="{}"/>"#,
            path.join(" ")
        );
        if s.markers {
            for p in &path {
                let (x, y) = p.split_once(',').unwrap_or(("0", "0"));
                let _ = write!(out, r#"<circle cx="{x}" cy="{y}" r="2.5" fill="{color}"/>"#);
            }
        }
        let _ = write!(
            out,
            r#"<text x="{}" y="{}" fill="{color}">{}</text>"#,
            l + 8.0,
            top + t + 14.0 + 13.0 * i as f64,
            escape(&s.name)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_draws_every_series() {
        let svg = svg(&[Panel {
            title: "<loss> & \"mrr\"".into(),
            x_label: "epoch".into(),
            y_label: "loss".into(),
            series: vec![
                Series {
                    name: "a".into(),
                    points: vec![(1.0, 2.0), (2.0, 1.0)],
                    markers: false,
                },
                Series {
                    name: "b".into(),
                    points: vec![(1.0, f64::NAN), (2.0, 3.0)],
                    markers: true,
                },
            ],
            y_range: None,
        }]);
        assert!(svg.contains("&lt;loss&gt; &amp; &quot;mrr&quot;"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert_eq!(svg.matches("<circle").count(), 1, "NaN points are skipped");
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
    }
}
