//! SVG line charts (training curves, reliability diagrams, rounds, simulations, the dashboard)
//! drawn with plotters' SVG backend. No font stack: the backend writes `<text>` elements and
//! the viewer picks the font. What is ours is the choice of ticks: "nice" steps (1, 2 or 5
//! times a power of ten), and whole-number steps on axes that count things.

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
use plotters::prelude::*;

/// One line on a panel.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    /// Draw markers as well as the line.
    pub markers: bool,
}

/// One chart with its axes. An axis whose every value is a whole number (rounds, epochs,
/// cumulative discoveries) counts things and gets whole-number ticks.
#[derive(Debug, Clone)]
pub struct Panel {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
    /// Fixed y range (a probability, an MRR); `None` fits the data.
    pub y_range: Option<(f64, f64)>,
}

const W: u32 = 640;
const H: u32 = 300;
const COLORS: [RGBColor; 8] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0x17, 0xbe, 0xcf),
];

/// Panels stacked vertically in one SVG document.
pub fn svg(panels: &[Panel]) -> String {
    let mut out = String::new();
    if let Err(e) = render(panels, &mut out) {
        // Writing into a String cannot fail; should plotters ever refuse, a chart is not worth
        // failing the command that draws it.
        tracing::warn!(error = %e, "chart not drawn");
        return format!(r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}"/>"#);
    }
    out
}

type DrawResult<T> = Result<T, Box<dyn std::error::Error>>;

fn render(panels: &[Panel], out: &mut String) -> DrawResult<()> {
    let rows = panels.len().max(1);
    let root = SVGBackend::with_string(out, (W, H * rows as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    for (p, area) in panels.iter().zip(root.split_evenly((rows, 1))) {
        panel(p, &area)?;
    }
    root.present()?;
    Ok(())
}

/// The finite points of every series.
fn finite(p: &Panel) -> impl Iterator<Item = (f64, f64)> + '_ {
    p.series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .filter(|(x, y)| x.is_finite() && y.is_finite())
}

fn panel<DB: DrawingBackend>(
    p: &Panel,
    area: &DrawingArea<DB, plotters::coord::Shift>,
) -> DrawResult<()>
where
    DB::ErrorType: 'static,
{
    let xs: Vec<f64> = finite(p).map(|(x, _)| x).collect();
    let ys: Vec<f64> = finite(p).map(|(_, y)| y).collect();
    let x = Axis::fit(&xs, None);
    let y = Axis::fit(&ys, p.y_range);
    let mut chart = ChartBuilder::on(area)
        .caption(&p.title, ("sans-serif", 16))
        .margin(8)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(x.clone(), y.clone())?;
    let (x_fmt, y_fmt) = (|v: &f64| x.label(*v), |v: &f64| y.label(*v));
    chart
        .configure_mesh()
        .x_desc(p.x_label.as_str())
        .y_desc(p.y_label.as_str())
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&y_fmt)
        .bold_line_style(BLACK.mix(0.08))
        .axis_desc_style(("sans-serif", 13))
        .label_style(("sans-serif", 12))
        .draw()?;
    for (i, s) in p.series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let points: Vec<(f64, f64)> = s
            .points
            .iter()
            .copied()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .collect();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
            .label(s.name.as_str())
            // A swatch rather than a short line: series lines are the only 2-px polylines.
            .legend(move |(x, y)| Rectangle::new([(x, y - 3), (x + 14, y + 3)], color.filled()));
        if s.markers {
            chart.draw_series(
                points
                    .into_iter()
                    .map(|p| Circle::new(p, 3, color.filled())),
            )?;
        }
    }
    if p.series.iter().any(|s| !s.name.is_empty()) {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .label_font(("sans-serif", 12))
            .draw()?;
    }
    Ok(())
}

/// One axis: its range, its ticks and how they are written.
#[derive(Debug, Clone, PartialEq)]
struct Axis {
    lo: f64,
    hi: f64,
    ticks: Vec<f64>,
    /// Digits after the point in tick labels (0 on counting axes).
    decimals: usize,
}

