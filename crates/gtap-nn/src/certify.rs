//! Exact values from fast kernels (issue 26).
//!
//! The **reference value** of a coalition on an example is defined one example and one
//! coalition at a time: every dense layer's product is [`crate::gemm::linear`] (a fixed-order
//! FMA sum per output, whatever else is in the batch), every other operation elementwise. It
//! does not depend on batch size, chunking, thread count or CPU vendor.
//!
//! Most values gtap reports are counts of argmax decisions (ν(C) as accuracy). The certified
//! path computes logits with fast kernels (oneDNN on the CPU) and beside them a bound on every
//! logit's distance from its exact real value. Any float32 evaluation of `Σ_j w_j x_j`, in any
//! order, fused or not, lies within `γ_k Σ_j |w_j x_j|` of it (`γ_k = k·u / (1 − k·u)`,
//! `u = 2⁻²⁴`; Higham, *Accuracy and Stability of Numerical Algorithms*, §3.1). Each layer
//! carries the bound per (example, coalition) from the exact activations at the first gate
//! ([`product_error`], [`sum_error`], [`relu`]; a gate zeroes the bound with the value; the
//! first masked layer uses its unmasked bound, which serves every coalition). It holds for
//! the reference and for the fast kernels alike, so their logits of one class differ by at
//! most twice the bound. A pair whose decision (is the argmax the label?) survives that much
//! movement of every logit is decided as the reference decides it ([`decide`]); the others
//! are recomputed by the reference path. Counts, hence tables, are the reference's bit for
//! bit.
//!
//! Where it does not apply (a layer kind without a bound: attention, layer norm, GELU;
//! cross-entropy ν, which is a sum of floats, not a count; fast numerics; a GPU, until the
//! reference runs beside it), the reference path computes everything.

use tch::{Device, Kind, Tensor};

use crate::numerics::Numerics;

/// Unit roundoff of float32.
const UNIT_ROUNDOFF: f64 = 1.0 / (1u64 << 24) as f64;

/// `γ_k = k·u / (1 − k·u)`, rounded up: the relative error of any float32 evaluation of a
/// sum of `k` products; infinite (nothing certified: every pair recomputed) beyond
/// `k·u < 1/2`, 2²³ inputs.
pub(crate) fn gamma(k: i64) -> f64 {
    let ku = k.max(1) as f64 * UNIT_ROUNDOFF;
    if ku >= 0.5 {
        return f64::INFINITY;
    }
    ku / (1.0 - ku) * (1.0 + 1e-9)
}

/// Whether dense products run the reference kernel ([`crate::gemm::linear`]): portable
/// numerics on a CPU with FMA and AVX2. Elsewhere libtorch's product runs (fast numerics; a
/// GPU; an old CPU, whose bytes are then its own).
pub(crate) fn reference_on(device: Device) -> bool {
    device == Device::Cpu
        && crate::numerics::current() == Numerics::Portable
        && crate::gemm::supported()
}

/// Whether the certified path can run from activations `features`: the reference kernel is
/// on ([`reference_on`]) and they are float32 (its bound and its loops are float32's).
pub(crate) fn applies_to(features: &Tensor) -> bool {
    reference_on(features.device()) && features.kind() == Kind::Float
}

/// `x Wᵀ` (`x`: `[…, in]`, `weight`: `[out, in]`): the reference kernel where it is on,
/// libtorch's product elsewhere.
pub(crate) fn linear(x: &Tensor, weight: &Tensor) -> Tensor {
    if reference_on(x.device()) {
        // Its errors are shapes that do not multiply (a network's layers are checked to
        // chain when it is built or loaded) and a CPU without FMA (excluded just above):
        // libtorch's own product would panic on the first.
        crate::gemm::linear(x, weight)
            .unwrap_or_else(|e| panic!("a dense layer's reference product: {e}"))
    } else {
        x.matmul(&weight.tr())
    }
}

