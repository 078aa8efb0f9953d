//! Shared games and helpers.

use gtap_game::games::{PairwiseGame, WeightedVotingGame};
use gtap_game::{
    estimate, exact, Coalition, Constraints, EstimateConfig, Estimator, Game, IndexKind,
    PlayerEstimate,
};

/// Ten players; player 9 has weight 0 (a dummy).
pub fn voting10() -> WeightedVotingGame {
    WeightedVotingGame {
        weights: vec![6.0, 5.0, 4.0, 3.0, 3.0, 2.0, 2.0, 1.0, 1.0, 0.0],
        quota: 14.0,
    }
}

/// Ten players; player 4 has no terms at all (a dummy).
pub fn pairwise10() -> PairwiseGame {
    PairwiseGame {
        linear: vec![1.0, -0.5, 2.0, 0.3, 0.0, 1.5, -1.0, 0.7, 0.2, 0.9],
        pairs: vec![
            (0, 1, 2.0),
            (1, 2, -1.5),
            (2, 3, 0.5),
            (3, 5, 1.0),
            (5, 6, 3.0),
            (0, 9, 1.2),
            (7, 8, -2.0),
            (2, 7, 0.8),
        ],
    }
}

/// Every Monte-Carlo configuration worth checking, with sample sizes that keep tests fast.
pub fn mc_configs(seed: u64) -> Vec<EstimateConfig> {
    let c = |index, estimator, samples| EstimateConfig {
        index,
        estimator,
        samples,
        seed,
    };
    vec![
        c(
            IndexKind::Shapley,
            Estimator::Permutation { antithetic: false },
            2000,
        ),
        c(
            IndexKind::Shapley,
            Estimator::Permutation { antithetic: true },
            2000,
        ),
        c(IndexKind::Banzhaf, Estimator::Paired, 400),
        c(IndexKind::BiasedBanzhaf { d: 0.3 }, Estimator::Paired, 400),
        c(IndexKind::Banzhaf, Estimator::Shared, 8000),
        c(IndexKind::BiasedBanzhaf { d: 0.7 }, Estimator::Shared, 8000),
        c(IndexKind::Banzhaf, Estimator::SharedRegression, 8000),
        c(
            IndexKind::BiasedBanzhaf { d: 0.3 },
            Estimator::SharedRegression,
            8000,
        ),
        c(
            IndexKind::Banzhaf,
            Estimator::SharedCrossFit { folds: 5 },
            4000,
        ),
        c(
            IndexKind::BiasedBanzhaf { d: 0.7 },
            Estimator::SharedCrossFit { folds: 3 },
            4000,
        ),
    ]
}

pub fn run(
    game: &dyn Game,
    cfg: &EstimateConfig,
    constraints: &Constraints,
) -> Vec<PlayerEstimate> {
    estimate(game, cfg, constraints, &|_| {}).unwrap()
}

pub fn exact_values(game: &dyn Game, index: IndexKind, constraints: &Constraints) -> Vec<f64> {
    values(&exact(game, &index, constraints).unwrap())
}

pub fn values(estimates: &[PlayerEstimate]) -> Vec<f64> {
    estimates.iter().map(|e| e.estimate).collect()
}

pub fn value_of(game: &dyn Game, c: Coalition) -> f64 {
    let mut out = [0.0];
    game.values(&[c], &mut out);
    out[0]
}

#[track_caller]
pub fn assert_close(got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "lengths differ: {got:?} vs {want:?}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol,
            "entry {i}: got {g}, want {w} (tol {tol})\n{got:?}\n{want:?}"
        );
    }
}

/// Every estimate within 4 reported standard errors (+ 1e-9) of the exact value.
#[track_caller]
pub fn assert_within_4se(est: &[PlayerEstimate], want: &[f64], what: &str) {
    assert_eq!(est.len(), want.len(), "{what}");
    for (e, w) in est.iter().zip(want) {
        assert!(
            (e.estimate - w).abs() <= 4.0 * e.stderr + 1e-9,
            "{what}: player {}: estimate {} ± {}, exact {w}",
            e.player,
            e.estimate,
            e.stderr,
        );
    }
}

/// A game with chosen batching, to exercise batch boundaries and sequential evaluation.
pub struct Tuned<G> {
    pub inner: G,
    pub batch: usize,
    pub parallel: bool,
}

impl<G: Game> Game for Tuned<G> {
    fn num_players(&self) -> usize {
        self.inner.num_players()
    }
    fn values(&self, coalitions: &[Coalition], out: &mut [f64]) {
        assert!(coalitions.len() <= self.batch.max(1), "batch_size exceeded");
        self.inner.values(coalitions, out)
    }
    fn batch_size(&self) -> usize {
        self.batch
    }
    fn parallel(&self) -> bool {
        self.parallel
    }
}
