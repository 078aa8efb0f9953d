//! Line charts with a ±σ band (compression curves), and the per-group summary that feeds them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use polars::prelude::DataFrame;

use crate::colour::palette;
use crate::table::{finite_column, key_column, require_rows};
use crate::{fmt_tick, render, Figure, PlotError, FONT};

/// One curve: the mean at each x, drawn as a line, and ±`std` around it, drawn as a band.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend entry; equal labels get equal colours across the panels of a figure.
    pub label: String,
    pub x: Vec<f64>,
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
}

/// One subplot of [`line_figure`].
#[derive(Debug, Clone, PartialEq)]
pub struct LinePanel {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
    /// A dashed vertical line at x with its legend label (e.g. the critical size).
    pub vline: Option<(f64, String)>,
}

/// Draws the panels (up to three a row) to `<out_stem>.png` and `<out_stem>.svg` and returns
/// those two paths.
///
/// Each series is a mean line with dots at its points over a translucent ±σ band, coloured
/// from a fixed colour-blind-safe palette in order of first appearance of its label. Each
/// panel has its own legend, placed in the corner of the plot that the data leave emptiest.
pub fn line_figure(panels: &[LinePanel], out_stem: &Path) -> Result<Vec<PathBuf>, PlotError> {
    if panels.is_empty() {
        return Err(PlotError::NoPanels {
            file: out_stem.to_owned(),
        });
    }
    let mut colours: HashMap<&str, RGBColor> = HashMap::new();
    for panel in panels {
        validate(panel)?;
        for s in &panel.series {
            let next = colours.len();
            colours
                .entry(s.label.as_str())
                .or_insert_with(|| palette(next));
        }
    }
    render(&LineFigure { panels, colours }, out_stem)
}

/// Per group of `group` values, the mean and population standard deviation of column `y` at
/// each distinct value of column `x`, over the remaining rows (e.g. over seeds).
///
/// Groups come in order of first appearance in the table; within a group, points are sorted by
/// x, and x values equal within a relative 1e-9 are one point. Group columns may be strings,
/// numbers or booleans; x and y must be numbers without nulls or NaN. The series label is the
/// group values joined by " / " (the name of `y` when `group` is empty).
pub fn summarise(
    table: &DataFrame,
    group: &[&str],
    x: &str,
    y: &str,
) -> Result<Vec<(Vec<String>, Series)>, PlotError> {
    let mut seen: Vec<&str> = Vec::new();
    for &name in group.iter().chain([&x, &y]) {
        if seen.contains(&name) {
            return Err(PlotError::DuplicateColumn {
                column: name.to_string(),
            });
        }
        seen.push(name);
    }
    require_rows(table)?;
    let keys = group
        .iter()
        .map(|g| key_column(table, g))
        .collect::<Result<Vec<_>, _>>()?;
    let xs = finite_column(table, x)?;
    let ys = finite_column(table, y)?;

    // (group key, its (x, y) rows) in order of first appearance.
    type Group = (Vec<String>, Vec<(f64, f64)>);
    let mut order: Vec<Group> = Vec::new();
    let mut index: HashMap<Vec<String>, usize> = HashMap::new();
    for row in 0..table.height() {
        let key: Vec<String> = keys.iter().map(|k| k[row].clone()).collect();
        let i = *index.entry(key.clone()).or_insert_with(|| {
            order.push((key, Vec::new()));
            order.len() - 1
        });
        order[i].1.push((xs[row], ys[row]));
    }

    Ok(order
        .into_iter()
        .map(|(key, mut points)| {
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            let label = if key.is_empty() {
                y.to_string()
            } else {
                key.join(" / ")
            };
            let mut series = Series {
                label,
                x: Vec::new(),
                mean: Vec::new(),
                std: Vec::new(),
            };
            let mut start = 0;
            while start < points.len() {
                let x0 = points[start].0;
                let tol = 1e-9 * x0.abs().max(1.0);
                let end = start
                    + points[start..]
                        .iter()
                        .take_while(|p| p.0 - x0 <= tol)
                        .count();
                let (mean, std) = mean_std(points[start..end].iter().map(|p| p.1));
                series.x.push(x0);
                series.mean.push(mean);
                series.std.push(std);
                start = end;
            }
            (key, series)
        })
        .collect())
}

/// Mean and population standard deviation (two passes).
fn mean_std(values: impl Iterator<Item = f64> + Clone) -> (f64, f64) {
    let n = values.clone().count() as f64;
    let mean = values.clone().sum::<f64>() / n;
    let var = values.map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
    (mean, var.sqrt())
}

