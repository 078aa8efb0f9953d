//! Figures drawn from result tables, as PNG and SVG.
//!
//! Two kinds of figure cover the paper's plots:
//! - [`mcue_figure`]: Figure 2, one MCUE heatmap over (p, q) per [`Panel`], side by side, each
//!   with a viridis colour bar and the maximum on the diagonal p = q marked;
//!   [`diagonal_argmax`] gives that maximum to the pipeline (bias d = 1 − t).
//! - [`line_figure`]: compression curves, one [`LinePanel`] per subplot, each [`Series`] a mean
//!   line with a translucent ±σ band; [`summarise`] turns a long table (one row per seed) into
//!   those series.
//! - [`scatter_figure`]: one point cloud per [`ScatterPanel`] (Figure 8: power index against
//!   weight magnitude, per layer).
//!
//! **Plotting reads tables, never tensors**: every input is a polars [`DataFrame`] (read from
//! parquet by the caller) or plain vectors. **Output does not depend on the machine's fonts**:
//! DejaVu Sans is compiled into the binary and registered with plotters' `ab_glyph` support
//! (text measurement, SVG layout); PNG text is rasterised from the same font by a thin backend
//! wrapper (`glyphs.rs`) that fixes plotters' glyph placement, so a PNG comes out the same
//! wherever it is rendered.
//!
//! ```no_run
//! # use std::path::Path;
//! # fn run(table: &polars::prelude::DataFrame) -> Result<(), gtap_plot::PlotError> {
//! use gtap_plot::{mcue_figure, Panel};
//! let panels = [Panel { key: "lenet5".into(), title: "LeNet5".into() }];
//! let files = mcue_figure(table, &panels, Path::new("figures/figure-2"))?;
//! assert_eq!(files.len(), 2); // figure-2.png, figure-2.svg
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

mod colour;
mod glyphs;
mod grid;
mod line;
mod mcue;
mod scatter;
mod table;

pub use colour::{palette, viridis};
pub use grid::{unit_grid_figure, GridPanel};
pub use line::{line_figure, summarise, LinePanel, Series};
pub use mcue::{diagonal_argmax, mcue_figure, Panel, DIAGONAL_TOLERANCE};
pub use polars::prelude::DataFrame;
pub use scatter::{scatter_figure, ScatterPanel};

/// Everything that can go wrong while reading a table or drawing a figure.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// The table has no rows at all.
    #[error("table is empty (columns: {columns})")]
    EmptyTable { columns: String },
    /// A column the figure needs is not in the table.
    #[error("table has no column `{column}` (columns: {columns})")]
    MissingColumn { column: String, columns: String },
    /// A column has a type the figure cannot use.
    #[error("column `{column}` has type {found}, expected {expected}")]
    WrongDtype {
        column: String,
        expected: &'static str,
        found: String,
    },
    /// A column that must be filled has a null.
    #[error("column `{column}` is null in row {row}")]
    NullValue { column: String, row: usize },
    /// A coordinate column holds NaN or an infinity.
    #[error("column `{column}` is not finite in row {row} ({value})")]
    NonFinite {
        column: String,
        row: usize,
        value: f64,
    },
    /// No row of the `panel` column has this key.
    #[error("panel `{panel}` is not in column `panel` (present: {present})")]
    PanelNotFound { panel: String, present: String },
    /// The panel has no finite value on the diagonal p = q.
    #[error("panel `{panel}` has no finite variance on the diagonal p = q")]
    NoDiagonal { panel: String },
    /// A figure was asked for with no panels.
    #[error("figure `{file}` has no panels", file = .file.display())]
    NoPanels { file: PathBuf },
    /// A line panel has no series.
    #[error("line panel `{panel}` has no series")]
    EmptyPanel { panel: String },
    /// A series' vectors are empty or differ in length.
    #[error("series `{series}` in panel `{panel}`: x, mean and std have lengths {x}, {mean}, {std} (must be equal and non-zero)")]
    SeriesShape {
        panel: String,
        series: String,
        x: usize,
        mean: usize,
        std: usize,
    },
    /// A series holds NaN or an infinity.
    #[error("series `{series}` in panel `{panel}`: {field}[{index}] is not finite ({value})")]
    SeriesNonFinite {
        panel: String,
        series: String,
        field: &'static str,
        index: usize,
        value: f64,
    },
    /// A column the caller named twice, or used both as group and as value.
    #[error("column `{column}` is used more than once")]
    DuplicateColumn { column: String },
    /// Creating the output directory failed.
    #[error("cannot create directory `{path}`", path = .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// plotters failed while drawing or writing a file.
    #[error("drawing `{file}` failed: {message}", file = .file.display())]
    Draw { file: PathBuf, message: String },
    /// The embedded font could not be registered with plotters.
    #[error("the embedded DejaVu Sans font could not be registered with plotters")]
    Font,
    /// polars failed while reading a column.
    #[error("reading column `{column}`: {source}")]
    Polars {
        column: String,
        source: polars::prelude::PolarsError,
    },
}

