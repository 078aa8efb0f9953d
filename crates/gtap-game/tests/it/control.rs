//! The control-variate estimator: unbiased with the variance and coverage it reports whether
//! the predictions are good or worthless, much tighter than its stars alone when they are good,
//! no worse when they are not; parts, threads and batching leave its bytes alone.

use gtap_game::{
    estimate, estimate_from_evaluations, evaluations, Coalition, Constraints, EstimateConfig,
    Estimator, Game, GameError, IndexKind, Part, PlayerEstimate,
};

use crate::common::{assert_calibrated, exact_values, run, voting10};
use crate::crossfit::logistic12;

fn control(index: IndexKind, samples: usize, stars: usize, seed: u64) -> EstimateConfig {
    EstimateConfig {
        index,
        estimator: Estimator::ControlVariate {
            stars,
            folds: 4,
            shrink: false,
        },
        samples,
        seed,
    }
}

/// A game with the values of `inner` and predictions that are noise (a hash of the coalition
/// and the player): a linearisation that explains nothing.
struct Noise<G>(G);

impl<G: Game> Game for Noise<G> {
    fn num_players(&self) -> usize {
        self.0.num_players()
    }
    fn values(&self, coalitions: &[Coalition], out: &mut [f64]) {
        self.0.values(coalitions, out)
    }
    fn player_groups(&self) -> Option<Vec<usize>> {
        self.0.player_groups()
    }
    fn predicts_marginals(&self) -> bool {
        true
    }
    fn predicted_marginals(&self, coalitions: &[Coalition], out: &mut [f64]) {
        let n = self.num_players();
        for (c, row) in coalitions.iter().zip(out.chunks_mut(n)) {
            let key = c.iter().fold(0x9e37_79b9_7f4a_7c15_u64, |h, i| {
                (h ^ i as u64).wrapping_mul(0x1000_0000_01b3)
            });
            for (i, o) in row.iter_mut().enumerate() {
                let h = (key ^ (i as u64) << 40).wrapping_mul(0xff51_afd7_ed55_8ccd);
                *o = (h >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
            }
        }
    }
}

/// Spread of each player's estimate over `runs` seeds, summed over players.
fn observed_variance(game: &dyn Game, runs: u64, cfg: impl Fn(u64) -> EstimateConfig) -> f64 {
    let n = game.num_players();
    let (mut sum, mut square) = (vec![0.0; n], vec![0.0; n]);
    for seed in 0..runs {
        for (i, e) in run(game, &cfg(seed), &Constraints::none())
            .iter()
            .enumerate()
        {
            sum[i] += e.estimate;
            square[i] += e.estimate * e.estimate;
        }
    }
    let r = runs as f64;
    (0..n)
        .map(|i| (square[i] - sum[i] * sum[i] / r) / (r - 1.0))
        .sum()
}

/// Many independent runs, gradient predictions (logistic12: σ'(z)·w_i): the mean estimate is
/// within its own standard error of the exact index, the spread is what the standard errors
/// predict, and 95% intervals cover 93-97% of the time.
#[test]
fn unbiased_with_the_variance_and_coverage_it_reports() {
    let game = logistic12();
    for index in [
        IndexKind::Banzhaf,
        IndexKind::BiasedBanzhaf { d: 0.3 },
        IndexKind::Shapley,
    ] {
        assert_calibrated(&game, index, 400, |seed| control(index, 200, 24, seed));
    }
}

/// The same with predictions that are noise: still unbiased and calibrated. (With noise the
/// estimate is about the stars' plain mean, whose skewed contributions need more stars than
/// the good predictions' residuals before a 95% interval covers 95%.)
#[test]
fn calibrated_when_the_predictions_are_noise() {
    let game = Noise(logistic12());
    for index in [IndexKind::BiasedBanzhaf { d: 0.4 }, IndexKind::Shapley] {
        assert_calibrated(&game, index, 400, |seed| control(index, 400, 80, seed));
    }
}

/// With as many predicted coalitions as stars the estimate is the stars' plain mean of exact
/// contributions, whatever the predictions: the baseline the next tests compare against.
#[test]
fn without_extra_predictions_it_is_the_stars_plain_mean() {
    let (good, noise) = (logistic12(), Noise(logistic12()));
    let cfg = control(IndexKind::Banzhaf, 24, 24, 3);
    let a = run(&good, &cfg, &Constraints::none());
    let b = run(&noise, &cfg, &Constraints::none());
    for (x, y) in a.iter().zip(&b) {
        assert!((x.estimate - y.estimate).abs() < 1e-12, "{x:?} {y:?}");
    }
}

/// Good predictions on ten times the coalitions: the spread across runs shrinks well below
/// the stars' alone (equal exact evaluations); noise predictions cost nothing beyond the
/// noise of a fitted coefficient.
#[test]
fn good_predictions_shrink_the_variance_and_noise_does_no_harm() {
    for index in [IndexKind::BiasedBanzhaf { d: 0.5 }, IndexKind::Shapley] {
        let plain = observed_variance(&logistic12(), 300, |s| control(index, 24, 24, s));
        let good = observed_variance(&logistic12(), 300, |s| control(index, 240, 24, s));
        let noise = observed_variance(&Noise(logistic12()), 300, |s| control(index, 240, 24, s));
        // The ceiling is 1 / (1 − 0.9ρ²) at ten times the coalitions: ≈ 2.7 at ρ² ≈ 0.7 here.
        assert!(
            plain / good > 2.0,
            "{index:?}: variance only {}x smaller",
            plain / good
        );
        assert!(
            noise / plain < 1.2,
            "{index:?}: noise predictions cost {}x the variance",
            noise / plain
        );
    }
}

/// A game whose predictions are its exact contributions: the estimate is exact in the limit,
/// and every star's residual is zero at c = 1, so the standard error is that of the mean of
/// the predictions over all coalitions.
#[test]
fn exact_predictions_reach_the_exact_index() {
    struct Exactly(gtap_game::games::PairwiseGame);
    impl Game for Exactly {
        fn num_players(&self) -> usize {
            self.0.num_players()
        }
        fn values(&self, coalitions: &[Coalition], out: &mut [f64]) {
            self.0.values(coalitions, out)
        }
        fn predicts_marginals(&self) -> bool {
            true
        }
        fn predicted_marginals(&self, coalitions: &[Coalition], out: &mut [f64]) {
            let n = self.num_players();
            for (c, row) in coalitions.iter().zip(out.chunks_mut(n)) {
                for (i, o) in row.iter_mut().enumerate() {
                    let (mut with, mut without) = (c.clone(), c.clone());
                    with.insert(i);
                    without.remove(i);
                    let mut v = [0.0; 2];
                    self.0.values(&[with, without], &mut v);
                    *o = v[0] - v[1];
                }
            }
        }
    }
    let game = Exactly(crate::common::pairwise10());
    for index in [IndexKind::BiasedBanzhaf { d: 0.3 }, IndexKind::Shapley] {
        let want = exact_values(&game, index, &Constraints::none());
        let est = run(&game, &control(index, 20_000, 40, 1), &Constraints::none());
        for (e, w) in est.iter().zip(&want) {
            assert!(
                (e.estimate - w).abs() < 4.0 * e.stderr + 1e-12,
                "{index:?}: {e:?} vs {w}"
            );
            assert!(e.stderr < 0.02, "{index:?}: {e:?}");
        }
    }
}

/// Shapley's inclusion probability q is stratified across each fold's stars: with worthless
/// predictions the estimate is the stars' stratified mean, whose spread lacks the part of
/// Var(Δ_i) that comes from E[Δ_i | q] varying with q. Here every pair of players adds 1, so
/// Δ_i is the number of others present: E[Δ_i | q] = 9q carries most of its variance, and the
/// spread is well under Var(Δ_i) / stars of iid sampling, computed exactly.
#[test]
fn shapley_stratifies_the_inclusion_probability() {
    let pairs = (0..10)
        .flat_map(|i| (i + 1..10).map(move |j| (i, j, 1.0)))
        .collect();
    let game = Noise(gtap_game::games::PairwiseGame {
        linear: vec![0.0; 10],
        pairs,
    });
    let n = game.num_players();
    // Var(Δ_i(C)) with C \ {i} of a uniform size, uniform given its size: iid sampling's.
    let binomial =
        |n: usize, k: usize| (0..k).fold(1.0, |b, j| b * (n - j) as f64 / (j + 1) as f64);
    let mut iid = 0.0;
    for i in 0..n {
        let (mut mean, mut square) = (0.0, 0.0);
        let others: Vec<usize> = (0..n).filter(|&j| j != i).collect();
        for bits in 0u32..1 << (n - 1) {
            let members = others
                .iter()
                .enumerate()
                .filter(|(b, _)| bits >> b & 1 == 1)
                .map(|(_, &j)| j);
            let without = Coalition::from_players(n, members);
            let mut with = without.clone();
            with.insert(i);
            let mut v = [0.0; 2];
            game.values(&[with, without], &mut v);
            let weight = 1.0 / (n as f64 * binomial(n - 1, bits.count_ones() as usize));
            mean += weight * (v[0] - v[1]);
            square += weight * (v[0] - v[1]) * (v[0] - v[1]);
        }
        iid += square - mean * mean;
    }
    let stars = 40;
    let stratified =
        observed_variance(&game, 300, |s| control(IndexKind::Shapley, stars, stars, s));
    let ratio = stratified / (iid / stars as f64);
    assert!(ratio < 0.5, "stratified / iid variance = {ratio}");
}

#[test]
fn parts_threads_and_batches_leave_the_bytes_alone() {
    struct Batched {
        batch: usize,
        parallel: bool,
    }
    impl Game for Batched {
        fn num_players(&self) -> usize {
            12
        }
        fn values(&self, coalitions: &[Coalition], out: &mut [f64]) {
            logistic12().values(coalitions, out)
        }
        fn player_groups(&self) -> Option<Vec<usize>> {
            logistic12().player_groups()
        }
        fn batch_size(&self) -> usize {
            self.batch
        }
        fn parallel(&self) -> bool {
            self.parallel
        }
        fn incremental(&self) -> bool {
            true
        }
        fn predicts_marginals(&self) -> bool {
            true
        }
        fn predicted_marginals(&self, coalitions: &[Coalition], out: &mut [f64]) {
            logistic12().predicted_marginals(coalitions, out)
        }
    }
    let constraints = Constraints {
        always_in: vec![1],
        always_out: vec![8],
        restrict_to: None,
    };
    let cfg = control(IndexKind::BiasedBanzhaf { d: 0.3 }, 50, 17, 9);
    let bits = |e: &[PlayerEstimate]| -> Vec<(usize, u64, u64)> {
        e.iter()
            .map(|p| (p.player, p.estimate.to_bits(), p.stderr.to_bits()))
            .collect()
    };
    let reference = Batched {
        batch: 256,
        parallel: false,
    };
    let whole = evaluations(&reference, &cfg, &constraints, Part::WHOLE, &|_| {}).unwrap();
    let want = bits(&estimate_from_evaluations(&reference, &cfg, &constraints, &whole).unwrap());
    for (batch, parallel) in [(3, true), (7, false), (1, true)] {
        let game = Batched { batch, parallel };
        let got = estimate(&game, &cfg, &constraints, &|_| {}).unwrap();
        assert_eq!(bits(&got), want, "batch {batch}");
        for of in [2, 5] {
            let mut joined = Vec::new();
            for index in 0..of {
                let part = Part { index, of };
                joined.extend(evaluations(&game, &cfg, &constraints, part, &|_| {}).unwrap());
            }
            let got = estimate_from_evaluations(&game, &cfg, &constraints, &joined).unwrap();
            assert_eq!(bits(&got), want, "batch {batch}, {of} parts");
        }
    }
}

#[test]
fn configurations_are_validated() {
    let game = logistic12();
    for (stars, folds, samples) in [(8, 1, 100), (7, 4, 100), (40, 4, 30)] {
        let cfg = EstimateConfig {
            index: IndexKind::Banzhaf,
            estimator: Estimator::ControlVariate {
                stars,
                folds,
                shrink: false,
            },
            samples,
            seed: 0,
        };
        let err = estimate(&game, &cfg, &Constraints::none(), &|_| {}).unwrap_err();
        assert_eq!(
            err,
            GameError::InvalidStars {
                stars,
                folds,
                samples
            }
        );
    }
    let err = estimate(
        &voting10(),
        &control(IndexKind::Banzhaf, 100, 20, 0),
        &Constraints::none(),
        &|_| {},
    )
    .unwrap_err();
    assert_eq!(err, GameError::NoPredictions);
    assert!(err.to_string().contains("predicts marginal contributions"));
    let sweep = EstimateConfig {
        estimator: Estimator::Sweep,
        ..control(IndexKind::Shapley, 100, 20, 0)
    };
    let err = estimate(&game, &sweep, &Constraints::none(), &|_| {}).unwrap_err();
    assert!(err.to_string().contains("(use Permutation)"), "{err}");
}

/// Mean squared error against the exact index over `runs` seeds and every player.
fn mean_squared_error(
    game: &dyn Game,
    index: IndexKind,
    runs: u64,
    cfg: impl Fn(u64) -> EstimateConfig,
) -> f64 {
    let want = exact_values(game, index, &Constraints::none());
    let mut sum = 0.0;
    for seed in 0..runs {
        for (e, w) in run(game, &cfg(seed), &Constraints::none())
            .iter()
            .zip(&want)
        {
            sum += (e.estimate - w).powi(2);
        }
    }
    sum / (runs as f64 * want.len() as f64)
}

fn shrunk(mut cfg: EstimateConfig) -> EstimateConfig {
    if let Estimator::ControlVariate { shrink, .. } = &mut cfg.estimator {
        *shrink = true;
    }
    cfg
}

/// 16 players in two groups of 8 (the prior is fitted per group).
fn logistic16() -> gtap_game::games::LogisticGame {
    gtap_game::games::LogisticGame {
        weights: vec![
            3.0, 2.5, 2.0, 1.5, 1.0, 0.5, 0.2, -0.4, 2.0, 1.8, -1.0, 1.2, 0.8, 0.0, 0.6, 1.4,
        ],
        threshold: 6.0,
        temperature: 1.5,
        groups: Some(vec![0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1]),
    }
}

/// Shrinkage towards the predictions' prior (empirical Bayes): where the gradient predictions
/// rank the players (σ'(z)·w_i), the error against the exact index falls well below the
/// unbiased estimate's at the same evaluations (0.67x for β_0.5, 0.82x for Shapley here);
/// where they are noise it costs little (1.07x: the prior is then about the group's mean, and
/// the halves' agreement keeps λ near 1).
#[test]
fn shrinkage_lowers_the_error_where_the_predictions_rank_well() {
    for index in [IndexKind::BiasedBanzhaf { d: 0.5 }, IndexKind::Shapley] {
        let cfg = |s| control(index, 80, 8, s);
        let plain = mean_squared_error(&logistic16(), index, 200, cfg);
        let good = mean_squared_error(&logistic16(), index, 200, |s| shrunk(cfg(s)));
        let noise_plain = mean_squared_error(&Noise(logistic16()), index, 200, cfg);
        let noise = mean_squared_error(&Noise(logistic16()), index, 200, |s| shrunk(cfg(s)));
        eprintln!(
            "{index:?}: shrunk / unbiased mean squared error {:.2} (gradient predictions), {:.2} (noise)",
            good / plain,
            noise / noise_plain
        );
        assert!(
            good / plain < 0.9,
            "{index:?}: shrinking kept {}x the error",
            good / plain
        );
        assert!(
            noise / noise_plain < 1.15,
            "{index:?}: noise {}x",
            noise / noise_plain
        );
    }
}

/// Groups of fewer than 4 players keep their unbiased estimates, byte for byte.
#[test]
fn shrinkage_leaves_groups_of_three_alone() {
    let mut game = logistic12();
    game.groups = Some(vec![0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]);
    let cfg = control(IndexKind::Banzhaf, 80, 8, 3);
    assert_eq!(
        run(&game, &cfg, &Constraints::none()),
        run(&game, &shrunk(cfg.clone()), &Constraints::none())
    );
}
