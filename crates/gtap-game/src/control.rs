//! [`crate::Estimator::ControlVariate`]: exact marginal contributions on a few coalitions
//! (stars), predicted ones on many, the predictions as a control variate.
//!
//! Multi-fidelity Monte Carlo (Peherstorfer et al. 2016) with a cross-fitted coefficient. For
//! player i, coalitions C_s ~ R_d (s < k) each have a prediction p_s = p_i(C_s); the first m
//! (the stars, cut into folds B_j) also the exact Δ_s = ν(C_s ∪ {i}) − ν(C_s \ {i}). A = the
//! coalitions past the stars. Fold j's estimate, with c_j fitted on the other folds only:
//!
//! ```text
//! T_j = mean_{B_j}(Δ − c_j·p) + c_j · mean_{A ∪ B_j}(p),     estimate = Σ_j w_j T_j,  w_j = |B_j| / m
//! ```
//!
//! c_j is independent of B_j and of A, so E[T_j] = β_d(i) − E[c_j]·(E p − E p) = β_d(i):
//! **unbiased** whatever the prediction. Writing M_j = |A| + |B_j|, T_j = mean_{B_j}(Δ − c'_j p) +
//! (c_j / M_j) Σ_A p with c'_j = c_j (1 − |B_j| / M_j): the folds' first terms are independent,
//! and A's sum is shared by all of them, so
//!
//! ```text
//! Var = Σ_j w_j² Var(Δ − c'_j p) / |B_j|  +  |A| Var(p) (Σ_j w_j c_j / M_j)²
//! ```
//!
//! estimated from the folds' residuals (one variance pooled over the folds) and from every
//! prediction of i. c_j is one coefficient
//! per player group (a network's layer, [`crate::Game::player_groups`]): Σ_i Cov_i(Δ, p) /
//! Σ_i Var_i(p) over the group's players on the other folds, each player's moments centred on
//! its own means (its own index is what differs, not the slope); 0 where the predictions do not
//! vary. Where they explain nothing, c_j ≈ 0 and the estimate is the stars' plain mean.
//!
//! Shapley: coalition s draws its inclusion probability q first and then C_s ~ R_q; the Shapley
//! value is ∫₀¹ β_q dq (Owen's multilinear extension), so every formula above holds with the
//! mean over q. q is stratified: each fold's stars, and the coalitions of A, take one q from
//! each of as many equal strata of [0, 1) as they have coalitions. A fold's mean is then a
//! stratified mean, and Var(Δ − c'_j p) and Var(p) above are estimated from successive
//! differences of neighbouring strata (unbiased where E[· | q] is flat, conservative where it
//! is not) instead of the plain variance: the spread of E[Δ_i | q] across q leaves the estimate.
//!
//! Shrinkage (`shrink`, empirical Bayes; Morris 1983): where the predictions rank the players
//! well, a player's mean prediction p̄_i over every coalition is a cheap prior for its index.
//! Per group: the estimates T_i regressed on p̄_i (ordinary least squares) give the prior
//! m_i = a + b·p̄_i, and the estimate becomes m_i + λ (T_i − m_i) with λ the share of the
//! residuals' spread V = Σ(T − m)²/(n − 2) that is the truth's: τ² is the covariance over the
//! group of the residuals of two halves of the folds (each regressed on p̄ alike), whose
//! errors are independent, so λ = clamp(τ² / V, 0, 1). Not the standard errors: players
//! that share stars share errors, so the errors' spread across players is smaller than the
//! mean squared standard error, and a moment estimate τ² = V − mean se² would shrink too far.
//! Biased towards the prior, so the calibration above no longer holds; the standard error is
//! √(λ se_i² + (1 − λ)² h_i V), h_i the regression's leverage (the prior's own fit error).
//! Groups of fewer than 4 players keep T.

use rand::Rng;
use rayon::prelude::*;

use crate::estimate::{PlayerEstimate, Setup};
use crate::eval::{draw_members, sample_rng, Part, Stats};
use crate::walk::evaluate_walk_units;
use crate::{Coalition, Walk};

