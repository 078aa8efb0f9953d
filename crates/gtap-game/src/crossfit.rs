//! The shared pool read by cross-fitted regression adjustment, for
//! [`Estimator::SharedCrossFit`](crate::Estimator::SharedCrossFit).
//!
//! Regression-adjusted Monte Carlo (Witter, Musco et al., 2025) with cross-fitting: the pool is
//! cut into folds; for each fold a surrogate f of ν is fitted by least squares on the *other*
//! folds, its power index is computed exactly, and the difference of means of the residuals
//! ν − f over the fold's own coalitions (with i / without i) estimates what the surrogate missed:
//!
//! ```text
//! estimate_j(i) = φ_i(f_j) + mean_{t∈fold j, i∈C_t} r_t − mean_{t∈fold j, i∉C_t} r_t,   r = ν − f_j
//! ```
//!
//! f_j never saw fold j, and under R_d a coalition's other members are independent of i's
//! membership, so each term is an unbiased estimate of β_d(i) whatever f_j is; a good surrogate
//! only shrinks the residuals and with them the variance. The estimate is the fold-size-weighted
//! mean of the folds' estimates, its standard error √(Σ_j w_j² se_j²) from each fold's
//! two-sample standard error (the folds' dependence through the surrogates is neglected; the
//! tests check the predicted variance against the observed one).
//!
//! The surrogate: intercept, one coefficient per player (its index is the coefficient), and per
//! group of players (a network's layer) the square and cube of the group's standardised active
//! count z = (m − n·d)/√(n·d(1−d)); a network's accuracy depends on how many units of a layer
//! survive far more than on which, and that size effect is what a linear fit cannot represent.
//! The index of g(m) to a member of an n-player group is E[g(m+1) − g(m)], m ~ Bin(n−1, d).

use rayon::prelude::*;

use crate::eval::Stats;
use crate::ols::{cholesky, cholesky_solve};

/// Powers of the standardised group count in the surrogate (the first power is the sum of the
/// group's indicators, already in the linear part).
const COUNT_POWERS: [i32; 2] = [2, 3];

/// Groups with fewer free players than this get no count features (their counts take too few
/// values for a square and a cube to add anything).
const MIN_GROUP: usize = 3;

/// Estimate and standard error per free slot. `members(t, on)` calls `on(slot)` for every
/// member slot of pooled coalition `t` (coalition `t` has value `values[t]`); `group_of[slot]`
/// is a dense group id. Needs `2 ≤ folds ≤ values.len()`.
pub(crate) fn cross_fitted(
    values: &[f64],
    members: impl Fn(usize, &mut dyn FnMut(usize)) + Sync,
    group_of: &[usize],
    d: f64,
    folds: usize,
) -> Vec<(f64, f64)> {
    let pool = Pool::new(values, &members, group_of, d, folds);
    let mut per_fold = Vec::with_capacity(folds);
    for j in 0..folds {
        let surrogate = pool.fit_without(j);
        per_fold.push(pool.correct(j, &surrogate));
    }
    (0..pool.f)
        .map(|slot| {
            // Folds where the slot was both in and out of some coalition (always, in practice).
            let usable: Vec<(f64, f64, f64)> = per_fold
                .iter()
                .enumerate()
                .filter_map(|(j, est)| {
                    let (e, se2) = est[slot];
                    e.is_finite().then(|| (pool.fold_len(j) as f64, e, se2))
                })
                .collect();
            let total: f64 = usable.iter().map(|u| u.0).sum();
            if usable.is_empty() {
                return (f64::NAN, f64::NAN);
            }
            let estimate = usable.iter().map(|(n, e, _)| n / total * e).sum();
            let var: f64 = usable.iter().map(|(n, _, v)| (n / total).powi(2) * v).sum();
            (estimate, var.sqrt())
        })
        .collect()
}

/// The pool with everything the folds' fits need, accumulated once.
struct Pool<'a> {
    f: usize,
    k: usize,
    folds: usize,
    values: &'a [f64],
    /// Row bitsets: bit `slot` of row t says slot ∈ C_t (`row_words` words per row).
    rows: Vec<u64>,
    row_words: usize,
    /// Column bitsets: bit t of column `slot` says slot ∈ C_t (`col_words` words per column).
    columns: Vec<u64>,
    col_words: usize,
    /// Count features (`q` per coalition, row-major) and, per feature, its group and its index
    /// to a member of that group.
    features: Vec<f64>,
    q: usize,
    feature_group: Vec<usize>,
    feature_index: Vec<f64>,
    group_of: &'a [usize],
    /// Per fold: Σ ν over the fold's coalitions containing each slot (`f` each), Σ of each
    /// feature over those coalitions (`f × q`), and the fold's feature/value moments.
    fold_value_with: Vec<Vec<f64>>,
    fold_feature_with: Vec<Vec<f64>>,
    fold_moments: Vec<Moments>,
}

