//! GTAP: rank units by a power index (Shapley, Banzhaf, β_d) with the paper's three strategies.

use gtap_engine::{ensure, Invalid, Stage};
use gtap_game::{Constraints, PlayerEstimate};
use serde::{Deserialize, Serialize};

use crate::indices::{PowerIndexParams, PowerIndexStage};
use crate::ranking::{serde_name, Label, RankContext, Ranker};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Estimate once, keep the r highest.
    TopN,
    /// Remove the `step` lowest, re-estimate with the removed units always absent, repeat.
    IteratedPruning,
    /// Add the `step` highest, re-estimate with the chosen units always present, repeat.
    IteratedBuilding,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GtapParams {
    pub strategy: Strategy,
    /// Units removed (pruning) or added (building) per iteration; iterated strategies only.
    #[serde(default)]
    pub step: Option<usize>,
    /// The power index and its estimator, as for a `power-indices` stage (`samples` is per
    /// iteration for the iterated strategies). `layers` is not allowed: every unit is ranked.
    pub estimate: PowerIndexParams,
}

pub struct Gtap;

impl Ranker for Gtap {
    const METHOD: &'static str = "gtap";
    const VERSION: u32 = 1;
    const ABOUT: &'static str =
        "GTAP: rank units by Shapley / Banzhaf / β_d (top-n, iterated pruning or building)";
    type Params = GtapParams;

    fn validate(p: &GtapParams) -> Result<(), Invalid> {
        PowerIndexStage::validate(&p.estimate).map_err(|e| Invalid {
            key: format!("estimate.{}", e.key),
            ..e
        })?;
        ensure(p.estimate.layers.is_none(), "estimate.layers", || {
            "gtap ranks every unit of the network; layer-restricted games are for power-indices"
                .into()
        })?;
        match (p.strategy, p.step) {
            (Strategy::TopN, Some(_)) => Err(Invalid::new("step", "top-n takes no step")),
            (Strategy::TopN, None) => Ok(()),
            (_, None) => Err(Invalid::new(
                "step",
                "iterated strategies need step: units removed or added per iteration",
            )),
            (_, Some(step)) => ensure(step >= 1, "step", || "must be at least 1".into()),
        }
    }

    fn label(p: &GtapParams) -> Label {
        Label {
            index: serde_name(&p.estimate.index),
            strategy: serde_name(&p.strategy),
        }
    }

    fn rank(p: &GtapParams, cx: &RankContext<'_>) -> anyhow::Result<Vec<usize>> {
        let d = p.estimate.resolve_bias(cx.stage)?;
        let n = cx.net.num_players();
        // One game for every iteration: the prefix runs once.
        let game = p.estimate.game(cx.net, cx.probe);
        let estimate = |iteration: usize, constraints: &Constraints| {
            // Each iteration samples from its own streams.
            let seed = cx.seed ^ (iteration as u64).rotate_left(32);
            p.estimate
                .estimate(cx.net, &game, d, seed, constraints, cx.stage)
        };
        let step = p.step.unwrap_or(n);
        match p.strategy {
            Strategy::TopN => Ok(descending(&estimate(0, &Constraints::none())?)),
            Strategy::IteratedPruning => {
                let mut removed: Vec<usize> = Vec::new();
                let mut iteration = 0;
                loop {
                    let constraints = Constraints {
                        always_out: removed.clone(),
                        ..Constraints::none()
                    };
                    let ranked = descending(&estimate(iteration, &constraints)?);
                    if ranked.len() <= step {
                        // Last survivors, best first, then the removed in reverse removal order.
                        return Ok(ranked
                            .into_iter()
                            .chain(removed.into_iter().rev())
                            .collect());
                    }
                    // The `step` lowest leave, lowest first.
                    removed.extend(ranked.iter().rev().take(step));
                    iteration += 1;
                }
            }
            Strategy::IteratedBuilding => {
                let mut chosen: Vec<usize> = Vec::new();
                let mut iteration = 0;
                loop {
                    let constraints = Constraints {
                        always_in: chosen.clone(),
                        ..Constraints::none()
                    };
                    let ranked = descending(&estimate(iteration, &constraints)?);
                    if ranked.len() <= step {
                        chosen.extend(ranked);
                        return Ok(chosen);
                    }
                    chosen.extend(ranked.iter().take(step));
                    iteration += 1;
                }
            }
        }
    }
}

/// Free players by descending estimate (NaN last), ties by id.
fn descending(estimates: &[PlayerEstimate]) -> Vec<usize> {
    let key = |e: &PlayerEstimate| {
        if e.estimate.is_nan() {
            f64::NEG_INFINITY
        } else {
            e.estimate
        }
    };
    let mut sorted: Vec<&PlayerEstimate> = estimates.iter().collect();
    sorted.sort_by(|a, b| key(b).total_cmp(&key(a)).then(a.player.cmp(&b.player)));
    sorted.into_iter().map(|e| e.player).collect()
}
