//! `mcue` (the paper's Algorithm 1 over a (p, q) grid), `mcue-bias` (d = 1 − argmax of the
//! diagonal) and `figure-mcue` (Figure 2 heatmaps).

use std::collections::BTreeMap;

use gtap_engine::{ensure, Inputs, Invalid, Stage, StageContext, Upstream};
use gtap_nn::{MaskedSuffix, Network};
use polars::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::progress;
use crate::train::{load_model, load_split};

mod maxima;
mod reading;

pub use maxima::McueMaximaStage;
pub use reading::{
    cell_summary, mean_variance, rescale, trial_values, Dilution, Statistic, Statistics,
    TrialValues,
};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McueParams {
    /// Grid step on [0, 1] for both p and q (0.025 gives 41 × 41 cells).
    #[serde(default = "default_step")]
    pub step: f64,
    /// Trials k per cell.
    pub trials: usize,
    /// What a trial records (`t_i = S'_i(d_i)`): one statistic or a list, each read from the
    /// same trials. Default: correctness.
    #[serde(default)]
    pub statistic: Statistics,
    /// How the diluted network is evaluated: removed units zeroed (default) or survivors
    /// rescaled per layer as in inverted dropout.
    #[serde(default, skip_serializing_if = "crate::is_default")]
    pub dilution: Dilution,
    /// Only the diagonal p = q (all `mcue-bias` and `mcue-maxima` read; `figure-mcue` refuses
    /// it): each cell the same trials, and so the same numbers, as in the whole grid, at
    /// 1 / (cells per side) of the cost.
    #[serde(default, skip_serializing_if = "crate::is_default")]
    pub diagonal_only: bool,
    /// Label of this grid in figures (default: "<model> on <dataset>").
    #[serde(default)]
    pub panel: Option<String>,
    /// (mask, example) pairs per forward pass.
    #[serde(default = "default_batch")]
    pub batch: usize,
    /// Player layers the trials dilute; every other unit stays present (AlexNet's Figure 6:
    /// the conv layers only, the FC layers only). Default: every layer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layers: Option<Vec<String>>,
}

fn default_step() -> f64 {
    0.025
}
fn default_batch() -> usize {
    8192
}

/// The grid points 0, step, …, 1.
pub fn grid(step: f64) -> Vec<f64> {
    let cells = (1.0 / step).round() as usize;
    (0..=cells).map(|i| i as f64 / cells as f64).collect()
}

/// The cells of a grid of `step`, each with its index in the whole grid (p-major), which
/// names its random stream: the whole grid, or only its diagonal p = q.
pub fn cells(step: f64, diagonal_only: bool) -> Vec<(u64, f64, f64)> {
    let ts = grid(step);
    let side = ts.len();
    (0..side)
        .flat_map(|i| (0..side).map(move |j| (i, j)))
        .filter(|&(i, j)| !diagonal_only || i == j)
        .map(|(i, j)| ((i * side + j) as u64, ts[i], ts[j]))
        .collect()
}

/// One cell's result under one statistic.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cell {
    pub p: f64,
    pub q: f64,
    pub mean: f64,
    pub variance: f64,
}

/// The trials' inputs: a network's suffix, its activations at the suffix's start on the probe
/// examples and their labels, and which players the trials dilute.
pub struct Trials<'a> {
    pub net: &'a Network,
    pub suffix: &'a MaskedSuffix,
    pub features: &'a Tensor,
    pub labels: &'a Tensor,
    /// Global ids of the diluted players: whole player layers.
    pub free: &'a [usize],
    pub trials: usize,
    pub seed: u64,
    /// (mask, example) pairs per forward pass.
    pub batch: usize,
}