/// `x Wᵀ` by the fastest kernel at hand: oneDNN on a CPU (its float32 GEMM; unaffected by
/// MKL's `COMPATIBLE` branch, several times its speed), libtorch's product on a GPU. Only
/// its bound matters, never its bytes.
pub(crate) fn fast_linear(x: &Tensor, weight: &Tensor) -> Tensor {
    let size = x.size();
    let inputs = *size.last().expect("a feature axis");
    let rows = x.reshape([-1, inputs]);
    let out =
        if x.device() == Device::Cpu && rows.size()[0] > 0 && inputs > 0 && weight.size()[0] > 0 {
            rows.contiguous()
                .to_mkldnn()
                .mkldnn_linear(&weight.contiguous(), None::<Tensor>)
                .to_dense(Kind::Float, false)
        } else {
            rows.matmul(&weight.tr())
        };
    let mut shape = size;
    *shape.last_mut().expect("a feature axis") = weight.size()[0];
    out.view(shape.as_slice())
}

/// The bound on a dense product `x Wᵀ`'s distance from its exact value, before the
/// float32 rounding of computing it is allowed for ([`finish`]).
pub(crate) struct ProductError {
    /// `|W| (γ|h| + (1 + 2γ) error)` by the fast kernel, `[…, out]`.
    raw: Tensor,
    /// `1 + 4γ + 24u`: the fast kernel's sum of non-negative terms loses at most a relative
    /// `γ`, and each float32 pass that made its input or uses its output at most `u`.
    pad: f32,
    /// Products that round as subnormals round absolutely: an allowance per summed term.
    tiny: f32,
}

impl ProductError {
    /// The bound of a product over `inputs` terms from its raw part, computed before
    /// ([`ProductError::into_raw`]).
    pub(crate) fn known(raw: Tensor, inputs: i64) -> ProductError {
        let (pad, tiny) = allowances(inputs);
        ProductError { raw, pad, tiny }
    }

    pub(crate) fn into_raw(self) -> Tensor {
        self.raw
    }

    /// Whether a ReLU after this product (plus `bias`) outputs exactly 0 on every path, the
    /// reference's included, for the fast value `z` whose raw bound is `raw`: [`finish`]'s
    /// settled case.
    pub(crate) fn settles(&self, z: f32, bias: f32, raw: f32) -> bool {
        // `tiny` > 0: the bound is 0 only where settled.
        settle(z + bias, raw, self.pad, self.tiny, true).1 == 0.0
    }

    pub(crate) fn raw(&self) -> &Tensor {
        &self.raw
    }

    /// `pad` and `tiny` ([`ProductError`]).
    pub(crate) fn allowances(&self) -> (f32, f32) {
        (self.pad, self.tiny)
    }
}

/// The bound of a product over `inputs` terms (its raw part `raw`, from exact inputs:
/// `γ_k |W| |h|` computed, as [`product_error`] with no input error) after `updates` rank-one
/// steps `z ← z ± x_u W[:, u]` (incremental walks, [`crate::walks`]), each adding or removing
/// one of the sum's terms. Each step rounds twice (the product, the sum), by at most
/// `u(|x_u W_u| + |z_new|) ≤ 2u(1 + u)·S + u·error`, `S = |W| |h|` the unmasked reach that
/// bounds every term and every partial sum of any coalition's exact value; so after `t`
/// steps the distance from exact is at most `(γ_k + 2.0001·t·u)·S·(1 − u)^{−t}`: the raw
/// bound scaled by `(γ_k + 2.0001·t·u)(1 + (t + 1)u)/γ_k`. The subnormal allowance counts the
/// `2t` extra roundings as terms.
pub(crate) fn after_rank_one_updates(raw: &Tensor, inputs: i64, updates: usize) -> ProductError {
    let (g, t) = (gamma(inputs), updates as f64);
    let factor = (g + 2.0001 * t * UNIT_ROUNDOFF) * (1.0 + (t + 1.0) * UNIT_ROUNDOFF) / g;
    // Rounded up, and once more for the float32 product with `raw` (round to nearest).
    let factor = factor * (1.0 + 4.0 * UNIT_ROUNDOFF);
    let raw = if updates == 0 {
        raw.shallow_clone()
    } else {
        raw * factor
    };
    ProductError::known(raw, inputs + 2 * updates as i64)
}

/// `pad` and `tiny` of a product over `inputs` terms ([`ProductError`]), rounded up to
/// float32 (below 2²³ inputs, `pad` is finite and well above 1).
pub(crate) fn allowances(inputs: i64) -> (f32, f32) {
    let g = gamma(inputs);
    let up = |v: f64| (v * (1.0 + 2.0 * UNIT_ROUNDOFF)) as f32;
    (
        up(1.0 + 4.0 * g + 24.0 * UNIT_ROUNDOFF),
        up(inputs as f64 * f64::from(f32::MIN_POSITIVE)),
    )
}

