//! Walks: the walk path of the estimators equals the plain one, and the sweep estimator is
//! unbiased with the variance and coverage it reports.

use gtap_game::{
    Coalition, Constraints, EstimateConfig, Estimator, Game, IndexKind, PlayerEstimate, Walk,
};

use crate::common::{assert_calibrated, mc_configs, pairwise10, run, voting10, AsWalks};
use crate::crossfit::logistic12;

fn bits(est: &[PlayerEstimate]) -> Vec<(usize, u64, u64)> {
    est.iter()
        .map(|e| (e.player, e.estimate.to_bits(), e.stderr.to_bits()))
        .collect()
}

#[test]
fn a_walk_lists_its_start_and_each_step() {
    let walk = Walk {
        start: Coalition::from_players(5, [1, 3]),
        steps: vec![vec![0], vec![3, 4], vec![]],
    };
    let sets: Vec<Vec<usize>> = walk
        .coalitions()
        .iter()
        .map(|c| c.iter().collect())
        .collect();
    assert_eq!(
        sets,
        [vec![1, 3], vec![0, 1, 3], vec![0, 1, 4], vec![0, 1, 4]]
    );
    assert_eq!(walk.num_values(), 4);
}

/// Permutations and the paper's pairs handed over as walks give the very same estimates, for
/// any number of walks per call.
#[test]
fn walks_give_the_plain_estimates_bit_for_bit() {
    let constraints = Constraints {
        always_in: vec![2],
        always_out: vec![],
        restrict_to: None,
    };
    for cfg in mc_configs(11) {
        if !matches!(
            cfg.estimator,
            Estimator::Permutation { .. } | Estimator::Paired
        ) {
            continue;
        }
        let cfg = EstimateConfig {
            samples: cfg.samples / 10,
            ..cfg
        };
        let plain = bits(&run(&pairwise10(), &cfg, &constraints));
        for batch in [1, 7, 256] {
            let game = AsWalks {
                inner: pairwise10(),
                batch,
            };
            assert_eq!(
                bits(&run(&game, &cfg, &constraints)),
                plain,
                "{cfg:?} batch {batch}"
            );
        }
    }
}

fn sweep(index: IndexKind, samples: usize, seed: u64) -> EstimateConfig {
    EstimateConfig {
        index,
        estimator: Estimator::Sweep,
        samples,
        seed,
    }
}

#[test]
fn sweeps_are_unbiased_with_the_variance_and_coverage_they_report() {
    for index in [IndexKind::Banzhaf, IndexKind::BiasedBanzhaf { d: 0.7 }] {
        assert_calibrated(&logistic12(), index, 400, |seed| sweep(index, 160, seed));
        // Differences of a voting game are 0 or 1: normal intervals need more samples to hold.
        assert_calibrated(&voting10(), index, 400, |seed| sweep(index, 200, seed));
    }
}

/// Each sweep gives every player one difference of the same law as one Algorithm 2 pair, at
/// n + 1 evaluations for all n players instead of 2 per player: at equal evaluations the
/// variance is ≈ 2n / (n + 1) = 1.8 times smaller (n = 10).
#[test]
fn sweeps_need_about_half_the_evaluations_of_pairs() {
    let index = IndexKind::BiasedBanzhaf { d: 0.7 };
    let (mut paired, mut swept) = (0.0, 0.0);
    for seed in 0..20 {
        let pairs = EstimateConfig {
            index,
            estimator: Estimator::Paired,
            samples: 55, // 2 · 10 · 55 = 1,100 evaluations
            seed,
        };
        let variance = |e: &[PlayerEstimate]| e.iter().map(|e| e.stderr.powi(2)).sum::<f64>();
        paired += variance(&run(&logistic12(), &pairs, &Constraints::none()));
        // 100 sweeps · 11 = 1,100 evaluations
        swept += variance(&run(
            &logistic12(),
            &sweep(index, 100, seed),
            &Constraints::none(),
        ));
    }
    let gain = paired / swept;
    assert!((1.5..2.2).contains(&gain), "variance ratio {gain}");
}

/// A game that counts what it is asked: the sweep hands every sample over as one walk of
/// n + 1 values whose steps toggle one or two players.
struct Recording(std::sync::Mutex<Vec<Walk>>);

impl Game for Recording {
    fn num_players(&self) -> usize {
        6
    }
    fn values(&self, coalitions: &[Coalition], out: &mut [f64]) {
        for (c, o) in coalitions.iter().zip(out) {
            *o = c.len() as f64;
        }
    }
    fn walk_values(&self, walks: &[Walk], out: &mut [f64]) {
        self.0.lock().unwrap().extend_from_slice(walks);
        let coalitions: Vec<Coalition> = walks.iter().flat_map(Walk::coalitions).collect();
        self.values(&coalitions, out);
    }
}

#[test]
fn a_sweep_is_one_walk_toggling_each_player_once() {
    let game = Recording(Default::default());
    let est = run(
        &game,
        &sweep(IndexKind::Banzhaf, 9, 3),
        &Constraints::none(),
    );
    // ν = |C|: every marginal contribution is exactly 1.
    assert!(
        est.iter().all(|e| e.estimate == 1.0 && e.stderr == 0.0),
        "{est:?}"
    );
    let walks = game.0.into_inner().unwrap();
    assert_eq!(walks.len(), 9);
    for walk in &walks {
        assert_eq!(walk.num_values(), 7);
        let mut visited: Vec<usize> = walk.steps.iter().map(|s| *s.last().unwrap()).collect();
        visited.sort();
        assert_eq!(visited, [0, 1, 2, 3, 4, 5]);
        assert!(walk.steps.iter().all(|s| (1..=2).contains(&s.len())));
    }
}
