//! Score-based unit baselines: WMP (weight magnitude), W·GMP (weight × gradient magnitude on the
//! probe split) and random.

use gtap_nn::WeightCriterion;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::ranking::{by_descending_score, RankContext, Ranker};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

/// Unit-level weight magnitude pruning: a unit's score is the mean |w| over the weights that
/// belong to it alone (outgoing, and incoming + bias for fully connected neurons); see
/// `Network::unit_scores` for why the mean and not the sum.
pub struct Wmp;

impl Ranker for Wmp {
    const METHOD: &'static str = "wmp";
    // 2: mean instead of sum of |w|.
    const VERSION: u32 = 2;
    const ABOUT: &'static str =
        "baseline: keep the units with the largest mean |w| of their own weights";
    type Params = NoParams;

    fn rank(_: &NoParams, cx: &RankContext<'_>) -> anyhow::Result<Vec<usize>> {
        let scores = cx.net.unit_scores(WeightCriterion::Magnitude, None)?;
        Ok(by_descending_score(&scores))
    }
}

/// Unit-level weight·gradient magnitude pruning: Σ|w · ∂L/∂w| over the unit's own weights, L
/// the mean cross-entropy on the probe split.
pub struct Wgmp;

impl Ranker for Wgmp {
    const METHOD: &'static str = "wgmp";
    const VERSION: u32 = 1;
    const ABOUT: &'static str =
        "baseline: keep the units with the largest Σ|w·∂L/∂w| (gradients on the probe split)";
    type Params = NoParams;

    fn rank(_: &NoParams, cx: &RankContext<'_>) -> anyhow::Result<Vec<usize>> {
        let scores = cx
            .net
            .unit_scores(WeightCriterion::WeightGradient, Some(cx.probe))?;
        Ok(by_descending_score(&scores))
    }
}

/// A uniformly random order (ChaCha8 stream of the seed).
pub struct Random;

impl Ranker for Random {
    const METHOD: &'static str = "random";
    const VERSION: u32 = 1;
    const ABOUT: &'static str = "baseline: keep a uniformly random set of units";
    const FLOAT_MATH: bool = false;
    type Params = NoParams;

    fn rank(_: &NoParams, cx: &RankContext<'_>) -> anyhow::Result<Vec<usize>> {
        let mut order: Vec<usize> = (0..cx.net.num_players()).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(cx.seed));
        Ok(order)
    }
}