/// DejaVu Sans (see `assets/README.md`), the only font any figure uses.
pub(crate) static DEJAVU_SANS: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

/// The font family every text style names; mapped to the embedded font.
pub(crate) const FONT: &str = "sans-serif";

/// Registers the embedded font once per process; every drawing entry point calls it first.
fn ensure_font() -> Result<(), PlotError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok =
        *REGISTERED.get_or_init(|| register_font(FONT, FontStyle::Normal, DEJAVU_SANS).is_ok());
    if ok {
        Ok(())
    } else {
        Err(PlotError::Font)
    }
}

/// A figure that can be drawn on any plotters backend.
pub(crate) trait Figure {
    /// Size of the whole figure in pixels (PNG) or user units (SVG).
    fn size(&self) -> (u32, u32);
    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>>;
}

/// `<stem>.<ext>`, appending rather than replacing (a stem may contain dots).
fn with_suffix(stem: &Path, ext: &str) -> PathBuf {
    let mut s = stem.as_os_str().to_owned();
    s.push(".");
    s.push(ext);
    PathBuf::from(s)
}

/// Draws `figure` to `<out_stem>.png` and `<out_stem>.svg`, creating the directory if needed.
pub(crate) fn render(figure: &impl Figure, out_stem: &Path) -> Result<Vec<PathBuf>, PlotError> {
    ensure_font()?;
    if let Some(dir) = out_stem.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| PlotError::Io {
            path: dir.to_owned(),
            source,
        })?;
    }
    let size = figure.size();
    let draw_err = |file: &Path| {
        let file = file.to_owned();
        move |e: &dyn std::fmt::Display| PlotError::Draw {
            file,
            message: e.to_string(),
        }
    };

    let png = with_suffix(out_stem, "png");
    {
        let root = glyphs::GlyphText(BitMapBackend::new(&png, size)).into_drawing_area();
        figure
            .draw(&root)
            .and_then(|()| root.present())
            .map_err(|e| draw_err(&png)(&e))?;
    }
    let svg = with_suffix(out_stem, "svg");
    {
        let root = SVGBackend::new(&svg, size).into_drawing_area();
        figure
            .draw(&root)
            .and_then(|()| root.present())
            .map_err(|e| draw_err(&svg)(&e))?;
    }
    Ok(vec![png, svg])
}

/// Formats a number for a label with about `sig` significant digits, without trailing zeros.
pub(crate) fn fmt_sig(v: f64, sig: i32) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let mag = v.abs().log10().floor() as i32;
    if !(-3..5).contains(&mag) {
        return format!("{:.*e}", (sig - 1).max(0) as usize, v);
    }
    let decimals = (sig - 1 - mag).max(0) as usize;
    trim_zeros(format!("{v:.decimals$}"))
}

/// Formats an axis tick: enough decimals to tell ticks `step` apart, trailing zeros kept so that
/// the ticks of one axis line up (0.00, 0.05, 0.10).
pub(crate) fn fmt_tick(v: f64, step: f64) -> String {
    let decimals = if step > 0.0 && step.is_finite() {
        (-((step * (1.0 + 1e-9)).log10()).floor()).clamp(0.0, 8.0) as usize
    } else {
        2
    };
    let s = format!("{v:.decimals$}");
    // "-0.00" reads as a bug in a figure.
    if s.starts_with('-') && s[1..].chars().all(|c| c == '0' || c == '.') {
        s[1..].to_string()
    } else {
        s
    }
}

fn trim_zeros(s: String) -> String {
    if s.contains('.') && !s.contains('e') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(fmt_sig(0.19834, 3), "0.198");
        assert_eq!(fmt_sig(0.825, 3), "0.825");
        assert_eq!(fmt_sig(0.8, 3), "0.8");
        assert_eq!(fmt_sig(12.5, 3), "12.5");
        assert_eq!(fmt_sig(0.00001234, 3), "1.23e-5");
        assert_eq!(fmt_tick(0.05, 0.05), "0.05");
        assert_eq!(fmt_tick(0.1, 0.05), "0.10");
        assert_eq!(fmt_tick(-0.0000001, 0.05), "0.00");
        assert_eq!(fmt_tick(0.4, 0.2), "0.4");
        assert_eq!(fmt_tick(200.0, 50.0), "200");
        assert_eq!(
            with_suffix(Path::new("a/fig.v1"), "png"),
            PathBuf::from("a/fig.v1.png")
        );
    }
}
