//! Incremental evaluation of walks ([`gtap_game::Walk`]): a step that toggles unit u of the
//! first masked layer changes that layer's pre-activation by ± x_u · W[:, u]ᵀ per example (rank
//! one), so the widest GEMM of the head, `[E, n0] × [n0, K·m]`, runs once per walk and then every
//! `REFRESH` steps, instead of once per coalition. Later layers are evaluated in full: a toggle in
//! the first layer changes all their inputs.
//!
//! Accuracy on the certified path ([`certified_walk_totals`], the default where it applies) gives
//! every coalition the reference path's full-evaluation value, bit for bit; elsewhere (cross-
//! entropy, fast numerics) values agree with full evaluation up to the running sums' rounding.

use tch::Tensor;

use gtap_game::Walk;

use crate::masked::MaskedSuffix;
use crate::rows::{recompute_open, totals_of, Rows, Tile};
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
    let refresh =
        |h: &Tensor, first, masks: &Tensor| head.first_masked_preactivation(h, first, masks, false);
    let totals = drive(head, features, walks, players, &refresh, &mut |step| {
        utility_totals(&head.logits_from(step.first, step.z.shallow_clone(), step.masks))
    })?;
    match totals {
        Some(totals) => Ok(totals),
        None => {
            // No player layer: every coalition has the same value.
            let (h, _) = head.unmasked_start(features);
            let value = utility_totals(&h.unsqueeze(1))?[0];
            Ok(walks.iter().map(|w| vec![value; w.num_values()]).collect())
        }
    }
}

/// [`walk_totals`] of accuracy on the certified path ([`crate::certify`]): the first masked
/// layer's pre-activation by the fast kernel and rank-one steps, its bound the unmasked one
/// (`start_bound`, [`MaskedSuffix::start_bound`] of these examples) widened for the steps'
/// roundings ([`crate::certify::after_rank_one_updates`]), later layers by fast kernels with
/// their bounds; the pairs the bound leaves open are recomputed by the reference path in full.
/// So every value is the reference path's full evaluation of its coalition, bit for bit (the
/// uncertified walks drift from it by the running sums' rounding).
///
/// A step changes nothing for an example where each of its walk's toggles is a unit whose
/// activation is exactly 0 there on every path: a first-layer input that is 0 (its products
/// are ±0 whether masked or not; its weights finite), or a unit of the next gate whose ReLU
/// settles at 0 ([`crate::certify::ProductError::settles`]). Such a pair keeps its previous
/// answer, and only the others are computed: on dense suffixes by row kernels on tiles of
/// [`crate::rows::TILE`] rows ([`MaskedSuffix::row_chain`]), elsewhere all pairs by tensors.
///
/// Also returns the pairs decided and recomputed; `None` where some step has no bound.
pub(crate) fn certified_walk_totals(
    head: &MaskedSuffix,
    features: &Tensor,
    labels: &Tensor,
    walks: &[Walk],
    players: usize,
    start_bound: &Tensor,
) -> Result<Option<CertifiedWalks>, NnError> {
    if !head.certifiable() {
        return Ok(None);
    }
    let inputs = features.size()[1];
    let e = features.size()[0] as usize;
    let k = walks.len();
    let label_values = Vec::<i64>::try_from(labels.to_kind(tch::Kind::Int64))?;
    let mut counts = (0, 0);
    // Per pair (example-major), its answer at the last step.
    let mut correct = vec![false; e * k];
    let refresh =
        |h: &Tensor, first, masks: &Tensor| head.first_masked_preactivation(h, first, masks, true);
    let (mut unbounded, mut chain, mut tile) = (false, None, Tile::default());
    let mut finite = None;
    let totals = drive(head, features, walks, players, &refresh, &mut |step| {
        let Step {
            first,
            h,
            z,
            masks,
            updates,
            t,
        } = step;
        let error = crate::certify::after_rank_one_updates(start_bound, inputs, updates);
        let chain = chain.get_or_insert_with(|| head.row_chain(first));
        let (decided, open) = match chain.as_deref() {
            Some((layer, chain)) => {
                let pairs = match t {
                    0 => (0..(e * k) as i64).collect(),
                    _ => {
                        let finite = finite.get_or_insert_with(|| finite_columns(head, first));
                        active_pairs(head, first, (h, z), &error, walks, t - 1, finite)?
                    }
                };
                let masks = Vec::<f32>::try_from(masks.contiguous().view([-1]))?;
                let rows = Rows {
                    z: &z.contiguous(),
                    kept: None,
                    raw: &error.raw().contiguous(),
                    masks: &masks,
                    players,
                    labels: &label_values,
                    k,
                };
                let open = tile.run(
                    &rows,
                    &pairs,
                    (layer, chain),
                    error.allowances(),
                    &mut correct,
                );
                (pairs.len(), open)
            }
            None => {
                let Some((logits, bound)) =
                    head.certified_logits_from(first, z.copy(), error, masks)
                else {
                    unbounded = true;
                    return Ok(vec![0.0; k]);
                };
                let answers = crate::certify::decide(&logits, &bound, labels)?;
                let mut open = Vec::new();
                for (p, (&c, &certain)) in answers.correct.iter().zip(&answers.certain).enumerate()
                {
                    match certain {
                        true => correct[p] = c,
                        false => open.push(p as i64),
                    }
                }
                (e * k, open)
            }
        };
        counts = (counts.0 + decided as u64, counts.1 + open.len() as u64);
        recompute_open(head, (features, labels), masks, &open, &mut correct)?;
        Ok(totals_of(&correct, k))
    })?;
    Ok(totals.filter(|_| !unbounded).map(|totals| (totals, counts)))
}

