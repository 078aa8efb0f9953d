//! A layer × unit grid of values per panel (a transformer's heads: one row per block, one
//! column per head), each cell coloured and labelled with its value.

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::colour::viridis;
use crate::{fmt_sig, render, Figure, PlotError, FONT};

/// One panel of [`unit_grid_figure`]: `values[r][c]` is row `rows[r]`'s unit `c` (`None`:
/// no value). A `signed` panel is coloured blue (negative) through white (0) to red
/// (positive) on a range symmetric about 0; otherwise viridis from its minimum to maximum.
#[derive(Debug, Clone, PartialEq)]
pub struct GridPanel {
    pub title: String,
    pub rows: Vec<String>,
    pub values: Vec<Vec<Option<f64>>>,
    pub signed: bool,
}

/// Draws the panels side by side to `<out_stem>.png` and `.svg` and returns those paths.
pub fn unit_grid_figure(panels: &[GridPanel], out_stem: &Path) -> Result<Vec<PathBuf>, PlotError> {
    if panels.is_empty() {
        return Err(PlotError::NoPanels {
            file: out_stem.to_owned(),
        });
    }
    render(
        &GridFigure {
            panels: panels.to_vec(),
        },
        out_stem,
    )
}

struct GridFigure {
    panels: Vec<GridPanel>,
}

const CELL: u32 = 84;

impl GridPanel {
    fn columns(&self) -> usize {
        self.values.iter().map(Vec::len).max().unwrap_or(0).max(1)
    }

    fn colour(&self, v: f64) -> RGBColor {
        let finite = self.values.iter().flatten().flatten().copied();
        if self.signed {
            let scale = finite.fold(0.0f64, |m, x| m.max(x.abs())).max(1e-12);
            let t = (v / scale).clamp(-1.0, 1.0);
            let mix = |a: f64, b: f64, t: f64| (a + (b - a) * t).round() as u8;
            if t < 0.0 {
                let t = -t;
                RGBColor(
                    mix(255.0, 33.0, t),
                    mix(255.0, 102.0, t),
                    mix(255.0, 172.0, t),
                )
            } else {
                RGBColor(
                    mix(255.0, 178.0, t),
                    mix(255.0, 24.0, t),
                    mix(255.0, 43.0, t),
                )
            }
        } else {
            let (lo, hi) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), x| {
                (l.min(x), h.max(x))
            });
            viridis(if hi > lo { (v - lo) / (hi - lo) } else { 0.5 })
        }
    }
}

impl Figure for GridFigure {
    fn size(&self) -> (u32, u32) {
        let width: u32 = self
            .panels
            .iter()
            .map(|p| 140 + CELL * p.columns() as u32 + 30)
            .max()
            .unwrap_or(300);
        let rows = self.panels.iter().map(|p| p.rows.len()).max().unwrap_or(1) as u32;
        (width * self.panels.len() as u32, 130 + CELL * rows)
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
    panel: &GridPanel,
    area: &DrawingArea<DB, Shift>,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let area = area.titled(&panel.title, (FONT, 20).into_font())?;
    let (cols, rows) = (panel.columns(), panel.rows.len().max(1));
    let mut chart = ChartBuilder::on(&area)
        .margin(10)
        .x_label_area_size(44)
        .y_label_area_size(110)
        .build_cartesian_2d(0.0..cols as f64, 0.0..rows as f64)?;
    let row_names = panel.rows.clone();
    // Row 0 at the top.
    let y_label = move |y: &f64| {
        let r = rows as f64 - y - 0.5;
        let i = r.round();
        if (r - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < row_names.len() {
            row_names[i as usize].clone()
        } else {
            String::new()
        }
    };
    let x_label = |x: &f64| {
        let c = x - 0.5;
        if (c - c.round()).abs() < 1e-6 && c >= 0.0 {
            format!("{}", c.round() as usize)
        } else {
            String::new()
        }
    };
    chart
        .configure_mesh()
        .disable_mesh()
        .x_labels(2 * cols + 1)
        .y_labels(2 * rows + 1)
        .x_label_formatter(&x_label)
        .y_label_formatter(&y_label)
        .x_desc("unit (head)")
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 15))
        .draw()?;
    for (r, row) in panel.values.iter().enumerate() {
        let y = (rows - 1 - r) as f64;
        for (c, v) in row.iter().enumerate() {
            let x = c as f64;
            let colour = v.map_or(RGBColor(205, 205, 205), |v| panel.colour(v));
            chart.draw_series([Rectangle::new(
                [(x + 0.03, y + 0.03), (x + 0.97, y + 0.97)],
                colour.filled(),
            )])?;
            if let Some(v) = v {
                let RGBColor(red, green, blue) = colour;
                let luma = 0.299 * red as f64 + 0.587 * green as f64 + 0.114 * blue as f64;
                let ink = if luma < 128.0 { WHITE } else { BLACK };
                let style =
                    (FONT, 15)
                        .into_font()
                        .color(&ink)
                        .pos(plotters::style::text_anchor::Pos::new(
                            plotters::style::text_anchor::HPos::Center,
                            plotters::style::text_anchor::VPos::Center,
                        ));
                chart.draw_series([Text::new(fmt_sig(*v, 2), (x + 0.5, y + 0.5), style)])?;
            }
        }
    }
    Ok(())
}