/// A bound on the distance of `x Wᵀ` from its exact value `x* Wᵀ`, for `x` (`[…, in]`) any
/// computed input within `error` of the exact `x*`, the product by any kernel: given `h`, one
/// computed input (the fast path's), `|x| ≤ |h| + 2·error`, so the product's rounding is at
/// most `γ |W| (|h| + 2·error)` and the input's error carries as `|W| error`: in all
/// `|W| (γ|h| + (1 + 2γ) error)`. `h` and `error` are float32 CPU tensors of one shape.
pub(crate) fn product_error(h: &Tensor, error: &Tensor, weight: &Tensor) -> ProductError {
    let inputs = weight.size()[1];
    let reach = reach(h, error, gamma(inputs));
    ProductError::known(fast_linear(&reach, &weight.abs()), inputs)
}

/// `γ|h| + (1 + 2γ) error`, elementwise: what a product's bound multiplies by `|W|`.
fn reach(h: &Tensor, error: &Tensor, g: f64) -> Tensor {
    let (h, error) = (h.contiguous(), error.contiguous());
    let mut reach = h.empty_like();
    let (of_value, of_error) = (g as f32, (1.0 + 2.0 * g) as f32);
    for ((r, &x), &e) in values_mut(&mut reach)
        .iter_mut()
        .zip(values(&h))
        .zip(values(&error))
    {
        *r = x.abs() * of_value + e * of_error;
    }
    reach
}

/// A convolution `x ⋆ W` (`x`: `[N, C, H, W]`, `weight`: `[O, C, kh, kw]`, square stride and
/// zero padding, no bias) by libtorch's kernel (oneDNN on a CPU): like [`fast_linear`], only
/// its bound matters, never its bytes.
pub(crate) fn fast_conv(x: &Tensor, weight: &Tensor, stride: i64, padding: i64) -> Tensor {
    x.conv2d(
        weight,
        None::<Tensor>,
        [stride, stride],
        [padding, padding],
        [1, 1],
        1,
    )
}

/// [`product_error`] of a convolution: each output is a sum of `C·kh·kw` products over its
/// window (zero padding adds exact zeros), so the same bound with `|W|` convolved instead of
/// multiplied: `|W| ⋆ (γ|h| + (1 + 2γ) error)`.
pub(crate) fn conv_product_error(
    h: &Tensor,
    error: &Tensor,
    weight: &Tensor,
    stride: i64,
    padding: i64,
) -> ProductError {
    let (_, c, kh, kw) = weight.size4().expect("a conv weight");
    let inputs = c * kh * kw;
    let reach = reach(h, error, gamma(inputs));
    ProductError::known(fast_conv(&reach, &weight.abs(), stride, padding), inputs)
}

/// A dense layer's output from its fast product `z` (`[R, out]` rows; any leading shape) and
/// that product's error (rows `[R / rep, out]`, each serving `rep` consecutive rows of `z`:
/// the first masked layer's per-example bound), after its bias and ReLU (`relu`) or none: the
/// activations and the bound on their distance from exact, in one pass. The bias addition
/// rounds by at most `u|z*| ≤ u(|z|(1 + u) + 2·error)`, allowed for as `4u(|z| + error)`.
/// ReLU is 1-Lipschitz, so the bound carries over; where `z ≤ −2·error` the exact value is
/// at most `−error` and every computed one (the reference's included) at most 0, so all of
/// them are 0 after ReLU: no error there, and no weight in the next layer's bound.
pub(crate) fn finish(
    z: Tensor,
    error: ProductError,
    bias: Option<&Tensor>,
    relu: bool,
) -> (Tensor, Tensor) {
    let out = (*z.size().last().expect("a feature axis") as usize).max(1);
    let mut z = z.contiguous();
    let mut bound = z.empty_like();
    let raw = error.raw.contiguous();
    let raw_values = values(&raw);
    let rep = (z.numel() / out) / (raw_values.len() / out).max(1);
    let bias = match bias {
        Some(b) => b.contiguous(),
        None => Tensor::zeros([out as i64], (Kind::Float, Device::Cpu)),
    };
    let (b, (pad, tiny)) = (values(&bias), (error.pad, error.tiny));
    let (z_values, bound_values) = (values_mut(&mut z), values_mut(&mut bound));
    for (r, (zr, br)) in z_values
        .chunks_mut(out)
        .zip(bound_values.chunks_mut(out))
        .enumerate()
    {
        let raw_row = &raw_values[(r / rep) * out..][..out];
        // Plain loops over equal-length slices, branch-free, so that they vectorise.
        for (((v, e), &p), &bj) in zr.iter_mut().zip(br.iter_mut()).zip(raw_row).zip(b) {
            (*v, *e) = settle(*v + bj, p, pad, tiny, relu);
        }
    }
    (z, bound)
}