impl Trials<'_> {
    /// Algorithm 1 on `cells` (index, p, q) under `statistics` and `dilution`: per statistic,
    /// one [`Cell`] per cell in order. `done` is told of each cell group's trials.
    pub fn run(
        &self,
        cells: &[(u64, f64, f64)],
        statistics: &[Statistic],
        dilution: Dilution,
        done: &dyn Fn(u64),
    ) -> anyhow::Result<Vec<Vec<Cell>>> {
        let k = self.trials;
        let players = self.net.num_players();
        let examples = self.features.size()[0] as usize;
        let diluted: Vec<(usize, usize)> = self
            .net
            .player_layers()
            .iter()
            .filter(|l| self.free.contains(&l.offset))
            .map(|l| (l.offset, l.size))
            .collect();
        let device = self.features.device();
        let mut out = vec![Vec::with_capacity(cells.len()); statistics.len()];
        let (free, seed) = (self.free.len(), self.seed);
        for chunk in cells.chunks((self.batch / k).max(1)) {
            // Each cell draws from its own stream, so results do not depend on grouping or threads.
            let drawn: Vec<(Vec<f32>, Vec<i64>)> = chunk
                .par_iter()
                .map(|&(cell, p, q)| draw_trials(free, examples, p, q, k, seed, cell))
                .collect();
            let mut masks = spread_over(self.free, players, drawn.iter().map(|t| &t.0[..]));
            if dilution == Dilution::Rescaled {
                rescale(&mut masks, players, &diluted);
            }
            let index: Vec<i64> = drawn.iter().flat_map(|t| t.1.iter().copied()).collect();
            let index = Tensor::from_slice(&index).to_device(device);
            let values = trial_values(
                self.suffix,
                &self.features.index_select(0, &index),
                &Network::mask_tensor(&masks, players, device),
                &self.labels.index_select(0, &index),
                statistics,
                dilution,
            )?;
            for (per_statistic, stat) in out.iter_mut().zip(values) {
                let per_cell = stat.values.chunks(k * stat.width);
                for (trials, &(_, p, q)) in per_cell.zip(chunk) {
                    let (mean, variance) = cell_summary(&TrialValues {
                        width: stat.width,
                        values: trials.to_vec(),
                    });
                    per_statistic.push(Cell {
                        p,
                        q,
                        mean,
                        variance,
                    });
                }
            }
            done((chunk.len() * k) as u64);
        }
        Ok(out)
    }
}

pub struct McueStage;

