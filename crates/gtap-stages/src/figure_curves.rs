//! `figure-curves`: compression-curve figures (mean line, ±σ band over seeds) from `curves`
//! tables only, with the MCUE critical size marked; also the plotted points and the accuracy at
//! the critical size as tables.

use gtap_engine::{ensure, Inputs, Invalid, Stage, StageContext, Upstream};
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
    /// `iterated-building`, `unit` for score baselines, `unstructured`, `equilibrium` for the
    /// points of `equilibrium` stages given as `curves` inputs).
    pub strategies: Vec<String>,
    /// Only these methods (`gtap`, `wmp`, `wgmp`, `random`, …); default all.
    #[serde(default)]
    pub methods: Option<Vec<String>>,
    /// Only GTAP rows with these indices; default all.
    #[serde(default)]
    pub indices: Option<Vec<String>>,
    /// Only rows of this dataset (the curves' `dataset` column), for figures that put several
    /// datasets side by side; default all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<String>,
    /// Only rows of this architecture (the curves' `model` column), for figures that put several
    /// networks of one dataset side by side; default all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The `mcue-bias` stage whose d (mean over seeds) marks this panel's critical size; needed
    /// only when the `bias` inputs come from more than one stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bias: Option<String>,
    /// Only rows retrained this way (`none`: the plain curves; `fine-tune`, `rewind`: from
    /// `retrain` stages); default all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retraining: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FigureCurvesParams {
    /// File stem under `figures/` (PNG and SVG).
    pub name: String,
    #[serde(default)]
    pub x: XAxis,
    pub panels: Vec<PanelSpec>,
    /// Sizes (on the x axis) at which every curve is also read into `critical_accuracy`, beside
    /// the MCUE critical size: e.g. the paper's own critical size, to compare at its point.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub also_at: Vec<f64>,
}

pub struct FigureCurvesStage;

/// The values a panel's filters can match (the curves' `strategy`, `method`, `index`,
/// `retraining` and `model` columns): a filter that can match nothing is refused here rather
/// than found empty at run time.
const STRATEGIES: [&str; 7] = [
    "top-n",
    "iterated-pruning",
    "iterated-building",
    "unit",
    "unstructured",
    "equilibrium",
    "layer-wise, wmp budgets",
];
const INDICES: [&str; 3] = ["shapley", "banzhaf", "biased-banzhaf"];
const RETRAINING: [&str; 3] = ["none", "fine-tune", "rewind"];

fn one_of(key: &str, values: &[String], allowed: &[&str]) -> Result<(), Invalid> {
    ensure(!values.is_empty(), key, || {
        format!("must list at least one of {}", allowed.join(", "))
    })?;
    for (i, value) in values.iter().enumerate() {
        ensure(
            allowed.contains(&value.as_str()),
            &format!("{key}[{i}]"),
            || {
                format!(
                    "no curve has `{}` (allowed: {})",
                    crate::short(value),
                    allowed.join(", ")
                )
            },
        )?;
    }
    Ok(())
}

fn validate_panel(key: &str, panel: &PanelSpec) -> Result<(), Invalid> {
    one_of(&format!("{key}.strategies"), &panel.strategies, &STRATEGIES)?;
    // Methods are open (a plug-in ranker is one): only an empty list is refused.
    if let Some(methods) = &panel.methods {
        ensure(!methods.is_empty(), &format!("{key}.methods"), || {
            "must list at least one method".into()
        })?;
    }
    if let Some(indices) = &panel.indices {
        one_of(&format!("{key}.indices"), indices, &INDICES)?;
    }
    if let Some(retraining) = &panel.retraining {
        one_of(
            &format!("{key}.retraining"),
            std::slice::from_ref(retraining),
            &RETRAINING,
        )?;
    }
    if let Some(model) = &panel.model {
        ensure(
            serde_json::from_value::<gtap_nn::Arch>(serde_json::json!(model)).is_ok(),
            &format!("{key}.model"),
            || format!("no architecture `{}`", crate::short(model)),
        )?;
    }
    Ok(())
}