/// A dense layer's rows on slices, as [`finish`] does on tensors: `z` (rows of `out`, the fast
/// product) becomes the activations after `bias` (`out` values, or empty: none) and ReLU
/// (`relu`) or none, and `bound` (the same length as `z`, holding the product's raw bound on
/// entry) their bound. `pad_tiny`: [`ProductError::allowances`] of the product.
pub(crate) fn finish_rows(
    z: &mut [f32],
    bound: &mut [f32],
    bias: &[f32],
    out: usize,
    (pad, tiny): (f32, f32),
    relu: bool,
) {
    for (zr, br) in z.chunks_mut(out.max(1)).zip(bound.chunks_mut(out.max(1))) {
        if bias.is_empty() {
            for (v, e) in zr.iter_mut().zip(br.iter_mut()) {
                (*v, *e) = settle(*v, *e, pad, tiny, relu);
            }
        } else {
            for ((v, e), &bj) in zr.iter_mut().zip(br.iter_mut()).zip(bias) {
                (*v, *e) = settle(*v + bj, *e, pad, tiny, relu);
            }
        }
    }
}

/// `γ|h| + (1 + 2γ) error` into `reach`, elementwise: [`product_error`]'s operand of `|W|`.
pub(crate) fn reach_rows(h: &[f32], error: &[f32], inputs: i64, reach: &mut [f32]) {
    let g = gamma(inputs);
    let (of_value, of_error) = (g as f32, (1.0 + 2.0 * g) as f32);
    for ((r, &x), &e) in reach.iter_mut().zip(h).zip(error) {
        *r = x.abs() * of_value + e * of_error;
    }
}

/// [`decide`] for one row of logits `row` with its bound `bound` and label `y`: `Some(answer)`
/// where it is certain, `None` where the reference must decide.
pub(crate) fn decide_row(row: &[f32], bound: &[f32], y: i64) -> Option<bool> {
    let c = row.len();
    let y = usize::try_from(y).ok().filter(|&y| y < c)?;
    if row.iter().chain(bound).any(|v| v.is_nan()) {
        return None;
    }
    // The label's lead over class j, and how far both may move: 2(B_y + B_j), padded
    // for the f64 arithmetic here.
    let lead = |j: usize| f64::from(row[y]) - f64::from(row[j]);
    let slack = |j: usize| 2.0 * (f64::from(bound[y]) + f64::from(bound[j])) * (1.0 + 1e-6);
    let mut others = (0..c).filter(|&j| j != y);
    if others.clone().all(|j| lead(j) > slack(j)) {
        return Some(true);
    }
    others.any(|j| -lead(j) > slack(j)).then_some(false)
}

/// One output of [`finish`]: its value after the bias (`sum`) and the ReLU or none, and its
/// bound, from its product's raw bound `raw`.
#[inline(always)]
fn settle(sum: f32, raw: f32, pad: f32, tiny: f32, relu: bool) -> (f32, f32) {
    let e0 = raw * pad + tiny;
    let bound = e0 + (sum.abs() + e0) * (4.0 * UNIT_ROUNDOFF) as f32;
    // NaN fails `<=`: it stays NaN (and decides nothing).
    let settled = relu && sum <= -2.0 * bound;
    (
        if relu && sum <= 0.0 { 0.0 } else { sum },
        if settled { 0.0 } else { bound },
    )
}