impl Stage for McueStage {
    type Params = McueParams;
    const KIND: &'static str = "mcue";
    const FLOAT_MATH: bool = true;
    // 3: the table's `dilution` and `players` columns (the readings as options).
    const VERSION: u32 = 3;
    const SEEDED: bool = true;
    const INPUTS: &'static [&'static str] = &["model", "data"];
    const ABOUT: &'static str =
        "Monte-Carlo uncertainty estimation over a (p, q) grid (Algorithm 1), on the probe split";

    fn validate(p: &McueParams) -> Result<(), Invalid> {
        let cells = (1.0 / p.step).round();
        // At least 0.005: 201 x 201 cells, each of `trials` trials.
        ensure(
            p.step >= 0.005 && p.step <= 0.5 && (cells * p.step - 1.0).abs() < 1e-9,
            "step",
            || {
                format!(
                    "must divide 1 into whole cells and be in [0.005, 0.5], e.g. 0.025 or 0.05 (got {})",
                    p.step
                )
            },
        )?;
        ensure(p.trials >= 2, "trials", || {
            format!("a variance needs at least 2 trials (got {})", p.trials)
        })?;
        ensure(p.trials <= 100_000, "trials", || {
            format!("must be at most 100000 per cell (got {})", p.trials)
        })?;
        ensure((1..=65_536).contains(&p.batch), "batch", || {
            format!("must be between 1 and 65536 (got {})", p.batch)
        })?;
        let statistics = p.statistic.as_slice();
        ensure(!statistics.is_empty(), "statistic", || {
            "must name at least one statistic".into()
        })?;
        let distinct: std::collections::BTreeSet<&str> =
            statistics.iter().map(|s| s.name()).collect();
        ensure(distinct.len() == statistics.len(), "statistic", || {
            "names a statistic twice".into()
        })
    }

    fn validate_inputs(p: &McueParams, inputs: &Inputs) -> Result<(), Invalid> {
        crate::checks::model_and_data(inputs)?;
        match &p.layers {
            Some(layers) => crate::checks::layer_names("layers", layers, inputs),
            None => Ok(()),
        }
    }

    fn run(params: &McueParams, ctx: &StageContext<'_>) -> anyhow::Result<()> {
        let seed = ctx.seed()?;
        let (net, model) = load_model(ctx.input("model")?)?;
        let probe = load_split(&ctx.input("data")?.dir, "probe")?;
        let free = match &params.layers {
            None => (0..net.num_players()).collect(),
            Some(layers) => crate::indices::layer_constraints(&net, Some(layers))?
                .restrict_to
                .unwrap_or_default(),
        };
        // Trials start at the first diluted layer's gate: what comes before runs once.
        let start = net
            .player_layers()
            .iter()
            .position(|l| free.contains(&l.offset))
            .ok_or_else(|| anyhow::anyhow!("`layers` names no player layer of the network"))?;
        let features = tch::no_grad(|| net.activations_at(&probe.inputs, start));
        let suffix = net.masked_suffix(start);
        let panel = params
            .panel
            .clone()
            .unwrap_or_else(|| format!("{} on {}", model.arch, model.dataset));
        let cells = cells(params.step, params.diagonal_only);
        let k = params.trials;
        let bar = progress::bar(ctx.env.progress, (cells.len() * k) as u64, ctx.instance);
        let trials = Trials {
            net: &net,
            suffix: &suffix,
            features: &features,
            labels: &probe.labels,
            free: &free,
            trials: k,
            seed,
            batch: params.batch,
        };
        let statistics = params.statistic.as_slice();
        let results = trials.run(&cells, statistics, params.dilution, &|n| bar.inc(n))?;
        bar.finish_and_clear();
        let rows: Vec<(Statistic, Cell)> = statistics
            .iter()
            .zip(&results)
            .flat_map(|(&s, cells)| cells.iter().map(move |&c| (s, c)))
            .collect();
        let n = rows.len();
        let mut df = df!(
            "panel" => vec![panel.as_str(); n],
            "model" => vec![model.arch.name(); n],
            "dataset" => vec![model.dataset.as_str(); n],
            "seed" => vec![seed; n],
            "p" => rows.iter().map(|r| r.1.p).collect::<Vec<_>>(),
            "q" => rows.iter().map(|r| r.1.q).collect::<Vec<_>>(),
            "statistic" => rows.iter().map(|r| r.0.name()).collect::<Vec<_>>(),
            "dilution" => vec![params.dilution.name(); n],
            "players" => vec![free.len() as u32; n],
            "variance" => rows.iter().map(|r| r.1.variance).collect::<Vec<_>>(),
            "mean" => rows.iter().map(|r| r.1.mean).collect::<Vec<_>>(),
            "trials" => vec![k as u32; n],
        )?;
        ctx.write_table("mcue", &mut df)?;
        for (statistic, cells) in statistics.iter().zip(&results) {
            let (t, variance) = diagonal_argmax(&cells_tuples(cells));
            tracing::info!(
                "{} ({}, {}): diagonal maximum at t = {t:.3} (variance {variance:.4}), d = {:.3}",
                ctx.instance,
                statistic.name(),
                params.dilution.name(),
                1.0 - t
            );
        }
        Ok(())
    }
}

fn cells_tuples(cells: &[Cell]) -> Vec<(f64, f64, f64, f64)> {
    cells
        .iter()
        .map(|c| (c.p, c.q, c.mean, c.variance))
        .collect()
}

/// The `k` trials of one cell: masks (`k × players`) and example indices. A trial keeps a
/// uniformly random sub-network of exactly round((1 − q)·n) players, then drops each of them
/// with probability p.
pub fn draw_trials(
    players: usize,
    examples: usize,
    p: f64,
    q: f64,
    k: usize,
    seed: u64,
    cell: u64,
) -> (Vec<f32>, Vec<i64>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(cell);
    let size = ((1.0 - q) * players as f64).round() as usize;
    let mut masks = vec![0f32; k * players];
    let mut index = Vec::with_capacity(k);
    let mut order: Vec<usize> = (0..players).collect();
    for row in masks.chunks_mut(players) {
        for j in 0..size {
            let pick = rng.random_range(j..players);
            order.swap(j, pick);
        }
        for &member in &order[..size] {
            if rng.random::<f64>() >= p {
                row[member] = 1.0;
            }
        }
        index.push(rng.random_range(0..examples) as i64);
    }
    (masks, index)
}

