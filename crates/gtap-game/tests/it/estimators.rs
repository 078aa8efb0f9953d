//! Monte-Carlo estimators against exact values.

use std::sync::atomic::{AtomicU64, Ordering};

use gtap_game::{estimate, Constraints, EstimateConfig, Estimator, Game, IndexKind};

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