/// How a control-variate estimate samples: the index's inclusion probability (`None`:
/// Shapley), the stars and their folds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Design {
    pub bias: Option<f64>,
    pub stars: usize,
    pub folds: usize,
    /// Shrink towards the predictions' prior (module docs).
    pub shrink: bool,
}

impl Design {
    fn fold(&self, j: usize) -> std::ops::Range<usize> {
        self.stars * j / self.folds..self.stars * (j + 1) / self.folds
    }

    /// Shapley only: coalition `s`'s stratum among `of` equal strata of q in [0, 1): each
    /// fold's stars are one stratified sample of q, and so are the coalitions past the stars.
    fn stratum(&self, s: usize, samples: usize) -> (usize, usize) {
        if s >= self.stars {
            return (s - self.stars, samples - self.stars);
        }
        let j = (0..self.folds)
            .find(|&j| self.fold(j).contains(&s))
            .expect("a star lies in a fold");
        let fold = self.fold(j);
        (s - fold.start, fold.len())
    }
}

impl Setup<'_> {
    /// The free slots' memberships of coalition `s`, from sample `s`'s own stream: each free
    /// player present with probability `bias` (Banzhaf-type), or, for Shapley (`None`), with a
    /// probability q drawn first for the whole coalition, uniform within the coalition's
    /// stratum ([`Design::stratum`]). Owen's multilinear extension: the Shapley value is
    /// ∫₀¹ β_q dq, so the mean of Δ_i over a stratified sample of q is unbiased for it, for
    /// every player at once, and free of the spread of E[Δ_i | q] across q.
    fn control_members(&self, s: usize, d: Design) -> Vec<bool> {
        let f = self.free.len();
        let mut member = vec![false; f];
        let mut rng = sample_rng(self.seed, s as u64);
        let q = d.bias.unwrap_or_else(|| {
            let (t, of) = d.stratum(s, self.samples);
            (t as f64 + rng.random::<f64>()) / of as f64
        });
        draw_members(&mut rng, f, None, q, |slot, m| member[slot] = m);
        member
    }

    fn control_coalition(&self, s: usize, d: Design) -> Coalition {
        let mut c = self.base.clone();
        for (slot, &m) in self.control_members(s, d).iter().enumerate() {
            if m {
                c.insert(self.free[slot]);
            }
        }
        c
    }

    /// Star `s`: coalition `s`, then each free player toggled alone, in slot order (each step
    /// toggles the previous player back and the next one).
    fn star(&self, s: usize, d: Design) -> Walk {
        let steps = (0..self.free.len())
            .map(|slot| match slot {
                0 => vec![self.free[0]],
                _ => vec![self.free[slot - 1], self.free[slot]],
            })
            .collect();
        Walk {
            start: self.control_coalition(s, d),
            steps,
        }
    }

    /// The stars' walk values (`stars × (f + 1)`), then every coalition's predictions
    /// (`samples × f`, free slots only). The batches of both are one sequence that the parts
    /// cut, so the parts' values concatenate to the whole's.
    pub(crate) fn control_values(
        &self,
        d: Design,
        part: Part,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Vec<f64> {
        let (f, k, stars) = (self.free.len(), self.samples, d.stars);
        let batch = self.game.batch_size().max(1);
        let star_batches = stars.div_ceil(batch);
        let total = star_batches + k.div_ceil(batch);
        let (first, last) = (
            total * part.index / part.of,
            total * (part.index + 1) / part.of,
        );
        let units =
            |from: usize, to: usize, of: usize| (from * batch).min(of)..(to * batch).min(of);
        let star_units = units(first.min(star_batches), last.min(star_batches), stars);
        let predicted = units(
            first.max(star_batches) - star_batches,
            last.max(star_batches) - star_batches,
            k,
        );
        let walks = |range: std::ops::Range<usize>, out: &mut Vec<Walk>| {
            out.extend(range.map(|s| self.star(s, d)));
        };
        let mut vals = evaluate_walk_units(self.game, star_units, f + 1, walks, progress);
        vals.extend(self.predictions(predicted, d, progress));
        vals
    }

    /// Predictions of the free slots at coalitions `range` (`f` each), `batch_size` coalitions
    /// per call, each call writing its own slice.
    fn predictions(
        &self,
        range: std::ops::Range<usize>,
        d: Design,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Vec<f64> {
        let (f, n) = (self.free.len(), self.game.num_players());
        let batch = self.game.batch_size().max(1);
        let mut vals = vec![f64::NAN; range.len() * f];
        let run = |(b, out): (usize, &mut [f64])| {
            let start = range.start + b * batch;
            let coalitions: Vec<Coalition> = (start..start + out.len() / f)
                .map(|s| self.control_coalition(s, d))
                .collect();
            let mut all = vec![f64::NAN; coalitions.len() * n];
            self.game.predicted_marginals(&coalitions, &mut all);
            for (row, full) in out.chunks_mut(f).zip(all.chunks(n)) {
                for (o, &player) in row.iter_mut().zip(self.free) {
                    *o = full[player];
                }
            }
            progress(coalitions.len() as u64);
        };
        if f == 0 {
            return vals;
        }
        if self.game.parallel() {
            vals.par_chunks_mut(batch * f).enumerate().for_each(run);
        } else {
            vals.chunks_mut(batch * f).enumerate().for_each(run);
        }
        vals
    }

    /// The estimate from [`Setup::control_values`]'s values (module docs).
    pub(crate) fn control_variate(&self, d: Design, vals: &[f64]) -> Vec<PlayerEstimate> {
        let (f, k, stars, folds) = (self.free.len(), self.samples, d.stars, d.folds);
        let (exact, predicted) = self.control_split(d, vals);
        let group_of = self.dense_groups();
        let groups = group_of.iter().max().map_or(0, |g| g + 1);
        // Shapley's stratified q: a stratified mean's variance from successive differences
        // of neighbouring strata (unbiased without a trend across q, conservative with one),
        // in place of the plain variance.
        let stratified = d.bias.is_none();
        let rest = k - stars;
        // Per fold and slot: the moments a coefficient is fitted from.
        let moments: Vec<Vec<Moments>> = (0..folds)
            .map(|j| {
                let mut m = vec![Moments::default(); f];
                for s in d.fold(j) {
                    for (slot, mo) in m.iter_mut().enumerate() {
                        mo.push(exact[s * f + slot], predicted[s * f + slot]);
                    }
                }
                m
            })
            .collect();
        let coefficients: Vec<Vec<f64>> = (0..folds)
            .map(|j| {
                let (mut cov, mut var) = (vec![0.0; groups], vec![0.0; groups]);
                for slot in 0..f {
                    let mut train = Moments::default();
                    for (l, m) in moments.iter().enumerate() {
                        if l != j {
                            train.add(&m[slot]);
                        }
                    }
                    let (c, v) = train.centred();
                    cov[group_of[slot]] += c;
                    var[group_of[slot]] += v;
                }
                cov.iter()
                    .zip(&var)
                    .map(|(&c, &v)| if v > 0.0 { c / v } else { 0.0 })
                    .collect()
            })
            .collect();
        let mut mean_prediction = vec![0.0; f];
        let mut half_estimates = vec![[0.0; 2]; f];
        let mut estimates: Vec<PlayerEstimate> = (0..f)
            .map(|slot| {
                let c_of = |j: usize| coefficients[j][group_of[slot]];
                let mut all = Stats::default();
                let mut rest_sum = 0.0;
                for s in 0..k {
                    let p = predicted[s * f + slot];
                    all.push(p);
                    if s >= stars {
                        rest_sum += p;
                    }
                }
                let (mut estimate, mut shared) = (0.0, 0.0);
                // The folds' estimates in two halves (stars apart): their independent errors
                // tell the spread of the truth from that of the noise (shrinkage).
                let mut halves = [(0.0, 0.0); 2];
                let (mut squares, mut weights) = (0.0, 0.0);
                for j in 0..folds {
                    let fold = d.fold(j);
                    let (n, c) = (fold.len() as f64, c_of(j));
                    let big_m = n + rest as f64;
                    let w = n / stars as f64;
                    let damped = c * (1.0 - n / big_m);
                    let mut residual = Stats::default();
                    let mut successive = 0.0;
                    let mut previous = None;
                    for s in fold {
                        let r = exact[s * f + slot] - damped * predicted[s * f + slot];
                        residual.push(r);
                        if let Some(p) = previous {
                            successive += (r - p) * (r - p) / 2.0;
                        }
                        previous = Some(r);
                    }
                    let fold_estimate = residual.mean() + c * rest_sum / big_m;
                    estimate += w * fold_estimate;
                    let half = &mut halves[usize::from(2 * j >= folds)];
                    half.0 += w * fold_estimate;
                    half.1 += w;
                    squares += match stratified {
                        true => successive,
                        false => residual.var() * (n - 1.0),
                    };
                    weights += w * w / n;
                    shared += w * c / big_m;
                }
                // One residual variance pooled over the folds (each residual centred on its
                // fold's mean): a fold's few stars alone give an unbiased variance but
                // intervals that cover too rarely.
                let mut variance = weights * squares / (stars - folds) as f64;
                if rest > 0 {
                    let spread = match stratified && rest > 1 {
                        true => {
                            let mut sum = 0.0;
                            for s in stars + 1..k {
                                let step = predicted[s * f + slot] - predicted[(s - 1) * f + slot];
                                sum += step * step;
                            }
                            sum / (2.0 * (rest - 1) as f64)
                        }
                        false => all.var(),
                    };
                    variance += rest as f64 * spread * shared * shared;
                }
                mean_prediction[slot] = all.mean();
                half_estimates[slot] = halves.map(|(sum, weight)| sum / weight);
                PlayerEstimate {
                    player: self.free[slot],
                    estimate,
                    stderr: variance.max(0.0).sqrt(),
                    samples: stars,
                }
            })
            .collect();
        if d.shrink {
            for g in 0..groups {
                let members: Vec<usize> = (0..f).filter(|&slot| group_of[slot] == g).collect();
                let prior = Prior {
                    mean_prediction: &mean_prediction,
                    halves: &half_estimates,
                };
                prior.shrink(&mut estimates, &members);
            }
        }
        estimates
    }

    /// The stars' exact contributions (`stars × f`, star-major) and every coalition's
    /// predictions (`samples × f`) from [`Setup::control_values`]'s values.
    fn control_split<'v>(&self, d: Design, vals: &'v [f64]) -> (Vec<f64>, &'v [f64]) {
        let (f, stars) = (self.free.len(), d.stars);
        let (star_values, predicted) = vals.split_at(stars * (f + 1));
        let mut exact = vec![0.0; stars * f];
        for (s, (v, row)) in star_values
            .chunks_exact(f + 1)
            .zip(exact.chunks_exact_mut(f))
            .enumerate()
        {
            let members = self.control_members(s, d);
            for ((o, &toggled), member) in row.iter_mut().zip(&v[1..]).zip(members) {
                *o = if member {
                    v[0] - toggled
                } else {
                    toggled - v[0]
                };
            }
        }
        (exact, predicted)
    }

    /// Per player group, over the stars: the Pearson correlation of predicted with exact
    /// contributions (pooled over the group's players, each centred on its own means, as
    /// the coefficient is fitted) and that coefficient on all stars.
    pub(crate) fn control_fit(&self, d: Design, vals: &[f64]) -> Vec<GroupFit> {
        let (f, stars) = (self.free.len(), d.stars);
        let (exact, predicted) = self.control_split(d, vals);
        let group_of = self.dense_groups();
        let labels = self.game.player_groups();
        let groups = group_of.iter().max().map_or(0, |g| g + 1);
        let mut sums = vec![(0.0, 0.0, 0.0, 0usize, usize::MAX); groups];
        for slot in 0..f {
            let mut m = Moments::default();
            for s in 0..stars {
                m.push(exact[s * f + slot], predicted[s * f + slot]);
            }
            let (cov, var_p) = m.centred();
            let var_y = (m.yy - m.y * m.y / m.n.max(1.0)).max(0.0);
            let g = &mut sums[group_of[slot]];
            g.0 += cov;
            g.1 += var_p;
            g.2 += var_y;
            g.3 += 1;
            let label = labels.as_ref().map_or(0, |l| l[self.free[slot]]);
            g.4 = g.4.min(label);
        }
        sums.into_iter()
            .map(|(cov, var_p, var_y, players, label)| GroupFit {
                group: if label == usize::MAX { 0 } else { label },
                players,
                correlation: cov / (var_p * var_y).sqrt(),
                coefficient: if var_p > 0.0 { cov / var_p } else { 0.0 },
            })
            .collect()
    }

    /// A dense group id per free slot ([`crate::Game::player_groups`]; one group without).
    fn dense_groups(&self) -> Vec<usize> {
        let Some(labels) = self.game.player_groups() else {
            return vec![0; self.free.len()];
        };
        let mut seen: Vec<usize> = Vec::new();
        self.free
            .iter()
            .map(|&p| {
                let label = labels.get(p).copied().unwrap_or(usize::MAX);
                match seen.iter().position(|&l| l == label) {
                    Some(g) => g,
                    None => {
                        seen.push(label);
                        seen.len() - 1
                    }
                }
            })
            .collect()
    }
}

