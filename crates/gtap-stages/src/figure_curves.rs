//! `figure-curves`: compression-curve figures (mean line, ±σ band over seeds) from `curves`
//! tables only, with the MCUE critical size marked; also the plotted points and the accuracy at
//! the critical size as tables.

use gtap_engine::{ensure, Invalid, Stage, StageContext};
use gtap_plot::{LinePanel, Series};
use polars::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum XAxis {
    /// Players kept / players (`size_fraction`).
    #[default]
    Size,
    /// Parameters kept / parameters (`params_fraction`).
    Params,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PanelSpec {
    pub title: String,
    /// Curve rows with one of these strategies (`top-n`, `iterated-pruning`,
    /// `iterated-building`, `unit` for score baselines, `unstructured`).
    pub strategies: Vec<String>,
    /// Only these methods (`gtap`, `wmp`, `wgmp`, `random`, …); default all.
    #[serde(default)]
    pub methods: Option<Vec<String>>,
    /// Only GTAP rows with these indices; default all.
    #[serde(default)]
    pub indices: Option<Vec<String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FigureCurvesParams {
    /// File stem under `figures/` (PNG and SVG).
    pub name: String,
    #[serde(default)]
    pub x: XAxis,
    pub panels: Vec<PanelSpec>,
}

pub struct FigureCurvesStage;

impl Stage for FigureCurvesStage {
    type Params = FigureCurvesParams;
    const KIND: &'static str = "figure-curves";
    const VERSION: u32 = 1;
    const SEEDED: bool = false;
    const INPUTS: &'static [&'static str] = &["curves"];
    const OPTIONAL_INPUTS: &'static [&'static str] = &["bias"];
    const ABOUT: &'static str =
        "compression-curve figure (mean ± σ over seeds) from curves tables, critical size marked";

    fn validate(p: &FigureCurvesParams) -> Result<(), Invalid> {
        ensure(
            !p.name.is_empty() && !p.name.contains(['/', '\\']),
            "name",
            || "must be a plain file stem".into(),
        )?;
        ensure(!p.panels.is_empty(), "panels", || {
            "needs at least one panel".into()
        })
    }

    fn run(p: &FigureCurvesParams, ctx: &StageContext<'_>) -> anyhow::Result<()> {
        let mut curves: Option<DataFrame> = None;
        for upstream in ctx.inputs("curves") {
            let df = upstream.read_table("curves")?;
            curves = Some(match curves {
                None => df,
                Some(acc) => acc.vstack(&df)?,
            });
        }
        let curves = curves.ok_or_else(|| anyhow::anyhow!("no `curves` input"))?;
        // Critical size: mean d over the bias inputs (one per seed).
        let ds = ctx
            .inputs("bias")
            .iter()
            .map(crate::mcue::read_bias)
            .collect::<anyhow::Result<Vec<f64>>>()?;
        let critical = (!ds.is_empty()).then(|| ds.iter().sum::<f64>() / ds.len() as f64);
        let x_column = match p.x {
            XAxis::Size => "size_fraction",
            XAxis::Params => "params_fraction",
        };
        let mut panels = Vec::new();
        let mut plotted = PlottedRows::default();
        for spec in &p.panels {
            let rows = select_rows(&curves, spec)?;
            anyhow::ensure!(
                rows.height() > 0,
                "panel `{}` selects no curve rows (strategies {:?})",
                spec.title,
                spec.strategies
            );
            let several_strategies = gtap_strategies(&rows)? > 1;
            let labelled = rows
                .clone()
                .with_column(Column::new(
                    "label".into(),
                    labels(&rows, several_strategies)?,
                ))?
                .clone();
            let series: Vec<Series> =
                gtap_plot::summarise(&labelled, &["label"], x_column, "test_accuracy")?
                    .into_iter()
                    .map(|(_, s)| s)
                    .collect();
            for s in &series {
                plotted.push(&spec.title, s, critical);
            }
            panels.push(LinePanel {
                title: spec.title.clone(),
                x_label: match p.x {
                    XAxis::Size => "size (fraction of units kept)".into(),
                    XAxis::Params => "parameters kept (fraction)".into(),
                },
                y_label: "test accuracy".into(),
                series,
                vline: critical
                    .filter(|_| p.x == XAxis::Size)
                    .map(|d| (d, format!("critical size {d:.3} (MCUE)"))),
            });
        }
        gtap_plot::line_figure(&panels, &ctx.figure_stem(&p.name)?)?;
        let (mut points, mut at_critical) = plotted.tables(&p.name)?;
        ctx.write_table("figure_points", &mut points)?;
        ctx.write_table("critical_accuracy", &mut at_critical)?;
        Ok(())
    }
}

fn strings(df: &DataFrame, column: &str) -> anyhow::Result<Vec<String>> {
    Ok(df
        .column(column)?
        .str()?
        .iter()
        .map(|v| v.unwrap_or_default().to_owned())
        .collect())
}

