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
use tch::{Kind, Tensor};

use crate::progress;
use crate::train::{load_model, load_split};

/// What each MCUE trial records about the diluted network's prediction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Statistic {
    /// 1 if the diluted network classifies the example correctly, else 0 (the default).
    #[default]
    Correctness,
    /// Softmax probability of the true class.
    TrueClassProbability,
    /// Entropy of the predictive distribution (nats).
    Entropy,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McueParams {
    /// Grid step on [0, 1] for both p and q (0.025 gives 41 × 41 cells).
    #[serde(default = "default_step")]
    pub step: f64,
    /// Trials k per cell.
    pub trials: usize,
    #[serde(default)]
    pub statistic: Statistic,
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

pub struct McueStage;

impl Stage for McueStage {
    type Params = McueParams;
    const KIND: &'static str = "mcue";
    const FLOAT_MATH: bool = true;
    const VERSION: u32 = 2;
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
        let ts = grid(params.step);
        let cells: Vec<(f64, f64)> = ts
            .iter()
            .flat_map(|&p| ts.iter().map(move |&q| (p, q)))
            .collect();
        let k = params.trials;
        let bar = progress::bar(ctx.env.progress, (cells.len() * k) as u64, ctx.instance);
        let group = (params.batch / k).max(1);
        let examples = probe.len();
        let players = free.len();
        let mut results = Vec::with_capacity(cells.len());
        for (chunk_index, chunk) in cells.chunks(group).enumerate() {
            // Each cell draws from its own stream, so results do not depend on grouping or threads.
            let trials: Vec<(Vec<f32>, Vec<i64>)> = chunk
                .par_iter()
                .enumerate()
                .map(|(j, &(p, q))| {
                    let cell = (chunk_index * group + j) as u64;
                    draw_trials(players, examples, p, q, k, seed, cell)
                })
                .collect();
            let masks = spread_over(&free, net.num_players(), trials.iter().map(|t| &t.0[..]));
            let index: Vec<i64> = trials.iter().flat_map(|t| t.1.iter().copied()).collect();
            let stats = evaluate_trials(
                &suffix,
                net.num_players(),
                &features,
                &probe.labels,
                &masks,
                &index,
                params.statistic,
            )?;
            for (cell_stats, &(p, q)) in stats.chunks(k).zip(chunk) {
                let (mean, variance) = mean_variance(cell_stats);
                results.push((p, q, mean, variance));
            }
            bar.inc((chunk.len() * k) as u64);
        }
        bar.finish_and_clear();
        let n = results.len();
        let statistic = serde_json::to_value(params.statistic)?
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let mut df = df!(
            "panel" => vec![panel.as_str(); n],
            "model" => vec![model.arch.name(); n],
            "dataset" => vec![model.dataset.as_str(); n],
            "seed" => vec![seed; n],
            "p" => results.iter().map(|r| r.0).collect::<Vec<_>>(),
            "q" => results.iter().map(|r| r.1).collect::<Vec<_>>(),
            "statistic" => vec![statistic.as_str(); n],
            "variance" => results.iter().map(|r| r.3).collect::<Vec<_>>(),
            "mean" => results.iter().map(|r| r.2).collect::<Vec<_>>(),
            "trials" => vec![k as u32; n],
        )?;
        ctx.write_table("mcue", &mut df)?;
        let (t, variance) = diagonal_argmax(&results);
        tracing::info!(
            "{}: diagonal maximum at t = {t:.3} (variance {variance:.4}), d = {:.3}",
            ctx.instance,
            1.0 - t
        );
        Ok(())
    }
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

fn evaluate_trials(
    suffix: &MaskedSuffix,
    players: usize,
    features: &Tensor,
    labels: &Tensor,
    masks: &[f32],
    index: &[i64],
    statistic: Statistic,
) -> anyhow::Result<Vec<f64>> {
    let _guard = tch::no_grad_guard();
    let device = features.device();
    let index = Tensor::from_slice(index).to_device(device);
    let rows = features.index_select(0, &index);
    let ys = labels.index_select(0, &index);
    let masks = Network::mask_tensor(masks, players, device);
    let stat = match statistic {
        // Argmax decisions: the certified path gives the reference's answers.
        Statistic::Correctness => {
            let correct = suffix.paired_correct(&rows, &masks, &ys)?;
            return Ok(correct
                .into_iter()
                .map(|c| f64::from(u8::from(c)))
                .collect());
        }
        Statistic::TrueClassProbability => suffix
            .paired_logits(&rows, &masks)?
            .softmax(-1, Kind::Double)
            .gather(1, &ys.unsqueeze(1), false)
            .squeeze_dim(1),
        Statistic::Entropy => {
            let logp = suffix
                .paired_logits(&rows, &masks)?
                .log_softmax(-1, Kind::Double);
            -(logp.exp() * &logp).sum_dim_intlist(1, false, Kind::Double)
        }
    };
    Ok(Vec::<f64>::try_from(stat.to_device(tch::Device::Cpu))?)
}

/// Mean and unbiased sample variance.
pub fn mean_variance(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let ss: f64 = xs.iter().map(|x| (x - mean) * (x - mean)).sum();
    (
        mean,
        if xs.len() > 1 {
            ss / (n - 1.0)
        } else {
            f64::NAN
        },
    )
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

/// Reads an MCUE table into (p, q, mean, variance) rows.
fn read_cells(df: &DataFrame) -> anyhow::Result<Vec<(f64, f64, f64, f64)>> {
    let col = |name: &str| -> anyhow::Result<Vec<f64>> {
        Ok(df.column(name)?.f64()?.into_no_null_iter().collect())
    };
    let (p, q, mean, var) = (col("p")?, col("q")?, col("mean")?, col("variance")?);
    Ok((0..p.len())
        .map(|i| (p[i], q[i], mean[i], var[i]))
        .collect())
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
        crate::checks::input_kinds(inputs, "grid", &["mcue"])
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
        crate::checks::input_kinds(inputs, "grids", &["mcue"])
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

/// A figure's file stem: letters, digits, `-` and `_` only.
#[cfg(test)]
mod tests {
    use super::*;

    /// A stub network that is right exactly when player 0 survives: the trial statistic is then
    /// Bernoulli(a) with a = P(0 in the sub-network) · (1 − p) = (round((1 − q)·n) / n) · (1 − p),
    /// so the cell's variance must be a(1 − a).
    #[test]
    fn variance_matches_the_closed_form_of_a_one_unit_network() {
        let (n, k) = (40, 40_000);
        for &(p, q) in &[(0.0, 0.0), (0.25, 0.5), (0.5, 0.25), (0.8, 0.1), (0.1, 0.9)] {
            let (masks, _) = draw_trials(n, 10, p, q, k, 7, 3);
            let stats: Vec<f64> = masks.chunks(n).map(|row| f64::from(row[0])).collect();
            let (mean, variance) = mean_variance(&stats);
            let a = (((1.0 - q) * n as f64).round() / n as f64) * (1.0 - p);
            let se = (a * (1.0 - a) / k as f64).sqrt();
            assert!(
                (mean - a).abs() < 5.0 * se + 1e-12,
                "p={p} q={q}: mean {mean} vs {a}"
            );
            assert!(
                (variance - a * (1.0 - a)).abs() < 5.0 * se + 1e-12,
                "p={p} q={q}: variance {variance}"
            );
        }
    }

    #[test]
    fn sub_network_has_exactly_the_requested_size_before_dropout() {
        for q in [0.0, 0.025, 0.5, 0.975, 1.0] {
            let (masks, index) = draw_trials(604, 100, 0.0, q, 50, 1, 2);
            let size = ((1.0 - q) * 604.0).round() as usize;
            assert!(masks
                .chunks(604)
                .all(|row| row.iter().filter(|&&m| m == 1.0).count() == size));
            assert!(index.iter().all(|&i| (0..100).contains(&i)));
        }
    }

    #[test]
    fn trials_depend_on_seed_and_cell_only() {
        assert_eq!(
            draw_trials(30, 5, 0.3, 0.3, 10, 1, 9),
            draw_trials(30, 5, 0.3, 0.3, 10, 1, 9)
        );
        assert_ne!(
            draw_trials(30, 5, 0.3, 0.3, 10, 1, 9),
            draw_trials(30, 5, 0.3, 0.3, 10, 1, 10)
        );
    }

    #[test]
    fn trial_rows_over_free_players_spread_into_full_masks() {
        let free = [1, 3, 4];
        let trials = [vec![0.0, 1.0, 0.0, 1.0, 1.0, 1.0], vec![0.0, 0.0, 0.0]];
        let masks = spread_over(&free, 6, trials.iter().map(|t| &t[..]));
        assert_eq!(
            masks,
            [
                [1.0, 0.0, 1.0, 1.0, 0.0, 1.0],
                [1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
                [1.0, 0.0, 1.0, 0.0, 0.0, 1.0]
            ]
            .concat()
        );
    }

    #[test]
    fn diagonal_argmax_prefers_the_smallest_tie() {
        let cells = [
            (0.0, 0.0, 0.0, 0.1),
            (0.5, 0.5, 0.0, 0.3),
            (0.75, 0.75, 0.0, 0.3),
            (0.5, 0.25, 0.0, 0.9),
        ];
        assert_eq!(diagonal_argmax(&cells), (0.5, 0.3));
    }

    #[test]
    fn diagonal_argmax_never_picks_an_end_point() {
        // A degenerate model: the largest variance at t = 0 (d would be 1) and t = 1 (d = 0).
        let cells = [
            (0.0, 0.0, 0.0, 0.9),
            (0.25, 0.25, 0.0, 0.1),
            (0.5, 0.5, 0.0, 0.2),
            (1.0, 1.0, 0.0, 0.8),
        ];
        assert_eq!(diagonal_argmax(&cells), (0.5, 0.2));
    }

    #[test]
    fn grid_has_41_points_at_step_0_025() {
        let g = grid(0.025);
        assert_eq!(g.len(), 41);
        assert_eq!((g[0], g[40]), (0.0, 1.0));
        assert!((g[33] - 0.825).abs() < 1e-12);
    }
}
