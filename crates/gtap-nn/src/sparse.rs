//! The row kernels' products (issue 26): a dense layer's value `h Wᵀ` and bound
//! `reach |W|ᵀ` on rows whose inputs are mostly exact zeros. Behind a gate half the inputs are
//! masked and ReLU zeroes about half of the rest, and a zero term is skipped outright (a
//! product over the remaining terms in another order, which the certified bound allows for:
//! [`crate::certify`]), so a row costs its nonzero inputs, not its width. A GEMM kernel cannot
//! skip: it multiplies the zeros, and packs both operands per call.
//!
//! Only the bound of these products matters, never their bytes; the bound's sum of non-negative
//! terms is padded for any order and any fusing (`certify::allowances`). So the loops may run
//! on whatever vector unit the CPU has (AVX2 and FMA where detected).

/// `z = h Wᵀ` and `bound = reach |W|ᵀ` for `rows` rows of `inputs` (`h`, `reach`: `rows ×
/// inputs`; `z`, `bound`: `rows × out`), from the weights transposed (`weight_t`, `abs_t`:
/// `inputs × out`, row-major). An input whose value and reach are both exact zeros is
/// skipped: its terms are ±0. The weights must be finite (`0 · ∞` is not a zero term).
///
/// `candidates`, where given, lists per row the only inputs that may be nonzero (those its
/// coalition's mask keeps): the others are not even looked at.
pub(crate) fn value_and_bound(
    (h, reach): (&[f32], &[f32]),
    (weight_t, abs_t): (&[f32], &[f32]),
    (z, bound): (&mut [f32], &mut [f32]),
    (rows, inputs): (usize, usize),
    candidates: Option<&[&[u32]]>,
) {
    let out = weight_t.len() / inputs.max(1);
    assert!(
        h.len() >= rows * inputs
            && reach.len() >= rows * inputs
            && abs_t.len() == weight_t.len()
            && weight_t.len() == inputs * out
            && z.len() >= rows * out
            && bound.len() >= rows * out
            && candidates.is_none_or(|c| c.len() >= rows),
        "row buffers sized by the caller"
    );
    let shape = (rows, inputs, out);
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has the features the function is compiled for (detected above).
        #[allow(unsafe_code)]
        unsafe {
            avx2::rows((h, reach), (weight_t, abs_t), (z, bound), shape, candidates)
        };
        return;
    }
    each_row(
        (h, reach),
        (weight_t, abs_t),
        (z, bound),
        (shape, candidates),
        outputs,
    );
}