/// Distinct strategies among the GTAP rows.
fn gtap_strategies(df: &DataFrame) -> anyhow::Result<usize> {
    let method = strings(df, "method")?;
    let mut v: Vec<String> = strings(df, "strategy")?
        .into_iter()
        .zip(method)
        .filter(|(_, m)| m == "gtap")
        .map(|(s, _)| s)
        .collect();
    v.sort();
    v.dedup();
    Ok(v.len())
}

fn select_rows(curves: &DataFrame, spec: &PanelSpec) -> anyhow::Result<DataFrame> {
    let (method, index, strategy) = (
        strings(curves, "method")?,
        strings(curves, "index")?,
        strings(curves, "strategy")?,
    );
    let keep: BooleanChunked = (0..curves.height())
        .map(|i| {
            spec.strategies.contains(&strategy[i])
                && spec.methods.as_ref().is_none_or(|m| m.contains(&method[i]))
                && (method[i] != "gtap"
                    || spec.indices.as_ref().is_none_or(|x| x.contains(&index[i])))
        })
        .collect();
    Ok(curves.filter(&keep)?)
}

/// Legend labels: β_d, Shapley, Banzhaf for GTAP (with the strategy when a panel mixes them),
/// WMP, W·GMP, random for the baselines, the method name otherwise.
fn labels(rows: &DataFrame, with_strategy: bool) -> anyhow::Result<Vec<String>> {
    let (method, index, strategy) = (
        strings(rows, "method")?,
        strings(rows, "index")?,
        strings(rows, "strategy")?,
    );
    Ok((0..rows.height())
        .map(|i| {
            let base = match (method[i].as_str(), index[i].as_str()) {
                ("gtap", "shapley") => "GTAP Shapley".to_owned(),
                ("gtap", "banzhaf") => "GTAP Banzhaf".to_owned(),
                ("gtap", "biased-banzhaf") => "GTAP β_d".to_owned(),
                ("wmp", _) => "WMP".to_owned(),
                ("wgmp", _) => "W·GMP".to_owned(),
                ("random", _) => "random".to_owned(),
                (other, "") => other.to_owned(),
                (other, index) => format!("{other} {index}"),
            };
            let strategy = match strategy[i].as_str() {
                "top-n" => "Top-n",
                "iterated-pruning" => "Iterated Pruning",
                "iterated-building" => "Iterated Building",
                "unstructured" => "global unstructured",
                _ => "",
            };
            if (with_strategy && method[i] == "gtap") || strategy == "global unstructured" {
                format!("{base} ({strategy})")
            } else {
                base
            }
        })
        .collect())
}

#[derive(Default)]
struct PlottedRows {
    panel: Vec<String>,
    label: Vec<String>,
    x: Vec<f64>,
    mean: Vec<f64>,
    std: Vec<f64>,
    critical: Vec<(String, String, f64, f64, f64)>,
}

impl PlottedRows {
    fn push(&mut self, panel: &str, s: &Series, critical: Option<f64>) {
        for i in 0..s.x.len() {
            self.panel.push(panel.to_owned());
            self.label.push(s.label.clone());
            self.x.push(s.x[i]);
            self.mean.push(s.mean[i]);
            self.std.push(s.std[i]);
        }
        if let Some(d) = critical {
            if let Some((mean, std)) = interpolate(s, d) {
                self.critical
                    .push((panel.to_owned(), s.label.clone(), d, mean, std));
            }
        }
    }

    fn tables(self, figure: &str) -> anyhow::Result<(DataFrame, DataFrame)> {
        let n = self.x.len();
        let points = df!(
            "figure" => vec![figure; n],
            "panel" => self.panel,
            "label" => self.label,
            "x" => self.x,
            "mean_accuracy" => self.mean,
            "std_accuracy" => self.std,
        )?;
        let c = &self.critical;
        let at_critical = df!(
            "figure" => vec![figure; c.len()],
            "panel" => c.iter().map(|r| r.0.clone()).collect::<Vec<_>>(),
            "label" => c.iter().map(|r| r.1.clone()).collect::<Vec<_>>(),
            "critical_size" => c.iter().map(|r| r.2).collect::<Vec<_>>(),
            "mean_accuracy" => c.iter().map(|r| r.3).collect::<Vec<_>>(),
            "std_accuracy" => c.iter().map(|r| r.4).collect::<Vec<_>>(),
        )?;
        Ok((points, at_critical))
    }
}

/// Mean and σ at `x`, linear between the two nearest grid points.
fn interpolate(s: &Series, x: f64) -> Option<(f64, f64)> {
    let i = s.x.iter().position(|&v| v >= x)?;
    if i == 0 || s.x[i] == x {
        return Some((s.mean[i], s.std[i]));
    }
    let t = (x - s.x[i - 1]) / (s.x[i] - s.x[i - 1]);
    let lerp = |a: &[f64]| a[i - 1] + t * (a[i] - a[i - 1]);
    Some((lerp(&s.mean), lerp(&s.std)))
}
