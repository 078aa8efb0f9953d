//! Monte-Carlo estimators of power indices: [`estimate`].

use rand::seq::SliceRandom;

use crate::eval::{draw_members, evaluate, sample_rng, Part, Stats};
use crate::{Coalition, Constraints, Game, GameError};

/// The power index to compute.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum IndexKind {
    /// Shapley value: mean marginal contribution over uniformly random orderings.
    Shapley,
    /// Banzhaf index: mean marginal contribution to a coalition where every other player is
    /// present with probability 1/2. Same as `BiasedBanzhaf { d: 0.5 }`.
    Banzhaf,
    /// Biased Banzhaf index β_d: as Banzhaf, with inclusion probability `d` in (0, 1).
    BiasedBanzhaf {
        /// Inclusion probability of every other player.
        d: f64,
    },
}

impl IndexKind {
    /// The inclusion probability of a Banzhaf-type index (`None` for Shapley), validated.
    pub fn bias(&self) -> Result<Option<f64>, GameError> {
        match *self {
            IndexKind::Shapley => Ok(None),
            IndexKind::Banzhaf => Ok(Some(0.5)),
            // Written so that NaN is rejected too.
            IndexKind::BiasedBanzhaf { d } if d > 0.0 && d < 1.0 => Ok(Some(d)),
            IndexKind::BiasedBanzhaf { d } => Err(GameError::InvalidBias(d)),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            IndexKind::Shapley => "Shapley",
            IndexKind::Banzhaf => "Banzhaf",
            IndexKind::BiasedBanzhaf { .. } => "biased Banzhaf",
        }
    }
}

