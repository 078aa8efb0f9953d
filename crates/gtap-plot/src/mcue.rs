//! Figure 2: MCUE variance heatmaps over (p, q), the diagonal maximum marked.

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;
use polars::prelude::DataFrame;

use crate::colour::viridis;
use crate::table::{f64_column, finite_column, require_rows, str_column};
use crate::{fmt_sig, fmt_tick, render, Figure, PlotError, FONT};

/// Two grid coordinates closer than this are the same point; p and q closer than this lie on
/// the diagonal.
pub const DIAGONAL_TOLERANCE: f64 = 1e-9;

/// One subplot of [`mcue_figure`]: the rows whose `panel` column equals `key`, drawn under
/// `title`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Panel {
    /// The value of column `panel` that selects the rows (e.g. "lenet5").
    pub key: String,
    /// The subplot's heading (e.g. "LeNet5").
    pub title: String,
}

/// The maximum of MCUE(t, t) over the diagonal p = q of panel `panel_key`: `(t, variance)`.
///
/// Rows sharing a grid point (e.g. one per seed) are averaged first; NaN or null variances are
/// skipped; of equal maxima the smallest t wins. The pipeline's bias is d = 1 − t.
pub fn diagonal_argmax(table: &DataFrame, panel_key: &str) -> Result<(f64, f64), PlotError> {
    Grid::from_table(table, panel_key)?
        .diagonal_max()
        .ok_or_else(|| PlotError::NoDiagonal {
            panel: panel_key.to_string(),
        })
}

/// Draws one MCUE heatmap per panel, side by side, to `<out_stem>.png` and `<out_stem>.svg`
/// and returns those two paths.
///
/// `table` needs columns `panel` (string), `p`, `q` and `variance` (numbers). p is the x axis,
/// q the y axis; each cell is coloured by viridis on the panel's own colour bar (min to max of
/// its finite variances; grey where a grid point has none). The maximum on the diagonal
/// ([`diagonal_argmax`]) is a red, white-edged circle, with its value in the subtitle.
pub fn mcue_figure(
    table: &DataFrame,
    panels: &[Panel],
    out_stem: &Path,
) -> Result<Vec<PathBuf>, PlotError> {
    if panels.is_empty() {
        return Err(PlotError::NoPanels {
            file: out_stem.to_owned(),
        });
    }
    let panels = panels
        .iter()
        .map(|panel| {
            let grid = Grid::from_table(table, &panel.key)?;
            let max = grid.diagonal_max();
            Ok(HeatPanel {
                title: panel.title.clone(),
                grid,
                max,
            })
        })
        .collect::<Result<Vec<_>, PlotError>>()?;
    render(&McueFigure { panels }, out_stem)
}

/// The values of one panel on its (rectilinear) grid.
struct Grid {
    /// Distinct p values, ascending.
    ps: Vec<f64>,
    /// Distinct q values, ascending.
    qs: Vec<f64>,
    /// Mean variance at (ps[i], qs[j]) in `values[j * ps.len() + i]`; `None` where no row has a
    /// finite variance.
    values: Vec<Option<f64>>,
}

impl Grid {
    fn from_table(table: &DataFrame, key: &str) -> Result<Self, PlotError> {
        require_rows(table)?;
        let keys = str_column(table, "panel")?;
        let p = finite_column(table, "p")?;
        let q = finite_column(table, "q")?;
        let variance = f64_column(table, "variance")?;

        let rows: Vec<usize> = (0..keys.len())
            .filter(|&r| keys[r].as_deref() == Some(key))
            .collect();
        if rows.is_empty() {
            let mut present: Vec<&str> = Vec::new();
            for k in keys.iter().flatten() {
                if !present.contains(&k.as_str()) {
                    present.push(k);
                }
            }
            return Err(PlotError::PanelNotFound {
                panel: key.to_string(),
                present: present.join(", "),
            });
        }

        let ps = distinct(rows.iter().map(|&r| p[r]));
        let qs = distinct(rows.iter().map(|&r| q[r]));
        let mut sums = vec![(0.0, 0usize); ps.len() * qs.len()];
        for &r in &rows {
            let Some(v) = variance[r].filter(|v| v.is_finite()) else {
                continue;
            };
            let i = position(&ps, p[r]).expect("p is on its own axis");
            let j = position(&qs, q[r]).expect("q is on its own axis");
            let cell = &mut sums[j * ps.len() + i];
            cell.0 += v;
            cell.1 += 1;
        }
        let values = sums
            .into_iter()
            .map(|(s, n)| (n > 0).then(|| s / n as f64))
            .collect();
        Ok(Self { ps, qs, values })
    }

