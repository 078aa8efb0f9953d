//! The certified path on rows held in slices (issue 26): a dense suffix run on tiles of
//! [`TILE`] (example, coalition) rows that stay in the core's cache through every layer
//! ([`crate::layers::DenseRows`]: products and bound by [`crate::gemm`]'s kernel), each row
//! decided by [`crate::certify::decide_row`]; the rows its bound leaves open are recomputed by
//! the reference path ([`recompute_open`]). Incremental walks ([`crate::walks`]) and batched
//! evaluation ([`certified_values`]) run it from the first masked layer's fast pre-activation.

use tch::Tensor;

use crate::layers::DenseRows;
use crate::masked::{KeptPerCoalition, MaskedSuffix, RowStep};
use crate::NnError;

/// Rows of (example, coalition) pairs processed at once by the row kernels: their
/// activations stay in the core's cache through every layer.
pub(crate) const TILE: usize = 512;

/// What a walk step's pairs are read from: the first masked layer's pre-activation `z`
/// (`[E, K, out]`, or `[E, N]` with only the units each coalition keeps: `kept`) and its raw
/// bound per example (`[E, out]`), the coalitions' masks (`[K, players]`, row-major) and the
/// examples' labels.
pub(crate) struct Rows<'a> {
    pub z: &'a Tensor,
    pub kept: Option<&'a KeptPerCoalition>,
    pub raw: &'a Tensor,
    pub masks: &'a [f32],
    pub players: usize,
    pub labels: &'a [i64],
    pub k: usize,
}

/// A tile's buffers, reused from step to step.
#[derive(Default)]
pub(crate) struct Tile {
    h: Vec<f32>,
    error: Vec<f32>,
    z: Vec<f32>,
    bound: Vec<f32>,
    reach: Vec<f32>,
}

impl Tile {
    /// Decides `pairs` (example-major indices) through the row chain, tile by tile, into
    /// `correct`; returns the pairs the bound leaves open.
    pub(crate) fn run(
        &mut self,
        rows: &Rows<'_>,
        pairs: &[i64],
        (first, chain): (&DenseRows, &[RowStep]),
        pad_tiny: (f32, f32),
        correct: &mut [bool],
    ) -> Vec<i64> {
        let (z, raw) = (
            crate::certify::values(rows.z),
            crate::certify::values(rows.raw),
        );
        let out = first.out;
        // Per mask step, per coalition: the units it keeps, the only inputs of the next dense
        // layer that may be nonzero (a masked unit is an exact zero, value and bound).
        let kept: Vec<Option<KeptPerCoalition>> = chain
            .iter()
            .map(|step| match step {
                RowStep::Mask { offset, units } => Some(KeptPerCoalition::of(
                    rows.masks,
                    rows.players,
                    (*offset, *units),
                )),
                RowStep::Dense(_) => None,
            })
            .collect();
        let all: Vec<u32> = (0..chain.iter().map(width_of).max().unwrap_or(0) as u32).collect();
        let mut poisoned = Vec::new();
        let mut open = Vec::new();
        for part in pairs.chunks(TILE) {
            let n = part.len();
            self.h.clear();
            self.error.clear();
            for &p in part {
                let (ex, p) = (p as usize / rows.k, p as usize);
                match rows.kept {
                    None => self.h.extend_from_slice(&z[p * out..][..out]),
                    Some(kept) => {
                        // The kept units' values in place, the others 0 (the next gate masks
                        // them, value and bound).
                        let c = p % rows.k;
                        let columns = &z[ex * kept.total() + kept.start_of(c)..];
                        let start = self.h.len();
                        self.h.resize(start + out, 0.0);
                        let row = &mut self.h[start..];
                        for (&u, &v) in kept.of_coalition(c).iter().zip(columns) {
                            row[u as usize] = v;
                        }
                    }
                }
                self.error.extend_from_slice(&raw[ex * out..][..out]);
            }
            first.finish(&mut self.h, &mut self.error, pad_tiny);
            let mut width = out;
            for (s, step) in chain.iter().enumerate() {
                match step {
                    RowStep::Mask { offset, units } => {
                        poisoned.clear();
                        for (i, &p) in part.iter().enumerate() {
                            let w = p as usize % rows.k;
                            let m = &rows.masks[w * rows.players + offset..][..*units];
                            let mut nan = false;
                            for row in [&mut self.h, &mut self.error] {
                                for (x, &keep) in row[i * width..][..width].iter_mut().zip(m) {
                                    *x *= keep;
                                    nan |= x.is_nan();
                                }
                            }
                            poisoned.push(nan);
                        }
                    }
                    RowStep::Dense(layer) => {
                        let lists: Option<Vec<&[u32]>> = s
                            .checked_sub(1)
                            .and_then(|before| kept[before].as_ref())
                            .map(|per_coalition| {
                                // A row with a NaN (a masked ∞ or NaN: NaN on the reference
                                // path too) scans every input, so that it stays NaN. (Its bound
                                // is huge too and hands it back; this holds where weights of
                                // zero would hide that.)
                                part.iter()
                                    .zip(&poisoned)
                                    .map(|(&p, &nan)| match nan {
                                        true => &all[..layer.inputs],
                                        false => per_coalition.of_coalition(p as usize % rows.k),
                                    })
                                    .collect()
                            });
                        layer.forward(
                            (&self.h, &self.error),
                            (&mut self.z, &mut self.bound),
                            &mut self.reach,
                            (n, lists.as_deref()),
                        );
                        std::mem::swap(&mut self.h, &mut self.z);
                        std::mem::swap(&mut self.error, &mut self.bound);
                        width = layer.out;
                    }
                }
            }
            for (i, &p) in part.iter().enumerate() {
                let y = rows.labels[p as usize / rows.k];
                let (row, bound) = (
                    &self.h[i * width..][..width],
                    &self.error[i * width..][..width],
                );
                match crate::certify::decide_row(row, bound, y) {
                    Some(answer) => correct[p as usize] = answer,
                    None => open.push(p),
                }
            }
        }
        open
    }
}