/// A conv layer's output from its fast product `z` (`[N, S·O, H, W]`: `stacked` coalitions'
/// filter banks side by side, or one) and that product's error (`[N, O, H, W]`: per example,
/// serving each stacked bank), after its bias (one per filter) and ReLU or none: [`finish`]
/// plane by plane.
pub(crate) fn finish_planes(
    z: Tensor,
    error: ProductError,
    stacked: i64,
    bias: Option<&Tensor>,
    relu: bool,
) -> (Tensor, Tensor) {
    let (n, channels, h, w) = z.size4().expect("feature maps");
    let filters = (channels / stacked.max(1)).max(1) as usize;
    let plane = (h * w) as usize;
    let mut z = z.contiguous();
    let mut bound = z.empty_like();
    let raw = error.raw.contiguous();
    assert_eq!(
        raw.numel() as i64 * stacked.max(1),
        n * channels * h * w,
        "one raw bound per example, filter and position"
    );
    let raw_values = values(&raw);
    let bias = match bias {
        Some(b) => b.contiguous(),
        None => Tensor::zeros([filters as i64], (Kind::Float, Device::Cpu)),
    };
    let (b, (pad, tiny)) = (values(&bias), (error.pad, error.tiny));
    let banks = filters * plane;
    for (i, (zp, bp)) in values_mut(&mut z)
        .chunks_mut(plane)
        .zip(values_mut(&mut bound).chunks_mut(plane))
        .enumerate()
    {
        // Plane i is filter `i % filters` of bank `(i / filters) % stacked` of example
        // `i / (filters · stacked)`.
        let (filter, example) = (i % filters, i / (filters * stacked.max(1) as usize));
        let raw_plane = &raw_values[example * banks + filter * plane..][..plane];
        let bj = b[filter];
        for ((v, e), &p) in zp.iter_mut().zip(bp.iter_mut()).zip(raw_plane) {
            (*v, *e) = settle(*v + bj, p, pad, tiny, relu);
        }
    }
    (z, bound)
}

/// A gate on rows `[E, K, n]` of activations and their bound, both just computed by a
/// layer of the certified path (contiguous, held by no one else): each multiplied by its
/// coalition's mask (`m`: `[K, n]`), in place, in one pass.
pub(crate) fn mask_rows(mut h: Tensor, mut error: Tensor, m: &Tensor) -> (Tensor, Tensor) {
    let m = m.to_kind(Kind::Float).contiguous();
    let row = m.numel().max(1);
    let masks = values(&m);
    for (t, v) in [(&mut h, true), (&mut error, false)] {
        assert!(t.numel() % row == 0, "rows of the masks' shape ({v})");
        for rows in values_mut(t).chunks_mut(row) {
            for (x, &keep) in rows.iter_mut().zip(masks) {
                *x *= keep;
            }
        }
    }
    (h, error)
}

/// The values of a contiguous float32 CPU tensor.
#[allow(unsafe_code)]
pub(crate) fn values(t: &Tensor) -> &[f32] {
    check_values(t);
    let n = t.numel();
    if n == 0 {
        return &[];
    }
    // SAFETY: a contiguous float32 CPU tensor holds `numel` f32 values from its data pointer
    // (its storage offset included), alive while `t` is; no handle writes them meanwhile
    // (the certified path writes only tensors it has just created, through `values_mut`).
    unsafe { std::slice::from_raw_parts(t.data_ptr() as *const f32, n) }
}

/// The values of a contiguous float32 CPU tensor the caller has just created (no other
/// handle reads or writes them while the slice lives).
#[allow(unsafe_code)]
pub(crate) fn values_mut(t: &mut Tensor) -> &mut [f32] {
    check_values(t);
    let n = t.numel();
    if n == 0 {
        return &mut [];
    }
    // SAFETY: as in `values`; the `&mut` borrow of the one handle the caller holds keeps
    // every other access away for the slice's life.
    unsafe { std::slice::from_raw_parts_mut(t.data_ptr() as *mut f32, n) }
}

fn check_values(t: &Tensor) {
    assert!(
        t.device() == Device::Cpu && t.kind() == Kind::Float && t.is_contiguous(),
        "the certified path's buffers are contiguous float32 CPU tensors"
    );
}

/// How a batch of (example, coalition) pairs was decided ([`decide`]), pair-major as the
/// logits (`[E, K]`: pair `e·K + k`).
pub(crate) struct Decisions {
    /// Whether the label's logit is the largest; meaningful where `certain`.
    pub correct: Vec<bool>,
    /// Whether that answer is the reference's.
    pub certain: Vec<bool>,
}