/// Rows, inputs and outputs, and per row the candidate inputs ([`value_and_bound`]).
type Shape<'a> = ((usize, usize, usize), Option<&'a [&'a [u32]]>);

/// Per row: its nonzero inputs listed (each one's offset in the transposed weights, value and
/// reach), then `row` computes its outputs from them. Inlined into each caller, so that the
/// scan vectorises for the caller's features.
#[inline(always)]
fn each_row(
    (h, reach): (&[f32], &[f32]),
    weights: (&[f32], &[f32]),
    (z, bound): (&mut [f32], &mut [f32]),
    ((rows, inputs, out), candidates): Shape<'_>,
    row: impl Fn(&[(usize, f32, f32)], (&[f32], &[f32]), (&mut [f32], &mut [f32]), usize),
) {
    let mut buffer = vec![(0, 0f32, 0f32); inputs];
    for r in 0..rows {
        let (hr, rr) = (&h[r * inputs..][..inputs], &reach[r * inputs..][..inputs]);
        // Every input written, only the nonzero ones kept: no branch to mispredict.
        let mut kept = 0;
        match candidates {
            None => {
                for (i, (&x, &e)) in hr.iter().zip(rr).enumerate() {
                    buffer[kept] = (i * out, x, e);
                    kept += usize::from(x != 0.0 || e != 0.0);
                }
            }
            Some(lists) => {
                for &i in lists[r] {
                    let (x, e) = (hr[i as usize], rr[i as usize]);
                    buffer[kept] = (i as usize * out, x, e);
                    kept += usize::from(x != 0.0 || e != 0.0);
                }
            }
        }
        let outputs = (&mut z[r * out..][..out], &mut bound[r * out..][..out]);
        row(&buffer[..kept], weights, outputs, 0);
    }
}

/// Outputs `from..` of one row, one at a time: `nonzero` holds each nonzero input's offset in
/// the transposed weights, its value and its reach. Inlined, so that `mul_add` is the
/// caller's FMA instruction where it has one.
#[inline(always)]
fn outputs(
    nonzero: &[(usize, f32, f32)],
    (weight_t, abs_t): (&[f32], &[f32]),
    (z, bound): (&mut [f32], &mut [f32]),
    from: usize,
) {
    for j in from..z.len() {
        let (mut zj, mut bj) = (0f32, 0f32);
        for &(at, x, e) in nonzero {
            zj = x.mul_add(weight_t[at + j], zj);
            bj = e.mul_add(abs_t[at + j], bj);
        }
        (z[j], bound[j]) = (zj, bj);
    }
}

/// The row on AVX2 and FMA: blocks of 32 and 8 outputs whose sums stay in registers over the
/// nonzero inputs (LLVM does not keep them there from plain loops), then the rest.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod avx2 {
    use std::arch::x86_64::{__m256, _mm256_fmadd_ps, _mm256_set1_ps, _mm256_setzero_ps};

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn rows(
        operands: (&[f32], &[f32]),
        weights: (&[f32], &[f32]),
        outputs: (&mut [f32], &mut [f32]),
        shape: (usize, usize, usize),
        candidates: Option<&[&[u32]]>,
    ) {
        super::each_row(
            operands,
            weights,
            outputs,
            (shape, candidates),
            |nonzero, w, o, _| {
                // The closure inherits this function's features.
                row(nonzero, w, o)
            },
        );
    }

    #[target_feature(enable = "avx2,fma")]
    fn row(
        nonzero: &[(usize, f32, f32)],
        weights: (&[f32], &[f32]),
        (z, bound): (&mut [f32], &mut [f32]),
    ) {
        let out = z.len();
        let mut j = 0;
        while j + 32 <= out {
            block::<4>(nonzero, weights, (&mut z[j..], &mut bound[j..]), j);
            j += 32;
        }
        while j + 8 <= out {
            block::<1>(nonzero, weights, (&mut z[j..], &mut bound[j..]), j);
            j += 8;
        }
        super::outputs(nonzero, weights, (z, bound), j);
    }

    /// Outputs `j..j + 8V` of the row into `z[..8V]` and `bound[..8V]`.
    #[target_feature(enable = "avx2,fma")]
    fn block<const V: usize>(
        nonzero: &[(usize, f32, f32)],
        (weight_t, abs_t): (&[f32], &[f32]),
        (z, bound): (&mut [f32], &mut [f32]),
        j: usize,
    ) {
        let (mut zs, mut bs) = ([_mm256_setzero_ps(); V], [_mm256_setzero_ps(); V]);
        for &(at, x, e) in nonzero {
            let (w, a) = (&weight_t[at + j..][..8 * V], &abs_t[at + j..][..8 * V]);
            let (x, e) = (_mm256_set1_ps(x), _mm256_set1_ps(e));
            for v in 0..V {
                zs[v] = _mm256_fmadd_ps(x, lanes(&w[8 * v..]), zs[v]);
                bs[v] = _mm256_fmadd_ps(e, lanes(&a[8 * v..]), bs[v]);
            }
        }
        for v in 0..V {
            z[8 * v..][..8].copy_from_slice(&values(zs[v]));
            bound[8 * v..][..8].copy_from_slice(&values(bs[v]));
        }
    }

    /// The first 8 values of `s` as a vector. A plain copy: `_mm256_loadu_ps` goes through
    /// `copy_nonoverlapping`, whose precondition check (on in this profile) costs more than
    /// the load.
    #[inline(always)]
    fn lanes(s: &[f32]) -> __m256 {
        let values: [f32; 8] = s[..8].try_into().expect("8 values");
        // SAFETY: `[f32; 8]` and `__m256` are both 32 bytes, and every bit pattern is valid
        // for both.
        unsafe { std::mem::transmute::<[f32; 8], __m256>(values) }
    }

    #[inline(always)]
    fn values(v: __m256) -> [f32; 8] {
        // SAFETY: as in `lanes`.
        unsafe { std::mem::transmute::<__m256, [f32; 8]>(v) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against f64 sums: within the bound's own rounding, zeros skipped or not.
    #[test]
    fn products_match_plain_sums_with_zero_inputs_skipped() {
        // Widths through the 32-wide blocks, the 8-wide ones and the rest.
        for out in [3, 11, 45, 84] {
            check_products(5, 13, out);
        }
    }

    fn check_products(rows: usize, inputs: usize, out: usize) {
        let f = |i: usize| ((i * 37 % 23) as f32 - 11.0) / 7.0;
        let h: Vec<f32> = (0..rows * inputs)
            .map(|i| if i % 3 == 0 { 0.0 } else { f(i) })
            .collect();
        let reach: Vec<f32> = h.iter().map(|x| x.abs() * 0.5).collect();
        let weight: Vec<f32> = (0..out * inputs).map(|i| f(i + 5)).collect();
        let weight_t: Vec<f32> = (0..inputs * out)
            .map(|p| weight[(p % out) * inputs + p / out])
            .collect();
        let abs_t: Vec<f32> = weight_t.iter().map(|w| w.abs()).collect();
        let (mut z, mut bound) = (vec![f32::NAN; rows * out], vec![f32::NAN; rows * out]);
        value_and_bound(
            (&h, &reach),
            (&weight_t, &abs_t),
            (&mut z, &mut bound),
            (rows, inputs),
            None,
        );
        for r in 0..rows {
            for j in 0..out {
                let terms = (0..inputs).map(|i| (h[r * inputs + i], weight[j * inputs + i]));
                let exact: f64 = terms
                    .clone()
                    .map(|(x, w)| f64::from(x) * f64::from(w))
                    .sum();
                let reach_exact: f64 = (0..inputs)
                    .map(|i| {
                        f64::from(reach[r * inputs + i]) * f64::from(weight[j * inputs + i].abs())
                    })
                    .sum();
                let scale: f64 = terms.map(|(x, w)| f64::from(x * w).abs()).sum();
                assert!((f64::from(z[r * out + j]) - exact).abs() <= 1e-6 * scale.max(1e-30));
                assert!((f64::from(bound[r * out + j]) - reach_exact).abs() <= 1e-6 * reach_exact);
            }
        }
    }
}
