//! Exact power indices by enumeration: [`exact`].

use rayon::prelude::*;

use crate::eval::evaluate;
use crate::{Coalition, Constraints, Game, GameError, IndexKind, PlayerEstimate};

/// Most free players [`exact`] enumerates (2^20 evaluations).
pub const MAX_EXACT_FREE: usize = 20;

/// Exact power index of every free player, by evaluating all 2^f coalitions of the free players
/// (with the always-present players added) once, in batches, then combining:
///
/// - Shapley: φ_i = Σ_{C ⊆ F∖{i}} |C|!(f−|C|−1)!/f! · (ν(C ∪ {i} ∪ A) − ν(C ∪ A));
/// - β_d: Σ_{C ⊆ F∖{i}} d^|C| (1−d)^(f−1−|C|) · (ν(C ∪ {i} ∪ A) − ν(C ∪ A)).
///
/// One entry per free player, sorted by player id, with `stderr` 0 and `samples` 2^f.
/// Errors if more than [`MAX_EXACT_FREE`] players are free.
pub fn exact(
    game: &dyn Game,
    index: &IndexKind,
    constraints: &Constraints,
) -> Result<Vec<PlayerEstimate>, GameError> {
    let bias = index.bias()?;
    let setup = constraints.resolve(game.num_players())?;
    let vals = exact_values(game, &setup.free, &setup.base, crate::Part::WHOLE, &|_| {})?;
    Ok(exact_from_values(&setup.free, bias, &vals))
}

/// ν of every coalition [`exact`] enumerates, for `part` of them: coalition m is
/// `base ∪ {free[b] : bit b of m}`. Errors past [`MAX_EXACT_FREE`] free players.
pub(crate) fn exact_values(
    game: &dyn Game,
    free: &[usize],
    base: &Coalition,
    part: crate::Part,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Vec<f64>, GameError> {
    let f = free.len();
    if f > MAX_EXACT_FREE {
        return Err(GameError::TooManyFreePlayers {
            free: f,
            max: MAX_EXACT_FREE,
        });
    }
    if f == 0 {
        return Ok(Vec::new());
    }
    let build = |range: std::ops::Range<usize>, out: &mut Vec<Coalition>| {
        for m in range {
            let mut c = base.clone();
            (0..f)
                .filter(|b| m >> b & 1 == 1)
                .for_each(|b| c.insert(free[b]));
            out.push(c);
        }
    };
    Ok(evaluate(game, 1 << f, part, build, progress))
}

/// The power indices from the 2^f values of [`exact_values`] (`bias` d for β_d, `None` for
/// Shapley).
pub(crate) fn exact_from_values(
    free: &[usize],
    bias: Option<f64>,
    vals: &[f64],
) -> Vec<PlayerEstimate> {
    let f = free.len();
    if f == 0 {
        return Vec::new();
    }
    // weight[s]: weight of a marginal contribution to a coalition of s other free players.
    let weight: Vec<f64> = (0..f)
        .map(|s| match bias {
            None => 1.0 / (f as f64 * binomial(f - 1, s)),
            Some(d) => d.powi(s as i32) * (1.0 - d).powi((f - 1 - s) as i32),
        })
        .collect();
    (0..f)
        .into_par_iter()
        .map(|b| {
            let bit = 1usize << b;
            let value: f64 = (0..vals.len())
                .filter(|m| m & bit == 0)
                .map(|m| weight[m.count_ones() as usize] * (vals[m | bit] - vals[m]))
                .sum();
            PlayerEstimate {
                player: free[b],
                estimate: value,
                stderr: 0.0,
                samples: vals.len(),
            }
        })
        .collect()
}

/// C(n, k) as a float; exact for the n ≤ 20 used here.
fn binomial(n: usize, k: usize) -> f64 {
    (0..k).fold(1.0, |acc, j| acc * (n - j) as f64 / (j + 1) as f64)
}

#[cfg(test)]
mod tests {
    #[test]
    fn binomial_small() {
        let row: Vec<f64> = (0..=4).map(|k| super::binomial(4, k)).collect();
        assert_eq!(row, vec![1.0, 4.0, 6.0, 4.0, 1.0]);
    }
}
