//! Incremental walk evaluation agrees with evaluating every coalition in full.

use gtap_game::{Coalition, Game, Walk};
use gtap_nn::{MaskedEvaluator, Network, Utility};
use rand::{Rng, SeedableRng};
use tch::Device;

use crate::{synthetic, ARCHS};

/// Walks of different lengths (one longer than two refresh periods) whose steps toggle one or
/// two players anywhere in the network, starting from random coalitions.
fn random_walks(players: usize, seed: u64) -> Vec<Walk> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    [1, 150, 7, 0, 64]
        .into_iter()
        .map(|len| Walk {
            start: Coalition::from_players(players, (0..players).filter(|_| rng.random_bool(0.6))),
            steps: (0..len)
                .map(|_| {
                    (0..rng.random_range(1..=2))
                        .map(|_| rng.random_range(0..players))
                        .collect()
                })
                .collect(),
        })
        .collect()
}

#[test]
fn incremental_walks_equal_full_evaluation() {
    let data = synthetic(300, 8);
    for arch in ARCHS {
        let net = Network::new(arch, Device::Cpu, 3);
        for utility in [Utility::NegativeCrossEntropy, Utility::Accuracy] {
            let full = MaskedEvaluator::new(&net, &data, utility, 8);
            let fast = MaskedEvaluator::new(&net, &data, utility, 8).with_incremental(true);
            assert!(fast.incremental() && !full.incremental());
            let walks = random_walks(full.num_players(), 5);
            let total: usize = walks.iter().map(Walk::num_values).sum();
            let (mut want, mut got) = (vec![0.0; total], vec![0.0; total]);
            full.walk_values(&walks, &mut want);
            fast.walk_values(&walks, &mut got);
            // Running float32 sums of at most 64 rank-one updates: a mean cross-entropy moves
            // by well under 1e-5; an accuracy may differ only where an example's top two logits
            // tie to within that rounding (one example of 300, at most).
            let tolerance = match utility {
                Utility::NegativeCrossEntropy => 1e-5,
                Utility::Accuracy => 1.0 / 300.0 + 1e-12,
            };
            for (j, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (g - w).abs() <= tolerance,
                    "{arch} {utility:?} value {j}: incremental {g} vs full {w}"
                );
            }
            // The start of every walk and every refresh is computed exactly as in full.
            assert_eq!(got[0].to_bits(), want[0].to_bits(), "{arch} {utility:?}");
        }
    }
}
