//! Properties over random small pairwise games.

use gtap_game::games::PairwiseGame;
use gtap_game::{Coalition, Constraints, EstimateConfig, Estimator, IndexKind};
use proptest::prelude::*;

use crate::common::{assert_close, exact_values, run, value_of, values};

fn pairwise_game() -> impl Strategy<Value = PairwiseGame> {
    (1usize..=7).prop_flat_map(|n| {
        let pair = (0..n, 0..n, -3.0..3.0f64);
        (
            prop::collection::vec(-2.0..2.0f64, n),
            prop::collection::vec(pair, 0..10),
        )
            .prop_map(|(linear, pairs)| PairwiseGame { linear, pairs })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn exact_matches_closed_forms(game in pairwise_game(), d in 0.05..0.95f64) {
        let none = Constraints::none();
        assert_close(&exact_values(&game, IndexKind::Shapley, &none), &game.shapley(), 1e-9);
        assert_close(
            &exact_values(&game, IndexKind::BiasedBanzhaf { d }, &none),
            &game.biased_banzhaf(d),
            1e-9,
        );
    }

    #[test]
    fn permutation_estimates_are_efficient(game in pairwise_game(), seed in any::<u64>(), antithetic in any::<bool>()) {
        let cfg = EstimateConfig {
            index: IndexKind::Shapley,
            estimator: Estimator::Permutation { antithetic },
            samples: 5,
            seed,
        };
        let n = game.linear.len();
        let total: f64 = values(&run(&game, &cfg, &Constraints::none())).iter().sum();
        let want = value_of(&game, Coalition::full(n)) - value_of(&game, Coalition::empty(n));
        prop_assert!((total - want).abs() < 1e-9, "{} vs {}", total, want);
    }
}
