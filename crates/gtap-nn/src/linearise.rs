//! First-order predictions of every player's marginal contribution at a coalition, from one
//! backward pass through the gates (issue 27; Molchanov et al. 2019, attribution patching).
//!
//! At coalition C each example j has its own copy of the gates m (1 = member, 0 = not), so
//! one backward pass of Σ_j s_j gives g_ji = ∂s_j/∂m_i for every example and player at once,
//! s_j the example's score at C. Toggling player i moves s_j by about g_ji (a member's removal
//! by −g_ji, a non-member's addition by +g_ji), so with s_j exact on C's side:
//!
//! - accuracy (s_j = the margin of the true class over the best other, correct iff s_j > 0):
//!   p_i(C) = mean_j ([s_j^with > 0] − [s_j^without > 0]), the linearised flips;
//! - cross-entropy ν (s_j = log-probability of the true class): p_i(C) = mean_j g_ji.
//!
//! The predictions only steer a control variate ([`gtap_game::Estimator::ControlVariate`]),
//! which stays unbiased whatever they are, so they come from the layers' training forward
//! (libtorch's kernels), not the reference path; their bytes are still fixed by portable
//! numerics (one thread, fixed kernels).

use tch::{Kind, Tensor};

use crate::eval::Utility;
use crate::masked::MaskedSuffix;
use crate::NnError;

/// Examples per backward pass, at most: a pass keeps every activation for its gradient.
const ROWS: i64 = 2048;

/// Floats of activations per backward pass, at most (256 MiB), for wide suffixes.
const PASS_FLOATS: i64 = 1 << 26;

/// Σ over the examples of each player's predicted marginal contribution at each coalition:
/// `[K, players]` (float64) for `masks` `[K, players]` on the activations `features`
/// (`[E, …]`) at the suffix's start gate, labels `[E]`. Divide by `E` for the mean.
pub(crate) fn predicted_totals(
    head: &MaskedSuffix,
    features: &Tensor,
    labels: &Tensor,
    masks: &Tensor,
    utility: Utility,
) -> Result<Tensor, NnError> {
    head.check_masks(masks)?;
    let (k, players) = (masks.size()[0], masks.size()[1]);
    let e = features.size()[0];
    let rows = (PASS_FLOATS / head.floats_per_pair().max(1)).clamp(1, ROWS);
    let mut out = Vec::with_capacity(k as usize);
    for c in 0..k {
        let mask = masks.get(c).to_kind(Kind::Float);
        let mut total = Tensor::zeros([players], (Kind::Double, features.device()));
        let mut start = 0;
        while start < e {
            let len = rows.min(e - start);
            let gates = mask
                .unsqueeze(0)
                .expand([len, players], false)
                .contiguous()
                .set_requires_grad(true);
            let logits = tch::with_grad(|| {
                head.differentiable_paired_logits(&features.narrow(0, start, len), &gates)
            })?;
            let ys = labels.narrow(0, start, len);
            total += row_predictions(&logits, &ys, &gates, &mask, utility)?
                .to_kind(Kind::Double)
                .sum_dim_intlist(0, false, None);
            start += len;
        }
        out.push(total);
    }
    Ok(Tensor::stack(&out, 0))
}

/// Per row and player, the predicted change of the row's utility when the player is toggled
/// (`[R, players]`), from logits `[R, C]` computed from `gates` (`[R, players]`, requiring a
/// gradient) at the coalition `mask` (`[players]`).
fn row_predictions(
    logits: &Tensor,
    ys: &Tensor,
    gates: &Tensor,
    mask: &Tensor,
    utility: Utility,
) -> Result<Tensor, NnError> {
    // A label outside the logits is libtorch's error here, returned, not a panic.
    let (score, flips) = tch::with_grad(|| -> Result<(Tensor, bool), NnError> {
        let at_label = ys.unsqueeze(1);
        Ok(match utility {
            Utility::Accuracy => {
                let label = logits.f_gather(1, &at_label, false)?;
                let others = logits.f_scatter_value(1, &at_label, f64::NEG_INFINITY)?;
                (label - others.amax([1], true), true)
            }
            Utility::NegativeCrossEntropy => (
                logits
                    .log_softmax(-1, Kind::Float)
                    .f_gather(1, &at_label, false)?,
                false,
            ),
        })
    })?;
    let grad = Tensor::f_run_backward(&[score.sum(Kind::Float)], &[gates], false, false)?
        .pop()
        .expect("one gradient per input");
    if !flips {
        return Ok(grad);
    }
    let s = score.detach();
    let member = mask.gt(0.5).unsqueeze(0);
    let with = s.where_self(&member, &(&s + &grad));
    let without = (&s - &grad).where_self(&member, &s);
    Ok(with.gt(0.0).to_kind(Kind::Float) - without.gt(0.0).to_kind(Kind::Float))
}