fn validate(panel: &LinePanel) -> Result<(), PlotError> {
    if panel.series.is_empty() {
        return Err(PlotError::EmptyPanel {
            panel: panel.title.clone(),
        });
    }
    for s in &panel.series {
        let (x, mean, std) = (s.x.len(), s.mean.len(), s.std.len());
        if x == 0 || x != mean || x != std {
            return Err(PlotError::SeriesShape {
                panel: panel.title.clone(),
                series: s.label.clone(),
                x,
                mean,
                std,
            });
        }
        for (field, values) in [("x", &s.x), ("mean", &s.mean), ("std", &s.std)] {
            if let Some((index, &value)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
                return Err(PlotError::SeriesNonFinite {
                    panel: panel.title.clone(),
                    series: s.label.clone(),
                    field,
                    index,
                    value,
                });
            }
        }
    }
    if let Some((x, label)) = &panel.vline {
        if !x.is_finite() {
            return Err(PlotError::SeriesNonFinite {
                panel: panel.title.clone(),
                series: label.clone(),
                field: "vline",
                index: 0,
                value: *x,
            });
        }
    }
    Ok(())
}

struct LineFigure<'a> {
    panels: &'a [LinePanel],
    colours: HashMap<&'a str, RGBColor>,
}

const PANEL_W: u32 = 640;
const PANEL_H: u32 = 500;
const MAX_COLUMNS: usize = 3;

impl LineFigure<'_> {
    fn grid(&self) -> (usize, usize) {
        let cols = self.panels.len().min(MAX_COLUMNS);
        (self.panels.len().div_ceil(cols), cols)
    }
}

impl Figure for LineFigure<'_> {
    fn size(&self) -> (u32, u32) {
        let (rows, cols) = self.grid();
        (PANEL_W * cols as u32, PANEL_H * rows as u32)
    }

    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
        root.fill(&WHITE)?;
        for (panel, area) in self.panels.iter().zip(root.split_evenly(self.grid())) {
            draw_panel(panel, &self.colours, &area.margin(4, 4, 8, 8))?;
        }
        Ok(())
    }
}

/// `lo..hi` widened by `frac` of the span on each side (by 0.5, or 5 % of |lo|, when empty).
pub(crate) fn padded(lo: f64, hi: f64, frac: f64) -> (f64, f64) {
    if hi - lo < 1e-12 {
        let pad = if lo.abs() > 0.0 { lo.abs() * 0.05 } else { 0.5 };
        return (lo - pad, hi + pad);
    }
    let pad = (hi - lo) * frac;
    (lo - pad, hi + pad)
}

fn draw_panel<DB: DrawingBackend>(
    panel: &LinePanel,
    colours: &HashMap<&str, RGBColor>,
    area: &DrawingArea<DB, Shift>,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let all = || panel.series.iter();
    let mut x_lo = all()
        .flat_map(|s| s.x.iter().copied())
        .fold(f64::INFINITY, f64::min);
    let mut x_hi = all()
        .flat_map(|s| s.x.iter().copied())
        .fold(f64::NEG_INFINITY, f64::max);
    if let Some((x, _)) = &panel.vline {
        x_lo = x_lo.min(*x);
        x_hi = x_hi.max(*x);
    }
    let lows = all().flat_map(|s| s.mean.iter().zip(&s.std).map(|(m, d)| m - d.abs()));
    let highs = all().flat_map(|s| s.mean.iter().zip(&s.std).map(|(m, d)| m + d.abs()));
    let (x0, x1) = padded(x_lo, x_hi, 0.02);
    let (y0, y1) = padded(
        lows.fold(f64::INFINITY, f64::min),
        highs.fold(f64::NEG_INFINITY, f64::max),
        0.05,
    );

    let area = area.titled(&panel.title, (FONT, 22).into_font())?;
    let mut chart = ChartBuilder::on(&area)
        .margin(12)
        .margin_right(20)
        .x_label_area_size(52)
        .y_label_area_size(72)
        .build_cartesian_2d(x0..x1, y0..y1)?;
    draw_axes(
        &mut chart,
        (8, 8),
        (&panel.x_label, &panel.y_label),
        (15, 17),
    )?;

    let colour = |s: &Series| colours.get(s.label.as_str()).copied().unwrap_or(BLACK);
    for s in all() {
        let upper =
            s.x.iter()
                .zip(s.mean.iter().zip(&s.std))
                .map(|(&x, (m, d))| (x, m + d.abs()));
        let lower =
            s.x.iter()
                .zip(s.mean.iter().zip(&s.std))
                .map(|(&x, (m, d))| (x, m - d.abs()));
        let band: Vec<(f64, f64)> = upper.chain(lower.rev()).collect();
        chart.draw_series([Polygon::new(band, colour(s).mix(0.18).filled())])?;
    }
    for s in all() {
        let c = colour(s);
        let points = || s.x.iter().copied().zip(s.mean.iter().copied());
        chart
            .draw_series(LineSeries::new(points(), c.stroke_width(2)))?
            .label(s.label.as_str())
            .legend(move |(x, y)| {
                EmptyElement::at((x, y))
                    + PathElement::new(vec![(0, 0), (24, 0)], c.stroke_width(2))
                    + Circle::new((12, 0), 3, c.filled())
            });
        chart.draw_series(points().map(|p| Circle::new(p, 3, c.filled())))?;
    }
    if let Some((x, label)) = &panel.vline {
        let style = BLACK.mix(0.75).stroke_width(2);
        chart
            .draw_series(DashedLineSeries::new([(*x, y0), (*x, y1)], 7, 5, style))?
            .label(label.as_str())
            .legend(move |(x, y)| {
                EmptyElement::at((x, y))
                    + PathElement::new(vec![(0, 0), (9, 0)], style)
                    + PathElement::new(vec![(15, 0), (24, 0)], style)
            });
    }

    let entries = panel.series.len() + usize::from(panel.vline.is_some());
    let longest = all()
        .map(|s| s.label.chars().count())
        .chain(panel.vline.iter().map(|(_, l)| l.chars().count()))
        .max()
        .unwrap_or(0);
    let (plot_w, plot_h) = chart.plotting_area().dim_in_pixel();
    let box_w = ((longest as f64 * 8.5 + 50.0) / plot_w as f64).min(1.0);
    let box_h = ((entries as f64 * 21.0 + 20.0) / plot_h as f64).min(1.0);
    chart
        .configure_series_labels()
        .position(emptiest_corner(panel, (x0, x1), (y0, y1), (box_w, box_h)))
        .margin(10)
        .label_font((FONT, 15))
        .background_style(WHITE.mix(0.88))
        .border_style(BLACK.mix(0.35))
        .draw()?;
    Ok(())
}