/// Sums over one fold's coalitions: n, Σν, Σν², Σz_h, Σz_h·ν, Σz_h·z_l.
#[derive(Clone)]
struct Moments {
    n: f64,
    y: f64,
    z: Vec<f64>,
    zy: Vec<f64>,
    zz: Vec<f64>,
}

impl Moments {
    fn zero(q: usize) -> Self {
        Self {
            n: 0.0,
            y: 0.0,
            z: vec![0.0; q],
            zy: vec![0.0; q],
            zz: vec![0.0; q * q],
        }
    }

    fn add(&mut self, other: &Moments) {
        self.n += other.n;
        self.y += other.y;
        add_into(&mut self.z, &other.z);
        add_into(&mut self.zy, &other.zy);
        add_into(&mut self.zz, &other.zz);
    }
}

fn add_into(a: &mut [f64], b: &[f64]) {
    a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
}

/// A fitted surrogate: intercept, per-slot coefficients (0 for slots left out of the fit) and
/// per-feature coefficients.
struct Surrogate {
    intercept: f64,
    linear: Vec<f64>,
    count: Vec<f64>,
}

impl<'a> Pool<'a> {
    fn new(
        values: &'a [f64],
        members: &(impl Fn(usize, &mut dyn FnMut(usize)) + Sync),
        group_of: &'a [usize],
        d: f64,
        folds: usize,
    ) -> Self {
        let (f, k) = (group_of.len(), values.len());
        let (row_words, col_words) = (f.div_ceil(64), k.div_ceil(64));
        let mut rows = vec![0u64; k * row_words];
        let mut columns = vec![0u64; f * col_words];
        for t in 0..k {
            members(t, &mut |slot| {
                rows[t * row_words + slot / 64] |= 1 << (slot % 64);
                columns[slot * col_words + t / 64] |= 1 << (t % 64);
            });
        }
        // Count features of the groups big enough to have them.
        let groups = group_of.iter().max().map_or(0, |g| g + 1);
        let mut group_size = vec![0usize; groups];
        group_of.iter().for_each(|&g| group_size[g] += 1);
        let mut feature_group = Vec::new();
        let mut feature_index = Vec::new();
        let mut feature_power = Vec::new();
        for (g, &n) in group_size
            .iter()
            .enumerate()
            .filter(|(_, &n)| n >= MIN_GROUP)
        {
            for p in COUNT_POWERS {
                feature_group.push(g);
                feature_power.push(p);
                feature_index.push(count_feature_index(n, d, p));
            }
        }
        let q = feature_group.len();
        let mut features = vec![0.0; k * q];
        let mut counts = vec![0usize; groups];
        for t in 0..k {
            counts.iter_mut().for_each(|c| *c = 0);
            for_each_bit(&rows[t * row_words..(t + 1) * row_words], |slot| {
                counts[group_of[slot]] += 1
            });
            for h in 0..q {
                let g = feature_group[h];
                features[t * q + h] =
                    standardised(counts[g], group_size[g], d).powi(feature_power[h]);
            }
        }
        let mut pool = Self {
            f,
            k,
            folds,
            values,
            rows,
            row_words,
            columns,
            col_words,
            features,
            q,
            feature_group,
            feature_index,
            group_of,
            fold_value_with: Vec::new(),
            fold_feature_with: Vec::new(),
            fold_moments: Vec::new(),
        };
        for j in 0..folds {
            let (value_with, feature_with, moments) = pool.fold_sums(j);
            pool.fold_value_with.push(value_with);
            pool.fold_feature_with.push(feature_with);
            pool.fold_moments.push(moments);
        }
        pool
    }

    fn fold_range(&self, j: usize) -> std::ops::Range<usize> {
        self.k * j / self.folds..self.k * (j + 1) / self.folds
    }

    fn fold_len(&self, j: usize) -> usize {
        self.fold_range(j).len()
    }

    fn row(&self, t: usize) -> &[u64] {
        &self.rows[t * self.row_words..(t + 1) * self.row_words]
    }