/// The inputs a row step reads.
fn width_of(step: &RowStep) -> usize {
    match step {
        RowStep::Mask { units, .. } => *units,
        RowStep::Dense(layer) => layer.inputs,
    }
}

/// Correct answers per walk, from the pairs' answers (example-major, `k` walks).
pub(crate) fn totals_of(correct: &[bool], k: usize) -> Vec<f64> {
    let mut totals = vec![0.0; k];
    for (p, &c) in correct.iter().enumerate() {
        totals[p % k] += f64::from(u8::from(c));
    }
    totals
}

/// Answers the `open` pairs (example-major indices into `features` × `masks`' rows) by the
/// reference path, into `correct`.
pub(crate) fn recompute_open(
    head: &MaskedSuffix,
    (features, labels): (&Tensor, &Tensor),
    masks: &Tensor,
    open: &[i64],
    correct: &mut [bool],
) -> Result<(), NnError> {
    if open.is_empty() {
        return Ok(());
    }
    if crate::certify::applies_to(features) {
        if let Some((offset, chain)) = head.reference_rows(features) {
            return reference_on_rows((features, labels), masks, (offset, &chain), open, correct);
        }
    }
    let k = masks.size()[0];
    let pairs = Tensor::from_slice(open);
    let (examples, coalitions) = (pairs.divide_scalar_mode(k, "floor"), pairs.remainder(k));
    let reference = head.paired_logits(
        &features.index_select(0, &examples),
        &masks.index_select(0, &coalitions),
    )?;
    let answers = Vec::<bool>::try_from(
        reference
            .argmax(-1, false)
            .eq_tensor(&labels.index_select(0, &examples)),
    )?;
    for (&p, answer) in open.iter().zip(answers) {
        correct[p as usize] = answer;
    }
    Ok(())
}

