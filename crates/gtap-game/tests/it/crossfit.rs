//! The cross-fitted regression-adjusted estimator: exact where its surrogate is, and unbiased,
//! with the variance and coverage it reports, where it is not.

use gtap_game::games::LogisticGame;
use gtap_game::{
    estimate, Coalition, Constraints, EstimateConfig, Estimator, Game, GameError, IndexKind,
};

use crate::common::{assert_calibrated, assert_close, exact_values, run};

/// ν = Σ a_i·[i ∈ C] + a cubic in each group's active count: exactly the surrogate's family.
struct LinearPlusCounts {
    linear: Vec<f64>,
    groups: Vec<usize>,
}

impl Game for LinearPlusCounts {
    fn num_players(&self) -> usize {
        self.linear.len()
    }
    fn values(&self, coalitions: &[Coalition], out: &mut [f64]) {
        for (c, o) in coalitions.iter().zip(out) {
            let count = |g: usize| c.iter().filter(|&i| self.groups[i] == g).count() as f64;
            let (a, b) = (count(0), count(1));
            *o = c.iter().map(|i| self.linear[i]).sum::<f64>() + 0.3 * a * a - 0.05 * a * a * a
                + 0.2 * b * b * b;
        }
    }
    fn player_groups(&self) -> Option<Vec<usize>> {
        Some(self.groups.clone())
    }
}

/// Twelve players in two layers of six, weights of both signs.
pub fn logistic12() -> LogisticGame {
    LogisticGame {
        weights: vec![3.0, 2.5, 2.0, 1.5, 1.0, 0.5, 2.0, 1.8, -1.0, 1.2, 0.8, 0.0],
        threshold: 5.0,
        temperature: 1.5,
        groups: Some(vec![0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1]),
    }
}

fn cross_fit(index: IndexKind, samples: usize, folds: usize, seed: u64) -> EstimateConfig {
    EstimateConfig {
        index,
        estimator: Estimator::SharedCrossFit { folds },
        samples,
        seed,
    }
}

/// When ν is in the surrogate's family every residual is zero: the estimate is the exact index
/// (this checks the fit and the closed-form index of the count features) and the standard error
/// vanishes.
#[test]
fn exact_when_the_surrogate_is_exact() {
    let game = LinearPlusCounts {
        linear: vec![1.0, -0.5, 2.0, 0.3, 0.0, 1.5, -1.0, 0.7, 0.2, 0.9],
        groups: vec![0, 0, 0, 0, 0, 1, 1, 1, 1, 1],
    };
    for index in [IndexKind::Banzhaf, IndexKind::BiasedBanzhaf { d: 0.3 }] {
        let est = run(&game, &cross_fit(index, 600, 4, 5), &Constraints::none());
        let want = exact_values(&game, index, &Constraints::none());
        let got: Vec<f64> = est.iter().map(|e| e.estimate).collect();
        assert_close(&got, &want, 1e-8);
        assert!(est.iter().all(|e| e.stderr < 1e-8), "{est:?}");
    }
    // Without the group labels the counts are one group's: no longer exact, still close.
    struct Ungrouped(LinearPlusCounts);
    impl Game for Ungrouped {
        fn num_players(&self) -> usize {
            self.0.num_players()
        }
        fn values(&self, c: &[Coalition], out: &mut [f64]) {
            self.0.values(c, out)
        }
    }
    let est = run(
        &Ungrouped(game),
        &cross_fit(IndexKind::Banzhaf, 600, 4, 5),
        &Constraints::none(),
    );
    assert!(est.iter().any(|e| e.stderr > 1e-6), "{est:?}");
}

/// Many independent runs on a game the surrogate cannot represent: the mean estimate is within
/// its own standard error of the exact value (unbiased), the spread across runs is what the
/// reported standard errors predict, and 95% intervals cover the exact value 95% of the time.
#[test]
fn unbiased_with_the_variance_and_coverage_it_reports() {
    let game = logistic12();
    for index in [IndexKind::Banzhaf, IndexKind::BiasedBanzhaf { d: 0.3 }] {
        assert_calibrated(&game, index, 400, |seed| cross_fit(index, 160, 4, seed));
    }
}

/// On the same pool the adjustment buys a much smaller standard error than the plain shared
/// estimator (the residuals vary less than ν).
#[test]
fn smaller_standard_errors_than_the_plain_shared_pool() {
    let game = logistic12();
    let index = IndexKind::BiasedBanzhaf { d: 0.5 };
    let shared = run(
        &game,
        &EstimateConfig {
            index,
            estimator: Estimator::Shared,
            samples: 2000,
            seed: 1,
        },
        &Constraints::none(),
    );
    let adjusted = run(&game, &cross_fit(index, 2000, 5, 1), &Constraints::none());
    let total = |e: &[gtap_game::PlayerEstimate]| e.iter().map(|e| e.stderr).sum::<f64>();
    let gain = total(&shared) / total(&adjusted);
    assert!(gain > 2.0, "standard errors only {gain}x smaller");
}

#[test]
fn folds_are_validated() {
    let game = logistic12();
    for (folds, samples) in [(1, 100), (0, 100), (5, 9)] {
        let err = estimate(
            &game,
            &cross_fit(IndexKind::Banzhaf, samples, folds, 0),
            &Constraints::none(),
            &|_| {},
        )
        .unwrap_err();
        assert_eq!(err, GameError::InvalidFolds { folds, samples });
    }
    let shapley = estimate(
        &game,
        &cross_fit(IndexKind::Shapley, 100, 2, 0),
        &Constraints::none(),
        &|_| {},
    );
    assert!(matches!(
        shapley,
        Err(GameError::IncompatibleEstimator { .. })
    ));
}
