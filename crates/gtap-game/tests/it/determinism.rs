//! Results depend on the configuration only: not on threads, batching, or parallelism.

use gtap_game::{Constraints, EstimateConfig, Estimator, Game, IndexKind, PlayerEstimate};

use crate::common::{mc_configs, pairwise10, run, voting10, Tuned};

fn bits(est: &[PlayerEstimate]) -> Vec<(usize, u64, u64, usize)> {
    est.iter()
        .map(|e| {
            (
                e.player,
                e.estimate.to_bits(),
                e.stderr.to_bits(),
                e.samples,
            )
        })
        .collect()
}

fn in_pool<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(f)
}

#[test]
fn bit_identical_across_thread_counts_and_batching() {
    let constraints = Constraints {
        always_in: vec![1],
        always_out: vec![],
        restrict_to: None,
    };
    for cfg in mc_configs(99) {
        let cfg = EstimateConfig {
            samples: cfg.samples / 10,
            ..cfg
        };
        let reference = bits(&in_pool(1, || run(&voting10(), &cfg, &constraints)));
        for (threads, batch, parallel) in
            [(4, 256, true), (4, 7, true), (3, 1, true), (4, 13, false)]
        {
            let game = Tuned {
                inner: voting10(),
                batch,
                parallel,
            };
            let got = bits(&in_pool(threads, || run(&game, &cfg, &constraints)));
            assert_eq!(got, reference, "{cfg:?} threads={threads} batch={batch}");
        }
    }
}

#[test]
fn exact_is_bit_identical_across_thread_counts() {
    let game = Tuned {
        inner: pairwise10(),
        batch: 5,
        parallel: true,
    };
    let go = || gtap_game::exact(&game, &IndexKind::Shapley, &Constraints::none()).unwrap();
    assert_eq!(bits(&in_pool(1, go)), bits(&in_pool(4, go)));
}

#[test]
fn different_seeds_give_different_estimates() {
    let games: [&dyn Game; 2] = [&voting10(), &pairwise10()];
    for game in games {
        for cfg in mc_configs(1) {
            let cfg = EstimateConfig {
                samples: cfg.samples / 10,
                ..cfg
            };
            let a = run(game, &cfg, &Constraints::none());
            let b = run(
                game,
                &EstimateConfig {
                    seed: 2,
                    ..cfg.clone()
                },
                &Constraints::none(),
            );
            assert_ne!(bits(&a), bits(&b), "{cfg:?}");
        }
    }
}

fn antithetic_vs_plain(value_by_size: [f64; 6]) -> Vec<(PlayerEstimate, PlayerEstimate)> {
    let cfg = |antithetic| EstimateConfig {
        index: IndexKind::Shapley,
        estimator: Estimator::Permutation { antithetic },
        samples: 400,
        seed: 8,
    };
    let game = gtap_game::FnGame::new(5, move |c| value_by_size[c.len()]);
    let plain = run(&game, &cfg(false), &Constraints::none());
    let anti = run(&game, &cfg(true), &Constraints::none());
    plain.into_iter().zip(anti).collect()
}

/// Reversal maps arrival position k to 4 − k. With marginals −4, −2, 0, 2, 4 by position, each
/// antithetic pair averages to the exact value 0, so its standard error is 0.
#[test]
fn antithetic_pairs_cancel_opposite_marginals() {
    for (plain, anti) in antithetic_vs_plain([6.25, 2.25, 0.25, 0.25, 2.25, 6.25]) {
        assert!(
            anti.estimate.abs() < 1e-12 && anti.stderr < 1e-12,
            "{anti:?}"
        );
        assert!(plain.stderr > 0.01, "{plain:?}");
    }
}

/// With marginals 1, 0, 0, 0, 1 by position, both halves of a pair agree, so a pair carries one
/// sample's information: the standard error must be about sqrt(2) times the plain one, not equal.
#[test]
fn antithetic_stderr_accounts_for_dependent_halves() {
    for (plain, anti) in antithetic_vs_plain([0.0, 1.0, 1.0, 1.0, 1.0, 2.0]) {
        let ratio = anti.stderr / plain.stderr;
        assert!(
            (1.2..1.7).contains(&ratio),
            "ratio {ratio}: {plain:?} {anti:?}"
        );
    }
}
