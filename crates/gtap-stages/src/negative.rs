//! `remove-negative`: Held & Yang (2023)'s question, "Shapley Head Pruning": are there players
//! whose power index on the probe split is negative, and does removing exactly those raise
//! test accuracy? One row per seed: how many, which, and the accuracy with and without them.

use gtap_engine::{Inputs, Invalid, Stage, StageContext};
use gtap_game::{Coalition, Game};
use gtap_nn::{MaskedEvaluator, Utility};
use polars::prelude::*;
use serde::{Deserialize, Serialize};

use crate::checks;
use crate::train::{load_model, load_split};

pub struct RemoveNegativeStage;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoveNegativeParams {}

impl Stage for RemoveNegativeStage {
    type Params = RemoveNegativeParams;
    const KIND: &'static str = "remove-negative";
    const FLOAT_MATH: bool = true;
    const VERSION: u32 = 2;
    const SEEDED: bool = true;
    const INPUTS: &'static [&'static str] = &["model", "data", "indices"];
    const ABOUT: &'static str =
        "test accuracy with every player of negative power index removed (Held & Yang 2023)";

    fn validate_inputs(_: &RemoveNegativeParams, inputs: &Inputs) -> Result<(), Invalid> {
        checks::model_and_data(inputs)?;
        checks::input_kinds(inputs, "indices", &["power-indices"])
    }

    fn run(_: &RemoveNegativeParams, ctx: &StageContext<'_>) -> anyhow::Result<()> {
        let (net, model) = load_model(ctx.input("model")?)?;
        let data = ctx.input("data")?;
        let indices = ctx.input("indices")?.read_table("power_indices")?;
        let players = indices.column("player")?.u32()?.clone();
        let estimates = indices.column("estimate")?.f64()?.clone();
        let index = indices
            .column("index")?
            .str()?
            .get(0)
            .unwrap_or("")
            .to_owned();
        let n = net.num_players();
        let mut kept = Coalition::full(n);
        let mut negative = Vec::new();
        for (player, estimate) in players.iter().zip(estimates.iter()) {
            let (Some(player), Some(estimate)) = (player, estimate) else {
                continue;
            };
            let player = player as usize;
            anyhow::ensure!(
                player < n,
                "power index of player {player}, but the model has {n} players"
            );
            if estimate < 0.0 {
                kept.remove(player);
                negative.push(player);
            }
        }
        let accuracy = |split: &str, c: &Coalition| -> anyhow::Result<f64> {
            let examples = load_split(&data.dir, split)?;
            let game = MaskedEvaluator::new(&net, &examples, Utility::Accuracy, 1);
            let mut out = [0.0];
            game.values(std::slice::from_ref(c), &mut out);
            Ok(out[0])
        };
        let full = Coalition::full(n);
        let names: Vec<String> = negative
            .iter()
            .map(|&p| {
                let u = net.unit(p);
                format!("{}:{}", u.layer, u.unit)
            })
            .collect();
        let (test_full, test_without) = (accuracy("test", &full)?, accuracy("test", &kept)?);
        let (probe_full, probe_without) = (accuracy("probe", &full)?, accuracy("probe", &kept)?);
        let mut df = df!(
            "model" => [model.arch.name()],
            "dataset" => [model.dataset.as_str()],
            "seed" => [model.seed],
            "index" => [index.as_str()],
            "players" => [n as u32],
            "negative" => [negative.len() as u32],
            "removed" => [names.join(" ")],
            "probe_accuracy" => [probe_full],
            "probe_accuracy_without" => [probe_without],
            "test_accuracy" => [test_full],
            "test_accuracy_without" => [test_without],
        )?;
        ctx.write_table("negative_removal", &mut df)?;
        tracing::info!(
            "{}: {} of {n} players negative; test accuracy {test_full:.4} -> {test_without:.4}",
            ctx.instance,
            negative.len()
        );
        Ok(())
    }
}
