//! `curves`: test accuracy of a trained network pruned by each input ranking, without
//! retraining, over a grid of target sizes; `unstructured`: the paper's global weight-level WMP /
//! W·GMP on a parameter-fraction axis. Both write the `curves` table with the same columns.

use gtap_engine::{ensure, Inputs, Invalid, Stage, StageContext};
use gtap_nn::{MaskedEvaluator, Network, Utility, WeightCriterion};
use polars::prelude::*;
use serde::{Deserialize, Serialize};

use crate::ranking::Ranking;
use crate::train::{load_model, load_split, ModelInfo};

/// Target sizes: `points` fractions j / points, j = 1..=points, of the players (or weights).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CurveParams {
    #[serde(default = "default_points")]
    pub points: usize,
}

fn default_points() -> usize {
    50
}

fn validate_points(points: usize) -> Result<(), Invalid> {
    ensure((1..=10_000).contains(&points), "points", || {
        format!("must be between 1 and 10000 (got {points})")
    })
}

/// Distinct sizes round(j / points · n), j = 1..=points, at least 1.
pub fn size_grid(points: usize, n: usize) -> Vec<usize> {
    let mut sizes: Vec<usize> = (1..=points)
        .map(|j| ((j as f64 / points as f64) * n as f64).round().max(1.0) as usize)
        .collect();
    sizes.dedup();
    sizes
}

/// One row of the curves table.
pub(crate) struct Point {
    pub method: String,
    pub index: String,
    pub strategy: String,
    /// The ranking's [`crate::ranking::Label::variant`]; empty for most.
    pub variant: String,
    pub size_fraction: f64,
    pub players_kept: u32,
    pub params_kept: u64,
    pub flops_kept: u64,
    pub test_accuracy: f64,
}

pub struct CurvesStage;

impl Stage for CurvesStage {
    type Params = CurveParams;
    const KIND: &'static str = "curves";
    const FLOAT_MATH: bool = true;
    // 3: the `variant` column.
    const VERSION: u32 = 3;
    const SEEDED: bool = true;
    const INPUTS: &'static [&'static str] = &["model", "data", "rankings"];
    const ABOUT: &'static str =
        "test accuracy of the network pruned by each input ranking, over a grid of sizes";

    fn validate_inputs(_: &CurveParams, inputs: &Inputs) -> Result<(), Invalid> {
        crate::checks::model_and_data(inputs)?;
        crate::checks::rankings(inputs)
    }

    fn validate(p: &CurveParams) -> Result<(), Invalid> {
        validate_points(p.points)
    }

    fn run(p: &CurveParams, ctx: &StageContext<'_>) -> anyhow::Result<()> {
        let (net, model) = load_model(ctx.input("model")?)?;
        let test = load_split(&ctx.input("data")?.dir, "test")?;
        let n = net.num_players();
        let full = net.cost(&vec![true; n]);
        let sizes = size_grid(p.points, n);
        let evaluator = MaskedEvaluator::new(&net, &test, Utility::Accuracy, sizes.len());
        let mut points = Vec::new();
        for upstream in ctx.inputs("rankings") {
            let ranking = Ranking::read_for(upstream, &net)?;
            let mut rows = vec![0f32; sizes.len() * n];
            let mut kept_flags = Vec::with_capacity(sizes.len());
            for (row, &r) in rows.chunks_mut(n).zip(&sizes) {
                ranking.order[..r].iter().for_each(|&p| row[p] = 1.0);
                kept_flags.push(row.iter().map(|&x| x > 0.0).collect::<Vec<_>>());
            }
            let masks = Network::mask_tensor(&rows, n, net.device());
            let accuracies = evaluator.values_of_masks(&masks)?;
            for ((&r, kept), accuracy) in sizes.iter().zip(&kept_flags).zip(accuracies) {
                let cost = net.cost(kept);
                points.push(Point {
                    method: ranking.method.clone(),
                    index: ranking.label.index.clone(),
                    strategy: ranking.label.strategy.clone(),
                    variant: ranking.label.variant.clone(),
                    size_fraction: r as f64 / n as f64,
                    players_kept: r as u32,
                    params_kept: cost.params,
                    flops_kept: cost.flops,
                    test_accuracy: accuracy,
                });
            }
        }
        write_curves(ctx, &model, full, &points)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnstructuredParams {
    /// `magnitude` (WMP) or `weight-gradient` (W·GMP, gradients on the probe split).
    pub criterion: WeightCriterion,
    #[serde(default = "default_points")]
    pub points: usize,
}

pub struct UnstructuredStage;

impl Stage for UnstructuredStage {
    type Params = UnstructuredParams;
    const KIND: &'static str = "unstructured";
    const FLOAT_MATH: bool = true;
    // 2: the curves' `variant` column.
    const VERSION: u32 = 2;
    const SEEDED: bool = true;
    const INPUTS: &'static [&'static str] = &["model", "data"];
    const ABOUT: &'static str =
        "global unstructured WMP / W·GMP: keep the largest-scoring weights anywhere";

    fn validate_inputs(_: &UnstructuredParams, inputs: &Inputs) -> Result<(), Invalid> {
        crate::checks::model_and_data(inputs)
    }

    fn validate(p: &UnstructuredParams) -> Result<(), Invalid> {
        validate_points(p.points)
    }

    fn run(p: &UnstructuredParams, ctx: &StageContext<'_>) -> anyhow::Result<()> {
        let (mut net, model) = load_model(ctx.input("model")?)?;
        let data = ctx.input("data")?;
        let probe = load_split(&data.dir, "probe")?;
        let test = load_split(&data.dir, "test")?;
        let n = net.num_players();
        let full = net.cost(&vec![true; n]);
        let fractions: Vec<f64> = (1..=p.points).map(|j| j as f64 / p.points as f64).collect();
        let method = match p.criterion {
            WeightCriterion::Magnitude => "wmp",
            WeightCriterion::WeightGradient => "wgmp",
        };
        let points = net
            .unstructured_accuracy(p.criterion, &probe, &test, &fractions)?
            .into_iter()
            .map(|u| Point {
                method: method.into(),
                index: String::new(),
                strategy: "unstructured".into(),
                variant: String::new(),
                size_fraction: u.weights_kept as f64 / u.weights_total as f64,
                players_kept: n as u32,
                params_kept: u.cost.params,
                flops_kept: u.cost.flops,
                test_accuracy: u.accuracy,
            })
            .collect::<Vec<_>>();
        write_curves(ctx, &model, full, &points)
    }
}