/// What shrinkage needs per free slot: the mean prediction over every coalition (the prior's
/// feature) and the estimates of the two halves of the folds (independent stars).
struct Prior<'a> {
    mean_prediction: &'a [f64],
    halves: &'a [[f64; 2]],
}

impl Prior<'_> {
    /// Empirical-Bayes shrinkage of one group's estimates (`members`: their slots) towards
    /// the prior a + b·p̄ fitted on them (module docs). Fewer than 4 players: left alone.
    fn shrink(&self, estimates: &mut [PlayerEstimate], members: &[usize]) {
        let n = members.len();
        if n < 4 {
            return;
        }
        let nf = n as f64;
        let x = |s: usize| self.mean_prediction[s];
        let x_mean = members.iter().map(|&s| x(s)).sum::<f64>() / nf;
        let sxx: f64 = members.iter().map(|&s| (x(s) - x_mean).powi(2)).sum();
        // The least-squares line of `y` on p̄ over the group, as a function of the slot.
        let fit = |y: &dyn Fn(usize) -> f64| {
            let y_mean = members.iter().map(|&s| y(s)).sum::<f64>() / nf;
            let sxy: f64 = members
                .iter()
                .map(|&s| (x(s) - x_mean) * (y(s) - y_mean))
                .sum();
            let slope = if sxx > 0.0 { sxy / sxx } else { 0.0 };
            move |s: usize| y_mean + slope * (x(s) - x_mean)
        };
        let whole = |s: usize| estimates[s].estimate;
        let prior = fit(&whole);
        let (half_a, half_b) = (|s: usize| self.halves[s][0], |s: usize| self.halves[s][1]);
        let (prior_a, prior_b) = (fit(&half_a), fit(&half_b));
        let (mut spread, mut truth) = (0.0, 0.0);
        for &s in members {
            spread += (whole(s) - prior(s)).powi(2);
            truth += (half_a(s) - prior_a(s)) * (half_b(s) - prior_b(s));
        }
        let (spread, truth) = (spread / (nf - 2.0), truth / (nf - 2.0));
        let keep = match spread > 0.0 {
            true => (truth / spread).clamp(0.0, 1.0),
            false => 1.0,
        };
        let updated: Vec<(f64, f64)> = members
            .iter()
            .map(|&s| {
                let leverage = 1.0 / nf
                    + if sxx > 0.0 {
                        (x(s) - x_mean).powi(2) / sxx
                    } else {
                        0.0
                    };
                let m = prior(s);
                let se2 = estimates[s].stderr.powi(2);
                (
                    m + keep * (whole(s) - m),
                    (keep * se2 + (1.0 - keep).powi(2) * leverage * spread).sqrt(),
                )
            })
            .collect();
        for (&s, (estimate, stderr)) in members.iter().zip(updated) {
            estimates[s].estimate = estimate;
            estimates[s].stderr = stderr;
        }
    }
}

