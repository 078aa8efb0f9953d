//! Incremental evaluation of walks ([`gtap_game::Walk`]): a step that toggles unit u of the
//! first masked layer changes that layer's pre-activation by ± x_u · W[:, u]ᵀ per example (rank
//! one), so the widest GEMM of the head, `[E, n0] × [n0, K·m]`, runs once per walk and then every
//! `REFRESH` steps, instead of once per coalition. Later layers are evaluated in full: a toggle in
//! the first layer changes all their inputs.

use tch::Tensor;

use gtap_game::Walk;

use crate::masked::MaskedSuffix;
use crate::{Network, NnError};

/// Steps between exact recomputations of the first masked layer's pre-activation: bounds the
/// float32 drift of the running sums (≈ `REFRESH` rounding errors) while the GEMM it costs is
/// shared by `REFRESH` coalitions.
pub const REFRESH: usize = 64;

/// Per-walk utility totals `[walk][value]` (walk-major, `walk.num_values()` each) of `walks` on
/// one chunk of examples. `utility_totals` turns logits `[E, K, C]` into `K` sums over examples.
pub(crate) fn walk_totals(
    head: &MaskedSuffix,
    features: &Tensor,
    walks: &[Walk],
    players: usize,
    utility_totals: &dyn Fn(&Tensor) -> Result<Vec<f64>, NnError>,
) -> Result<Vec<Vec<f64>>, NnError> {
    let _guard = tch::no_grad_guard();
    let device = features.device();
    let w_count = walks.len();
    let mut masks = vec![0f32; w_count * players];
    for (walk, row) in walks.iter().zip(masks.chunks_mut(players)) {
        walk.start.write_mask(row);
    }
    let steps = walks.iter().map(|w| w.steps.len()).max().unwrap_or(0);
    let mut totals: Vec<Vec<f64>> = walks
        .iter()
        .map(|w| Vec::with_capacity(w.num_values()))
        .collect();
    let mask_tensor = |masks: &[f32]| Network::mask_tensor(masks, players, device);
    let (h, first) = head.unmasked_start(features);
    let Some(first) = first else {
        // No player layer: every coalition has the same value.
        let value = utility_totals(&h.unsqueeze(1))?[0];
        for (walk, t) in walks.iter().zip(&mut totals) {
            t.resize(walk.num_values(), value);
        }
        return Ok(totals);
    };
    let (weight, offset) = head.masked_weight(first);
    let width = weight.size()[1] as usize;
    let mut z = head.first_masked_preactivation(&h, first, &mask_tensor(&masks));
    for t in 0..=steps {
        if t > 0 {
            // Toggles of step t − 1; those in the first masked layer update z by rank one.
            let (mut at_walk, mut at_unit, mut sign) = (Vec::new(), Vec::new(), Vec::new());
            for (w, walk) in walks.iter().enumerate() {
                for &p in walk.steps.get(t - 1).map(Vec::as_slice).unwrap_or(&[]) {
                    let m = &mut masks[w * players + p];
                    *m = 1.0 - *m;
                    if (offset..offset + width).contains(&p) {
                        at_walk.push(w as i64);
                        at_unit.push((p - offset) as i64);
                        sign.push(if *m == 1.0 { 1f32 } else { -1.0 });
                    }
                }
            }
            if t % REFRESH == 0 {
                z = head.first_masked_preactivation(&h, first, &mask_tensor(&masks));
            } else if !at_walk.is_empty() {
                let units = Tensor::from_slice(&at_unit).to_device(device);
                let columns = h.index_select(1, &units)
                    * Tensor::from_slice(&sign).to_device(device).unsqueeze(0); // [E, F]
                let rows = weight.index_select(1, &units).tr(); // [F, out]
                let delta = columns.unsqueeze(2) * rows.unsqueeze(0); // [E, F, out]
                let _ = z.index_add_(1, &Tensor::from_slice(&at_walk).to_device(device), &delta);
            }
        }
        let logits = head.logits_from(first, z.shallow_clone(), &mask_tensor(&masks));
        for (walk, (value, total)) in walks
            .iter()
            .zip(utility_totals(&logits)?.into_iter().zip(&mut totals))
        {
            if t < walk.num_values() {
                total.push(value);
            }
        }
    }
    Ok(totals)
}
