//! Unit-level pruning methods as stages: the [`Ranker`] trait and its stage adapter
//! [`RankerStage`].
//!
//! A method orders a trained network's players from most to least worth keeping; the kept set
//! at target size r is the first r of that order. Top-n rankings, iterated pruning (the reverse
//! removal order) and iterated building (the order of addition) all fit, so one `curves` stage
//! evaluates every method the same way. Adding a method is one file with a `Ranker` impl and one
//! `register::<RankerStage<MyMethod>>()` line.

use std::marker::PhantomData;

use gtap_engine::{Inputs, Invalid, Stage, StageContext, Upstream};
use gtap_nn::{Network, TensorData};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::train::{load_model, load_split};

/// A unit-level pruning method.
pub trait Ranker: Send + Sync + 'static {
    /// Stage kind and the `method` column of the curves (`wmp`, `gtap`, …).
    const METHOD: &'static str;
    /// Bump when the ranking a parameter set produces changes.
    const VERSION: u32;
    /// One line for `gtap stages`.
    const ABOUT: &'static str;
    /// Whether the ranking depends on float arithmetic in libtorch (see `Stage::FLOAT_MATH`).
    const FLOAT_MATH: bool = true;
    /// The method's parameters (`deny_unknown_fields` recommended).
    type Params: Serialize + DeserializeOwned + Send + Sync;

    fn validate(_params: &Self::Params) -> Result<(), Invalid> {
        Ok(())
    }

    /// Checks against the declared inputs ([`gtap_engine::Stage::validate_inputs`]), after the
    /// ones every method gets (model and data kinds, shapes; one `mcue-bias` as `bias`).
    fn validate_inputs(_params: &Self::Params, _inputs: &Inputs) -> Result<(), Invalid> {
        Ok(())
    }

    /// The `index` and `strategy` columns of this method's curve rows.
    fn label(_params: &Self::Params) -> Label {
        Label {
            index: String::new(),
            strategy: "unit".into(),
            variant: String::new(),
        }
    }

    /// Every player id exactly once, most worth keeping first.
    fn rank(params: &Self::Params, cx: &RankContext<'_>) -> anyhow::Result<Vec<usize>>;

    /// Parts the ranking's estimation is split into ([`gtap_engine::Stage::parts`]).
    fn parts(_params: &Self::Params) -> usize {
        1
    }

    /// Rounds of parts ([`gtap_engine::Stage::rounds`]).
    fn rounds(
        _params: &Self::Params,
        _inputs: &std::collections::BTreeMap<String, Vec<serde_json::Value>>,
    ) -> Result<usize, Invalid> {
        Ok(1)
    }

    /// Merges round `round` (not the last) of a ranking split in rounds into the round's entry.
    fn run_round(
        _params: &Self::Params,
        _cx: &RankContext<'_>,
        _round: usize,
    ) -> anyhow::Result<()> {
        anyhow::bail!("method `{}` has no rounds", Self::METHOD)
    }

    /// Computes part `(index, of)` of a split ranking into the part's entry; `rank` then finds
    /// the parts in `cx.stage.parts()`.
    fn run_part(
        _params: &Self::Params,
        _cx: &RankContext<'_>,
        _part: (usize, usize),
    ) -> anyhow::Result<()> {
        anyhow::bail!("method `{}` is not split in parts", Self::METHOD)
    }
}

/// How a ranking is labelled in curve tables and figures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Label {
    /// Power index (`shapley`, `banzhaf`, `biased-banzhaf`), empty for baselines.
    pub index: String,
    /// `top-n`, `iterated-pruning`, `iterated-building`, or `unit` for score-based baselines.
    pub strategy: String,
    /// Tells apart rankings of one method, index and strategy (the `gtap` stage's `variant`,
    /// e.g. its estimator); empty for most, and then absent from `ranking.json`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub variant: String,
}

/// What a method may use: the trained network, the probe split (never the test split), the
/// seed, and d from an optional `bias` input (an `mcue-bias` stage).
pub struct RankContext<'a> {
    pub net: &'a Network,
    pub model: &'a crate::train::ModelInfo,
    pub probe: &'a TensorData,
    pub seed: u64,
    pub bias: Option<f64>,
    pub stage: &'a StageContext<'a>,
}

/// What a ranking stage writes: `ranking.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ranking {
    pub method: String,
    #[serde(flatten)]
    pub label: Label,
    pub model: String,
    pub seed: u64,
    /// Player ids, most worth keeping first.
    pub order: Vec<usize>,
}

pub const RANKING_FILE: &str = "ranking.json";

impl Ranking {
    pub fn read(upstream: &Upstream) -> anyhow::Result<Ranking> {
        let path = upstream.path(RANKING_FILE);
        let bytes = std::fs::read(&path).map_err(|e| {
            anyhow::anyhow!(
                "input `{}` is not a ranking stage ({}: {e})",
                upstream.stage,
                path.display()
            )
        })?;
        Ok(serde_json::from_slice(&bytes)?)
    }

