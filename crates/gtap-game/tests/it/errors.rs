//! Every error case, with its message.

use gtap_game::{
    estimate, exact, Constraints, EstimateConfig, Estimator, FnGame, GameError, IndexKind,
    PlayerEstimate,
};

use crate::common::pairwise10;

#[track_caller]
fn check(result: Result<Vec<PlayerEstimate>, GameError>, substring: &str) {
    let message = result.expect_err("expected an error").to_string();
    assert!(
        message.contains(substring),
        "{message:?} lacks {substring:?}"
    );
    assert!(!message.ends_with('.'), "{message:?} ends with a period");
}

fn mc(
    index: IndexKind,
    estimator: Estimator,
    samples: usize,
) -> Result<Vec<PlayerEstimate>, GameError> {
    let cfg = EstimateConfig {
        index,
        estimator,
        samples,
        seed: 0,
    };
    estimate(&pairwise10(), &cfg, &Constraints::none(), &|_| {})
}

fn constrained(
    always_in: &[usize],
    always_out: &[usize],
    restrict_to: Option<&[usize]>,
) -> Constraints {
    Constraints {
        always_in: always_in.to_vec(),
        always_out: always_out.to_vec(),
        restrict_to: restrict_to.map(<[usize]>::to_vec),
    }
}

#[test]
fn incompatible_estimator_and_index() {
    let perm = Estimator::Permutation { antithetic: false };
    check(
        mc(IndexKind::Banzhaf, perm, 10),
        "Permutation estimator cannot estimate the Banzhaf index (use Paired or Shared)",
    );
    check(
        mc(IndexKind::BiasedBanzhaf { d: 0.3 }, perm, 10),
        "cannot estimate the biased Banzhaf index",
    );
    check(
        mc(IndexKind::Shapley, Estimator::Paired, 10),
        "Paired estimator cannot estimate the Shapley index (use Permutation)",
    );
    check(
        mc(IndexKind::Shapley, Estimator::Shared, 10),
        "Shared estimator cannot estimate the Shapley",
    );
}

#[test]
fn sample_counts() {
    check(
        mc(IndexKind::Banzhaf, Estimator::SharedRegression, 11),
        "needs more than 10 + 1 samples, got 11",
    );
    check(
        mc(IndexKind::Banzhaf, Estimator::Shared, 0),
        "samples must be at least 1, got 0",
    );
    let perm = Estimator::Permutation { antithetic: true };
    check(
        mc(IndexKind::Shapley, perm, 0),
        "samples must be at least 1",
    );
    if usize::BITS > 32 {
        check(
            mc(IndexKind::Banzhaf, Estimator::Paired, 1 << 33),
            "samples must be at most 4294967295",
        );
    }
}

#[test]
fn bias_outside_open_unit_interval() {
    for d in [0.0, 1.0, -0.1, 1.5, f64::NAN] {
        let index = IndexKind::BiasedBanzhaf { d };
        check(
            mc(index, Estimator::Paired, 10),
            "biased Banzhaf index needs d in (0, 1), got",
        );
        check(
            exact(&pairwise10(), &index, &Constraints::none()),
            "needs d in (0, 1)",
        );
    }
    check(
        mc(IndexKind::BiasedBanzhaf { d: 1.0 }, Estimator::Shared, 10),
        "got 1",
    );
}

#[test]
fn bad_constraints() {
    let game = pairwise10();
    let go = |c: Constraints| exact(&game, &IndexKind::Shapley, &c);
    check(
        go(constrained(&[10], &[], None)),
        "always_in names player 10, but the game has only 10 players (0..10)",
    );
    check(
        go(constrained(&[], &[3, 12], None)),
        "always_out names player 12",
    );
    check(
        go(constrained(&[], &[], Some(&[1, 99]))),
        "restrict_to names player 99",
    );
    check(
        go(constrained(&[1, 4], &[4, 2], None)),
        "player 4 is in both always_in and always_out",
    );
    let cfg = EstimateConfig {
        index: IndexKind::Shapley,
        estimator: Estimator::Permutation { antithetic: false },
        samples: 3,
        seed: 0,
    };
    check(
        estimate(&game, &cfg, &constrained(&[0], &[0], None), &|_| {}),
        "player 0 is in both",
    );
}

#[test]
fn exact_refuses_more_than_twenty_free_players() {
    let game = FnGame::new(23, |c| c.len() as f64);
    check(
        exact(&game, &IndexKind::Banzhaf, &Constraints::none()),
        "exact enumeration over 23 free players needs 2^23 evaluations; at most 20",
    );
    // Fixing three players brings it back within reach (additive game: every index is 1).
    let ok = exact(
        &game,
        &IndexKind::Banzhaf,
        &constrained(&[0], &[1, 2], None),
    )
    .unwrap();
    assert_eq!(ok.len(), 20);
    assert!(ok.iter().all(|e| (e.estimate - 1.0).abs() < 1e-12));
}