/// Per (example, coalition), from logits `[E, K, C]`, their bound (the same shape, or one
/// that expands to it) and the labels `[E]`: whether the argmax is the label, and whether
/// that answer is certain (the reference's answer). Certain when the label's logit beats
/// every other by more than `2(B_y + B_j)`, or when another class's beats the label's by
/// more than that; a row with a NaN, or a label out of range, never is.
pub(crate) fn decide(
    logits: &Tensor,
    bound: &Tensor,
    ys: &Tensor,
) -> Result<Decisions, crate::NnError> {
    let (e, k, c) = logits.size3()?;
    let l = logits.f_contiguous()?;
    let b = bound.f_expand([e, k, c], false)?.f_contiguous()?;
    let labels = Vec::<i64>::try_from(ys.f_to_kind(Kind::Int64)?.f_to_device(Device::Cpu)?)?;
    let (l, b, c) = (values(&l), values(&b), c as usize);
    let pairs = (e * k) as usize;
    let (mut correct, mut certain) = (vec![false; pairs], vec![false; pairs]);
    for p in 0..pairs {
        let (row, br) = (&l[p * c..][..c], &b[p * c..][..c]);
        if let Some(answer) = decide_row(row, br, labels[p / k as usize]) {
            correct[p] = answer;
            certain[p] = true;
        }
    }
    Ok(Decisions { correct, certain })
}

#[cfg(test)]
mod tests {
    use tch::{Device, Kind, Tensor};

    use crate::{Arch, Network};

    /// Scales a variable in place (larger weights: larger logits, larger bounds).
    fn scale(net: &Network, name: &str, by: f64) {
        let _g = tch::no_grad_guard();
        let _ = net.vs.variables()[name].shallow_clone().g_mul_scalar_(by);
    }

    #[test]
    fn rank_one_steps_stay_within_their_bound() {
        // A walk's first-layer pre-activation: one fast product of a random coalition, then
        // 63 single toggles by float32 rank-one steps (as `walks` takes them); after each, its
        // distance from the exact value (f64) lies within the widened bound, and the bound of
        // the steps is not much wider than the product's own (γ_400 ≈ 400u against ≤ 127u).
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let (e, n, out) = (64usize, 400usize, 120usize);
        let mut random = |len: usize, scale: f32| -> Vec<f32> {
            (0..len)
                .map(|_| scale * (rng.random::<f32>() * 2.0 - 1.0))
                .collect()
        };
        // Large inputs and weights of both signs: sums cancel, the rounding does not.
        let (h, w) = (random(e * n, 30.0), random(out * n, 3.0));
        let mut keep: Vec<f32> = random(n, 1.0).iter().map(|&v| f32::from(v > 0.0)).collect();
        let t = |v: &[f32], shape: [i64; 2]| Tensor::from_slice(v).view(shape);
        let (ht, wt) = (t(&h, [e as i64, n as i64]), t(&w, [out as i64, n as i64]));
        let raw = super::product_error(&ht, &ht.zeros_like(), &wt).into_raw();
        let mut z = super::fast_linear(&(&ht * t(&keep, [1, n as i64])), &wt);
        let exact = |keep: &[f32]| -> Vec<f64> {
            let mut sums = vec![0.0f64; e * out];
            for (r, s) in sums.iter_mut().enumerate() {
                let (i, o) = (r / out, r % out);
                *s = (0..n)
                    .filter(|&j| keep[j] == 1.0)
                    .map(|j| f64::from(h[i * n + j]) * f64::from(w[o * n + j]))
                    .sum();
            }
            sums
        };
        for step in 0..=63usize {
            if step > 0 {
                let u = (step * 37) % n;
                keep[u] = 1.0 - keep[u];
                let sign = if keep[u] == 1.0 { 1.0 } else { -1.0 };
                let unit = Tensor::from_slice(&[u as i64]);
                let delta = ht.index_select(1, &unit) * sign * wt.index_select(1, &unit).tr();
                z += delta;
            }
            let error = super::after_rank_one_updates(&raw, n as i64, step);
            let (pad, tiny) = (f64::from(error.pad), f64::from(error.tiny));
            let bound = Vec::<f32>::try_from(error.into_raw().view([-1])).unwrap();
            let got = Vec::<f32>::try_from(z.view([-1])).unwrap();
            let mut widest = 0.0f64;
            for ((g, want), b) in got.iter().zip(exact(&keep)).zip(&bound) {
                let allowed = f64::from(*b) * pad + tiny;
                let off = (f64::from(*g) - want).abs();
                assert!(
                    off <= allowed,
                    "step {step}: {g} is {off} from {want} (bound {allowed})"
                );
                widest = widest.max(off / allowed);
            }
            assert!(widest > 0.0, "the fast product rounds somewhere");
        }
        let (first, last) = (
            super::after_rank_one_updates(&raw, n as i64, 0).into_raw(),
            super::after_rank_one_updates(&raw, n as i64, 63).into_raw(),
        );
        let ratio = (&last / &first).max().double_value(&[]);
        assert!(
            (1.3..1.33).contains(&ratio),
            "63 steps widen the bound {ratio}x"
        );
    }