/// How to sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Estimator {
    /// Shapley only: random permutations of the free players; each permutation gives every free
    /// player one marginal contribution (n_free + 1 evaluations per permutation, batched).
    /// `antithetic`: permutations come in pairs π, reverse(π); `samples` is then rounded up to
    /// an even number and the standard error is computed from the pair means, because the two
    /// halves of a pair are dependent.
    Permutation {
        /// Sample permutations in pairs π, reverse(π).
        antithetic: bool,
    },
    /// Paper's Algorithm 2, Banzhaf-type only: for each free player i, k coalitions C ~ R_d over
    /// the other free players, ν(C ∪ {i}) − ν(C \ {i}); 2·k evaluations per player.
    Paired,
    /// Paper's footnote 5 / "maximum sample reuse" (Data Banzhaf, Wang & Jia 2023), Banzhaf-type
    /// only: one pool of k coalitions C ~ R_d over the free players; estimate_i = mean ν over
    /// coalitions containing i − mean ν over those not containing i; k evaluations in total.
    /// If no pooled coalition contains i (or all do), the estimate is NaN; if fewer than two
    /// contain it (or fewer than two lack it), the standard error is NaN. Unlike the other
    /// estimators, a dummy player's estimate is noise around 0, not exactly 0.
    Shared,
    /// The shared pool, read by least squares: ν(C) ≈ a + Σ_i b_i·[i ∈ C] fitted over the pooled
    /// coalitions, estimate_i = b_i. Under independent inclusions the population coefficient of
    /// this linear projection *is* β_d(i) (the players' indicators are independent, so each
    /// coefficient equals E[ν | i ∈ C] − E[ν | i ∉ C]); the fit removes the part of every value
    /// that the other players explain, so the standard error (the usual OLS one) is that of the
    /// residual, not of ν. Same pool and evaluations as `Shared`; needs more coalitions than
    /// free players + 1. Bias of order 1/k; a dummy player's estimate is noise around 0.
    SharedRegression,
    /// The shared pool, read by cross-fitted regression adjustment (Witter et al. 2025): the
    /// pool is cut into `folds` parts; for each part a surrogate of ν (linear in the members,
    /// plus the square and cube of each player group's standardised active count, see
    /// [`Game::player_groups`]) is fitted by least squares on the other parts, its index is
    /// computed exactly, and the `Shared` difference of means of the residuals on this part
    /// corrects it. **Unbiased** (each part's surrogate never saw that part's coalitions) with
    /// the variance of the residuals, not of ν. Same pool and evaluations as `Shared`; where a
    /// fit is singular (too few coalitions outside a part) that part falls back to `Shared`.
    SharedCrossFit {
        /// Parts of the pool, at least 2; each needs at least 2 coalitions.
        folds: usize,
    },
    /// Banzhaf-type only: each sample is one sweep over the free players, a walk
    /// ([`crate::Walk`]) that starts at C ~ R_d and visits the free players in a random order;
    /// visiting i toggles it (one evaluation), which gives ν(C ∪ {i}) − ν(C \ {i}) at the current
    /// C, and then i's membership is drawn afresh from R_d (kept toggled or toggled back by the
    /// next step, at no evaluation). Every other player's membership is always an independent
    /// R_d draw (its first or its fresh one), so each difference is an unbiased sample of β_d(i)
    /// as in `Paired`, at n_free + 1 evaluations per sample for *all* players instead of 2 per
    /// player; and a network evaluates each step by updating what one unit changes
    /// ([`Game::incremental`]). Samples of one player are independent across sweeps (the
    /// standard error is theirs); players of one sweep are correlated.
    Sweep,
    /// Any index, for games that predict marginal contributions
    /// ([`Game::predicts_marginals`]; a network: one backward pass through its gates):
    /// `samples` coalitions C ~ R_d over the free players (Shapley: C ~ R_q with q ~ U(0, 1)
    /// per coalition, Owen's multilinear extension, q stratified across each fold's stars and
    /// across the coalitions past them) each get every free player's
    /// predicted contribution p_i(C); the first `stars` of them also the exact ones,
    /// Δ_i(C) = ν(C ∪ {i}) − ν(C \ {i}), from a star (C, then each free player toggled
    /// alone: f + 1 evaluations, a walk). The prediction is a control variate
    /// (multi-fidelity Monte Carlo): per player, the mean of Δ − c·p over the stars plus c
    /// times the mean of p over every coalition, with c fitted per player group
    /// ([`Game::player_groups`]) on the other folds of the stars (cross-fitting), so the
    /// estimate is **unbiased** whatever the prediction; its variance is that of Δ − c·p
    /// where the prediction explains Δ. The standard error counts both means and their
    /// shared coalitions. Needs `2 ≤ folds`, `2·folds ≤ stars ≤ samples`.
    ///
    /// With `shrink`, each group's estimates are then pulled towards a prior from the
    /// predictions (empirical Bayes, [`crate::control`]): a biased ranking estimator that
    /// trades the unbiasedness above for a smaller error where the predictions rank well.
    ControlVariate {
        /// Coalitions (the first of the `samples`) whose exact contributions are evaluated.
        stars: usize,
        /// Parts of the stars for cross-fitting, at least 2; each needs at least 2 stars.
        folds: usize,
        /// Shrink the estimates towards the predictions' prior (empirical Bayes); the
        /// evaluations are the same either way.
        shrink: bool,
    },
    /// Every coalition of the free players (2^f evaluations, f ≤ [`crate::MAX_EXACT_FREE`]):
    /// the index itself, any index, standard error 0; `samples` is not used.
    Exact,
}

impl Estimator {
    fn name(&self) -> &'static str {
        match self {
            Estimator::Permutation { .. } => "Permutation",
            Estimator::Paired => "Paired",
            Estimator::Shared => "Shared",
            Estimator::SharedRegression => "SharedRegression",
            Estimator::SharedCrossFit { .. } => "SharedCrossFit",
            Estimator::Sweep => "Sweep",
            Estimator::ControlVariate { .. } => "ControlVariate",
            Estimator::Exact => "Exact",
        }
    }
}

