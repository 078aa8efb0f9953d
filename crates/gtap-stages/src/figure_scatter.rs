//! `figure-index-vs-weight` (Figure 8): per player layer, each unit's power index against its
//! weight magnitude, with the Spearman correlation in the panel title.

use gtap_engine::{ensure, Inputs, Invalid, Stage, StageContext};
use gtap_nn::WeightCriterion;
use polars::prelude::*;
use serde::{Deserialize, Serialize};

use crate::train::load_model;

pub struct FigureIndexVsWeightStage;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FigureIndexVsWeightParams {
    /// File stem under figures/, e.g. "figure-8".
    pub name: String,
    /// Units whose mean |w| is below this are left out of the panels and the correlation (the
    /// paper's footnote 10: 2·10⁻³); their count is in the table and the panel title.
    #[serde(default = "default_threshold")]
    pub threshold: f64,
}

fn default_threshold() -> f64 {
    2e-3
}

/// A layer's points and correlation.
struct LayerPoints {
    name: String,
    points: Vec<(f64, f64)>,
    omitted: usize,
    spearman: f64,
}

impl Stage for FigureIndexVsWeightStage {
    type Params = FigureIndexVsWeightParams;
    const KIND: &'static str = "figure-index-vs-weight";
    const VERSION: u32 = 1;
    const SEEDED: bool = false;
    const INPUTS: &'static [&'static str] = &["indices", "model"];
    const ABOUT: &'static str =
        "Figure 8: power index against mean |w| per layer (first seed), Spearman ρ in each title";

    fn validate_inputs(_: &FigureIndexVsWeightParams, inputs: &Inputs) -> Result<(), Invalid> {
        crate::checks::input_kinds(inputs, "indices", &["power-indices", "gtap"])?;
        crate::checks::input_kinds(inputs, "model", &crate::checks::MODEL_KINDS)
    }

    fn validate(p: &FigureIndexVsWeightParams) -> Result<(), Invalid> {
        crate::checks::file_stem("name", &p.name)?;
        ensure(
            p.threshold >= 0.0 && p.threshold.is_finite(),
            "threshold",
            || format!("must be a non-negative number (got {})", p.threshold),
        )
    }

    fn run(p: &FigureIndexVsWeightParams, ctx: &StageContext<'_>) -> anyhow::Result<()> {
        let indices = ctx
            .inputs("indices")
            .first()
            .ok_or_else(|| anyhow::anyhow!("`indices` names no power-indices stage"))?
            .read_table("power_indices")?;
        let seed = indices.column("seed")?.u64()?.get(0).unwrap_or_default();
        let model = ctx
            .inputs("model")
            .iter()
            .find(|m| m.seed == Some(seed))
            .ok_or_else(|| {
                anyhow::anyhow!("no `model` instance of seed {seed}, the indices' seed")
            })?;
        let (net, info) = load_model(model)?;
        let magnitude = net.unit_scores(WeightCriterion::Magnitude, None)?;
        let player = indices.column("player")?.u32()?;
        let estimate = indices.column("estimate")?.f64()?;
        let index_name = indices
            .column("index")?
            .str()?
            .get(0)
            .unwrap_or_default()
            .to_owned();
        let mut layers: Vec<LayerPoints> = Vec::new();
        let mut rows: Vec<(String, u32, f64, f64, bool)> = Vec::new();
        for (p_id, e) in player.iter().zip(estimate.iter()) {
            let (Some(p_id), Some(e)) = (p_id, e) else {
                anyhow::bail!("the power-indices table has a null player or estimate");
            };
            let unit = net.unit(p_id as usize);
            let w = magnitude[p_id as usize];
            let omitted = w < p.threshold;
            rows.push((unit.layer.clone(), unit.unit as u32, w, e, omitted));
            let at = match layers.iter().position(|l| l.name == unit.layer) {
                Some(at) => at,
                None => {
                    layers.push(LayerPoints {
                        name: unit.layer.clone(),
                        points: Vec::new(),
                        omitted: 0,
                        spearman: f64::NAN,
                    });
                    layers.len() - 1
                }
            };
            if omitted {
                layers[at].omitted += 1;
            } else if e.is_finite() {
                layers[at].points.push((w, e));
            }
        }
        for l in &mut layers {
            let (xs, ys): (Vec<f64>, Vec<f64>) = l.points.iter().copied().unzip();
            l.spearman = gtap_game::rank::spearman(&xs, &ys);
            tracing::info!(
                "{}: {} ρ = {:.3} over {} units ({} below |w| {} omitted)",
                ctx.instance,
                l.name,
                l.spearman,
                l.points.len(),
                l.omitted,
                p.threshold
            );
        }
        let panels: Vec<gtap_plot::ScatterPanel> = layers
            .iter()
            .filter(|l| !l.points.is_empty())
            .map(|l| gtap_plot::ScatterPanel {
                title: match l.omitted {
                    0 => format!("{}: ρ = {:.2}", l.name, l.spearman),
                    n => format!("{}: ρ = {:.2} ({n} omitted)", l.name, l.spearman),
                },
                x_label: "mean |w| of the unit's weights".into(),
                y_label: format!("{index_name} (seed {seed})"),
                points: l.points.clone(),
            })
            .collect();
        gtap_plot::scatter_figure(&panels, &ctx.figure_stem(&p.name)?)?;
        let n = rows.len();
        let mut points = df!(
            "model" => vec![info.arch.name(); n],
            "seed" => vec![seed; n],
            "layer" => rows.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(),
            "unit" => rows.iter().map(|r| r.1).collect::<Vec<_>>(),
            "weight_magnitude" => rows.iter().map(|r| r.2).collect::<Vec<_>>(),
            "estimate" => rows.iter().map(|r| r.3).collect::<Vec<_>>(),
            "omitted" => rows.iter().map(|r| r.4).collect::<Vec<_>>(),
        )?;
        ctx.write_table("index_vs_weight", &mut points)?;
        let mut summary = df!(
            "layer" => layers.iter().map(|l| l.name.as_str()).collect::<Vec<_>>(),
            "units" => layers.iter().map(|l| l.points.len() as u32).collect::<Vec<_>>(),
            "omitted" => layers.iter().map(|l| l.omitted as u32).collect::<Vec<_>>(),
            "spearman" => layers.iter().map(|l| l.spearman).collect::<Vec<_>>(),
        )?;
        ctx.write_table("index_vs_weight_spearman", &mut summary)?;
        Ok(())
    }
}