    fn feature_row(&self, t: usize) -> &[f64] {
        &self.features[t * self.q..(t + 1) * self.q]
    }

    /// One pass over fold j's coalitions, in pool order.
    fn fold_sums(&self, j: usize) -> (Vec<f64>, Vec<f64>, Moments) {
        let (f, q) = (self.f, self.q);
        let mut value_with = vec![0.0; f];
        let mut feature_with = vec![0.0; f * q];
        let mut m = Moments::zero(q);
        for t in self.fold_range(j) {
            let (y, z) = (self.values[t], self.feature_row(t));
            m.n += 1.0;
            m.y += y;
            for h in 0..q {
                m.z[h] += z[h];
                m.zy[h] += z[h] * y;
                for l in 0..q {
                    m.zz[h * q + l] += z[h] * z[l];
                }
            }
            for_each_bit(self.row(t), |slot| {
                value_with[slot] += y;
                add_into(&mut feature_with[slot * q..(slot + 1) * q], z);
            });
        }
        (value_with, feature_with, m)
    }

    /// Co-membership counts over the coalitions outside fold j (exact integers).
    fn together_without(&self, j: usize) -> Vec<u64> {
        let (f, w) = (self.f, self.col_words);
        let range = self.fold_range(j);
        // Word masks keeping the coalitions outside the fold.
        let mask: Vec<u64> = (0..w)
            .map(|word| {
                (0..64)
                    .filter(|b| {
                        let t = word * 64 + b;
                        t < self.k && !range.contains(&t)
                    })
                    .fold(0u64, |acc, b| acc | 1 << b)
            })
            .collect();
        let column = |a: usize| &self.columns[a * w..(a + 1) * w];
        let mut together = vec![0u64; f * f];
        together.par_chunks_mut(f).enumerate().for_each(|(a, row)| {
            for (b, out) in row.iter_mut().enumerate().skip(a) {
                *out = column(a)
                    .iter()
                    .zip(column(b))
                    .zip(&mask)
                    .map(|((x, y), m)| u64::from((x & y & m).count_ones()))
                    .sum();
            }
        });
        for a in 0..f {
            for b in 0..a {
                together[a * f + b] = together[b * f + a];
            }
        }
        together
    }

    /// The surrogate fitted by least squares on every fold but j; the intercept alone (so the
    /// plain shared estimator) when the system is singular.
    fn fit_without(&self, j: usize) -> Surrogate {
        let (f, q) = (self.f, self.q);
        let others = (0..self.folds).filter(|&l| l != j);
        let mut m = Moments::zero(q);
        let mut value_with = vec![0.0; f];
        let mut feature_with = vec![0.0; f * q];
        for l in others {
            m.add(&self.fold_moments[l]);
            add_into(&mut value_with, &self.fold_value_with[l]);
            add_into(&mut feature_with, &self.fold_feature_with[l]);
        }
        let n = m.n;
        let plain = Surrogate {
            intercept: m.y / n,
            linear: vec![0.0; f],
            count: vec![0.0; q],
        };
        let together = self.together_without(j);
        let count = |a: usize| together[a * f + a] as f64;
        let varied: Vec<usize> = (0..f).filter(|&a| count(a) > 0.0 && count(a) < n).collect();
        let (p, dim) = (varied.len(), varied.len() + q);
        if n <= (dim + 1) as f64 {
            return plain;
        }
        // Centred normal equations over [indicators of the varied slots, count features].
        let mut a = vec![0.0; dim * dim];
        let mut rhs = vec![0.0; dim];
        for (i, &x) in varied.iter().enumerate() {
            for (l, &y) in varied.iter().enumerate() {
                a[i * dim + l] = together[x * f + y] as f64 - count(x) * count(y) / n;
            }
            for h in 0..q {
                let v = feature_with[x * q + h] - count(x) * m.z[h] / n;
                a[i * dim + p + h] = v;
                a[(p + h) * dim + i] = v;
            }
            rhs[i] = value_with[x] - count(x) * m.y / n;
        }
        for h in 0..q {
            for l in 0..q {
                a[(p + h) * dim + p + l] = m.zz[h * q + l] - m.z[h] * m.z[l] / n;
            }
            rhs[p + h] = m.zy[h] - m.z[h] * m.y / n;
        }
        let Some(chol) = cholesky(&a, dim) else {
            return plain;
        };
        let coef = cholesky_solve(&chol, dim, &rhs);
        let mut linear = vec![0.0; f];
        let mut intercept = m.y / n;
        for (i, &x) in varied.iter().enumerate() {
            linear[x] = coef[i];
            intercept -= coef[i] * count(x) / n;
        }
        let count_coef = coef[p..].to_vec();
        for (c, z) in count_coef.iter().zip(&m.z) {
            intercept -= c * z / n;
        }
        Surrogate {
            intercept,
            linear,
            count: count_coef,
        }
    }