    /// [`Ranking::read`], checked to rank `net`'s players (same architecture and player count):
    /// a ranking made for another model is an error naming the stage.
    pub fn read_for(upstream: &Upstream, net: &Network) -> anyhow::Result<Ranking> {
        let ranking = Ranking::read(upstream)?;
        let n = net.num_players();
        anyhow::ensure!(
            ranking.model == net.arch.name() && ranking.order.len() == n,
            "ranking `{}` was made for {} ({} players), not this {} ({n} players)",
            upstream.stage,
            ranking.model,
            ranking.order.len(),
            net.arch.name()
        );
        check_permutation(&ranking.order, n, &ranking.method)?;
        Ok(ranking)
    }
}

/// The engine stage of a [`Ranker`]: inputs `model` and `data`, optional `bias`; seeded.
pub struct RankerStage<R>(PhantomData<fn() -> R>);

impl<R: Ranker> Stage for RankerStage<R> {
    type Params = R::Params;
    const KIND: &'static str = R::METHOD;
    const VERSION: u32 = R::VERSION;
    const SEEDED: bool = true;
    const INPUTS: &'static [&'static str] = &["model", "data"];
    const OPTIONAL_INPUTS: &'static [&'static str] = &["bias"];
    const ABOUT: &'static str = R::ABOUT;
    const FLOAT_MATH: bool = R::FLOAT_MATH;

    fn validate(params: &R::Params) -> Result<(), Invalid> {
        R::validate(params)
    }

    fn validate_inputs(params: &R::Params, inputs: &Inputs) -> Result<(), Invalid> {
        crate::checks::model_and_data(inputs)?;
        crate::checks::input_kinds(inputs, "bias", &["mcue-bias"])?;
        gtap_engine::ensure(
            inputs.get("bias").is_none_or(|b| b.len() <= 1),
            "inputs.bias",
            || "takes one mcue-bias stage".into(),
        )?;
        R::validate_inputs(params, inputs)
    }

    fn parts(params: &R::Params) -> usize {
        R::parts(params)
    }

    fn rounds(
        params: &R::Params,
        inputs: &std::collections::BTreeMap<String, Vec<serde_json::Value>>,
    ) -> Result<usize, Invalid> {
        R::rounds(params, inputs)
    }

    fn run(params: &R::Params, ctx: &StageContext<'_>) -> anyhow::Result<()> {
        let seed = ctx.seed()?;
        let (net, model) = load_model(ctx.input("model")?)?;
        let probe = load_split(&ctx.input("data")?.dir, "probe")?;
        let bias = match ctx.inputs("bias") {
            [] => None,
            [one] => Some(crate::mcue::read_bias(one)?),
            many => anyhow::bail!("`bias` takes one mcue-bias stage, got {}", many.len()),
        };
        let cx = RankContext {
            net: &net,
            model: &model,
            probe: &probe,
            seed,
            bias,
            stage: ctx,
        };
        if let Some(part) = ctx.part {
            return R::run_part(params, &cx, part);
        }
        if let Some((round, _)) = ctx.round.filter(|(r, of)| r + 1 < *of) {
            return R::run_round(params, &cx, round);
        }
        let order = R::rank(params, &cx)?;
        check_permutation(&order, net.num_players(), R::METHOD)?;
        let ranking = Ranking {
            method: R::METHOD.into(),
            label: R::label(params),
            model: model.arch.name().into(),
            seed,
            order,
        };
        std::fs::write(
            ctx.out_dir().join(RANKING_FILE),
            serde_json::to_vec(&ranking)?,
        )?;
        Ok(())
    }
}

fn check_permutation(order: &[usize], n: usize, method: &str) -> anyhow::Result<()> {
    let mut seen = vec![false; n];
    for &p in order {
        anyhow::ensure!(
            p < n && !std::mem::replace(&mut seen[p], true),
            "method `{method}` ranked player {p} twice or out of range (0..{n})"
        );
    }
    anyhow::ensure!(
        order.len() == n,
        "method `{method}` ranked {} of {n} players",
        order.len()
    );
    Ok(())
}

/// Player ids sorted by descending score; ties by ascending id (deterministic).
pub fn by_descending_score(scores: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    order
}

/// The name serde gives a unit enum variant (`"top-n"` for `Strategy::TopN`).
pub fn serde_name<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ranking_for_another_model_is_refused_naming_its_stage() {
        let dir = tempfile::tempdir().unwrap();
        let ranking = Ranking {
            method: "wmp".into(),
            label: Label {
                index: String::new(),
                strategy: "unit".into(),
                variant: String::new(),
            },
            model: "lenet5".into(),
            seed: 0,
            order: (0..604).collect(),
        };
        std::fs::write(
            dir.path().join(RANKING_FILE),
            serde_json::to_vec(&ranking).unwrap(),
        )
        .unwrap();
        let upstream = Upstream {
            stage: "wmp_lenet5".into(),
            kind: "wmp".into(),
            seed: Some(0),
            dir: dir.path().to_owned(),
            content_hash: String::new(),
        };
        let lenet5 = Network::new(gtap_nn::Arch::Lenet5, tch::Device::Cpu, 0);
        assert_eq!(
            Ranking::read_for(&upstream, &lenet5).unwrap().order.len(),
            604
        );
        let mlp = Network::new(gtap_nn::Arch::Lenet300100, tch::Device::Cpu, 0);
        let err = Ranking::read_for(&upstream, &mlp).unwrap_err();
        assert_eq!(
            err.to_string(),
            "ranking `wmp_lenet5` was made for lenet5 (604 players), not this lenet-300-100 (400 players)"
        );
    }
}