/// Per-walk totals, and the pairs decided and recomputed.
type CertifiedWalks = (Vec<Vec<f64>>, (u64, u64));

/// Per input of the layer consuming gate step `first`: whether its weights are all finite
/// (a 0 input then adds ±0 to every product, masked or not).
fn finite_columns(head: &MaskedSuffix, first: usize) -> Vec<bool> {
    let (weight, _) = head.masked_weight(first);
    let w = weight.to_kind(tch::Kind::Float).contiguous();
    let (out, width) = (w.size()[0] as usize, w.size()[1] as usize);
    let wv = crate::certify::values(&w);
    (0..width)
        .map(|u| (0..out).all(|i| wv[i * width + u].is_finite()))
        .collect()
}

/// The pairs (example-major indices) whose value step `step` of `walks` may change: those
/// whose walk toggles a unit that is not exactly 0 on that example ([`certified_walk_totals`]).
fn active_pairs(
    head: &MaskedSuffix,
    first: usize,
    (h, z): (&Tensor, &Tensor),
    error: &crate::certify::ProductError,
    walks: &[Walk],
    step: usize,
    finite: &[bool],
) -> Result<Vec<i64>, NnError> {
    let (e, k) = (h.size()[0] as usize, walks.len());
    let (weight, offset) = head.masked_weight(first);
    let width = weight.size()[1] as usize;
    let next = head.next_gate_units(first);
    let toggles: Vec<&[usize]> = walks
        .iter()
        .map(|w| w.steps.get(step).map(Vec::as_slice).unwrap_or(&[]))
        .collect();
    // Whether every toggle of walk `w` falls in the first gate or the next one (the only
    // units this check knows); the others' pairs are all active.
    let known = |p: usize| {
        (offset..offset + width).contains(&p) || next.is_some_and(|(o, n)| (o..o + n).contains(&p))
    };
    let (h, z, raw) = (h.contiguous(), z.contiguous(), error.raw().contiguous());
    let (hv, zv) = (crate::certify::values(&h), crate::certify::values(&z));
    let raw = crate::certify::values(&raw);
    let bias = head.consumer_bias(first)?;
    let out = z.size()[2] as usize;
    let mut active = Vec::new();
    for ex in 0..e {
        for (w, ts) in toggles.iter().enumerate() {
            let moves = ts.iter().any(|&p| {
                if !known(p) {
                    return true;
                }
                if (offset..offset + width).contains(&p) {
                    let u = p - offset;
                    return !(hv[ex * width + u] == 0.0 && finite[u]);
                }
                let j = p - next.map_or(0, |(o, _)| o);
                let zj = zv[(ex * k + w) * out + j];
                !error.settles(zj, bias.get(j).copied().unwrap_or(0.0), raw[ex * out + j])
            });
            if moves {
                active.push((ex * k + w) as i64);
            }
        }
    }
    Ok(active)
}