    #[test]
    fn a_dense_layers_bound_is_the_formula() {
        let t = |v: &[f32], shape: &[i64]| Tensor::from_slice(v).view(shape);
        // One example, four inputs: h = 1, the first within 0.5 of exact; W = [1, -2, 1, 1].
        let (h, error) = (t(&[1.0; 4], &[1, 4]), t(&[0.5, 0.0, 0.0, 0.0], &[1, 4]));
        let weight = t(&[1.0, -2.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0], &[2, 4]);
        let g = super::gamma(4);
        let u = super::UNIT_ROUNDOFF;
        let raw = 5.0 * g + 0.5 * (1.0 + 2.0 * g); // |W| (γ|h| + (1 + 2γ) error)
        let product = raw * (1.0 + 4.0 * g + 24.0 * u) + 4.0 * f64::from(f32::MIN_POSITIVE);
        let close = |got: f64, want: f64| (got - want).abs() <= 4.0 * u * want.abs();
        // Second output: no weights, only the subnormal allowance.
        let tiny = 4.0 * f64::from(f32::MIN_POSITIVE);
        // Beside the product's bound, the bias addition's rounding 4u(|z + b| + bound) (also
        // where the bias is none: then an over-estimate).
        let with_sum = |sum: f64| product + 4.0 * u * (sum.abs() + product);
        for (z, bias, relu, want) in [
            (-3.0f32, None, false, with_sum(-3.0)),
            (-3.0, Some(2.0f32), false, with_sum(-1.0)),
            // ReLU where z ≤ −2·bound: every path gives 0 exactly.
            (-3.0, None, true, 0.0),
            // ReLU where z is inside the band: the bound carries over.
            (-0.5 * product as f32, None, true, with_sum(-0.5 * product)),
        ] {
            let z = t(&[z, 0.0], &[1, 2]);
            let bias = bias.map(|b| t(&[b, 0.0], &[2]));
            let error = super::product_error(&h, &error, &weight);
            let (_, bound) = super::finish(z, error, bias.as_ref(), relu);
            let got = Vec::<f32>::try_from(bound.view([-1])).unwrap();
            assert!(close(f64::from(got[0]), want), "{got:?} against {want}");
            assert!(f64::from(got[0]) >= want * (1.0 - 4.0 * u), "rounded up");
            assert!(
                (f64::from(got[1]) - tiny).abs() <= 16.0 * u * tiny,
                "{got:?}"
            );
        }
    }

