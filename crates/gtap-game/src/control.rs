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
        (0..f)
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
                    estimate += w * (residual.mean() + c * rest_sum / big_m);
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
                PlayerEstimate {
                    player: self.free[slot],
                    estimate,
                    stderr: variance.max(0.0).sqrt(),
                    samples: stars,
                }
            })
            .collect()
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