    /// Per slot: fold j's estimate and its squared standard error (NaN when the slot is never
    /// in, or never out of, the fold's coalitions).
    fn correct(&self, j: usize, s: &Surrogate) -> Vec<(f64, f64)> {
        let f = self.f;
        let mut with = vec![Stats::default(); f];
        let mut without = vec![Stats::default(); f];
        let mut member = vec![false; f];
        for t in self.fold_range(j) {
            member.iter_mut().for_each(|m| *m = false);
            let mut fitted = s.intercept;
            for_each_bit(self.row(t), |slot| {
                member[slot] = true;
                fitted += s.linear[slot];
            });
            fitted += s
                .count
                .iter()
                .zip(self.feature_row(t))
                .map(|(c, z)| c * z)
                .sum::<f64>();
            let residual = self.values[t] - fitted;
            for slot in 0..f {
                if member[slot] {
                    &mut with[slot]
                } else {
                    &mut without[slot]
                }
                .push(residual);
            }
        }
        (0..f)
            .map(|slot| {
                let (w, o) = (&with[slot], &without[slot]);
                if w.count() == 0 || o.count() == 0 {
                    return (f64::NAN, f64::NAN);
                }
                let surrogate_index = s.linear[slot]
                    + (0..self.q)
                        .filter(|&h| self.feature_group[h] == self.group_of[slot])
                        .map(|h| s.count[h] * self.feature_index[h])
                        .sum::<f64>();
                let se2 = w.var() / w.count() as f64 + o.var() / o.count() as f64;
                (surrogate_index + w.mean() - o.mean(), se2)
            })
            .collect()
    }
}

/// Calls `on(i)` for every set bit i of a bitset, in increasing order.
fn for_each_bit(words: &[u64], mut on: impl FnMut(usize)) {
    for (w, &word) in words.iter().enumerate() {
        let mut bits = word;
        while bits != 0 {
            on(w * 64 + bits.trailing_zeros() as usize);
            bits &= bits - 1;
        }
    }
}

/// (m − n·d) / √(n·d(1−d)): a group's active count, standardised under R_d.
fn standardised(m: usize, n: usize, d: f64) -> f64 {
    (m as f64 - n as f64 * d) / (n as f64 * d * (1.0 - d)).sqrt()
}

/// β_d of z(m)^power to a member of an n-player group: E[z(m+1)^p − z(m)^p], m ~ Bin(n−1, d).
pub(crate) fn count_feature_index(n: usize, d: f64, power: i32) -> f64 {
    let others = n - 1;
    // Binomial probabilities through log C(others, m), built incrementally (no underflow).
    let mut log_choose = 0.0;
    let mut total = 0.0;
    for m in 0..=others {
        if m > 0 {
            log_choose += ((others - m + 1) as f64).ln() - (m as f64).ln();
        }
        let log_p = log_choose + m as f64 * d.ln() + (others - m) as f64 * (1.0 - d).ln();
        let z = |c: usize| standardised(c, n, d).powi(power);
        total += log_p.exp() * (z(m + 1) - z(m));
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_feature_index_enumerates_the_binomial() {
        // n = 3, d = 0.5: m ~ Bin(2, ½); z(c) = (c − 1.5)/√0.75.
        let z = |c: f64| (c - 1.5) / 0.75f64.sqrt();
        let pmf = [0.25, 0.5, 0.25];
        for p in [2, 3] {
            let want: f64 = (0..3)
                .map(|m| pmf[m] * (z(m as f64 + 1.0).powi(p) - z(m as f64).powi(p)))
                .sum();
            assert!(
                (count_feature_index(3, 0.5, p) - want).abs() < 1e-12,
                "power {p}"
            );
        }
        // Large groups: no underflow, and the square's index tends to 2·E[z]/σ + 1/σ² → small.
        assert!(count_feature_index(5000, 0.3, 2).abs() < 0.01);
    }

    #[test]
    fn bits_come_out_in_order() {
        let mut seen = Vec::new();
        for_each_bit(&[0b1010, 1 << 63, 1], |i| seen.push(i));
        assert_eq!(seen, vec![1, 3, 127, 128]);
    }
}