    fn get(&self, i: usize, j: usize) -> Option<f64> {
        self.values[j * self.ps.len() + i]
    }

    /// `(t, variance)` of the largest finite value with p = q; the smallest t among equals.
    fn diagonal_max(&self) -> Option<(f64, f64)> {
        let mut best: Option<(f64, f64)> = None;
        for (i, &t) in self.ps.iter().enumerate() {
            let Some(j) = position(&self.qs, t) else {
                continue;
            };
            let Some(v) = self.get(i, j) else { continue };
            if best.is_none_or(|(_, b)| v > b) {
                best = Some((t, v));
            }
        }
        best
    }

    /// Smallest and largest finite value, widened when they coincide; (0, 1) when there is none.
    fn colour_range(&self) -> (f64, f64) {
        let finite = self.values.iter().flatten();
        let lo = finite.clone().copied().fold(f64::INFINITY, f64::min);
        let hi = finite.copied().fold(f64::NEG_INFINITY, f64::max);
        if !lo.is_finite() {
            return (0.0, 1.0);
        }
        if hi - lo < 1e-12 {
            let pad = if lo.abs() > 0.0 { lo.abs() * 0.05 } else { 0.5 };
            return (lo - pad, hi + pad);
        }
        (lo, hi)
    }
}

/// Sorted distinct values, merging those within [`DIAGONAL_TOLERANCE`] of the first of a run.
fn distinct(values: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    let mut out: Vec<f64> = Vec::with_capacity(v.len());
    for x in v {
        if out.last().is_none_or(|&last| x - last > DIAGONAL_TOLERANCE) {
            out.push(x);
        }
    }
    out
}

/// Index of `x` in the sorted distinct `axis`, within [`DIAGONAL_TOLERANCE`].
fn position(axis: &[f64], x: f64) -> Option<usize> {
    let k = axis.partition_point(|&a| a < x - DIAGONAL_TOLERANCE);
    (k < axis.len() && (axis[k] - x).abs() <= DIAGONAL_TOLERANCE).then_some(k)
}

/// Cell boundaries: midpoints between neighbours, the outer cells as wide as their neighbour.
fn edges(axis: &[f64]) -> Vec<f64> {
    if axis.len() == 1 {
        return vec![axis[0] - 0.5, axis[0] + 0.5];
    }
    let n = axis.len();
    let mut e = Vec::with_capacity(n + 1);
    e.push(axis[0] - (axis[1] - axis[0]) / 2.0);
    e.extend(axis.windows(2).map(|w| (w[0] + w[1]) / 2.0));
    e.push(axis[n - 1] + (axis[n - 1] - axis[n - 2]) / 2.0);
    e
}

struct HeatPanel {
    title: String,
    grid: Grid,
    max: Option<(f64, f64)>,
}

struct McueFigure {
    panels: Vec<HeatPanel>,
}

const PANEL_W: u32 = 580;
const PANEL_H: u32 = 540;
/// Width of the colour bar column: gap, bar, tick labels and the rotated "variance".
const BAR_W: i32 = 96;
const BAR_GAP: u32 = 8;
const BAR_BODY: u32 = 22;
const PLOT_MARGIN: u32 = 12;
const X_LABEL_AREA: u32 = 52;
const MISSING: RGBColor = RGBColor(205, 205, 205);
const MARKER: RGBColor = RGBColor(228, 26, 28);

impl Figure for McueFigure {
    fn size(&self) -> (u32, u32) {
        (PANEL_W * self.panels.len() as u32, PANEL_H)
    }

    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
        root.fill(&WHITE)?;
        for (panel, area) in self
            .panels
            .iter()
            .zip(root.split_evenly((1, self.panels.len())))
        {
            draw_panel(panel, &area.margin(4, 4, 8, 8))?;
        }
        Ok(())
    }
}