/// [`recompute_open`] on slices, for a suffix that is its first gate (player offset `offset`)
/// then the dense `chain`: each open pair's input masked, every layer's reference output
/// ([`DenseRows::reference_forward`]: the reference product's bytes, then the same float
/// operations as the tensor path), masks multiplied, and the argmax as libtorch takes it
/// (the first largest value; NaN above all). No tensor operation per layer, and the weights
/// are the chain's, already transposed.
fn reference_on_rows(
    (features, labels): (&Tensor, &Tensor),
    masks: &Tensor,
    (offset, (first, chain)): (usize, &(DenseRows, Vec<RowStep>)),
    open: &[i64],
    correct: &mut [bool],
) -> Result<(), NnError> {
    let features = features.contiguous();
    let h = crate::certify::values(&features);
    let (k, players) = (masks.size()[0] as usize, masks.size()[1] as usize);
    let masks = Vec::<f32>::try_from(masks.to_kind(tch::Kind::Float).contiguous().view([-1]))?;
    let labels = Vec::<i64>::try_from(labels.to_kind(tch::Kind::Int64))?;
    let inputs = first.inputs;
    let mut x = Vec::with_capacity(open.len() * inputs);
    for &p in open {
        let (ex, c) = (p as usize / k, p as usize % k);
        let m = &masks[c * players + offset..][..inputs];
        x.extend(
            h[ex * inputs..][..inputs]
                .iter()
                .zip(m)
                .map(|(&v, &m)| v * m),
        );
    }
    let rows = open.len();
    let (mut x, mut width) = (first.reference_forward(&x, rows), first.out);
    for step in chain {
        match step {
            RowStep::Mask { offset, units } => {
                for (row, &p) in x.chunks_mut(width).zip(open) {
                    let c = p as usize % k;
                    for (v, &m) in row.iter_mut().zip(&masks[c * players + offset..][..*units]) {
                        *v *= m;
                    }
                }
            }
            RowStep::Dense(layer) => {
                x = layer.reference_forward(&x, rows);
                width = layer.out;
            }
        }
    }
    for (row, &p) in x.chunks(width.max(1)).zip(open) {
        correct[p as usize] = argmax(row) as i64 == labels[p as usize / k];
    }
    Ok(())
}

/// libtorch's argmax of a row: the first largest value, NaN above every number (the first
/// NaN).
fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (j, &v) in row.iter().enumerate().skip(1) {
        let b = row[best];
        if !b.is_nan() && (v.is_nan() || v > b) {
            best = j;
        }
    }
    best
}

/// Per-coalition totals, and the pairs decided and recomputed.
type CertifiedTotals = (Vec<f64>, (u64, u64));

/// Correct answers per coalition (`masks`: `[K, players]`) on `features` (the activations at
/// the suffix's first gate) with labels `labels`, on the row kernels from the first masked
/// layer's fast pre-activation and its unmasked bound `start_bound`
/// ([`MaskedSuffix::start_bound`]); also the pairs decided and recomputed. `None` where the
/// suffix is not a dense chain ([`MaskedSuffix::row_chain`]). `exact_zeros`: the features are
/// finite and the first product cannot overflow, so that a unit the next gate masks is an
/// exact zero downstream and its product is skipped ([`MaskedSuffix::fast_kept_preactivation`]).
pub(crate) fn certified_values(
    head: &MaskedSuffix,
    (features, labels): (&Tensor, &Tensor),
    masks: &Tensor,
    (start_bound, exact_zeros): (&Tensor, bool),
) -> Result<Option<CertifiedTotals>, NnError> {
    let (h, Some(first)) = head.unmasked_start(features) else {
        return Ok(None);
    };
    let Some(row_chain) = head.row_chain(first) else {
        return Ok(None);
    };
    let (layer, chain) = &*row_chain;
    let (e, k) = (h.size()[0] as usize, masks.size()[0] as usize);
    let mask_values =
        Vec::<f32>::try_from(masks.to_kind(tch::Kind::Float).contiguous().view([-1]))?;
    let kept = match exact_zeros {
        true => head.fast_kept_preactivation(&h, first, masks, &mask_values),
        false => None,
    };
    let (z, kept) = match kept {
        Some((z, kept)) => (z, Some(kept)),
        None => (
            head.first_masked_preactivation(&h, first, masks, true),
            None,
        ),
    };
    let error = crate::certify::after_rank_one_updates(start_bound, h.size()[1], 0);
    let labels_of = Vec::<i64>::try_from(labels.to_kind(tch::Kind::Int64))?;
    let rows = Rows {
        z: &z.contiguous(),
        kept: kept.as_ref(),
        raw: &error.raw().contiguous(),
        masks: &mask_values,
        players: masks.size()[1] as usize,
        labels: &labels_of,
        k,
    };
    let pairs: Vec<i64> = (0..(e * k) as i64).collect();
    let mut correct = vec![false; e * k];
    let open = Tile::default().run(
        &rows,
        &pairs,
        (layer, chain),
        error.allowances(),
        &mut correct,
    );
    recompute_open(head, (features, labels), masks, &open, &mut correct)?;
    Ok(Some((
        totals_of(&correct, k),
        ((e * k) as u64, open.len() as u64),
    )))
}

