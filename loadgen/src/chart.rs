//! Line charts as PNG and SVG with an embedded font; reusable for any time-series report.

use std::path::Path;
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

/// The font every chart uses, embedded so no system font library is needed.
static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

/// The family name charts ask for.
pub const FONT_FAMILY: &str = "sans-serif";

/// Why a chart could not be drawn.
#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    /// The embedded font was rejected.
    #[error("the embedded chart font could not be registered")]
    Font,
    /// Drawing or writing the file failed.
    #[error("cannot draw chart {path}: {message}")]
    Draw {
        /// The output file.
        path: String,
        /// What the backend reported.
        message: String,
    },
}

/// One line of a panel.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// Legend label.
    pub name: String,
    /// Line colour as RGB.
    pub color: [u8; 3],
    /// `(x, y)` points in x order.
    pub points: Vec<(f64, f64)>,
}

/// One plot area with its own y axis; panels share the x axis and stack vertically.
#[derive(Clone, Debug, PartialEq)]
pub struct Panel {
    /// Y axis label.
    pub y_label: String,
    /// The lines.
    pub series: Vec<Series>,
}

/// A figure: a title and stacked panels over a common x axis.
#[derive(Clone, Debug, PartialEq)]
pub struct Chart {
    /// Caption at the top.
    pub title: String,
    /// X axis label (shown on every panel).
    pub x_label: String,
    /// The panels, top to bottom.
    pub panels: Vec<Panel>,
}

/// Registers the embedded font once per process; drawing calls it themselves.
pub fn ensure_font() -> Result<(), ChartError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok =
        *REGISTERED.get_or_init(|| register_font(FONT_FAMILY, FontStyle::Normal, FONT).is_ok());
    if ok { Ok(()) } else { Err(ChartError::Font) }
}

/// Draws `chart` into a PNG file of `size` pixels.
pub fn render_png(chart: &Chart, path: &Path, size: (u32, u32)) -> Result<(), ChartError> {
    ensure_font()?;
    let root = BitMapBackend::new(path, size).into_drawing_area();
    draw(chart, &root, path)?;
    root.present().map_err(|e| draw_error(path, e))
}

/// Draws `chart` into an SVG file of `size` pixels.
pub fn render_svg(chart: &Chart, path: &Path, size: (u32, u32)) -> Result<(), ChartError> {
    ensure_font()?;
    let root = SVGBackend::new(path, size).into_drawing_area();
    draw(chart, &root, path)?;
    root.present().map_err(|e| draw_error(path, e))
}

fn draw_error(path: &Path, e: impl std::fmt::Display) -> ChartError {
    ChartError::Draw {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// Draws the chart on any plotters backend.
pub fn draw<DB: DrawingBackend>(
    chart: &Chart,
    root: &DrawingArea<DB, Shift>,
    path: &Path,
) -> Result<(), ChartError> {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| draw_error(path, e);
    root.fill(&WHITE).map_err(err)?;
    let body = root.titled(&chart.title, (FONT_FAMILY, 22)).map_err(err)?;
    let panels = body.split_evenly((chart.panels.len().max(1), 1));
    let (x_min, x_max) = chart
        .panels
        .iter()
        .flat_map(|p| &p.series)
        .flat_map(|s| &s.points)
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &(x, _)| {
            (lo.min(x), hi.max(x))
        });
    let (x_min, x_max) = if x_min.is_finite() {
        (x_min, x_max.max(x_min + 1.0))
    } else {
        (0.0, 1.0)
    };
    for (panel, area) in chart.panels.iter().zip(&panels) {
        let y_max = panel
            .series
            .iter()
            .flat_map(|s| &s.points)
            .map(|&(_, y)| y)
            .filter(|y| y.is_finite())
            .fold(0.0_f64, f64::max);
        let y_max = if y_max > 0.0 { y_max * 1.1 } else { 1.0 };
        let mut ctx = ChartBuilder::on(area)
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(70)
            .build_cartesian_2d(x_min..x_max, 0.0..y_max)
            .map_err(err)?;
        ctx.configure_mesh()
            .x_desc(chart.x_label.as_str())
            .y_desc(panel.y_label.as_str())
            .label_style((FONT_FAMILY, 13))
            .axis_desc_style((FONT_FAMILY, 14))
            .draw()
            .map_err(err)?;
        for series in &panel.series {
            let [r, g, b] = series.color;
            let color = RGBColor(r, g, b);
            ctx.draw_series(LineSeries::new(
                series.points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(err)?
            .label(series.name.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
        }
        ctx.configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font((FONT_FAMILY, 13))
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn svg_has_text_and_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.svg");
        let chart = Chart {
            title: "t".into(),
            x_label: "s".into(),
            panels: vec![Panel {
                y_label: "rps".into(),
                series: vec![Series {
                    name: "achieved".into(),
                    color: [0, 0, 255],
                    points: vec![(0.0, 1.0), (1.0, 3.0), (2.0, 2.0)],
                }],
            }],
        };
        render_svg(&chart, &path, (400, 300)).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(
            svg.contains("achieved") && svg.contains("<polyline"),
            "{svg}"
        );
    }
}