/// How well one player group's predictions track its exact contributions
/// ([`crate::control_fit`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GroupFit {
    /// The group's label ([`crate::Game::player_groups`]; 0 without groups).
    pub group: usize,
    /// Free players in the group.
    pub players: usize,
    /// Pearson correlation of predicted with exact contributions over the stars, each
    /// player centred on its own means; NaN where either does not vary.
    pub correlation: f64,
    /// The control-variate coefficient fitted on every star.
    pub coefficient: f64,
}

/// Sums over one player's stars: n, ΣΔ, Σp, ΣΔp, Σp², ΣΔ².
#[derive(Debug, Clone, Copy, Default)]
struct Moments {
    n: f64,
    y: f64,
    p: f64,
    yp: f64,
    pp: f64,
    yy: f64,
}

impl Moments {
    fn push(&mut self, y: f64, p: f64) {
        self.n += 1.0;
        self.y += y;
        self.p += p;
        self.yp += y * p;
        self.pp += p * p;
        self.yy += y * y;
    }

    fn add(&mut self, o: &Moments) {
        self.n += o.n;
        self.y += o.y;
        self.p += o.p;
        self.yp += o.yp;
        self.pp += o.pp;
        self.yy += o.yy;
    }

    /// Centred sums Σ(Δ − Δ̄)(p − p̄) and Σ(p − p̄)².
    fn centred(&self) -> (f64, f64) {
        if self.n < 2.0 {
            return (0.0, 0.0);
        }
        (
            self.yp - self.y * self.p / self.n,
            (self.pp - self.p * self.p / self.n).max(0.0),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_errors(values: &[f64], stderr: f64) -> Vec<PlayerEstimate> {
        values
            .iter()
            .enumerate()
            .map(|(player, &estimate)| PlayerEstimate {
                player,
                estimate,
                stderr,
                samples: 1,
            })
            .collect()
    }

    fn shrunk(t: &[f64], halves: &[[f64; 2]], members: &[usize]) -> Vec<PlayerEstimate> {
        let mut e = with_errors(t, 0.5);
        let prior = Prior {
            mean_prediction: &[0.0, 1.0, 2.0, 3.0],
            halves,
        };
        prior.shrink(&mut e, members);
        e
    }

    /// By hand: p̄ = 0, 1, 2, 3 and T = 0, 2, 2, 4 fit the prior 0.2 + 1.2 p̄ (residuals r =
    /// −0.2, 0.6, −0.6, 0.2: V = Σr²/(n − 2) = 0.4), leverages 0.7, 0.3, 0.3, 0.7.
    #[test]
    fn shrinks_by_hand() {
        let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
        let t = [0.0, 2.0, 2.0, 4.0];
        let all = [0, 1, 2, 3];
        let leverage = [0.7, 0.3, 0.3, 0.7];
        let apart = |delta: [f64; 4]| -> Vec<[f64; 2]> {
            t.iter().zip(delta).map(|(&y, e)| [y + e, y - e]).collect()
        };
        // Halves T ± δ, δ = 0, 0.2, −0.2, 0: δ's residual on p̄ is e = −0.06, 0.18, −0.18,
        // 0.06, so τ² = (Σr² − Σe²)/2 = (0.8 − 0.072)/2 = 0.364 and λ = 0.91.
        let e = shrunk(&t, &apart([0.0, 0.2, -0.2, 0.0]), &all);
        for ((got, want), h) in e.iter().zip([0.018, 1.946, 2.054, 3.982]).zip(leverage) {
            assert!(close(got.estimate, want), "{got:?} vs {want}");
            // λ se² + (1 − λ)² h V with se 0.5.
            assert!(
                close(got.stderr, (0.91 * 0.25 + 0.0081 * h * 0.4_f64).sqrt()),
                "{got:?}"
            );
        }
        // Halves whose residuals cancel (δ = r): τ² = 0, every estimate is its prior.
        let e = shrunk(&t, &apart([-0.2, 0.6, -0.6, 0.2]), &all);
        for ((got, want), h) in e.iter().zip([0.2, 1.4, 2.6, 3.8]).zip(leverage) {
            assert!(close(got.estimate, want), "{got:?} vs {want}");
            assert!(close(got.stderr, (h * 0.4_f64).sqrt()), "{got:?}");
        }
        // Halves that agree: λ = 1, nothing moves. Groups of 3 are left alone.
        assert_eq!(shrunk(&t, &apart([0.0; 4]), &all), with_errors(&t, 0.5));
        let e = shrunk(&t, &apart([-0.2, 0.6, -0.6, 0.2]), &[0, 1, 2]);
        assert_eq!(e, with_errors(&t, 0.5));
    }
}
