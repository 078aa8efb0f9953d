//! The certified path on rows held in slices (issue 26): a dense suffix run on tiles of
//! [`TILE`] (example, coalition) rows that stay in the core's cache through every layer
//! ([`crate::layers::DenseRows`]: products and bound by [`crate::gemm`]'s kernel), each row
//! decided by [`crate::certify::decide_row`]; the rows its bound leaves open are recomputed by
//! the reference path ([`recompute_open`]). Incremental walks ([`crate::walks`]) and batched
//! evaluation ([`certified_values`]) run it from the first masked layer's fast pre-activation.

use tch::Tensor;

use crate::layers::DenseRows;
use crate::masked::{KeptUnits, MaskedSuffix, RowStep};
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
    pub kept: Option<&'a KeptUnits>,
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
                        let (from, to) = (kept.offsets[c], kept.offsets[c + 1]);
                        let width = kept.units.len();
                        let start = self.h.len();
                        self.h.resize(start + out, 0.0);
                        let row = &mut self.h[start..];
                        for (&u, &v) in kept.units[from..to].iter().zip(&z[ex * width + from..]) {
                            row[u] = v;
                        }
                    }
                }
                self.error.extend_from_slice(&raw[ex * out..][..out]);
            }
            first.finish(&mut self.h, &mut self.error, pad_tiny);
            let mut width = out;
            for step in chain {
                match step {
                    RowStep::Mask { offset, units } => {
                        for (i, &p) in part.iter().enumerate() {
                            let w = p as usize % rows.k;
                            let m = &rows.masks[w * rows.players + offset..][..*units];
                            for (row, _) in [(&mut self.h, 0), (&mut self.error, 1)] {
                                for (x, &keep) in row[i * width..][..width].iter_mut().zip(m) {
                                    *x *= keep;
                                }
                            }
                        }
                    }
                    RowStep::Dense(layer) => {
                        layer.forward(
                            (&self.h, &self.error),
                            (&mut self.z, &mut self.bound),
                            &mut self.reach,
                            n,
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
