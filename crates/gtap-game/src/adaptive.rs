//! [`separate`]: an adaptive estimator for pruning, which needs the k lowest (or highest)
//! players, not every index to the same precision.
//!
//! Paired marginal contributions (the paper's Algorithm 2, sample j of player i drawn exactly as
//! [`Estimator::Paired`](crate::Estimator::Paired) draws it) are spent where the cut is
//! uncertain, in the spirit of LUCB (Kalyanakrishnan et al. 2012) and Neuron Shapley's bandit
//! (Ghorbani & Zou 2020): after `initial` samples of every player, each round gives `round` more
//! to every player whose confidence interval still overlaps the other side of the cut. It stops
//! when the chosen k are separated — every chosen player's upper bound at or below every other
//! player's lower bound — or when the budget is spent. The intervals are mean ± z·se with
//! z = Φ⁻¹(1 − (1 − confidence)/n) (one-sided Bonferroni over the n free players), so when the
//! normal approximation holds, a separated answer is the true k lowest with probability at least
//! `confidence`.

use crate::eval::{draw_members, evaluate, sample_rng, Stats};
use crate::{Coalition, Constraints, Game, GameError, IndexKind, PlayerEstimate};

/// What [`separate`] looks for and how much it may spend.
#[derive(Debug, Clone, PartialEq)]
pub struct SeparationConfig {
    /// A Banzhaf-type index (Banzhaf or β_d).
    pub index: IndexKind,
    /// How many players to choose.
    pub k: usize,
    /// The k with the highest index instead of the lowest (Iterated Building).
    pub highest: bool,
    /// Joint confidence that a separated answer is right, in (0, 1).
    pub confidence: f64,
    /// Marginal contributions per player before the first check (at least 2).
    pub initial: usize,
    /// Marginal contributions per still-ambiguous player and round (at least 1).
    pub round: usize,
    /// Most coalition evaluations in all (2 per marginal contribution); at least 2·initial per
    /// free player.
    pub budget: usize,
    /// Seed of the random streams (the same streams as `Paired` with this seed).
    pub seed: u64,
}

/// The answer of [`separate`].
#[derive(Debug, Clone, PartialEq)]
pub struct Separation {
    /// Every free player's estimate, in player order; `samples` is its marginal count.
    pub estimates: Vec<PlayerEstimate>,
    /// The k chosen players (lowest or highest estimates), in increasing player order.
    pub chosen: Vec<usize>,
    /// Whether the chosen set was separated at the stated confidence (else the budget ran out).
    pub separated: bool,
    /// Coalition evaluations spent.
    pub evaluations: usize,
}

