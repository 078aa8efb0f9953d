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
fn certified_walks_equal_full_evaluation_on_hostile_examples() {
    // A NaN example and examples scaled towards overflow: NaN or huge logits on every path
    // (a masked ∞ is NaN too); the certified walks must hand their pairs back, not decide
    // them.
    let data = synthetic(120, 9);
    let _ = data.inputs.get(7).narrow(0, 0, 5).fill_(f64::NAN);
    for (i, scale) in [1e33, 1e34, 1e35, 1e36, 1e37, 3e37].into_iter().enumerate() {
        let _ = data.inputs.get(10 + i as i64).g_mul_scalar_(scale);
    }
    for arch in ARCHS {
        let net = Network::new(arch, Device::Cpu, 4);
        let full =
            MaskedEvaluator::new(&net, &data, Utility::Accuracy, 8).with_certification(false);
        let fast = MaskedEvaluator::new(&net, &data, Utility::Accuracy, 8).with_incremental(true);
        let walks = random_walks(full.num_players(), 6);
        let total: usize = walks.iter().map(Walk::num_values).sum();
        let (mut want, mut got) = (vec![0.0; total], vec![0.0; total]);
        full.walk_values(&walks, &mut want);
        fast.walk_values(&walks, &mut got);
        assert_eq!(
            got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            "{arch}"
        );
    }
}

#[test]
fn incremental_walks_equal_full_evaluation() {
    let data = synthetic(300, 8);
    for arch in ARCHS {
        let net = Network::new(arch, Device::Cpu, 3);
        // Accuracy twice: certified (the default: every value is the reference path's full
        // evaluation, bit for bit) and not (the running sums' rounding may move a near-tie).
        for (utility, certify) in [
            (Utility::NegativeCrossEntropy, true),
            (Utility::Accuracy, true),
            (Utility::Accuracy, false),
        ] {
            let full = MaskedEvaluator::new(&net, &data, utility, 8).with_certification(false);
            let fast = MaskedEvaluator::new(&net, &data, utility, 8)
                .with_incremental(true)
                .with_certification(certify);
            assert!(fast.incremental() && !full.incremental());
            let walks = random_walks(full.num_players(), 5);
            let total: usize = walks.iter().map(Walk::num_values).sum();
            let (mut want, mut got) = (vec![0.0; total], vec![0.0; total]);
            full.walk_values(&walks, &mut want);
            fast.walk_values(&walks, &mut got);
            let (decided, recomputed) = fast.certification();
            if utility == Utility::Accuracy && certify {
                assert_eq!(
                    got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    "{arch}: certified walks are the reference's values"
                );
                // Every walk is evaluated at every step of the longest (150 steps), but a
                // pair whose toggle changes nothing on its example is not evaluated again.
                let steps = walks.iter().map(|w| w.steps.len()).max().unwrap_or(0);
                let pairs = 300 * walks.len() * (steps + 1);
                assert!(
                    (300 * walks.len()) as u64 <= decided && decided <= pairs as u64,
                    "{arch}: {decided} of {pairs} pairs decided"
                );
                eprintln!("{arch}: {decided} of {pairs} pairs decided, {recomputed} recomputed");
                assert!(
                    recomputed < decided,
                    "{arch}: {recomputed} of {decided} recomputed"
                );
                continue;
            }
            assert_eq!(
                (decided, recomputed),
                (0, 0),
                "{arch} {utility:?}: not certified"
            );
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