impl Axis {
    /// The axis for `values`, or for the fixed range. Unfixed ranges get a little room so that
    /// markers at the extremes stay inside the frame.
    fn fit(values: &[f64], fixed: Option<(f64, f64)>) -> Self {
        let counts =
            fixed.is_none() && !values.is_empty() && values.iter().all(|v| v.fract() == 0.0);
        let (mut lo, mut hi) = match fixed {
            Some(r) => r,
            None => values
                .iter()
                .fold(None, |acc: Option<(f64, f64)>, &v| {
                    Some(acc.map_or((v, v), |(a, b)| (a.min(v), b.max(v))))
                })
                .unwrap_or((0.0, 1.0)),
        };
        if hi - lo < 1e-12 {
            let half = if counts { 1.0 } else { 0.5 };
            (lo, hi) = (lo - half, hi + half);
        }
        if fixed.is_none() {
            let pad = (hi - lo) * 0.04;
            (lo, hi) = (lo - pad, hi + pad);
        }
        let step = nice_step((hi - lo) / 5.0, counts);
        let first = (lo / step).ceil() as i64;
        let last = (hi / step).floor() as i64;
        let ticks = (first..=last).map(|i| i as f64 * step).collect();
        let decimals = if step >= 1.0 {
            0
        } else {
            (-step.log10().floor()) as usize
        };
        Self {
            lo,
            hi,
            ticks,
            decimals,
        }
    }

    fn label(&self, v: f64) -> String {
        // -0.0 prints as "-0".
        let v = if v.abs() < 1e-12 { 0.0 } else { v };
        format!("{v:.*}", self.decimals)
    }
}

/// Plotters draws the axis with exactly our ticks (its own key points would be fractional on
/// a short counting axis). Labels come from `Axis::label` through the mesh's formatters.
impl Ranged for Axis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, v: &f64, limit: (i32, i32)) -> i32 {
        let share = (v - self.lo) / (self.hi - self.lo);
        limit.0 + (f64::from(limit.1 - limit.0) * share).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        // Bold points only: the light grid between ticks is left out.
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.lo..self.hi
    }
}

