//! Small games with known power indices, for tests of this and other crates.

use crate::{Coalition, Game};

/// Weighted voting game: ν(C) = 1 if the weights of C sum to at least `quota`, else 0.
#[derive(Debug, Clone, PartialEq)]
pub struct WeightedVotingGame {
    /// Weight of each player; the number of players is `weights.len()`.
    pub weights: Vec<f64>,
    /// Total weight a coalition needs to win.
    pub quota: f64,
}

impl Game for WeightedVotingGame {
    fn num_players(&self) -> usize {
        self.weights.len()
    }

    fn values(&self, coalitions: &[Coalition], out: &mut [f64]) {
        for (c, o) in coalitions.iter().zip(out) {
            let total: f64 = c.iter().map(|i| self.weights[i]).sum();
            *o = if total >= self.quota { 1.0 } else { 0.0 };
        }
    }
}

/// Game with linear and pairwise terms:
/// ν(C) = Σ_{i∈C} a_i + Σ_{(i,j,b)∈pairs, i,j∈C} b.
///
/// Its indices have closed forms ([`PairwiseGame::shapley`], [`PairwiseGame::biased_banzhaf`]).
#[derive(Debug, Clone, PartialEq)]
pub struct PairwiseGame {
    /// a_i; the number of players is `linear.len()`.
    pub linear: Vec<f64>,
    /// (i, j, b_ij): b_ij is earned when both i and j are present. `i == j` acts as a linear term.
    pub pairs: Vec<(usize, usize, f64)>,
}

impl PairwiseGame {
    /// Shapley value: a_i + ½ Σ b_ij over the pairs with i (a self-pair counts in full).
    pub fn shapley(&self) -> Vec<f64> {
        self.closed_form(0.5)
    }

    /// β_d: a_i + d · Σ b_ij over the pairs with i (a self-pair counts in full). β_½ is Banzhaf.
    pub fn biased_banzhaf(&self, d: f64) -> Vec<f64> {
        self.closed_form(d)
    }

    /// i's marginal gains b_ij exactly when j is present, which happens with probability ½
    /// before i in a random order (Shapley) and d under R_d (β_d).
    fn closed_form(&self, share: f64) -> Vec<f64> {
        let mut v = self.linear.clone();
        for &(i, j, b) in &self.pairs {
            if i == j {
                v[i] += b;
            } else {
                v[i] += share * b;
                v[j] += share * b;
            }
        }
        v
    }
}

impl Game for PairwiseGame {
    fn num_players(&self) -> usize {
        self.linear.len()
    }

    fn values(&self, coalitions: &[Coalition], out: &mut [f64]) {
        for (c, o) in coalitions.iter().zip(out) {
            let linear: f64 = c.iter().map(|i| self.linear[i]).sum();
            let pairs: f64 = self
                .pairs
                .iter()
                .filter(|&&(i, j, _)| c.contains(i) && c.contains(j))
                .map(|&(_, _, b)| b)
                .sum();
            *o = linear + pairs;
        }
    }
}

/// A logistic unit: ν(C) = 1 / (1 + exp(−(Σ_{i∈C} w_i − threshold) / temperature)). Smooth,
/// non-linear in C (a unit's marginal value depends on who else is present), like a network's
/// accuracy as its units are removed; `groups` labels the players for
/// [`Game::player_groups`].
#[derive(Debug, Clone, PartialEq)]
pub struct LogisticGame {
    /// Weight of each player; the number of players is `weights.len()`.
    pub weights: Vec<f64>,
    /// Weight at which ν = ½.
    pub threshold: f64,
    /// Width of the transition.
    pub temperature: f64,
    /// Group label per player, if any.
    pub groups: Option<Vec<usize>>,
}

impl Game for LogisticGame {
    fn num_players(&self) -> usize {
        self.weights.len()
    }

    fn values(&self, coalitions: &[Coalition], out: &mut [f64]) {
        for (c, o) in coalitions.iter().zip(out) {
            let total: f64 = c.iter().map(|i| self.weights[i]).sum();
            *o = 1.0 / (1.0 + (-(total - self.threshold) / self.temperature).exp());
        }
    }

    fn player_groups(&self) -> Option<Vec<usize>> {
        self.groups.clone()
    }

    fn predicts_marginals(&self) -> bool {
        true
    }

    /// The first-order change: ∂ν/∂m_i at C's gates, σ'(z)·w_i/temperature (exact for small
    /// weights, a poor guess where one player crosses the threshold).
    fn predicted_marginals(&self, coalitions: &[Coalition], out: &mut [f64]) {
        let n = self.weights.len();
        for (c, row) in coalitions.iter().zip(out.chunks_mut(n.max(1))) {
            let total: f64 = c.iter().map(|i| self.weights[i]).sum();
            let v = 1.0 / (1.0 + (-(total - self.threshold) / self.temperature).exp());
            let slope = v * (1.0 - v) / self.temperature;
            for (o, w) in row.iter_mut().zip(&self.weights) {
                *o = slope * w;
            }
        }
    }
}