/// Full mask rows (`players` wide, 1 = present) from trial rows over the `free` players only.
fn spread_over<'a>(
    free: &[usize],
    players: usize,
    rows: impl Iterator<Item = &'a [f32]>,
) -> Vec<f32> {
    let mut masks = Vec::new();
    for trial_masks in rows {
        for row in trial_masks.chunks(free.len()) {
            let start = masks.len();
            masks.resize(start + players, 1.0);
            for (&p, &m) in free.iter().zip(row) {
                masks[start + p] = m;
            }
        }
    }
    masks
}

/// argmax over the interior of the diagonal p = q (0 < t < 1) of the variance; ties go to the
/// smallest t. The end points are excluded because d = 1 − t would be 0 or 1, where R_d is a
/// point mass (every sampled coalition is ∅ or everyone) and β_d is no longer a power index we can
/// estimate; a badly trained model can put its maximum there.
pub fn diagonal_argmax(cells: &[(f64, f64, f64, f64)]) -> (f64, f64) {
    let mut best = (f64::NAN, f64::NEG_INFINITY);
    for &(p, q, _, variance) in cells {
        let interior = p > 1e-9 && p < 1.0 - 1e-9;
        if (p - q).abs() < 1e-9 && interior && variance > best.1 {
            best = (p, variance);
        }
    }
    best
}

/// Reads an MCUE table of one statistic into (p, q, mean, variance) rows.
fn read_cells(df: &DataFrame) -> anyhow::Result<Vec<(f64, f64, f64, f64)>> {
    let statistics = df.column("statistic")?.unique_stable()?;
    anyhow::ensure!(
        statistics.len() <= 1,
        "the MCUE grid holds {} statistics; this stage reads a grid of one (give it an `mcue` stage with one `statistic`, or read every statistic's maximum with `mcue-maxima`)",
        statistics.len()
    );
    let col = |name: &str| -> anyhow::Result<Vec<f64>> {
        Ok(df.column(name)?.f64()?.into_no_null_iter().collect())
    };
    let (p, q, mean, var) = (col("p")?, col("q")?, col("mean")?, col("variance")?);
    Ok((0..p.len())
        .map(|i| (p[i], q[i], mean[i], var[i]))
        .collect())
}

/// Every `name` input is an `mcue` stage of one statistic (a list of several is for
/// `mcue-maxima`).
fn one_statistic(inputs: &Inputs, name: &str) -> Result<(), Invalid> {
    for upstream in inputs.get(name).into_iter().flatten() {
        let several = upstream.params["statistic"]
            .as_array()
            .is_some_and(|list| list.len() > 1);
        ensure(!several, &format!("inputs.{name}"), || {
            format!(
                "`{}` reads several statistics; this stage needs an `mcue` stage of one (every statistic's maximum: `mcue-maxima`)",
                upstream.id
            )
        })?;
    }
    Ok(())
}

pub struct McueBiasStage;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McueBiasParams {}

/// What `mcue-bias` writes: the only thing a power-index stage with `d = "mcue"` is keyed on.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChosenBias {
    pub t: f64,
    pub d: f64,
    pub variance: f64,
}

impl Stage for McueBiasStage {
    type Params = McueBiasParams;
    const KIND: &'static str = "mcue-bias";
    // 2: the end points t = 0 and t = 1 of the diagonal are no longer candidates.
    const VERSION: u32 = 3;
    const SEEDED: bool = true;
    const INPUTS: &'static [&'static str] = &["grid"];
    const ABOUT: &'static str =
        "d = 1 − argmax of the MCUE diagonal (its own stage, so only d keys what follows)";

    fn validate_inputs(_: &McueBiasParams, inputs: &Inputs) -> Result<(), Invalid> {
        crate::checks::input_kinds(inputs, "grid", &["mcue"])?;
        one_statistic(inputs, "grid")
    }

    fn run(_: &McueBiasParams, ctx: &StageContext<'_>) -> anyhow::Result<()> {
        let grid = ctx.input("grid")?.read_table("mcue")?;
        let (t, variance) = diagonal_argmax(&read_cells(&grid)?);
        anyhow::ensure!(t.is_finite(), "the MCUE grid has no cell with p = q");
        let chosen = ChosenBias {
            t,
            d: 1.0 - t,
            variance,
        };
        std::fs::write(
            ctx.out_dir().join("bias.json"),
            serde_json::to_vec_pretty(&chosen)?,
        )?;
        let panel = grid
            .column("panel")?
            .str()?
            .get(0)
            .unwrap_or_default()
            .to_owned();
        let mut df = df!("panel" => [panel], "seed" => [ctx.seed()?], "t" => [t], "d" => [1.0 - t], "variance" => [variance])?;
        ctx.write_table("mcue_bias", &mut df)?;
        Ok(())
    }
}