fn write_curves(
    ctx: &StageContext<'_>,
    model: &ModelInfo,
    full: gtap_nn::Cost,
    points: &[Point],
) -> anyhow::Result<()> {
    let mut df = curves_frame(ctx.seed()?, model, full, points)?;
    ctx.write_table("curves", &mut df)
}

/// The `curves` table of `points` (fractions relative to the full network's `full` cost).
pub(crate) fn curves_frame(
    seed: u64,
    model: &ModelInfo,
    full: gtap_nn::Cost,
    points: &[Point],
) -> anyhow::Result<DataFrame> {
    let n = points.len();
    let col = |f: &dyn Fn(&Point) -> String| points.iter().map(f).collect::<Vec<_>>();
    let df = df!(
        "model" => vec![model.arch.name(); n],
        "dataset" => vec![model.dataset.as_str(); n],
        "method" => col(&|p| p.method.clone()),
        "index" => col(&|p| p.index.clone()),
        "strategy" => col(&|p| p.strategy.clone()),
        "variant" => col(&|p| p.variant.clone()),
        "size_fraction" => points.iter().map(|p| p.size_fraction).collect::<Vec<_>>(),
        "players_kept" => points.iter().map(|p| p.players_kept).collect::<Vec<_>>(),
        "params_kept" => points.iter().map(|p| p.params_kept).collect::<Vec<_>>(),
        "params_fraction" => points.iter().map(|p| p.params_kept as f64 / full.params as f64).collect::<Vec<_>>(),
        "flops_kept" => points.iter().map(|p| p.flops_kept).collect::<Vec<_>>(),
        "flops_fraction" => points.iter().map(|p| p.flops_kept as f64 / full.flops as f64).collect::<Vec<_>>(),
        "seed" => vec![seed; n],
        "test_accuracy" => points.iter().map(|p| p.test_accuracy).collect::<Vec<_>>(),
    )?;
    Ok(df)
}