/// What to estimate and how much to sample.
#[derive(Debug, Clone, PartialEq)]
pub struct EstimateConfig {
    /// The power index.
    pub index: IndexKind,
    /// The sampling scheme; must suit `index`.
    pub estimator: Estimator,
    /// Permutations (Permutation), k per player (Paired), pool size (Shared), sweeps (Sweep),
    /// predicted coalitions (ControlVariate).
    pub samples: usize,
    /// Seed of every random stream; sample j draws from its own stream of this seed.
    pub seed: u64,
}

/// The estimate of one free player's power index.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlayerEstimate {
    /// Player id in `0..n`.
    pub player: usize,
    /// The (estimated) index.
    pub estimate: f64,
    /// Standard error of `estimate`; 0 for exact values, NaN when it cannot be estimated.
    pub stderr: f64,
    /// Samples behind the estimate: permutations, k, pool size, or 2^n_free for exact values.
    pub samples: usize,
}

/// Largest `samples`: Paired numbers its random streams `player << 32 | sample`.
pub const MAX_SAMPLES: usize = u32::MAX as usize;

/// Estimates a power index of every free player by Monte Carlo.
///
/// Returns one entry per free player, sorted by player id (empty if no player is free).
/// `progress` is called with the number of coalition evaluations just completed. The result is
/// bit-identical for a given configuration whatever the rayon thread count: sample j draws from
/// its own random stream, and per-sample results are reduced in sample order. All values are
/// kept until the end (8 bytes per evaluation); coalitions are rebuilt from their streams rather
/// than stored.
pub fn estimate(
    game: &dyn Game,
    cfg: &EstimateConfig,
    constraints: &Constraints,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Vec<PlayerEstimate>, GameError> {
    let values = evaluations(game, cfg, constraints, Part::WHOLE, progress)?;
    estimate_from_evaluations(game, cfg, constraints, &values)
}

/// The coalition values one [`Part`] of [`estimate`]'s sampling needs (the expensive half):
/// parts `0..of`, concatenated in order, are bit-identical to `Part::WHOLE`'s values, and
/// [`estimate_from_evaluations`] turns them into the estimate, so an estimate split across
/// cluster jobs is the same bytes as one computed at once.
pub fn evaluations(
    game: &dyn Game,
    cfg: &EstimateConfig,
    constraints: &Constraints,
    part: Part,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Vec<f64>, GameError> {
    if part.of == 0 || part.index >= part.of {
        return Err(GameError::InvalidPart {
            index: part.index,
            of: part.of,
        });
    }
    let (resolved, bias) = check(game, cfg, constraints)?;
    let s = Setup::new(game, &resolved, cfg);
    if s.free.is_empty() {
        return Ok(Vec::new());
    }
    Ok(match (cfg.estimator, bias) {
        (Estimator::Exact, _) => crate::exact::exact_values(game, s.free, s.base, part, progress)?,
        (Estimator::Permutation { antithetic }, _) => {
            s.permutation_values(antithetic, part, progress)
        }
        (Estimator::Paired, Some(d)) => s.paired_values(d, part, progress),
        (
            Estimator::Shared | Estimator::SharedRegression | Estimator::SharedCrossFit { .. },
            Some(d),
        ) => s.pooled_values(d, part, progress),
        (Estimator::Sweep, Some(d)) => s.sweep_values(d, part, progress),
        (
            Estimator::ControlVariate {
                stars,
                folds,
                shrink,
            },
            bias,
        ) => {
            let design = crate::control::Design {
                bias,
                stars,
                folds,
                shrink,
            };
            s.control_values(design, part, progress)
        }
        _ => unreachable!("checked"),
    })
}

/// The estimate from every evaluation of [`evaluations`] (all parts, in order); the cheap
/// half: it re-draws the coalitions from their random streams and reduces in sample order.
pub fn estimate_from_evaluations(
    game: &dyn Game,
    cfg: &EstimateConfig,
    constraints: &Constraints,
    values: &[f64],
) -> Result<Vec<PlayerEstimate>, GameError> {
    let (resolved, bias) = check(game, cfg, constraints)?;
    let s = Setup::new(game, &resolved, cfg);
    if s.free.is_empty() {
        return Ok(Vec::new());
    }
    let (f, k) = (s.free.len(), s.samples);
    let expected = match cfg.estimator {
        Estimator::Permutation { antithetic: true } => k.next_multiple_of(2) * (f + 1),
        Estimator::Permutation { antithetic: false } | Estimator::Sweep => k * (f + 1),
        Estimator::Paired => 2 * f * k,
        Estimator::Shared | Estimator::SharedRegression | Estimator::SharedCrossFit { .. } => k,
        Estimator::ControlVariate { stars, .. } => stars * (f + 1) + k * f,
        Estimator::Exact => 1 << f,
    };
    if values.len() != expected {
        return Err(GameError::WrongEvaluationCount {
            expected,
            got: values.len(),
        });
    }
    Ok(match (cfg.estimator, bias) {
        (Estimator::Exact, bias) => crate::exact::exact_from_values(s.free, bias, values),
        (Estimator::Permutation { antithetic }, _) => s.permutation(antithetic, values),
        (Estimator::Paired, Some(_)) => s.paired(values),
        (Estimator::Shared, Some(d)) => s.shared(d, values),
        (Estimator::SharedRegression, Some(d)) => s.shared_regression(d, values),
        (Estimator::SharedCrossFit { folds }, Some(d)) => s.shared_cross_fit(d, folds, values),
        (Estimator::Sweep, Some(d)) => s.sweep(d, values),
        (
            Estimator::ControlVariate {
                stars,
                folds,
                shrink,
            },
            bias,
        ) => s.control_variate(
            crate::control::Design {
                bias,
                stars,
                folds,
                shrink,
            },
            values,
        ),
        _ => unreachable!("checked"),
    })
}

/// For a [`Estimator::ControlVariate`] estimate's evaluations: per player group, how well the
/// predictions tracked the exact contributions at the stars ([`crate::GroupFit`]). Empty for
/// other estimators.
pub fn control_fit(
    game: &dyn Game,
    cfg: &EstimateConfig,
    constraints: &Constraints,
    values: &[f64],
) -> Result<Vec<crate::GroupFit>, GameError> {
    let (resolved, bias) = check(game, cfg, constraints)?;
    let s = Setup::new(game, &resolved, cfg);
    let Estimator::ControlVariate {
        stars,
        folds,
        shrink,
    } = cfg.estimator
    else {
        return Ok(Vec::new());
    };
    let expected = stars * (s.free.len() + 1) + cfg.samples * s.free.len();
    if values.len() != expected {
        return Err(GameError::WrongEvaluationCount {
            expected,
            got: values.len(),
        });
    }
    let design = crate::control::Design {
        bias,
        stars,
        folds,
        shrink,
    };
    Ok(s.control_fit(design, values))
}

/// Validates a configuration against a game: the resolved constraints and the index's bias.
fn check(
    game: &dyn Game,
    cfg: &EstimateConfig,
    constraints: &Constraints,
) -> Result<(crate::Resolved, Option<f64>), GameError> {
    let bias = cfg.index.bias()?;
    let incompatible = |instead| GameError::IncompatibleEstimator {
        estimator: cfg.estimator.name(),
        index: cfg.index.name(),
        instead,
    };
    match (cfg.estimator, bias) {
        (Estimator::Permutation { .. }, Some(_)) => return Err(incompatible("Paired or Shared")),
        (
            Estimator::Paired
            | Estimator::Shared
            | Estimator::SharedRegression
            | Estimator::SharedCrossFit { .. }
            | Estimator::Sweep,
            None,
        ) => return Err(incompatible("Permutation")),
        _ => {}
    }
    if cfg.estimator == Estimator::Exact {
        let resolved = constraints.resolve(game.num_players())?;
        if resolved.free.len() > crate::MAX_EXACT_FREE {
            return Err(GameError::TooManyFreePlayers {
                free: resolved.free.len(),
                max: crate::MAX_EXACT_FREE,
            });
        }
        return Ok((resolved, bias));
    }
    if cfg.samples == 0 {
        return Err(GameError::NoSamples);
    }
    if cfg.samples > MAX_SAMPLES {
        return Err(GameError::TooManySamples {
            got: cfg.samples,
            max: MAX_SAMPLES,
        });
    }
    if let Estimator::SharedCrossFit { folds } = cfg.estimator {
        if folds < 2 || cfg.samples < 2 * folds {
            return Err(GameError::InvalidFolds {
                folds,
                samples: cfg.samples,
            });
        }
    }
    if let Estimator::ControlVariate { stars, folds, .. } = cfg.estimator {
        if folds < 2 || stars < 2 * folds || stars > cfg.samples {
            return Err(GameError::InvalidStars {
                stars,
                folds,
                samples: cfg.samples,
            });
        }
        if !game.predicts_marginals() {
            return Err(GameError::NoPredictions);
        }
    }
    let resolved = constraints.resolve(game.num_players())?;
    if cfg.estimator == Estimator::SharedRegression
        && !resolved.free.is_empty()
        && cfg.samples <= resolved.free.len() + 1
    {
        return Err(GameError::TooFewSamplesForRegression {
            samples: cfg.samples,
            free: resolved.free.len(),
        });
    }
    Ok((resolved, bias))
}

pub(crate) struct Setup<'a> {
    pub(crate) game: &'a dyn Game,
    pub(crate) free: &'a [usize],
    pub(crate) base: &'a Coalition,
    pub(crate) seed: u64,
    pub(crate) samples: usize,
}

impl<'a> Setup<'a> {
    fn new(game: &'a dyn Game, resolved: &'a crate::Resolved, cfg: &EstimateConfig) -> Self {
        Setup {
            game,
            free: &resolved.free,
            base: &resolved.base,
            seed: cfg.seed,
            samples: cfg.samples,
        }
    }

    /// Permutation of free slots `0..f` of sample `s`.
    fn sample_permutation(&self, s: usize, antithetic: bool) -> Vec<usize> {
        let stream = if antithetic { s / 2 } else { s };
        let mut perm: Vec<usize> = (0..self.free.len()).collect();
        perm.shuffle(&mut sample_rng(self.seed, stream as u64));
        if antithetic && s % 2 == 1 {
            perm.reverse();
        }
        perm
    }

    /// Permutations sampled: antithetic pairs round `samples` up to an even number.
    fn permutations(&self, antithetic: bool) -> usize {
        if antithetic {
            self.samples.next_multiple_of(2)
        } else {
            self.samples
        }
    }

    fn permutation_values(
        &self,
        antithetic: bool,
        part: Part,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Vec<f64> {
        let f = self.free.len();
        let per = f + 1;
        let samples = self.permutations(antithetic);
        // Evaluation p of sample s is ν(A ∪ {π_s[0..p]}), p = 0..=f.
        let build = |range: std::ops::Range<usize>, out: &mut Vec<Coalition>| {
            let mut e = range.start;
            while e < range.end {
                let s = e / per;
                let (p0, p1) = (e % per, per.min(range.end - s * per));
                let perm = self.sample_permutation(s, antithetic);
                let mut c = self.base.clone();
                perm[..p0].iter().for_each(|&k| c.insert(self.free[k]));
                for p in p0..p1 {
                    if p > p0 {
                        c.insert(self.free[perm[p - 1]]);
                    }
                    out.push(c.clone());
                }
                e = s * per + p1;
            }
        };
        if self.game.incremental() {
            // The same coalitions as walks of single insertions.
            let walks = |range: std::ops::Range<usize>, out: &mut Vec<crate::Walk>| {
                for s in range {
                    let perm = self.sample_permutation(s, antithetic);
                    out.push(crate::Walk {
                        start: self.base.clone(),
                        steps: perm.iter().map(|&k| vec![self.free[k]]).collect(),
                    });
                }
            };
            crate::walk::evaluate_walks(self.game, samples, per, part, walks, progress)
        } else {
            evaluate(self.game, samples * per, part, build, progress)
        }
    }

    fn permutation(&self, antithetic: bool, vals: &[f64]) -> Vec<PlayerEstimate> {
        let f = self.free.len();
        let per = f + 1;
        let samples = self.permutations(antithetic);
        let group = if antithetic { 2 } else { 1 };
        let mut stats = vec![Stats::default(); f];
        let mut unit = vec![0.0; f];
        for g in 0..samples / group {
            unit.iter_mut().for_each(|x| *x = 0.0);
            for s in g * group..(g + 1) * group {
                let v = &vals[s * per..(s + 1) * per];
                for (p, &k) in self.sample_permutation(s, antithetic).iter().enumerate() {
                    unit[k] += (v[p + 1] - v[p]) / group as f64;
                }
            }
            stats.iter_mut().zip(&unit).for_each(|(st, &x)| st.push(x));
        }
        self.report(&stats, samples)
    }

    /// Coalition C ∪ A of unit u = (slot a, sample t) of the Paired estimator, without player a.
    fn paired_coalition(&self, u: usize, d: f64) -> Coalition {
        let (a, t) = (u / self.samples, u % self.samples);
        let stream = (self.free[a] as u64) << 32 | t as u64;
        let mut c = self.base.clone();
        let mut rng = sample_rng(self.seed, stream);
        draw_members(&mut rng, self.free.len(), Some(a), d, |slot, member| {
            if member {
                c.insert(self.free[slot]);
            }
        });
        c
    }

    fn paired_values(&self, d: f64, part: Part, progress: &(dyn Fn(u64) + Sync)) -> Vec<f64> {
        let (f, k) = (self.free.len(), self.samples);
        // Evaluation 2u is ν(C_u ∪ {i}), 2u + 1 is ν(C_u), for unit u = slot·k + sample.
        let build = |range: std::ops::Range<usize>, out: &mut Vec<Coalition>| {
            for u in range.start / 2..range.end.div_ceil(2) {
                let without = self.paired_coalition(u, d);
                if range.contains(&(2 * u)) {
                    let mut with = without.clone();
                    with.insert(self.free[u / k]);
                    out.push(with);
                }
                if range.contains(&(2 * u + 1)) {
                    out.push(without);
                }
            }
        };
        if self.game.incremental() {
            // The same pairs as one-step walks C_u → C_u ∪ {i}, swapped back to (with, without).
            let walks = |range: std::ops::Range<usize>, out: &mut Vec<crate::Walk>| {
                for u in range {
                    out.push(crate::Walk {
                        start: self.paired_coalition(u, d),
                        steps: vec![vec![self.free[u / k]]],
                    });
                }
            };
            let mut vals = crate::walk::evaluate_walks(self.game, f * k, 2, part, walks, progress);
            vals.chunks_exact_mut(2).for_each(|w| w.swap(0, 1));
            vals
        } else {
            evaluate(self.game, 2 * f * k, part, build, progress)
        }
    }

    fn paired(&self, vals: &[f64]) -> Vec<PlayerEstimate> {
        let (f, k) = (self.free.len(), self.samples);
        let stats: Vec<Stats> = (0..f)
            .map(|a| {
                let mut st = Stats::default();
                vals[2 * a * k..2 * (a + 1) * k]
                    .chunks_exact(2)
                    .for_each(|w| st.push(w[0] - w[1]));
                st
            })
            .collect();
        self.report(&stats, k)
    }

    /// Membership of the free slots in pooled coalition `t`.
    fn pooled_members(&self, t: usize, d: f64, mut on: impl FnMut(usize, bool)) {
        let f = self.free.len();
        draw_members(&mut sample_rng(self.seed, t as u64), f, None, d, &mut on);
    }

    /// Values of the pooled coalitions `0..k` in `part`.
    fn pooled_values(&self, d: f64, part: Part, progress: &(dyn Fn(u64) + Sync)) -> Vec<f64> {
        let build = |range: std::ops::Range<usize>, out: &mut Vec<Coalition>| {
            for t in range {
                let mut c = self.base.clone();
                self.pooled_members(t, d, |slot, m| {
                    if m {
                        c.insert(self.free[slot]);
                    }
                });
                out.push(c);
            }
        };
        evaluate(self.game, self.samples, part, build, progress)
    }

    fn shared(&self, d: f64, vals: &[f64]) -> Vec<PlayerEstimate> {
        let (f, k) = (self.free.len(), self.samples);
        let mut with = vec![Stats::default(); f];
        let mut without = vec![Stats::default(); f];
        for (t, &v) in vals.iter().enumerate() {
            self.pooled_members(t, d, |slot, m| {
                if m {
                    &mut with[slot]
                } else {
                    &mut without[slot]
                }
                .push(v);
            });
        }
        self.free
            .iter()
            .zip(with.iter().zip(&without))
            .map(|(&player, (w, o))| {
                debug_assert_eq!(w.count() + o.count(), k as u64);
                PlayerEstimate {
                    player,
                    estimate: w.mean() - o.mean(),
                    stderr: (w.var() / w.count() as f64 + o.var() / o.count() as f64).sqrt(),
                    samples: k,
                }
            })
            .collect()
    }

    fn shared_regression(&self, d: f64, vals: &[f64]) -> Vec<PlayerEstimate> {
        let (f, k) = (self.free.len(), self.samples);
        // Normal equations from integer co-membership counts (exact in u32) and member sums,
        // accumulated in fixed chunks reduced in order: bit-identical for any thread count.
        let fit = crate::ols::MembershipFit::accumulate(f, vals, |t, on| {
            self.pooled_members(t, d, |slot, m| {
                if m {
                    on(slot)
                }
            })
        });
        let (coef, stderr) = fit.solve();
        self.free
            .iter()
            .zip(coef.iter().zip(&stderr))
            .map(|(&player, (&estimate, &stderr))| PlayerEstimate {
                player,
                estimate,
                stderr,
                samples: k,
            })
            .collect()
    }

    fn shared_cross_fit(&self, d: f64, folds: usize, vals: &[f64]) -> Vec<PlayerEstimate> {
        // Dense group ids of the free players, in order of first appearance.
        let labels = self
            .game
            .player_groups()
            .unwrap_or_else(|| vec![0; self.game.num_players()]);
        let mut dense = std::collections::BTreeMap::new();
        let group_of: Vec<usize> = self
            .free
            .iter()
            .map(|&p| {
                let next = dense.len();
                *dense.entry(labels[p]).or_insert(next)
            })
            .collect();
        let fit = crate::crossfit::cross_fitted(
            vals,
            |t, on| {
                self.pooled_members(t, d, |slot, m| {
                    if m {
                        on(slot)
                    }
                })
            },
            &group_of,
            d,
            folds,
        );
        self.free
            .iter()
            .zip(fit)
            .map(|(&player, (estimate, stderr))| PlayerEstimate {
                player,
                estimate,
                stderr,
                samples: self.samples,
            })
            .collect()
    }

    pub(crate) fn report(&self, stats: &[Stats], samples: usize) -> Vec<PlayerEstimate> {
        self.free
            .iter()
            .zip(stats)
            .map(|(&player, st)| PlayerEstimate {
                player,
                estimate: st.mean(),
                stderr: st.stderr(),
                samples,
            })
            .collect()
    }
}