/// The d chosen by an upstream `mcue-bias` stage.
pub fn read_bias(upstream: &Upstream) -> anyhow::Result<f64> {
    let path = upstream.path("bias.json");
    let chosen: ChosenBias = serde_json::from_slice(&std::fs::read(&path)?)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(chosen.d)
}

pub struct McueFigureStage;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McueFigureParams {
    /// File stem under figures/, e.g. "figure-2".
    pub name: String,
}

impl Stage for McueFigureStage {
    type Params = McueFigureParams;
    const KIND: &'static str = "figure-mcue";
    const VERSION: u32 = 1;
    const SEEDED: bool = false;
    const INPUTS: &'static [&'static str] = &["grids"];
    const ABOUT: &'static str =
        "Figure 2: MCUE heatmaps (mean over seeds), diagonal maximum marked";

    fn validate(p: &McueFigureParams) -> Result<(), Invalid> {
        crate::checks::file_stem("name", &p.name)
    }

    fn validate_inputs(_: &McueFigureParams, inputs: &Inputs) -> Result<(), Invalid> {
        crate::checks::input_kinds(inputs, "grids", &["mcue"])?;
        one_statistic(inputs, "grids")?;
        for upstream in inputs.get("grids").into_iter().flatten() {
            let diagonal = upstream.params["diagonal_only"].as_bool() == Some(true);
            ensure(!diagonal, "inputs.grids", || {
                format!(
                    "`{}` computes only the diagonal (`diagonal_only`); a heatmap needs the whole grid",
                    upstream.id
                )
            })?;
        }
        Ok(())
    }

    fn run(p: &McueFigureParams, ctx: &StageContext<'_>) -> anyhow::Result<()> {
        // Mean variance over seeds per (panel, p, q), panels in input order.
        let mut panels: Vec<String> = Vec::new();
        let mut sums: BTreeMap<(usize, u64, u64), (f64, f64, f64, usize)> = BTreeMap::new();
        for upstream in ctx.inputs("grids") {
            let df = upstream.read_table("mcue")?;
            let panel = df
                .column("panel")?
                .str()?
                .get(0)
                .unwrap_or_default()
                .to_owned();
            let at = panels.iter().position(|x| *x == panel).unwrap_or_else(|| {
                panels.push(panel.clone());
                panels.len() - 1
            });
            for (pp, q, _, var) in read_cells(&df)? {
                let e = sums
                    .entry((at, pp.to_bits(), q.to_bits()))
                    .or_insert((pp, q, 0.0, 0));
                e.2 += var;
                e.3 += 1;
            }
        }
        let rows: Vec<_> = sums
            .iter()
            .map(|(&(at, _, _), &(pp, q, s, c))| (panels[at].clone(), pp, q, s / c as f64))
            .collect();
        let mut df = df!(
            "panel" => rows.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(),
            "p" => rows.iter().map(|r| r.1).collect::<Vec<_>>(),
            "q" => rows.iter().map(|r| r.2).collect::<Vec<_>>(),
            "variance" => rows.iter().map(|r| r.3).collect::<Vec<_>>(),
        )?;
        let plot_panels: Vec<gtap_plot::Panel> = panels
            .iter()
            .map(|key| gtap_plot::Panel {
                key: key.clone(),
                title: key.clone(),
            })
            .collect();
        gtap_plot::mcue_figure(&df, &plot_panels, &ctx.figure_stem(&p.name)?)?;
        ctx.write_table("mcue_mean", &mut df)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