    #[test]
    fn a_convolutions_logits_lie_within_the_bound_of_the_reference_ones() {
        let _g = tch::no_grad_guard();
        for by in [1.0, 30.0] {
            let net = Network::with_widths(
                Arch::Alexnet,
                crate::Shape::features(3 * 64 * 64, 10),
                crate::AlexnetWidths::scaled(0.125),
                Device::Cpu,
                3,
            )
            .unwrap();
            scale(&net, "conv2.weight", by);
            let (inputs, masks) = crate::with_torch_rng(22, || {
                let inputs = Tensor::randn([6, 3 * 64 * 64], (Kind::Float, Device::Cpu));
                let p = Tensor::linspace(0.1, 0.9, 5, (Kind::Float, Device::Cpu));
                let masks = Tensor::rand([5, net.num_players() as i64], (Kind::Float, Device::Cpu))
                    .lt_tensor(&p.unsqueeze(1))
                    .to_kind(Kind::Float);
                (inputs, masks)
            });
            // Every start layer: conv1's suffix has seven layers after it, conv5's two.
            for start in 0..net.player_layers().len() {
                let head = net.masked_suffix(start);
                let features = net.activations_at(&inputs, start);
                let (fast, bound) = head.certified_logits(&features, &masks, None).unwrap();
                let reference = head.masked_logits(&features, &masks).unwrap();
                let worst = ((&fast - &reference).abs() - &bound * 2.0)
                    .max()
                    .double_value(&[]);
                assert!(worst <= 0.0, "start {start} ×{by}: {worst}");
                let rows = features.narrow(0, 0, 5);
                let (paired, paired_bound) = head.certified_paired_logits(&rows, &masks).unwrap();
                let reference_pairs = head.paired_logits(&rows, &masks).unwrap();
                let gap = (&paired - &reference_pairs).abs() - &paired_bound * 2.0;
                assert!(
                    gap.max().double_value(&[]) <= 0.0,
                    "start {start} ×{by}: pairs"
                );
                // The bound grows about tenfold per layer (|W| ⋆ |h| against the cancelling
                // sums): worth having from conv5 on (one convolution, then dense layers).
                if net.player_layers()[start].name == "conv5" {
                    let scale = reference.abs().mean(Kind::Float).double_value(&[]);
                    let typical = bound.mean(Kind::Float).double_value(&[]);
                    assert!(typical < 0.2 * scale, "bound {typical} at scale {scale}");
                }
            }
        }
    }

    #[test]
    fn fast_logits_lie_within_the_bound_of_the_reference_ones() {
        let _g = tch::no_grad_guard();
        for (arch, first, last) in [
            (Arch::Lenet300100, "fc1.weight", "fc3.weight"),
            (Arch::Mlp3x256, "fc1.weight", "fc4.weight"),
            (Arch::Lenet5, "fc1.weight", "fc3.weight"),
        ] {
            for (by_first, by_last) in [(1.0, 1.0), (30.0, 1.0), (1.0, 40.0)] {
                let net = Network::new(arch, Device::Cpu, 9);
                scale(&net, first, by_first);
                scale(&net, last, by_last);
                let (inputs, masks) = crate::with_torch_rng(21, || {
                    let inputs = Tensor::randn([40, 784], (Kind::Float, Device::Cpu));
                    let p = Tensor::linspace(0.05, 0.95, 12, (Kind::Float, Device::Cpu));
                    let masks =
                        Tensor::rand([12, net.num_players() as i64], (Kind::Float, Device::Cpu))
                            .lt_tensor(&p.unsqueeze(1))
                            .to_kind(Kind::Float);
                    (inputs, masks)
                });
                let head = net.masked_suffix(0);
                let features = net.activations_at(&inputs, 0);
                let (fast, bound) = head.certified_logits(&features, &masks, None).unwrap();
                // The first layer's bound kept between calls is the one computed in the call.
                let start = head.start_bound(&features).unwrap();
                let (again, same) = head
                    .certified_logits(&features, &masks, Some(&start))
                    .unwrap();
                assert!(again.equal(&fast) && same.equal(&bound), "{arch}");
                // Pairs (MCUE's trials): example j under mask j.
                let rows = features.narrow(0, 0, 12);
                let (paired, paired_bound) = head.certified_paired_logits(&rows, &masks).unwrap();
                let reference_pairs = head.paired_logits(&rows, &masks).unwrap();
                let gap = (&paired - &reference_pairs).abs() - &paired_bound * 2.0;
                assert!(gap.max().double_value(&[]) <= 0.0, "{arch}: pairs");
                let reference = head.masked_logits(&features, &masks).unwrap();
                let gap = (&fast - &reference).abs() - &bound * 2.0;
                let worst = gap.max().double_value(&[]);
                assert!(worst <= 0.0, "{arch} ×{by_first} ×{by_last}: {worst}");
                // And a bound worth having (untrained deep nets cancel most of their sums:
                // the bound is relative to the sums, the logits are what is left).
                let scale = reference.abs().mean(Kind::Float).double_value(&[]);
                let typical = bound.mean(Kind::Float).double_value(&[]);
                assert!(
                    typical < 0.05 * scale,
                    "{arch}: bound {typical} at scale {scale}"
                );
            }
        }
    }
}
