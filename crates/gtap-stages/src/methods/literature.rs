//! Baselines from the head-pruning literature, on any players (heads, FFN neurons, the
//! LeNets' units): Michel et al. (2019)'s gradient importance, one-shot or iterative, and
//! leave-one-out ablation (the value each player adds to the whole network).

use gtap_engine::{ensure, Invalid};
use gtap_game::{Coalition, Game};
use gtap_nn::{MaskedEvaluator, Network, Utility};
use serde::{Deserialize, Serialize};

use crate::ranking::{RankContext, Ranker};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MichelParams {
    /// Probe examples the expectation runs over (the first n). Default: all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_examples: Option<usize>,
    /// Iterative variant: remove this many of the least important players, recompute the
    /// importance with them gated off, repeat (Michel et al. prune 10% of heads a step).
    /// Default: one-shot (one importance at ξ = 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<usize>,
    /// Divide each player's importance by the ℓ2 norm over its layer's remaining players, so
    /// layers compare (Michel et al.'s normalisation). Default true.
    #[serde(default = "yes")]
    pub normalise: bool,
}

fn yes() -> bool {
    true
}

/// Michel, Levy & Neubig (2019): I_i = E_x |∂L(x)/∂ξ_i| at the gates, L the cross-entropy on
/// the probe split; keep the players of largest (layer-normalised) importance.
pub struct Michel;

impl Ranker for Michel {
    const METHOD: &'static str = "michel";
    const VERSION: u32 = 1;
    const ABOUT: &'static str =
        "baseline: keep the players of largest E|dL/d gate| (Michel et al. 2019; one-shot or iterative)";
    type Params = MichelParams;

    fn validate(p: &MichelParams) -> Result<(), Invalid> {
        ensure(p.step != Some(0), "step", || {
            "must be at least 1 (leave it out for one-shot)".into()
        })?;
        ensure(p.probe_examples != Some(0), "probe_examples", || {
            "must be at least 1".into()
        })
    }

    fn label(p: &MichelParams) -> crate::ranking::Label {
        crate::ranking::Label {
            index: String::new(),
            strategy: match p.step {
                Some(_) => "iterated-pruning".into(),
                None => "unit".into(),
            },
            variant: String::new(),
        }
    }

    fn rank(p: &MichelParams, cx: &RankContext<'_>) -> anyhow::Result<Vec<usize>> {
        let probe = cx.probe.head(p.probe_examples.unwrap_or(usize::MAX));
        let n = cx.net.num_players();
        let step = p.step.unwrap_or(n);
        let mut gates = vec![1f32; n];
        let mut removed = Vec::new();
        loop {
            let raw = cx.net.gate_importance(&probe, &gates)?;
            let normalised = per_layer_normalised(cx.net, &raw, &gates);
            if removed.is_empty() {
                write_importance(cx, &raw, &normalised)?;
            }
            let scores = if p.normalise { normalised } else { raw };
            let mut alive: Vec<usize> = (0..n).filter(|&i| gates[i] > 0.0).collect();
            // Most important first; ties by id.
            alive.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
            if alive.len() <= step {
                alive.extend(removed.iter().rev());
                return Ok(alive);
            }
            for &i in alive.iter().rev().take(step) {
                gates[i] = 0.0;
                removed.push(i);
            }
        }
    }
}

/// The `importance` table: every player's importance at ξ = 1, raw and layer-normalised.
fn write_importance(cx: &RankContext<'_>, raw: &[f64], normalised: &[f64]) -> anyhow::Result<()> {
    use polars::prelude::*;
    let n = raw.len();
    let units: Vec<_> = (0..n).map(|p| cx.net.unit(p)).collect();
    let mut df = df!(
        "model" => vec![cx.model.arch.name(); n],
        "seed" => vec![cx.seed; n],
        "player" => (0..n as u32).collect::<Vec<_>>(),
        "layer" => units.iter().map(|u| u.layer.as_str()).collect::<Vec<_>>(),
        "unit" => units.iter().map(|u| u.unit as u32).collect::<Vec<_>>(),
        "importance" => raw.to_vec(),
        "normalised" => normalised.to_vec(),
    )?;
    cx.stage.write_table("importance", &mut df)?;
    Ok(())
}

