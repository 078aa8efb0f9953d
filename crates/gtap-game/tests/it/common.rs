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
        c(IndexKind::Banzhaf, Estimator::Sweep, 800),
        c(IndexKind::BiasedBanzhaf { d: 0.3 }, Estimator::Sweep, 800),
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

/// A game that asks for walks ([`Game::incremental`]) but evaluates them one coalition at a time
/// (the default [`Game::walk_values`]): the walk path with nothing but its bookkeeping.
pub struct AsWalks<G> {
    pub inner: G,
    pub batch: usize,
}

impl<G: Game> Game for AsWalks<G> {
    fn num_players(&self) -> usize {
        self.inner.num_players()
    }
    fn values(&self, coalitions: &[Coalition], out: &mut [f64]) {
        self.inner.values(coalitions, out)
    }
    fn batch_size(&self) -> usize {
        self.batch
    }
    fn incremental(&self) -> bool {
        true
    }
}

/// Many independent runs (`cfg(seed)` for seeds `0..runs`): the mean estimate is within its own
/// standard error of the exact value (unbiased), the spread across runs is what the reported
/// standard errors predict, and 95% intervals cover the exact value 95% of the time.
#[track_caller]
pub fn assert_calibrated(
    game: &dyn Game,
    index: IndexKind,
    runs: u64,
    cfg: impl Fn(u64) -> EstimateConfig,
) {
    let want = exact_values(game, index, &Constraints::none());
    let n = want.len();
    let mut sum = vec![0.0; n];
    let mut square = vec![0.0; n];
    let mut predicted = vec![0.0; n];
    let mut covered = 0;
    for seed in 0..runs {
        let est = run(game, &cfg(seed), &Constraints::none());
        for (i, e) in est.iter().enumerate() {
            sum[i] += e.estimate;
            square[i] += e.estimate * e.estimate;
            predicted[i] += e.stderr * e.stderr;
            covered += usize::from((e.estimate - want[i]).abs() <= 1.96 * e.stderr);
        }
    }
    let r = runs as f64;
    let (mut observed_total, mut predicted_total) = (0.0, 0.0);
    for i in 0..n {
        let mean = sum[i] / r;
        let var = (square[i] - r * mean * mean) / (r - 1.0);
        assert!(
            (mean - want[i]).abs() <= 4.0 * (var / r).sqrt() + 1e-12,
            "{index:?} player {i}: mean {mean} vs exact {} (sd of the mean {})",
            want[i],
            (var / r).sqrt()
        );
        observed_total += var;
        predicted_total += predicted[i] / r;
    }
    // The variance of a variance estimate from 400 runs is ≈ 7%: a ratio off by 25% is a wrong
    // standard error, not noise.
    let ratio = observed_total / predicted_total;
    assert!(
        (0.8..1.25).contains(&ratio),
        "{index:?}: observed / predicted variance = {ratio}"
    );
    let coverage = covered as f64 / (r * n as f64);
    assert!(
        (0.93..0.97).contains(&coverage),
        "{index:?}: 95% intervals covered {coverage}"
    );
}
