//! Least squares of pooled coalition values on the players' membership indicators, for
//! [`Estimator::SharedRegression`](crate::Estimator::SharedRegression).

use rayon::prelude::*;

/// The centred normal equations of ν(C_t) ≈ a + Σ_i b_i·[i ∈ C_t] over a pool of coalitions.
pub(crate) struct MembershipFit {
    /// Players (free slots) in the regression.
    f: usize,
    /// Coalitions in the pool.
    k: usize,
    /// Co-membership counts N_ab = #{t : a, b ∈ C_t}, row-major `f × f` (exact integers).
    together: Vec<u64>,
    /// Σ_{t : a ∈ C_t} ν_t, summed in pool order.
    value_sum_with: Vec<f64>,
    /// Mean value and Σ (ν_t − mean)².
    mean_value: f64,
    total_square: f64,
}

impl MembershipFit {
    /// `members(t, on)` calls `on(slot)` for every member slot of coalition `t`.
    pub(crate) fn accumulate(
        f: usize,
        values: &[f64],
        members: impl Fn(usize, &mut dyn FnMut(usize)) + Sync,
    ) -> Self {
        let k = values.len();
        let words = k.div_ceil(64);
        // Column bitsets: bit t of column a says a ∈ C_t. Co-membership is then a popcount.
        let mut columns = vec![0u64; f * words];
        let mut value_sum_with = vec![0.0; f];
        for (t, &v) in values.iter().enumerate() {
            members(t, &mut |slot| {
                columns[slot * words + t / 64] |= 1 << (t % 64);
                value_sum_with[slot] += v;
            });
        }
        let column = |a: usize| &columns[a * words..(a + 1) * words];
        let mut together = vec![0u64; f * f];
        // Integer counts: exact whatever the thread schedule.
        together.par_chunks_mut(f).enumerate().for_each(|(a, row)| {
            for (b, out) in row.iter_mut().enumerate().skip(a) {
                *out = column(a)
                    .iter()
                    .zip(column(b))
                    .map(|(x, y)| u64::from((x & y).count_ones()))
                    .sum();
            }
        });
        for a in 0..f {
            for b in 0..a {
                together[a * f + b] = together[b * f + a];
            }
        }
        let mean_value = values.iter().sum::<f64>() / k as f64;
        let total_square = values.iter().map(|v| (v - mean_value).powi(2)).sum();
        Self {
            f,
            k,
            together,
            value_sum_with,
            mean_value,
            total_square,
        }
    }

    /// Coefficients and their OLS standard errors, per slot. A player in every or in no pooled
    /// coalition, or a singular system, gives NaN (as the plain shared estimator does).
    pub(crate) fn solve(&self) -> (Vec<f64>, Vec<f64>) {
        let (f, k) = (self.f, self.k as f64);
        let count = |a: usize| self.together[a * f + a] as f64;
        // Players whose indicator varies over the pool.
        let varied: Vec<usize> = (0..f).filter(|&a| count(a) > 0.0 && count(a) < k).collect();
        let p = varied.len();
        let mut nan = (vec![f64::NAN; f], vec![f64::NAN; f]);
        let mut a = vec![0.0; p * p];
        let mut rhs = vec![0.0; p];
        for (i, &x) in varied.iter().enumerate() {
            for (j, &y) in varied.iter().enumerate() {
                a[i * p + j] = self.together[x * f + y] as f64 - count(x) * count(y) / k;
            }
            rhs[i] = self.value_sum_with[x] - count(x) * self.mean_value;
        }
        let Some(l) = cholesky(&a, p) else {
            return nan;
        };
        let coef = cholesky_solve(&l, p, &rhs);
        let explained: f64 = coef.iter().zip(&rhs).map(|(c, r)| c * r).sum();
        let dof = self.k as f64 - p as f64 - 1.0;
        let sigma2 = ((self.total_square - explained) / dof).max(0.0);
        let inverse_diagonal = inverse_diagonal(&l, p);
        for (i, &slot) in varied.iter().enumerate() {
            nan.0[slot] = coef[i];
            nan.1[slot] = (sigma2 * inverse_diagonal[i]).sqrt();
        }
        nan
    }
}

/// Lower-triangular L with L Lᵀ = a (row-major `n × n`); `None` unless clearly positive definite.
pub(crate) fn cholesky(a: &[f64], n: usize) -> Option<Vec<f64>> {
    let mut l = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            let dot: f64 = (0..j).map(|m| l[i * n + m] * l[j * n + m]).sum();
            if i == j {
                let d = a[i * n + i] - dot;
                if d <= 1e-9 * a[i * n + i].abs().max(1.0) {
                    return None;
                }
                l[i * n + i] = d.sqrt();
            } else {
                l[i * n + j] = (a[i * n + j] - dot) / l[j * n + j];
            }
        }
    }
    Some(l)
}

pub(crate) fn cholesky_solve(l: &[f64], n: usize, b: &[f64]) -> Vec<f64> {
    let mut y = vec![0.0; n];
    for i in 0..n {
        let dot: f64 = (0..i).map(|m| l[i * n + m] * y[m]).sum();
        y[i] = (b[i] - dot) / l[i * n + i];
    }
    let mut x = vec![0.0; n];
    for i in (0..n).rev() {
        let dot: f64 = (i + 1..n).map(|m| l[m * n + i] * x[m]).sum();
        x[i] = (y[i] - dot) / l[i * n + i];
    }
    x
}

/// diag(a⁻¹) = column sums of squares of L⁻¹, from a's Cholesky factor L.
fn inverse_diagonal(l: &[f64], n: usize) -> Vec<f64> {
    // Column j of L⁻¹ by forward substitution on e_j (zero above row j).
    (0..n)
        .into_par_iter()
        .map(|j| {
            let mut col = vec![0.0; n];
            for i in j..n {
                let e = if i == j { 1.0 } else { 0.0 };
                let dot: f64 = (j..i).map(|m| l[i * n + m] * col[m]).sum();
                col[i] = (e - dot) / l[i * n + i];
            }
            col.iter().map(|x| x * x).sum()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cholesky_solves_a_small_system() {
        // a = [[4, 2], [2, 3]], b = [2, 5] → x = [-0.5, 2].
        let l = cholesky(&[4.0, 2.0, 2.0, 3.0], 2).unwrap();
        let x = cholesky_solve(&l, 2, &[2.0, 5.0]);
        assert!(
            (x[0] + 0.5).abs() < 1e-12 && (x[1] - 2.0).abs() < 1e-12,
            "{x:?}"
        );
        // a⁻¹ = [[3, -2], [-2, 4]] / 8.
        let d = inverse_diagonal(&l, 2);
        assert!(
            (d[0] - 3.0 / 8.0).abs() < 1e-12 && (d[1] - 0.5).abs() < 1e-12,
            "{d:?}"
        );
        assert!(cholesky(&[1.0, 2.0, 2.0, 1.0], 2).is_none(), "indefinite");
    }
}