/// The smallest of 1, 2 or 5 times a power of ten that is at least `raw`; at least 1 on a
/// counting axis.
fn nice_step(raw: f64, counts: bool) -> f64 {
    let raw = if counts { raw.max(1.0) } else { raw };
    if !(raw.is_finite() && raw > 0.0) {
        return 1.0;
    }
    let power = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .find(|s| *s >= raw * (1.0 - 1e-9))
        .unwrap_or(10.0 * power)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(name: &str, points: Vec<(f64, f64)>, markers: bool) -> Series {
        Series {
            name: name.into(),
            points,
            markers,
        }
    }

    /// The text of every `<text>` element.
    fn texts(svg: &str) -> Vec<String> {
        svg.split("<text")
            .skip(1)
            .filter_map(|t| {
                let body = &t[t.find('>')? + 1..];
                Some(body[..body.find("</text>")?].trim().to_owned())
            })
            .collect()
    }

    /// Every tag is closed, in order: well-formed enough for browsers' XML parser.
    fn assert_well_formed(svg: &str) {
        let mut open: Vec<String> = Vec::new();
        let mut rest = svg;
        while let Some(start) = rest.find('<') {
            let end = rest[start..].find('>').expect("unterminated tag") + start;
            let tag = &rest[start + 1..end];
            rest = &rest[end + 1..];
            if tag.starts_with('?') || tag.starts_with('!') {
                continue;
            }
            assert_eq!(
                tag.matches('"').count() % 2,
                0,
                "unbalanced quotes in <{tag}>"
            );
            let name: String = tag
                .trim_start_matches('/')
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect();
            if let Some(closing) = tag.strip_prefix('/') {
                assert_eq!(
                    open.pop().as_deref(),
                    Some(closing.trim()),
                    "misnested </{closing}>"
                );
            } else if !tag.ends_with('/') {
                open.push(name);
            }
        }
        assert!(open.is_empty(), "unclosed: {open:?}");
    }

    #[test]
    fn escapes_and_draws_every_series() {
        let svg = svg(&[Panel {
            title: "<loss> & \"mrr\"".into(),
            x_label: "epoch".into(),
            y_label: "loss".into(),
            series: vec![
                series("alpha", vec![(1.0, 2.0), (2.0, 1.0)], false),
                series("beta", vec![(1.0, f64::NAN), (2.0, 3.0)], true),
            ],
            y_range: None,
        }]);
        assert_well_formed(&svg);
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.contains("&lt;loss&gt; &amp;"), "{svg}");
        let texts = texts(&svg);
        assert!(texts.contains(&"alpha".to_owned()), "{texts:?}");
        assert!(texts.contains(&"beta".to_owned()), "{texts:?}");
        assert!(texts.contains(&"epoch".to_owned()), "{texts:?}");
        assert_eq!(svg.matches("<circle").count(), 1, "NaN points are skipped");
        assert_eq!(
            svg.matches(r#"stroke-width="2" points="#).count(),
            2,
            "one line per series: {svg}"
        );
    }

    #[test]
    fn counting_axes_get_whole_number_ticks() {
        // Nine rounds, cumulative discoveries up to 162, MRR on a fixed range.
        let discoveries: Vec<(f64, f64)> =
            (1..=9).map(|r| (r as f64, (r * r * 2) as f64)).collect();
        let mrr: Vec<(f64, f64)> = (1..=9).map(|r| (r as f64, 0.3 + 0.01 * r as f64)).collect();
        let svg = svg(&[
            Panel {
                title: "confirmed edges (cumulative)".into(),
                x_label: "round".into(),
                y_label: "discoveries".into(),
                series: vec![series("w", discoveries, true)],
                y_range: None,
            },
            Panel {
                title: "test MRR".into(),
                x_label: "round".into(),
                y_label: "MRR".into(),
                series: vec![series("w", mrr, true)],
                y_range: Some((0.0, 1.0)),
            },
        ]);
        assert_well_formed(&svg);
        let numbers: Vec<String> = texts(&svg)
            .into_iter()
            .filter(|t| t.parse::<f64>().is_ok())
            .collect();
        let (whole, fractional): (Vec<&String>, Vec<&String>) =
            numbers.iter().partition(|t| !t.contains('.'));
        // Only the MRR axis (0.0 ..= 1.0) has fractional ticks.
        for t in &fractional {
            let v: f64 = t.parse().expect("number");
            assert!(
                (0.0..=1.0).contains(&v),
                "fractional tick {t} on a counting axis"
            );
        }
        for bad in ["3.2", "5.5", "7.8", "53.5", "122.5"] {
            assert!(!numbers.iter().any(|t| t == bad), "tick {bad}: {numbers:?}");
        }
        for round in ["2", "4", "6", "8"] {
            assert!(
                whole.iter().any(|t| *t == round),
                "round tick {round}: {numbers:?}"
            );
        }
        assert!(fractional.iter().any(|t| *t == "0.4"), "{numbers:?}");
    }

    #[test]
    fn a_few_rounds_still_tick_whole_rounds() {
        let a = Axis::fit(&[1.0, 2.0, 3.0], None);
        assert_eq!(a.ticks, vec![1.0, 2.0, 3.0]);
        assert_eq!(a.label(2.0), "2");
        let one = Axis::fit(&[4.0], None);
        assert!(one.ticks.iter().all(|t| t.fract() == 0.0), "{one:?}");
        let real = Axis::fit(&[0.31, 0.38], None);
        assert!(real.ticks.iter().any(|t| t.fract() != 0.0), "{real:?}");
        assert_eq!(nice_step(23.0, false), 50.0);
        assert_eq!(nice_step(0.13, false), 0.2);
        assert_eq!(nice_step(0.3, true), 1.0);
    }

    #[test]
    fn no_panels_and_empty_series_still_draw() {
        assert_well_formed(&svg(&[]));
        let s = svg(&[Panel {
            title: "empty".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            series: vec![series("none", vec![], true)],
            y_range: None,
        }]);
        assert_well_formed(&s);
    }
}