impl Stage for FigureCurvesStage {
    type Params = FigureCurvesParams;
    const KIND: &'static str = "figure-curves";
    // 2: `x = "params"` curves resampled per seed onto a common grid; per-panel critical size.
    // 3: a ninth line and later ones no longer repeat the first colours.
    const VERSION: u32 = 3;
    const SEEDED: bool = false;
    const INPUTS: &'static [&'static str] = &["curves"];
    const OPTIONAL_INPUTS: &'static [&'static str] = &["bias"];
    const ABOUT: &'static str =
        "compression-curve figure (mean ± σ over seeds) from curves tables, critical size marked";

    fn validate_inputs(p: &FigureCurvesParams, inputs: &Inputs) -> Result<(), Invalid> {
        let kinds = ["curves", "unstructured", "retrain", "equilibrium"];
        crate::checks::input_kinds(inputs, "curves", &kinds)?;
        crate::checks::input_kinds(inputs, "bias", &["mcue-bias"])?;
        let biases: Vec<&str> = inputs
            .get("bias")
            .into_iter()
            .flatten()
            .map(|b| b.id.as_str())
            .collect();
        for (i, panel) in p.panels.iter().enumerate() {
            if let Some(bias) = &panel.bias {
                ensure(
                    biases.contains(&bias.as_str()),
                    &format!("panels[{i}].bias"),
                    || {
                        format!(
                            "names no `bias` input (bias inputs: {})",
                            if biases.is_empty() {
                                "none".into()
                            } else {
                                biases.join(", ")
                            }
                        )
                    },
                )?;
            }
        }
        Ok(())
    }

    fn validate(p: &FigureCurvesParams) -> Result<(), Invalid> {
        crate::checks::file_stem("name", &p.name)?;
        ensure(!p.panels.is_empty(), "panels", || {
            "needs at least one panel".into()
        })?;
        // Each figure row holds three panels; a bitmap of hundreds would not be read.
        ensure(p.panels.len() <= 24, "panels", || {
            format!("at most 24 panels (got {})", p.panels.len())
        })?;
        for (i, panel) in p.panels.iter().enumerate() {
            validate_panel(&format!("panels[{i}]"), panel)?;
        }
        ensure(
            p.also_at.iter().all(|x| (0.0..=1.0).contains(x)),
            "also_at",
            || format!("sizes must lie in [0, 1] (got {:?})", p.also_at),
        )
    }

    fn run(p: &FigureCurvesParams, ctx: &StageContext<'_>) -> anyhow::Result<()> {
        let mut curves: Option<DataFrame> = None;
        for upstream in ctx.inputs("curves") {
            let df = if upstream.kind == crate::RetrainStage::KIND {
                upstream.read_table(crate::retrain::RETRAINED_TABLE)?
            } else if upstream.kind == crate::EquilibriumStage::KIND {
                equilibrium_points(&upstream.read_table("equilibrium")?)?
            } else {
                upstream.read_table("curves")?
            };
            let df = with_retraining_column(df)?;
            curves = Some(match curves {
                None => df,
                Some(acc) => acc.vstack(&df)?,
            });
        }
        let curves = curves.ok_or_else(|| anyhow::anyhow!("no `curves` input"))?;
        let x_column = match p.x {
            XAxis::Size => "size_fraction",
            XAxis::Params => "params_fraction",
        };
        let mut panels = Vec::new();
        let mut plotted = PlottedRows::default();
        for spec in &p.panels {
            let critical = critical_size(ctx.inputs("bias"), spec)?;
            let rows = select_rows(&curves, spec)?;
            anyhow::ensure!(
                rows.height() > 0,
                "panel `{}` selects no curve rows (strategies {:?}, dataset {:?})",
                spec.title,
                spec.strategies,
                spec.dataset
            );
            let several_strategies = gtap_strategies(&rows)? > 1;
            let labelled = rows
                .clone()
                .with_column(Column::new(
                    "label".into(),
                    labels(&rows, several_strategies)?,
                ))?
                .clone();
            // On the size axis every seed shares the grid; parameter fractions differ per seed,
            // so each seed's curve is first read off a common grid.
            let (labelled, x_column) = match p.x {
                XAxis::Size => (labelled, x_column),
                XAxis::Params => (resample(&labelled, x_column, PARAMS_GRID_POINTS)?, "x"),
            };
            let series: Vec<Series> =
                gtap_plot::summarise(&labelled, &["label"], x_column, "test_accuracy")?
                    .into_iter()
                    .map(|(_, s)| s)
                    .collect();
            let read_at: Vec<f64> = critical
                .into_iter()
                .chain(p.also_at.iter().copied())
                .collect();
            for s in &series {
                plotted.push(&spec.title, s, &read_at);
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

/// Points of the common x grid that `x = "params"` curves are resampled onto.
const PARAMS_GRID_POINTS: usize = 50;

/// Each (label, seed) curve linearly interpolated at x = k / `points` (k = 1..=points) within
/// its own x range (no extrapolation): columns label, seed, x, test_accuracy. A curve's x is
/// non-decreasing in its size (kept sets are nested), so the interpolation is well defined;
/// equal x values are averaged.
fn resample(rows: &DataFrame, x_column: &str, points: usize) -> anyhow::Result<DataFrame> {
    let label = strings(rows, "label")?;
    let seed: Vec<u64> = rows
        .column("seed")?
        .cast(&DataType::UInt64)?
        .u64()?
        .into_no_null_iter()
        .collect();
    let x: Vec<f64> = rows.column(x_column)?.f64()?.into_no_null_iter().collect();
    let y: Vec<f64> = rows
        .column("test_accuracy")?
        .f64()?
        .into_no_null_iter()
        .collect();
    let mut curves: Vec<((String, u64), Vec<(f64, f64)>)> = Vec::new();
    for i in 0..rows.height() {
        let key = (label[i].clone(), seed[i]);
        match curves.iter_mut().find(|(k, _)| *k == key) {
            Some((_, pts)) => pts.push((x[i], y[i])),
            None => curves.push((key, vec![(x[i], y[i])])),
        }
    }
    let (mut out_label, mut out_seed, mut out_x, mut out_y) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for ((label, seed), mut pts) in curves {
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        let pts = merge_equal_x(&pts);
        for k in 1..=points {
            let at = k as f64 / points as f64;
            if let Some(v) = interpolate_points(&pts, at) {
                out_label.push(label.clone());
                out_seed.push(seed);
                out_x.push(at);
                out_y.push(v);
            }
        }
    }
    Ok(df!(
        "label" => out_label,
        "seed" => out_seed,
        "x" => out_x,
        "test_accuracy" => out_y,
    )?)
}

/// Sorted points with runs of equal x replaced by one point at their mean y.
fn merge_equal_x(sorted: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut out: Vec<(f64, f64, usize)> = Vec::new();
    for &(x, y) in sorted {
        match out.last_mut() {
            Some(last) if (last.0 - x).abs() <= 1e-12 => {
                last.1 += y;
                last.2 += 1;
            }
            _ => out.push((x, y, 1)),
        }
    }
    out.into_iter().map(|(x, y, n)| (x, y / n as f64)).collect()
}

/// y at `at` on the polyline through sorted, distinct-x `pts`; `None` outside its x range.
fn interpolate_points(pts: &[(f64, f64)], at: f64) -> Option<f64> {
    let (first, last) = (pts.first()?, pts.last()?);
    if at < first.0 - 1e-12 || at > last.0 + 1e-12 {
        return None;
    }
    let i = pts.iter().position(|p| p.0 >= at - 1e-12)?;
    if i == 0 || (pts[i].0 - at).abs() <= 1e-12 {
        return Some(pts[i].1);
    }
    let (a, b) = (pts[i - 1], pts[i]);
    Some(a.1 + (at - a.0) / (b.0 - a.0) * (b.1 - a.1))
}

/// The panel's critical size: the mean d over the seeds of its `mcue-bias` stage (the only
/// one, or the one the panel names); none without `bias` inputs.
fn critical_size(bias: &[Upstream], spec: &PanelSpec) -> anyhow::Result<Option<f64>> {
    let mut stages: Vec<&str> = bias.iter().map(|u| u.stage.as_str()).collect();
    stages.sort_unstable();
    stages.dedup();
    let stage = match (&spec.bias, stages.as_slice()) {
        (_, []) => return Ok(None),
        (Some(named), _) => {
            anyhow::ensure!(
                stages.contains(&named.as_str()),
                "panel `{}` names bias stage `{named}`, which is not a `bias` input (inputs: {stages:?})",
                spec.title
            );
            named.as_str()
        }
        (None, [only]) => only,
        (None, several) => anyhow::bail!(
            "panel `{}`: the `bias` inputs come from several stages {several:?}; say which marks \
             this panel with `bias = \"<stage>\"`",
            spec.title
        ),
    };
    let ds = bias
        .iter()
        .filter(|u| u.stage == stage)
        .map(crate::mcue::read_bias)
        .collect::<anyhow::Result<Vec<f64>>>()?;
    Ok(Some(ds.iter().sum::<f64>() / ds.len() as f64))
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

/// An `equilibrium` run as one curve point per seed: method and strategy `equilibrium`, at the
/// size its ε cut left (a sweep of β or γ over several stages traces a curve).
fn equilibrium_points(run: &DataFrame) -> anyhow::Result<DataFrame> {
    let u64s = |c: &str| -> anyhow::Result<Vec<u64>> {
        Ok(run.column(c)?.u64()?.into_no_null_iter().collect())
    };
    let (kept, players) = (u64s("players_kept")?, u64s("players")?);
    let rows = run.height();
    Ok(df!(
        "model" => run.column("model")?.clone().take_materialized_series(),
        "dataset" => run.column("dataset")?.clone().take_materialized_series(),
        "method" => vec!["equilibrium"; rows],
        "index" => vec![""; rows],
        "strategy" => vec!["equilibrium"; rows],
        "variant" => vec![""; rows],
        "size_fraction" => kept.iter().zip(&players).map(|(&k, &n)| k as f64 / n as f64).collect::<Vec<_>>(),
        "players_kept" => kept.iter().map(|&k| k as u32).collect::<Vec<_>>(),
        "params_kept" => run.column("params_kept")?.clone().take_materialized_series(),
        "params_fraction" => run.column("params_fraction")?.clone().take_materialized_series(),
        "flops_kept" => run.column("flops_kept")?.clone().take_materialized_series(),
        "flops_fraction" => run.column("flops_fraction")?.clone().take_materialized_series(),
        "seed" => run.column("seed")?.clone().take_materialized_series(),
        "test_accuracy" => run.column("test_accuracy")?.clone().take_materialized_series(),
    )?)
}

/// A `curves` table as the plain `curves` stage writes it (no retraining) gets the columns a
/// `retrain` stage's `retrained` table adds, `retraining` = "none" and `retrain_epochs` = 0, so both stack.
fn with_retraining_column(mut df: DataFrame) -> anyhow::Result<DataFrame> {
    if df.column("retraining").is_err() {
        let rows = df.height();
        df.with_column(Column::new("retraining".into(), vec!["none"; rows]))?;
        df.with_column(Column::new("retrain_epochs".into(), vec![0u32; rows]))?;
    }
    Ok(df)
}

fn select_rows(curves: &DataFrame, spec: &PanelSpec) -> anyhow::Result<DataFrame> {
    let (method, index, strategy, dataset, retraining, model) = (
        strings(curves, "method")?,
        strings(curves, "index")?,
        strings(curves, "strategy")?,
        strings(curves, "dataset")?,
        strings(curves, "retraining")?,
        strings(curves, "model")?,
    );
    let keep: BooleanChunked = (0..curves.height())
        .map(|i| {
            spec.strategies.contains(&strategy[i])
                && spec.retraining.as_ref().is_none_or(|r| *r == retraining[i])
                && spec.model.as_ref().is_none_or(|m| *m == model[i])
                && spec.dataset.as_ref().is_none_or(|d| *d == dataset[i])
                && spec.methods.as_ref().is_none_or(|m| m.contains(&method[i]))
                && (method[i] != "gtap"
                    || spec.indices.as_ref().is_none_or(|x| x.contains(&index[i])))
        })
        .collect();
    Ok(curves.filter(&keep)?)
}

/// Legend labels: β_d, Shapley, Banzhaf for GTAP (with the strategy when a panel mixes them),
/// WMP, W·GMP, random, Michel et al. for the baselines, the method name otherwise.
fn labels(rows: &DataFrame, with_strategy: bool) -> anyhow::Result<Vec<String>> {
    let (method, index, strategy, variant) = (
        strings(rows, "method")?,
        strings(rows, "index")?,
        strings(rows, "strategy")?,
        strings(rows, "variant")?,
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
                ("michel", _) if strategy[i] == "iterated-pruning" => {
                    "Michel et al. (iterative)".to_owned()
                }
                ("michel", _) => "Michel et al.".to_owned(),
                ("equilibrium", _) => "equilibrium (Pruning as a Game)".to_owned(),
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
            let base = match variant[i].as_str() {
                "" => base,
                variant => format!("{base}, {variant}"),
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
    fn push(&mut self, panel: &str, s: &Series, read_at: &[f64]) {
        for i in 0..s.x.len() {
            self.panel.push(panel.to_owned());
            self.label.push(s.label.clone());
            self.x.push(s.x[i]);
            self.mean.push(s.mean[i]);
            self.std.push(s.std[i]);
        }
        for &d in read_at {
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

#[cfg(test)]
mod tests;