fn draw_panel<DB: DrawingBackend>(
    panel: &HeatPanel,
    area: &DrawingArea<DB, Shift>,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let grid = &panel.grid;
    let subtitle = match panel.max {
        Some((t, v)) => format!(
            "max on diagonal at t = {} (var {})",
            fmt_sig(t, 6),
            fmt_sig(v, 3)
        ),
        None => "no finite value on the diagonal p = q".to_string(),
    };
    let area = area.titled(&panel.title, (FONT, 24).into_font())?;
    let area = area.titled(
        &subtitle,
        (FONT, 17).into_font().color(&RGBColor(50, 50, 50)),
    )?;
    let (w, _) = area.dim_in_pixel();
    let (main, bar) = area.split_horizontally(w as i32 - BAR_W);

    let (xe, ye) = (edges(&grid.ps), edges(&grid.qs));
    let (x0, x1) = (xe[0], xe[xe.len() - 1]);
    let (y0, y1) = (ye[0], ye[ye.len() - 1]);
    let (lo, hi) = grid.colour_range();

    let mut chart = ChartBuilder::on(&main)
        .margin(PLOT_MARGIN)
        .margin_right(2)
        .x_label_area_size(X_LABEL_AREA)
        .y_label_area_size(66)
        .build_cartesian_2d(x0..x1, y0..y1)?;
    let cells = (0..grid.qs.len()).flat_map(|j| (0..grid.ps.len()).map(move |i| (i, j)));
    chart.draw_series(cells.map(|(i, j)| {
        let colour = match grid.get(i, j) {
            Some(v) => viridis((v - lo) / (hi - lo)),
            None => MISSING,
        };
        Rectangle::new([(xe[i], ye[j]), (xe[i + 1], ye[j + 1])], colour.filled())
    }))?;
    let (x_step, y_step) = ((x1 - x0) / 5.0, (y1 - y0) / 5.0);
    let x_fmt = |v: &f64| fmt_tick(*v, x_step);
    let y_fmt = |v: &f64| fmt_tick(*v, y_step);
    chart
        .configure_mesh()
        .disable_mesh()
        .x_labels(6)
        .y_labels(6)
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&y_fmt)
        .x_desc("p (dropout probability)")
        .y_desc("q (fraction removed)")
        .label_style((FONT, 15))
        .axis_desc_style((FONT, 17))
        .draw()?;

    // The diagonal p = q, dashed, and its maximum.
    let (d0, d1) = (x0.max(y0), x1.min(y1));
    if d0 < d1 {
        chart.draw_series(DashedLineSeries::new(
            [(d0, d0), (d1, d1)],
            6,
            5,
            WHITE.mix(0.75).stroke_width(1),
        ))?;
    }
    if let Some((t, _)) = panel.max {
        chart.draw_series([
            Circle::new((t, t), 8, MARKER.filled()),
            Circle::new((t, t), 8, WHITE.stroke_width(2)),
        ])?;
    }

    // Colour bar, its plot area level with the heatmap's.
    let mut bar_chart = ChartBuilder::on(&bar)
        .margin_top(PLOT_MARGIN)
        .margin_bottom(PLOT_MARGIN + X_LABEL_AREA)
        .margin_left(BAR_GAP)
        .right_y_label_area_size(BAR_W as u32 - BAR_GAP - BAR_BODY)
        .build_cartesian_2d(0.0..1.0, lo..hi)?;
    const STEPS: usize = 128;
    chart_stripes(&mut bar_chart, lo, hi, STEPS)?;
    let bar_step = (hi - lo) / 5.0;
    let bar_fmt = |v: &f64| fmt_tick(*v, bar_step);
    bar_chart
        .configure_mesh()
        .disable_mesh()
        .disable_x_axis()
        .set_tick_mark_size(LabelAreaPosition::Right, 5)
        .y_labels(6)
        .y_label_formatter(&bar_fmt)
        .y_desc("variance")
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 16))
        .draw()?;
    bar_chart.draw_series([Rectangle::new(
        [(0.0, lo), (1.0, hi)],
        BLACK.mix(0.6).stroke_width(1),
    )])?;
    Ok(())
}

fn chart_stripes<DB: DrawingBackend>(
    chart: &mut ChartContext<
        '_,
        DB,
        Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
    >,
    lo: f64,
    hi: f64,
    steps: usize,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let h = (hi - lo) / steps as f64;
    chart.draw_series((0..steps).map(|k| {
        let y = lo + h * k as f64;
        let colour = viridis((k as f64 + 0.5) / steps as f64);
        Rectangle::new([(0.0, y), (1.0, y + h)], colour.filled())
    }))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_merges_within_tolerance() {
        assert_eq!(
            distinct([0.5, 0.0, 0.5 + 1e-12, 1.0, 0.0].into_iter()),
            vec![0.0, 0.5, 1.0]
        );
        assert_eq!(position(&[0.0, 0.5, 1.0], 0.5 - 1e-10), Some(1));
        assert_eq!(position(&[0.0, 0.5, 1.0], 0.6), None);
        assert_eq!(position(&[0.0, 0.5, 1.0], 2.0), None);
    }

    #[test]
    fn edges_are_midpoints() {
        assert_eq!(edges(&[0.0, 0.5, 1.0]), vec![-0.25, 0.25, 0.75, 1.25]);
        assert_eq!(edges(&[0.5]), vec![0.0, 1.0]);
    }
}