/// `raw` divided by the ℓ2 norm over each player layer's present players (0 stays 0).
fn per_layer_normalised(net: &Network, raw: &[f64], gates: &[f32]) -> Vec<f64> {
    let mut out = raw.to_vec();
    for l in net.player_layers() {
        let range = l.offset..l.offset + l.size;
        let norm = range
            .clone()
            .filter(|&i| gates[i] > 0.0)
            .map(|i| raw[i] * raw[i])
            .sum::<f64>()
            .sqrt();
        if norm > 0.0 {
            out[range].iter_mut().for_each(|v| *v /= norm);
        }
    }
    out
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaveOneOutParams {
    /// What ν measures (`accuracy`, the default, or `negative-cross-entropy`).
    #[serde(default = "accuracy")]
    pub utility: Utility,
    /// Probe examples ν is measured on (the first n). Default: all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_examples: Option<usize>,
}

fn accuracy() -> Utility {
    Utility::Accuracy
}

/// Leave-one-out ablation: s_i = ν(N) − ν(N ∖ {i}) on the probe split, one coalition per
/// player; keep the players whose removal costs most. Ties (many, when ν is an accuracy) in a
/// random order drawn from the seed.
pub struct LeaveOneOut;

impl Ranker for LeaveOneOut {
    const METHOD: &'static str = "leave-one-out";
    const VERSION: u32 = 2;
    const ABOUT: &'static str =
        "baseline: keep the players whose removal alone lowers nu(N) most (ablation)";
    type Params = LeaveOneOutParams;

    fn validate(p: &LeaveOneOutParams) -> Result<(), Invalid> {
        ensure(p.probe_examples != Some(0), "probe_examples", || {
            "must be at least 1".into()
        })
    }

    fn rank(p: &LeaveOneOutParams, cx: &RankContext<'_>) -> anyhow::Result<Vec<usize>> {
        let probe = cx.probe.head(p.probe_examples.unwrap_or(usize::MAX));
        let game = MaskedEvaluator::new(cx.net, &probe, p.utility, 64);
        let scores = leave_one_out(&game);
        let tie = super::gtap::random_ranks(scores.len(), cx.seed, 0);
        let mut order: Vec<usize> = (0..scores.len()).collect();
        order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(tie[a].cmp(&tie[b])));
        Ok(order)
    }
}

/// ν(N) − ν(N ∖ {i}) for every player i of `game`.
pub fn leave_one_out(game: &dyn Game) -> Vec<f64> {
    let n = game.num_players();
    let mut coalitions = vec![Coalition::full(n)];
    coalitions.extend((0..n).map(|i| {
        let mut c = Coalition::full(n);
        c.remove(i);
        c
    }));
    let mut values = vec![0.0; n + 1];
    for (cs, out) in coalitions
        .chunks(game.batch_size().max(1))
        .zip(values.chunks_mut(game.batch_size().max(1)))
    {
        game.values(cs, out);
    }
    values[1..].iter().map(|v| values[0] - v).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ν(C) = Σ_{i∈C} w_i + 10·[0 ∈ C and 1 ∈ C]: leave-one-out sees the interaction.
    struct Weighted;

    impl Game for Weighted {
        fn num_players(&self) -> usize {
            4
        }
        fn values(&self, coalitions: &[Coalition], out: &mut [f64]) {
            let w = [1.0, 2.0, 3.0, 4.0];
            for (c, o) in coalitions.iter().zip(out) {
                *o = (0..4).filter(|&i| c.contains(i)).map(|i| w[i]).sum::<f64>()
                    + if c.contains(0) && c.contains(1) {
                        10.0
                    } else {
                        0.0
                    };
            }
        }
        fn batch_size(&self) -> usize {
            3
        }
    }

    #[test]
    fn leave_one_out_is_the_value_lost_by_removing_each_player_alone() {
        assert_eq!(leave_one_out(&Weighted), [11.0, 12.0, 3.0, 4.0]);
    }

    #[test]
    fn normalisation_divides_by_each_layers_norm_over_its_present_players() {
        let net = Network::new(gtap_nn::Arch::Lenet300100, tch::Device::Cpu, 0);
        let mut raw = vec![0.0; 400];
        raw[0] = 3.0;
        raw[1] = 4.0;
        raw[2] = 100.0; // removed: left out of the norm
        raw[300] = 2.0;
        let mut gates = vec![1f32; 400];
        gates[2] = 0.0;
        let out = per_layer_normalised(&net, &raw, &gates);
        assert_eq!(&out[0..3], &[0.6, 0.8, 20.0]);
        assert_eq!(out[300], 1.0);
        assert_eq!(out[301], 0.0);
    }
}