#[cfg(test)]
mod tests {
    use tch::{Device, Kind, Tensor};

    /// Every pair recomputed on slices answers as the tensor reference path does (a NaN
    /// example and duplicated logits included).
    #[test]
    fn reference_on_rows_answers_as_the_tensor_path() {
        let _guard = tch::no_grad_guard();
        for arch in [crate::Arch::Lenet300100, crate::Arch::Mlp3x256] {
            let net = crate::Network::new(arch, Device::Cpu, 3);
            let inputs =
                crate::with_torch_rng(4, || Tensor::randn([40, 784], (Kind::Float, Device::Cpu)));
            let _ = inputs.get(5).narrow(0, 0, 3).fill_(f64::NAN);
            let _ = inputs.get(6).fill_(0.0);
            let labels =
                crate::with_torch_rng(5, || Tensor::randint(10, [40], (Kind::Int64, Device::Cpu)));
            let head = net.masked_suffix(0);
            let features = net.activations_at(&inputs, 0);
            let players = net.num_players() as i64;
            let masks = crate::with_torch_rng(6, || {
                Tensor::rand([7, players], (Kind::Float, Device::Cpu))
                    .gt(0.4)
                    .to_kind(Kind::Float)
            });
            assert!(
                head.reference_rows(&features).is_some(),
                "{arch}: the slice path applies"
            );
            let open: Vec<i64> = (0..40 * 7).collect();
            let mut on_rows = vec![false; open.len()];
            super::recompute_open(&head, (&features, &labels), &masks, &open, &mut on_rows)
                .unwrap();
            let pairs = Tensor::from_slice(&open);
            let (ex, c) = (pairs.divide_scalar_mode(7, "floor"), pairs.remainder(7));
            let logits = head
                .paired_logits(&features.index_select(0, &ex), &masks.index_select(0, &c))
                .unwrap();
            let tensor_path = Vec::<bool>::try_from(
                logits
                    .argmax(-1, false)
                    .eq_tensor(&labels.index_select(0, &ex)),
            )
            .unwrap();
            assert_eq!(on_rows, tensor_path, "{arch}");
        }
    }

    /// The slice path's argmax takes libtorch's: ties to the first, NaN above every number.
    #[test]
    fn argmax_is_libtorchs() {
        let nan = f32::NAN;
        for row in [
            vec![1.0, 3.0, 3.0, 2.0],
            vec![-0.0, 0.0],
            vec![0.0, -0.0],
            vec![1.0, nan, 5.0, nan],
            vec![nan, 7.0],
            vec![f32::NEG_INFINITY, f32::NEG_INFINITY],
            vec![2.0, f32::INFINITY, f32::INFINITY],
            vec![4.0],
        ] {
            let torch = tch::Tensor::from_slice(&row)
                .argmax(0, false)
                .int64_value(&[]);
            assert_eq!(super::argmax(&row) as i64, torch, "{row:?}");
        }
    }
}
