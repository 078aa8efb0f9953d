//! Exact values from fast kernels (issue 26).
//!
//! The **reference value** of a coalition on an example is defined one example and one
//! coalition at a time: every dense layer's product is [`crate::gemm::linear`] (a fixed-order
//! FMA sum per output, whatever else is in the batch), every other operation elementwise. It
//! does not depend on batch size, chunking, thread count or CPU vendor.
//!
//! Most values gtap reports are counts of argmax decisions (ν(C) as accuracy). The certified
//! path computes logits with fast kernels (oneDNN on the CPU) and checks them against a bound
//! on every logit's distance from its exact real value. Any float32 evaluation of
//! `Σ_j w_j x_j`, in any order, fused or not, lies within `γ_k Σ_j |w_j x_j|` of it
//! (`γ_k = k·u / (1 − k·u)`, `u = 2⁻²⁴`; Higham, *Accuracy and Stability of Numerical
//! Algorithms*, §3.1). A coalition only zeroes activations, so one bound per example serves
//! every coalition: from the exact activations at the first gate, each layer carries a bound
//! on the magnitudes and one on the error ([`dense_bounds`]; ReLU and gates widen neither).
//! It holds for the reference and for the fast kernels alike, so their logits of one class
//! differ by at most twice the bound. An example whose decision (is the argmax the label?)
//! survives that much movement of every logit is decided as the reference decides it
//! ([`decide`]); the others are recomputed by the reference path. Counts, hence tables, are
//! the reference's bit for bit.
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
    let out = if x.device() == Device::Cpu && rows.size()[0] > 0 && inputs > 0 {
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

/// The bounds after a dense layer `x Wᵀ + b`, from its input's: `magnitude` bounds `|x|` of
/// the exact activations for every coalition (masking only zeroes terms) and `error` every
/// computed value's distance from the exact one, both per example (`[E, in]`). Returns the
/// output's: `|W| M + |b|`, and `|W| (γ (M + B) + (1 + 2γ) B)` (the product's rounding, the
/// input's error carried through) plus `2u (M' + B')` for the bias addition, all times
/// `1 + 4γ` for the float32 rounding of computing them (sums of non-negative terms, each
/// within a relative `γ` of exact). ReLU and the identity leave both as they are.
pub(crate) fn dense_bounds(
    magnitude: &Tensor,
    error: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
) -> (Tensor, Tensor) {
    let g = gamma(weight.size()[1]);
    let pad = 1.0 + 4.0 * g;
    let abs_w = weight.abs();
    let mut out_magnitude = fast_linear(magnitude, &abs_w) * pad;
    if let Some(b) = bias {
        out_magnitude += b.abs() * pad;
    }
    let reach = (magnitude + error) * g + error * (1.0 + 2.0 * g);
    // Subnormal products round absolutely: an allowance per summed term.
    let tiny = weight.size()[1] as f64 * f64::from(f32::MIN_POSITIVE);
    let mut out_error = fast_linear(&reach, &abs_w) * pad + tiny;
    if bias.is_some() {
        out_error = &out_error + (&out_magnitude + &out_error) * (2.0 * UNIT_ROUNDOFF * pad);
    }
    (out_magnitude, out_error)
}

/// Per (example, coalition), from logits `[E, K, C]`, their bound and the labels `[E]`:
/// whether the argmax is the label, and whether that answer is certain (the reference's
/// answer). Certain when the label's logit beats every other by more than `2(B_y + B_j)`, or
/// when another class's beats the label's by more than that.
pub(crate) fn decide(
    logits: &Tensor,
    bound: &Tensor,
    ys: &Tensor,
) -> Result<(Tensor, Tensor), crate::NnError> {
    let (e, k, c) = logits.size3()?;
    let l = logits.to_kind(Kind::Double);
    let b = bound.to_kind(Kind::Double).expand([e, k, c], false) * (1.0 + 1e-6);
    let top = l.argmax(-1, false); // [E, K]
    let label = ys.view([e, 1]).expand([e, k], false);
    let at = |t: &Tensor, i: &Tensor| t.gather(2, &i.unsqueeze(2), false).squeeze_dim(2);
    let (ly, by) = (at(&l, &label), at(&b, &label));
    // Label's lead over each other class, less the movement both may make.
    let lead = (ly.unsqueeze(2) - &l) - (by.unsqueeze(2) + &b) * 2.0;
    let is_label = Tensor::arange(c, (Kind::Int64, l.device()))
        .view([1, 1, c])
        .eq_tensor(&label.unsqueeze(2));
    let lead = lead.masked_fill(&is_label, f64::INFINITY);
    let wins = lead.min_dim(2, false).0.gt(0.0);
    let (lt, bt) = (at(&l, &top), at(&b, &top));
    let loses = (lt - &ly).gt_tensor(&((bt + by) * 2.0));
    let correct = top.eq_tensor(&label);
    // NaN fails every comparison: never certain.
    let certain = wins.where_self(&correct, &loses);
    Ok((correct, certain))
}