/// Chooses the k free players with the lowest (or highest) index, sampling adaptively; see the
/// module docs. Bit-identical for a configuration whatever the thread count.
pub fn separate(
    game: &dyn Game,
    cfg: &SeparationConfig,
    constraints: &Constraints,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Separation, GameError> {
    let Some(d) = cfg.index.bias()? else {
        return Err(GameError::IncompatibleEstimator {
            estimator: "Adaptive",
            index: "Shapley",
            instead: "Permutation",
        });
    };
    let setup = constraints.resolve(game.num_players())?;
    let (free, base) = (&setup.free, &setup.base);
    let f = free.len();
    let invalid = |why: String| Err(GameError::InvalidSeparation(why));
    if !(cfg.confidence > 0.0 && cfg.confidence < 1.0) {
        return invalid(format!(
            "confidence must be in (0, 1), got {}",
            cfg.confidence
        ));
    }
    if cfg.initial < 2 || cfg.round < 1 {
        return invalid(format!(
            "needs initial >= 2 and round >= 1, got {} and {}",
            cfg.initial, cfg.round
        ));
    }
    if cfg.k > f {
        return invalid(format!("k = {} exceeds the {f} free players", cfg.k));
    }
    if cfg.budget < 2 * cfg.initial * f {
        return invalid(format!(
            "budget {} is below the first round's {} evaluations (2 × {} × {f})",
            cfg.budget,
            2 * cfg.initial * f,
            cfg.initial
        ));
    }
    let mut stats = vec![Stats::default(); f];
    let mut drawn = vec![0usize; f];
    let mut evaluations = 0;
    // Sample j of slot a: the coalition Paired draws for (player free[a], sample j).
    let spend = |units: &[(usize, usize)], stats: &mut [Stats], drawn: &mut [usize]| -> usize {
        let build = |range: std::ops::Range<usize>, out: &mut Vec<Coalition>| {
            let (first, last) = (range.start / 2, range.end.div_ceil(2));
            for (u, &(a, j)) in units.iter().enumerate().take(last).skip(first) {
                let mut without = base.clone();
                let stream = (free[a] as u64) << 32 | j as u64;
                draw_members(
                    &mut sample_rng(cfg.seed, stream),
                    f,
                    Some(a),
                    d,
                    |slot, m| {
                        if m {
                            without.insert(free[slot]);
                        }
                    },
                );
                if range.contains(&(2 * u)) {
                    let mut with = without.clone();
                    with.insert(free[a]);
                    out.push(with);
                }
                if range.contains(&(2 * u + 1)) {
                    out.push(without);
                }
            }
        };
        let vals = evaluate(game, 2 * units.len(), crate::Part::WHOLE, build, progress);
        for (&(a, _), pair) in units.iter().zip(vals.chunks_exact(2)) {
            stats[a].push(pair[0] - pair[1]);
            drawn[a] += 1;
        }
        vals.len()
    };
    let first: Vec<(usize, usize)> = (0..f)
        .flat_map(|a| (0..cfg.initial).map(move |j| (a, j)))
        .collect();
    evaluations += spend(&first, &mut stats, &mut drawn);
    let z = normal_quantile(1.0 - (1.0 - cfg.confidence) / f.max(1) as f64);
    let sign = if cfg.highest { -1.0 } else { 1.0 };
    let (chosen, separated) = loop {
        // Work on sign·index, so "highest" is "lowest" of the negated values.
        let mean: Vec<f64> = stats.iter().map(|s| sign * s.mean()).collect();
        let half: Vec<f64> = stats.iter().map(|s| z * s.stderr()).collect();
        let chosen = crate::rank::lowest_k(&mean, cfg.k);
        let mut is_chosen = vec![false; f];
        chosen.iter().for_each(|&a| is_chosen[a] = true);
        let upper_in = (0..f)
            .filter(|&a| is_chosen[a])
            .map(|a| mean[a] + half[a])
            .fold(f64::NEG_INFINITY, f64::max);
        let lower_out = (0..f)
            .filter(|&a| !is_chosen[a])
            .map(|a| mean[a] - half[a])
            .fold(f64::INFINITY, f64::min);
        if upper_in <= lower_out {
            break (chosen, true);
        }
        // Players whose interval reaches across the cut.
        let ambiguous: Vec<usize> = (0..f)
            .filter(|&a| {
                if is_chosen[a] {
                    mean[a] + half[a] > lower_out
                } else {
                    mean[a] - half[a] < upper_in
                }
            })
            .collect();
        let affordable = (cfg.budget - evaluations) / 2;
        let units: Vec<(usize, usize)> = ambiguous
            .iter()
            .flat_map(|&a| (drawn[a]..drawn[a] + cfg.round).map(move |j| (a, j)))
            .take(affordable)
            .collect();
        if units.is_empty() {
            break (chosen, false);
        }
        evaluations += spend(&units, &mut stats, &mut drawn);
    };
    let estimates = free
        .iter()
        .zip(&stats)
        .zip(&drawn)
        .map(|((&player, s), &n)| PlayerEstimate {
            player,
            estimate: s.mean(),
            stderr: s.stderr(),
            samples: n,
        })
        .collect();
    let mut chosen: Vec<usize> = chosen.into_iter().map(|a| free[a]).collect();
    chosen.sort_unstable();
    Ok(Separation {
        estimates,
        chosen,
        separated,
        evaluations,
    })
}

/// Φ⁻¹(p), the standard normal quantile (Acklam's rational approximation, relative error
/// below 1.2e-9), for p in (0, 1).
pub(crate) fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    const LOW: f64 = 0.024_25;
    if p < LOW {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - LOW {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_quantiles_match_tables() {
        for (p, z) in [
            (0.5, 0.0),
            (0.975, 1.959_963_984_540_054),
            (0.95, 1.644_853_626_951_472_6),
            (0.999, 3.090_232_306_167_813_5),
            (1e-6, -4.753_424_308_822_899),
        ] {
            assert!((normal_quantile(p) - z).abs() < 1e-8, "Φ⁻¹({p})");
        }
    }
}
