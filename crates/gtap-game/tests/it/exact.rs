//! Exact values against hand-computed answers and closed forms.

use gtap_game::games::WeightedVotingGame;
use gtap_game::{exact, Constraints, FnGame, Game, IndexKind};

use crate::common::{assert_close, exact_values, pairwise10};

#[track_caller]
fn check(game: &dyn Game, index: IndexKind, want: &[f64]) {
    assert_close(
        &exact_values(game, index, &Constraints::none()),
        want,
        1e-12,
    );
}

/// Weights [4, 2, 1, 1], quota 5 (players A, B, C, D). Total weight 8; without A the rest weigh
/// 4 < 5, so A is a veto player, and A with any one partner wins (≥ 5).
/// Shapley: A is pivotal unless first: 3/4. B (likewise C, D) is pivotal only right after A in
/// first place (A alone weighs 4; with any second partner A already wins): 1/4 · 1/3 = 1/12.
/// Banzhaf: A swings with each of the 7 non-empty sets of others: 7/8. B swings only with {A}:
/// 1/8. β_d: A: P(some other present) = 1 − (1−d)³; B: P(exactly A among the others) = d(1−d)².
#[test]
fn weighted_voting_4211_by_hand() {
    let game = WeightedVotingGame {
        weights: vec![4.0, 2.0, 1.0, 1.0],
        quota: 5.0,
    };
    let twelfth = 1.0 / 12.0;
    check(
        &game,
        IndexKind::Shapley,
        &[0.75, twelfth, twelfth, twelfth],
    );
    check(&game, IndexKind::Banzhaf, &[0.875, 0.125, 0.125, 0.125]);
    let (a, b) = (1.0 - 0.7f64.powi(3), 0.3 * 0.7 * 0.7);
    check(&game, IndexKind::BiasedBanzhaf { d: 0.3 }, &[a, b, b, b]);
}

/// Unanimity game of T = {1, 3, 4}: ν(C) = 1 iff T ⊆ C. Shapley 1/3 on T; β_d = d² on T.
#[test]
fn unanimity_game() {
    let game = FnGame::new(6, |c| {
        f64::from([1, 3, 4].iter().all(|&i| c.contains(i)) as u8)
    });
    let t = 1.0 / 3.0;
    check(&game, IndexKind::Shapley, &[0.0, t, 0.0, t, t, 0.0]);
    check(
        &game,
        IndexKind::BiasedBanzhaf { d: 0.6 },
        &[0.0, 0.36, 0.0, 0.36, 0.36, 0.0],
    );
}

#[test]
fn pairwise_closed_forms() {
    let game = pairwise10();
    check(&game, IndexKind::Shapley, &game.shapley());
    check(&game, IndexKind::Banzhaf, &game.biased_banzhaf(0.5));
    for d in [0.1, 0.3, 0.85] {
        check(
            &game,
            IndexKind::BiasedBanzhaf { d },
            &game.biased_banzhaf(d),
        );
    }
}

#[test]
fn exact_reports_every_player_sorted_with_zero_stderr() {
    let game = pairwise10();
    let est = exact(&game, &IndexKind::Shapley, &Constraints::none()).unwrap();
    assert_eq!(
        est.iter().map(|e| e.player).collect::<Vec<_>>(),
        (0..10).collect::<Vec<_>>()
    );
    assert!(est.iter().all(|e| e.stderr == 0.0 && e.samples == 1 << 10));
}

#[test]
fn single_player_gets_its_standalone_worth() {
    let game = FnGame::new(1, |c| if c.contains(0) { 2.5 } else { 0.5 });
    check(&game, IndexKind::Shapley, &[2.0]);
    check(&game, IndexKind::BiasedBanzhaf { d: 0.2 }, &[2.0]);
}

/// The `Exact` estimator is `exact` through the estimate interface: the same values for every
/// index and constraint set, evaluations split in parts concatenating to the whole, and
/// `samples` unused.
#[test]
fn the_exact_estimator_is_exact_enumeration_in_parts() {
    use gtap_game::{
        estimate, estimate_from_evaluations, evaluations, EstimateConfig, Estimator, Part,
    };
    let game = pairwise10();
    let constraints = Constraints {
        always_in: vec![2],
        ..Constraints::none()
    };
    for index in [
        IndexKind::Shapley,
        IndexKind::Banzhaf,
        IndexKind::BiasedBanzhaf { d: 0.3 },
    ] {
        let cfg = EstimateConfig {
            index,
            estimator: Estimator::Exact,
            samples: 0,
            seed: 7,
        };
        let want = exact(&game, &index, &constraints).unwrap();
        let got = estimate(&game, &cfg, &constraints, &|_| {}).unwrap();
        assert_eq!(got, want);
        let parts: Vec<f64> = (0..3)
            .flat_map(|index| {
                evaluations(&game, &cfg, &constraints, Part { index, of: 3 }, &|_| {}).unwrap()
            })
            .collect();
        assert_eq!(parts.len(), 1 << 9);
        assert_eq!(
            estimate_from_evaluations(&game, &cfg, &constraints, &parts).unwrap(),
            want
        );
    }
    let big = FnGame::new(21, |c| c.len() as f64);
    let cfg = EstimateConfig {
        index: IndexKind::Shapley,
        estimator: Estimator::Exact,
        samples: 0,
        seed: 0,
    };
    let err = estimate(&big, &cfg, &Constraints::none(), &|_| {}).unwrap_err();
    assert!(err.to_string().contains("21"), "{err}");
}
