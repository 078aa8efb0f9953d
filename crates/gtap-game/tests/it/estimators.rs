//! Monte-Carlo estimators against exact values.

use std::sync::atomic::{AtomicU64, Ordering};

use gtap_game::{
    estimate, Coalition, Constraints, EstimateConfig, Estimator, Game, IndexKind, PlayerEstimate,
};

use crate::common::{assert_within_4se, exact_values, mc_configs, pairwise10, voting10};

#[test]
fn every_estimator_agrees_with_exact_values() {
    let games: [(&str, &dyn Game); 2] = [("voting10", &voting10()), ("pairwise10", &pairwise10())];
    for (name, game) in games {
        for cfg in mc_configs(11) {
            let est = estimate(game, &cfg, &Constraints::none(), &|_| {}).unwrap();
            let want = exact_values(game, cfg.index, &Constraints::none());
            assert_within_4se(&est, &want, &format!("{name} {cfg:?}"));
            assert!(est.iter().all(|e| e.stderr.is_finite()), "{name} {cfg:?}");
        }
    }
}

/// Progress adds up to the documented number of evaluations, and `samples` is reported.
#[test]
fn progress_counts_every_evaluation() {
    let game = pairwise10(); // 10 free players
    let check = |estimator, index, samples, evaluations: u64, reported: usize| {
        let seen = AtomicU64::new(0);
        let cfg = EstimateConfig {
            index,
            estimator,
            samples,
            seed: 1,
        };
        let est = estimate(&game, &cfg, &Constraints::none(), &|k| {
            seen.fetch_add(k, Ordering::Relaxed);
        })
        .unwrap();
        assert_eq!(seen.into_inner(), evaluations, "{cfg:?}");
        assert!(est.iter().all(|e| e.samples == reported), "{cfg:?}");
    };
    check(
        Estimator::Permutation { antithetic: false },
        IndexKind::Shapley,
        7,
        7 * 11,
        7,
    );
    // Antithetic sampling rounds up to whole pairs.
    check(
        Estimator::Permutation { antithetic: true },
        IndexKind::Shapley,
        7,
        8 * 11,
        8,
    );
    check(Estimator::Paired, IndexKind::Banzhaf, 5, 2 * 5 * 10, 5);
    check(Estimator::Shared, IndexKind::Banzhaf, 300, 300, 300);
}

/// Too few samples for a variance: NaN standard error, documented; estimates stay finite.
#[test]
fn one_sample_gives_nan_stderr() {
    let game = pairwise10();
    for estimator in [
        Estimator::Permutation { antithetic: false },
        Estimator::Paired,
    ] {
        let index = match estimator {
            Estimator::Paired => IndexKind::Banzhaf,
            _ => IndexKind::Shapley,
        };
        let cfg = EstimateConfig {
            index,
            estimator,
            samples: 1,
            seed: 3,
        };
        let est = estimate(&game, &cfg, &Constraints::none(), &|_| {}).unwrap();
        assert!(est.iter().all(|e| e.estimate.is_finite()), "{estimator:?}");
        assert!(est.iter().all(|e| e.stderr.is_nan()), "{estimator:?}");
    }
}

/// Shared with a pool so small that some player is in every or in no coalition: NaN estimate.
#[test]
fn shared_with_one_coalition_is_undefined() {
    let cfg = EstimateConfig {
        index: IndexKind::Banzhaf,
        estimator: Estimator::Shared,
        samples: 1,
        seed: 0,
    };
    let est = estimate(&pairwise10(), &cfg, &Constraints::none(), &|_| {}).unwrap();
    assert!(est.iter().all(|e| e.estimate.is_nan() && e.stderr.is_nan()));
}

/// More samples shrink the standard error roughly as 1/sqrt(samples).
#[test]
fn stderr_shrinks_with_samples() {
    let game = voting10();
    let mean_se = |samples| {
        let cfg = EstimateConfig {
            index: IndexKind::Banzhaf,
            estimator: Estimator::Shared,
            samples,
            seed: 5,
        };
        let est = estimate(&game, &cfg, &Constraints::none(), &|_| {}).unwrap();
        est.iter().map(|e| e.stderr).sum::<f64>() / est.len() as f64
    };
    let ratio = mean_se(1000) / mean_se(16000);
    assert!(
        (3.0..5.5).contains(&ratio),
        "ratio {ratio}, expected about 4"
    );
}

/// A game whose value is driven by how many members one group has, plus small individual
/// weights: ν(C) = |C ∩ A|² / 10 + Σ_{i ∈ C} w_i, A = players 0..20, B = 20..40. β_d of i is w_i + (2·E[X] + 1) / 10 for i in A (X ~ Bin(19, d)), w_i in B.
struct GroupSizeGame {
    weights: Vec<f64>,
}

impl Game for GroupSizeGame {
    fn num_players(&self) -> usize {
        40
    }

    fn values(&self, coalitions: &[Coalition], out: &mut [f64]) {
        for (c, o) in coalitions.iter().zip(out) {
            let in_a = (0..20).filter(|&i| c.contains(i)).count() as f64;
            let weights: f64 = (0..40)
                .filter(|&i| c.contains(i))
                .map(|i| self.weights[i])
                .sum();
            *o = in_a * in_a / 10.0 + weights;
        }
    }
}

/// The regression removes what the other players explain: estimates stay on the exact values
/// and the standard error drops several-fold against the plain shared estimator on the same pool.
#[test]
fn shared_regression_removes_group_size_variance() {
    let game = GroupSizeGame {
        weights: (0..40).map(|i| 0.01 * (i % 7) as f64).collect(),
    };
    let d = 0.6;
    let exact: Vec<f64> = (0..40)
        .map(|i| {
            game.weights[i]
                + if i < 20 {
                    (2.0 * 19.0 * d + 1.0) / 10.0
                } else {
                    0.0
                }
        })
        .collect();
    let run = |estimator| {
        let cfg = EstimateConfig {
            index: IndexKind::BiasedBanzhaf { d },
            estimator,
            samples: 4000,
            seed: 11,
        };
        estimate(&game, &cfg, &Constraints::none(), &|_| {}).unwrap()
    };
    let plain = run(Estimator::Shared);
    let control = run(Estimator::SharedRegression);
    assert_within_4se(&control, &exact, "shared-regression");
    let mean_se = |e: &[PlayerEstimate]| e.iter().map(|e| e.stderr).sum::<f64>() / 40.0;
    let gain = mean_se(&plain) / mean_se(&control);
    assert!(
        gain > 5.0,
        "stderr ratio {gain}, expected a large reduction"
    );
}

/// An additive game is its own linear model: the regression recovers every weight exactly,
/// with zero standard error, from any pool larger than the number of players.
#[test]
fn shared_regression_is_exact_on_additive_games() {
    let weights: Vec<f64> = (0..12).map(|i| 0.25 * i as f64 - 1.0).collect();
    let game = gtap_game::FnGame::new(12, |c: &Coalition| {
        (0..12)
            .filter(|&i| c.contains(i))
            .map(|i| 0.25 * i as f64 - 1.0)
            .sum()
    });
    let cfg = EstimateConfig {
        index: IndexKind::BiasedBanzhaf { d: 0.3 },
        estimator: Estimator::SharedRegression,
        samples: 40,
        seed: 4,
    };
    let est = estimate(&game, &cfg, &Constraints::none(), &|_| {}).unwrap();
    for (e, w) in est.iter().zip(&weights) {
        assert!((e.estimate - w).abs() < 1e-9, "{e:?} vs {w}");
        assert!(e.stderr < 1e-6, "{e:?}");
    }
}
