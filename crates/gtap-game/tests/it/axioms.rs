//! Efficiency, symmetry, dummy player, and β_½ = Banzhaf.

use gtap_game::games::WeightedVotingGame;
use gtap_game::{Coalition, Constraints, EstimateConfig, Estimator, Game, IndexKind};

use crate::common::{
    assert_within_4se, exact_values, mc_configs, pairwise10, run, value_of, values, voting10,
};

#[test]
fn exact_shapley_is_efficient() {
    let games: [&dyn Game; 2] = [&voting10(), &pairwise10()];
    for game in games {
        let n = game.num_players();
        let total: f64 = exact_values(game, IndexKind::Shapley, &Constraints::none())
            .iter()
            .sum();
        let want = value_of(game, Coalition::full(n)) - value_of(game, Coalition::empty(n));
        assert!((total - want).abs() < 1e-12, "{total} vs {want}");
    }
}

/// Every permutation's marginals telescope to ν(F ∪ A) − ν(A), so the estimates do too.
#[test]
fn permutation_estimates_are_efficient() {
    let constraints = Constraints {
        always_in: vec![2],
        always_out: vec![7],
        restrict_to: None,
    };
    let games: [&dyn Game; 2] = [&voting10(), &pairwise10()];
    for game in games {
        for antithetic in [false, true] {
            let cfg = EstimateConfig {
                index: IndexKind::Shapley,
                estimator: Estimator::Permutation { antithetic },
                samples: 37,
                seed: 9,
            };
            let n = game.num_players();
            let total: f64 = values(&run(game, &cfg, &Constraints::none())).iter().sum();
            let want = value_of(game, Coalition::full(n)) - value_of(game, Coalition::empty(n));
            assert!((total - want).abs() < 1e-9, "{total} vs {want}");

            let total: f64 = values(&run(game, &cfg, &constraints)).iter().sum();
            let all_but_7 = Coalition::from_players(n, (0..n).filter(|&i| i != 7));
            let want = value_of(game, all_but_7) - value_of(game, Coalition::from_players(n, [2]));
            assert!(
                (total - want).abs() < 1e-9,
                "constrained: {total} vs {want}"
            );
        }
    }
}

#[test]
fn identical_players_get_identical_exact_values() {
    // Players 3 and 4 (weight 3), 5 and 6 (weight 2), 7 and 8 (weight 1) are interchangeable.
    let game = voting10();
    for index in [
        IndexKind::Shapley,
        IndexKind::Banzhaf,
        IndexKind::BiasedBanzhaf { d: 0.2 },
    ] {
        let v = exact_values(&game, index, &Constraints::none());
        for (i, j) in [(3, 4), (5, 6), (7, 8)] {
            assert!(
                (v[i] - v[j]).abs() < 1e-12,
                "{index:?}: {} vs {}",
                v[i],
                v[j]
            );
        }
    }
}

/// Weights [2, 2, 1, 0], quota 4: only {0, 1} ⊆ C wins, so players 2 and 3 are dummies.
fn voting_with_dummies() -> WeightedVotingGame {
    WeightedVotingGame {
        weights: vec![2.0, 2.0, 1.0, 0.0],
        quota: 4.0,
    }
}

#[test]
fn dummy_players_get_exactly_zero() {
    let games: [(&dyn Game, &[usize]); 3] = [
        (&voting_with_dummies(), &[2, 3]),
        (&voting10(), &[9]),
        (&pairwise10(), &[4]),
    ];
    for (game, dummies) in games {
        for index in [
            IndexKind::Shapley,
            IndexKind::Banzhaf,
            IndexKind::BiasedBanzhaf { d: 0.8 },
        ] {
            let v = exact_values(game, index, &Constraints::none());
            assert!(dummies.iter().all(|&i| v[i] == 0.0), "{index:?} {v:?}");
        }
        for cfg in mc_configs(4) {
            let est = run(game, &cfg, &Constraints::none());
            for &i in dummies {
                let e = est[i];
                if matches!(
                    cfg.estimator,
                    Estimator::Shared
                        | Estimator::SharedRegression
                        | Estimator::SharedCrossFit { .. }
                ) {
                    // Mean with i minus mean without i is noise around 0, not 0.
                    assert_within_4se(&[e], &[0.0], &format!("{cfg:?}"));
                } else {
                    assert_eq!((e.estimate, e.stderr), (0.0, 0.0), "{cfg:?}");
                }
            }
        }
    }
}

#[test]
fn biased_banzhaf_at_one_half_is_banzhaf() {
    let game = voting10();
    let half = IndexKind::BiasedBanzhaf { d: 0.5 };
    assert_eq!(
        exact_values(&game, half, &Constraints::none()),
        exact_values(&game, IndexKind::Banzhaf, &Constraints::none())
    );
    for estimator in [
        Estimator::Paired,
        Estimator::Shared,
        Estimator::SharedRegression,
    ] {
        let cfg = |index| EstimateConfig {
            index,
            estimator,
            samples: 50,
            seed: 2,
        };
        let a = run(&game, &cfg(half), &Constraints::none());
        let b = run(&game, &cfg(IndexKind::Banzhaf), &Constraints::none());
        assert_eq!(a, b, "{estimator:?}");
    }
}