/// `z[:, walk, :] += sign · h[:, unit] · W[:, unit]ᵀ` for each (walk, unit, sign), in order:
/// one rank-one step per toggle (`z`: `[E, K, out]`, `h`: `[E, in]`, `weight`: `[out, in]`).
/// On float32 CPU tensors a loop over `z`'s buffer (the same roundings as the tensor ops: a
/// product, then a sum), elsewhere tensor ops.
fn rank_one(
    z: &mut Tensor,
    h: &Tensor,
    weight: &Tensor,
    (walks, units, signs): (&[i64], &[i64], &[f32]),
) {
    let floats = |t: &Tensor| t.device() == tch::Device::Cpu && t.kind() == tch::Kind::Float;
    if floats(z) && floats(h) && floats(weight) && z.is_contiguous() {
        let (e, k, out) = (
            z.size()[0] as usize,
            z.size()[1] as usize,
            z.size()[2] as usize,
        );
        let inputs = h.size()[1] as usize;
        let (h, columns) = (h.contiguous(), weight.tr().contiguous());
        let (hv, wv) = (crate::certify::values(&h), crate::certify::values(&columns));
        let zv = crate::certify::values_mut(z);
        for ((&w, &u), &s) in walks.iter().zip(units).zip(signs) {
            let (w, u) = (w as usize, u as usize);
            let column = &wv[u * out..][..out];
            for ex in 0..e {
                let x = hv[ex * inputs + u] * s;
                for (zi, &c) in zv[(ex * k + w) * out..][..out].iter_mut().zip(column) {
                    *zi += x * c;
                }
            }
        }
        return;
    }
    let device = z.device();
    let units = Tensor::from_slice(units).to_device(device);
    let columns =
        h.index_select(1, &units) * Tensor::from_slice(signs).to_device(device).unsqueeze(0); // [E, F]
    let rows = weight.index_select(1, &units).tr(); // [F, out]
    let delta = columns.unsqueeze(2) * rows.unsqueeze(0); // [E, F, out]
    let _ = z.index_add_(1, &Tensor::from_slice(walks).to_device(device), &delta);
}

/// What [`drive`] hands over after each step `t` of the walks.
struct Step<'a> {
    /// The first gate's step.
    first: usize,
    /// The unmasked activations at that gate `[E, in]`.
    h: &'a Tensor,
    /// The first masked layer's pre-activation `[E, K, out]`, before the bias.
    z: &'a Tensor,
    /// The walks' coalitions now `[K, players]`.
    masks: &'a Tensor,
    /// The most rank-one steps any walk's `z` has taken since it was computed.
    updates: usize,
    t: usize,
}

/// Runs `walks` on one chunk of examples: the first masked layer's pre-activation `z`
/// (`[E, K, out]`, before the bias) from `preactivation` at the start and every `REFRESH`
/// steps, by rank-one steps between; after each step `totals_of` gives the walks' totals.
/// `None` when the suffix has no gate.
fn drive(
    head: &MaskedSuffix,
    features: &Tensor,
    walks: &[Walk],
    players: usize,
    preactivation: &dyn Fn(&Tensor, usize, &Tensor) -> Tensor,
    totals_of: &mut dyn FnMut(Step<'_>) -> Result<Vec<f64>, NnError>,
) -> Result<Option<Vec<Vec<f64>>>, NnError> {
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
        return Ok(None);
    };
    let (weight, offset) = head.masked_weight(first);
    let width = weight.size()[1] as usize;
    let mut z = preactivation(&h, first, &mask_tensor(&masks));
    let mut updates = vec![0usize; w_count];
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
                        updates[w] += 1;
                    }
                }
            }
            if t % REFRESH == 0 {
                z = preactivation(&h, first, &mask_tensor(&masks));
                updates.iter_mut().for_each(|u| *u = 0);
            } else if !at_walk.is_empty() {
                rank_one(&mut z, &h, weight, (&at_walk, &at_unit, &sign));
            }
        }
        let most = updates.iter().copied().max().unwrap_or(0);
        let coalitions = mask_tensor(&masks);
        let values = totals_of(Step {
            first,
            h: &h,
            z: &z,
            masks: &coalitions,
            updates: most,
            t,
        })?;
        for (walk, (value, total)) in walks.iter().zip(values.into_iter().zip(&mut totals)) {
            if t < walk.num_values() {
                total.push(value);
            }
        }
    }
    Ok(Some(totals))
}