/// The house axes of a panel: `labels` ticks per axis (formatted to tell neighbours apart),
/// axis descriptions, tick and description font sizes `fonts`, faint major grid lines only.
pub(crate) fn draw_axes<DB: DrawingBackend>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    labels: (usize, usize),
    descriptions: (&str, &str),
    fonts: (u32, u32),
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let (xr, yr) = (chart.x_range(), chart.y_range());
    let x_step = (xr.end - xr.start) / (labels.0 - 1) as f64;
    let y_step = (yr.end - yr.start) / (labels.1 - 1) as f64;
    let x_fmt = |v: &f64| fmt_tick(*v, x_step);
    let y_fmt = |v: &f64| fmt_tick(*v, y_step);
    chart
        .configure_mesh()
        .x_labels(labels.0)
        .y_labels(labels.1)
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&y_fmt)
        .x_desc(descriptions.0)
        .y_desc(descriptions.1)
        .label_style((FONT, fonts.0))
        .axis_desc_style((FONT, fonts.1))
        .bold_line_style(BLACK.mix(0.1))
        .light_line_style(TRANSPARENT)
        .draw()
}

/// The corner where a legend box of `size` (fractions of the plot) covers the fewest samples of
/// the curves and band edges; ties keep the first of lower right, upper right, upper left,
/// lower left.
fn emptiest_corner(
    panel: &LinePanel,
    xr: (f64, f64),
    yr: (f64, f64),
    size: (f64, f64),
) -> SeriesLabelPosition {
    let mut samples: Vec<(f64, f64)> = Vec::new();
    for s in &panel.series {
        for offset in [-1.0, 0.0, 1.0] {
            let pts: Vec<(f64, f64)> = (0..s.x.len())
                .map(|i| {
                    (
                        (s.x[i] - xr.0) / (xr.1 - xr.0),
                        (s.mean[i] + offset * s.std[i].abs() - yr.0) / (yr.1 - yr.0),
                    )
                })
                .collect();
            samples.extend(pts.iter().copied());
            for w in pts.windows(2) {
                samples.extend((1..10).map(|k| {
                    let f = k as f64 / 10.0;
                    (
                        w[0].0 + (w[1].0 - w[0].0) * f,
                        w[0].1 + (w[1].1 - w[0].1) * f,
                    )
                }));
            }
        }
    }
    if let Some((x, _)) = &panel.vline {
        let fx = (x - xr.0) / (xr.1 - xr.0);
        samples.extend((0..=20).map(|k| (fx, k as f64 / 20.0)));
    }
    let (w, h) = size;
    let corners = [
        (SeriesLabelPosition::LowerRight, 1.0 - w, 0.0),
        (SeriesLabelPosition::UpperRight, 1.0 - w, 1.0 - h),
        (SeriesLabelPosition::UpperLeft, 0.0, 1.0 - h),
        (SeriesLabelPosition::LowerLeft, 0.0, 0.0),
    ];
    let count = |&(_, cx, cy): &(SeriesLabelPosition, f64, f64)| {
        samples
            .iter()
            .filter(|&&(x, y)| x >= cx && x <= cx + w && y >= cy && y <= cy + h)
            .count()
    };
    let best = corners
        .iter()
        .min_by_key(|c| count(c))
        .expect("four corners");
    best.0.clone()
}
