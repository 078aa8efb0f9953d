//! The adaptive separation: right at its stated confidence, spending where the cut is, and the
//! paired estimator's samples when it cannot adapt.

use gtap_game::games::PairwiseGame;
use gtap_game::{
    estimate, separate, Constraints, EstimateConfig, Estimator, GameError, IndexKind,
    SeparationConfig,
};

use crate::common::{pairwise10, Tuned};

/// Sixteen players, index 0.1·i plus pair terms that make every marginal contribution noisy.
fn spread16() -> PairwiseGame {
    PairwiseGame {
        linear: (0..16).map(|i| 0.1 * i as f64).collect(),
        pairs: (0..16)
            .map(|i| (i, (i * 7 + 3) % 16, if i % 2 == 0 { 0.6 } else { -0.6 }))
            .filter(|&(i, j, _)| i != j)
            .collect(),
    }
}

fn config(k: usize, seed: u64) -> SeparationConfig {
    SeparationConfig {
        index: IndexKind::BiasedBanzhaf { d: 0.4 },
        k,
        highest: false,
        confidence: 0.95,
        initial: 8,
        round: 8,
        budget: 1_000_000,
        seed,
    }
}

/// Player ids of the k lowest (or highest) exact values.
fn truth(game: &PairwiseGame, d: f64, k: usize, highest: bool) -> Vec<usize> {
    let values = game.biased_banzhaf(d);
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    if highest {
        order.reverse();
    }
    let mut chosen = order[..k].to_vec();
    chosen.sort_unstable();
    chosen
}

#[test]
fn separates_the_true_lowest_and_spends_near_the_cut() {
    let game = spread16();
    for highest in [false, true] {
        let cfg = SeparationConfig {
            highest,
            ..config(5, 3)
        };
        let got = separate(&game, &cfg, &Constraints::none(), &|_| {}).unwrap();
        assert!(got.separated, "{got:?}");
        assert_eq!(got.chosen, truth(&game, 0.4, 5, highest));
        let samples: Vec<usize> = got.estimates.iter().map(|e| e.samples).collect();
        // Next to the cut (players 4 and 5, or 10 and 11): more samples than far from it.
        let (near, far) = if highest { ([10, 11], 0) } else { ([4, 5], 15) };
        assert!(
            near.iter().all(|&i| samples[i] > samples[far]),
            "{samples:?}"
        );
        assert_eq!(got.evaluations, 2 * samples.iter().sum::<usize>());
        assert!(got.evaluations < 2 * 16 * samples.iter().max().unwrap());
    }
}

/// With a budget of exactly the first round it is the paired estimator, sample for sample.
#[test]
fn within_the_first_round_it_is_the_paired_estimator() {
    let game = pairwise10();
    let index = IndexKind::Banzhaf;
    let cfg = SeparationConfig {
        index,
        budget: 2 * 8 * 10,
        ..config(3, 9)
    };
    let got = separate(&game, &cfg, &Constraints::none(), &|_| {}).unwrap();
    let paired = estimate(
        &game,
        &EstimateConfig {
            index,
            estimator: Estimator::Paired,
            samples: 8,
            seed: 9,
        },
        &Constraints::none(),
        &|_| {},
    )
    .unwrap();
    assert_eq!(got.estimates, paired);
    assert_eq!(got.evaluations, 160);
}

/// Over many seeds, a separated answer is the true set at least as often as promised.
#[test]
fn separated_answers_are_right_at_the_stated_confidence() {
    let game = spread16();
    let want = truth(&game, 0.4, 7, false);
    let (mut separated, mut right) = (0, 0);
    for seed in 0..100 {
        let cfg = SeparationConfig {
            confidence: 0.9,
            initial: 4,
            round: 4,
            ..config(7, seed)
        };
        let got = separate(&game, &cfg, &Constraints::none(), &|_| {}).unwrap();
        if got.separated {
            separated += 1;
            right += usize::from(got.chosen == want);
        }
    }
    assert!(separated >= 90, "only {separated} of 100 runs separated");
    assert!(
        right as f64 >= 0.9 * separated as f64,
        "{right} of {separated} separated answers right"
    );
}

#[test]
fn same_answer_for_any_batching_and_threading() {
    let reference = separate(&spread16(), &config(5, 1), &Constraints::none(), &|_| {}).unwrap();
    for (batch, parallel) in [(1, false), (7, true), (1000, true)] {
        let game = Tuned {
            inner: spread16(),
            batch,
            parallel,
        };
        let got = separate(&game, &config(5, 1), &Constraints::none(), &|_| {}).unwrap();
        assert_eq!(got, reference, "batch {batch}, parallel {parallel}");
    }
}

#[test]
fn bad_configurations_are_refused() {
    let game = spread16();
    let refused =
        |cfg: SeparationConfig| separate(&game, &cfg, &Constraints::none(), &|_| {}).unwrap_err();
    assert!(matches!(
        refused(SeparationConfig {
            index: IndexKind::Shapley,
            ..config(5, 0)
        }),
        GameError::IncompatibleEstimator { .. }
    ));
    for (cfg, message) in [
        (config(17, 0), "k = 17 exceeds the 16 free players"),
        (
            SeparationConfig {
                budget: 100,
                ..config(5, 0)
            },
            "budget 100 is below the first round's 256 evaluations",
        ),
        (
            SeparationConfig {
                confidence: 1.0,
                ..config(5, 0)
            },
            "confidence must be in (0, 1)",
        ),
        (
            SeparationConfig {
                initial: 1,
                ..config(5, 0)
            },
            "needs initial >= 2",
        ),
    ] {
        let got = refused(cfg).to_string();
        assert!(got.contains(message), "{got}");
    }
}
