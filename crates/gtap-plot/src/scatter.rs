//! Scatter plots, one panel per group of points (Figure 8: a layer's power indices against its
//! units' weight magnitudes).

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::colour::palette;
use crate::line::{draw_axes, padded};
use crate::{render, Figure, PlotError, FONT};

/// One subplot of [`scatter_figure`].
#[derive(Debug, Clone, PartialEq)]
pub struct ScatterPanel {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    /// `(x, y)` of each point; all finite, at least one.
    pub points: Vec<(f64, f64)>,
}

/// Draws the panels (up to four a row), each a cloud of small translucent dots, to
/// `<out_stem>.png` and `<out_stem>.svg` and returns those two paths.
pub fn scatter_figure(panels: &[ScatterPanel], out_stem: &Path) -> Result<Vec<PathBuf>, PlotError> {
    if panels.is_empty() {
        return Err(PlotError::NoPanels {
            file: out_stem.to_owned(),
        });
    }
    for panel in panels {
        if panel.points.is_empty() {
            return Err(PlotError::EmptyPanel {
                panel: panel.title.clone(),
            });
        }
        for (index, &(x, y)) in panel.points.iter().enumerate() {
            for (field, value) in [("x", x), ("y", y)] {
                if !value.is_finite() {
                    return Err(PlotError::SeriesNonFinite {
                        panel: panel.title.clone(),
                        series: "points".into(),
                        field,
                        index,
                        value,
                    });
                }
            }
        }
    }
    render(&ScatterFigure { panels }, out_stem)
}

struct ScatterFigure<'a> {
    panels: &'a [ScatterPanel],
}

const PANEL_W: u32 = 480;
const PANEL_H: u32 = 420;
const MAX_COLUMNS: usize = 4;

impl ScatterFigure<'_> {
    fn grid(&self) -> (usize, usize) {
        let cols = self.panels.len().min(MAX_COLUMNS);
        (self.panels.len().div_ceil(cols), cols)
    }
}

impl Figure for ScatterFigure<'_> {
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
            draw_panel(panel, &area.margin(4, 4, 8, 8))?;
        }
        Ok(())
    }
}

fn draw_panel<DB: DrawingBackend>(
    panel: &ScatterPanel,
    area: &DrawingArea<DB, Shift>,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let xs = || panel.points.iter().map(|p| p.0);
    let ys = || panel.points.iter().map(|p| p.1);
    let (x0, x1) = padded(
        xs().fold(f64::INFINITY, f64::min),
        xs().fold(f64::NEG_INFINITY, f64::max),
        0.04,
    );
    let (y0, y1) = padded(
        ys().fold(f64::INFINITY, f64::min),
        ys().fold(f64::NEG_INFINITY, f64::max),
        0.04,
    );
    let area = area.titled(&panel.title, (FONT, 18).into_font())?;
    let mut chart = ChartBuilder::on(&area)
        .margin(10)
        .margin_right(16)
        .x_label_area_size(46)
        .y_label_area_size(70)
        .build_cartesian_2d(x0..x1, y0..y1)?;
    draw_axes(
        &mut chart,
        (6, 7),
        (&panel.x_label, &panel.y_label),
        (13, 15),
    )?;
    let colour = palette(0);
    chart.draw_series(
        panel
            .points
            .iter()
            .map(|&p| Circle::new(p, 2, colour.mix(0.55).filled())),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_png_and_svg_and_refuses_empty_or_non_finite_panels() {
        let dir = tempfile::tempdir().unwrap();
        let panel = |points: Vec<(f64, f64)>| ScatterPanel {
            title: "conv1 (ρ = 0.50)".into(),
            x_label: "mean |w|".into(),
            y_label: "power index".into(),
            points,
        };
        let files = scatter_figure(
            &[panel(vec![(0.1, 0.2), (0.3, 0.1)]), panel(vec![(1.0, 1.0)])],
            &dir.path().join("fig"),
        )
        .unwrap();
        assert!(files.iter().all(|f| f.metadata().unwrap().len() > 1000));
        let err = scatter_figure(&[panel(vec![])], &dir.path().join("e")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "line panel `conv1 (ρ = 0.50)` has no series"
        );
        let err =
            scatter_figure(&[panel(vec![(f64::NAN, 0.0)])], &dir.path().join("n")).unwrap_err();
        assert!(err.to_string().contains("x[0] is not finite"), "{err}");
    }
}
