//! Coalition evaluation: the steps of a network from a player layer's gate on, run for many
//! coalitions at once ([`MaskedSuffix`]).

use tch::Tensor;

use crate::layers::{Coalitions, Dense, DenseRows, Gate, Layer, LayerSpec, Step};
use crate::model::PlayerLayer;
use crate::NnError;

/// One step of [`MaskedSuffix::row_chain`].
#[derive(Debug)]
pub(crate) enum RowStep {
    /// Multiply each row by its coalition's mask columns `offset..offset + units`.
    Mask {
        offset: usize,
        units: usize,
    },
    Dense(DenseRows),
}

/// The steps after one player layer's gate (that gate first), with the network's player
/// layout: what coalition evaluation needs. Each layer runs its own `K`-coalition path
/// ([`crate::layers`]); the first weighted layer after the start folds the masks into its
/// weights (`K` masked weight sets, one GEMM or one convolution over the shared input), later
/// ones run on the `[E·K, …]` activations.
#[derive(Debug)]
pub struct MaskedSuffix {
    steps: Vec<Step>,
    /// Per-example input shape of every step.
    shapes: Vec<Vec<i64>>,
    players: Vec<PlayerLayer>,
    /// The player layer whose gate the suffix starts at.
    start: usize,
    /// Pairs its certified paired path decided and handed back, shared by its handles.
    paired_record: std::sync::Arc<[std::sync::atomic::AtomicU64; 2]>,
    /// [`MaskedSuffix::row_chain`] from the first gate, built once and shared by its handles
    /// (the weights of a suffix do not change: its evaluator ran the prefix once too).
    first_chain: std::sync::Arc<std::sync::OnceLock<Option<std::sync::Arc<RowChain>>>>,
}

/// The units each coalition keeps at one gate (mask value not 0): coalition `c`'s are
/// [`KeptPerCoalition::of_coalition`], ascending. Read by the first layer's product, which
/// computes only the units the next gate keeps, and by the row kernels, which read only those.
#[derive(Debug)]
pub(crate) struct KeptPerCoalition {
    offsets: Vec<usize>,
    units: Vec<u32>,
}

impl KeptPerCoalition {
    /// From `mask_values` (`[K, players]`, row-major), at the gate covering players
    /// `offset..offset + units`.
    pub(crate) fn of(mask_values: &[f32], players: usize, (offset, units): (usize, usize)) -> Self {
        let mut kept = KeptPerCoalition {
            offsets: vec![0],
            units: Vec::new(),
        };
        for row in mask_values.chunks(players.max(1)) {
            let m = &row[offset..][..units];
            kept.units
                .extend((0..units as u32).filter(|&u| m[u as usize] != 0.0));
            kept.offsets.push(kept.units.len());
        }
        kept
    }

    pub(crate) fn of_coalition(&self, c: usize) -> &[u32] {
        &self.units[self.offsets[c]..self.offsets[c + 1]]
    }

    /// Where coalition `c`'s units start among all coalitions' (the columns of a product
    /// computing them side by side).
    pub(crate) fn start_of(&self, c: usize) -> usize {
        self.offsets[c]
    }

    /// The units of every coalition, side by side.
    pub(crate) fn total(&self) -> usize {
        self.units.len()
    }
}

/// The suffix from a gate's consumer on as row kernels ([`MaskedSuffix::row_chain`]): that
/// dense layer, then masks and dense layers.
pub(crate) type RowChain = (DenseRows, Vec<RowStep>);

impl MaskedSuffix {
    pub(crate) fn new(
        steps: Vec<Step>,
        shapes: Vec<Vec<i64>>,
        players: Vec<PlayerLayer>,
        start: usize,
    ) -> MaskedSuffix {
        MaskedSuffix {
            steps,
            shapes,
            players,
            start,
            paired_record: Default::default(),
            first_chain: Default::default(),
        }
    }

    /// Another handle on the same weights (no copy), for another thread.
    pub fn shallow_clone(&self) -> MaskedSuffix {
        MaskedSuffix {
            steps: self.steps.iter().map(Step::shallow_clone).collect(),
            shapes: self.shapes.clone(),
            players: self.players.clone(),
            start: self.start,
            paired_record: self.paired_record.clone(),
            first_chain: self.first_chain.clone(),
        }
    }

    pub(crate) fn players(&self) -> &[PlayerLayer] {
        &self.players
    }

    /// The player layer the suffix starts at.
    pub fn start(&self) -> usize {
        self.start
    }

    /// Whether the suffix is dense layers and gates only (incremental walks update its first
    /// dense layer; coalition chunks are sized by its player layers).
    pub(crate) fn dense_only(&self) -> bool {
        self.steps.iter().all(|s| match s {
            Step::Gate(_) => true,
            Step::Layer(l) => matches!(
                l.spec(),
                LayerSpec::Dense(_) | LayerSpec::Flatten | LayerSpec::Select { .. }
            ),
            Step::Save | Step::Add => false,
        })
    }

    pub(crate) fn check_masks(&self, masks: &Tensor) -> Result<(), NnError> {
        let width = masks.size()[1] as usize;
        let expected = self.players.iter().map(|l| l.size).sum::<usize>();
        if width != expected {
            return Err(NnError::MaskWidth {
                got: width,
                expected,
            });
        }
        Ok(())
    }

    /// The mask of gate `g`'s activations: the columns of `masks` (`[K, players]`) of its
    /// player layer, each repeated over the activations it covers.
    fn gate_mask(&self, g: &Gate, masks: &Tensor) -> Tensor {
        g.columns(&self.players[g.players], masks)
    }

    /// Floats one (example, coalition) pair occupies at the widest point of the suffix: the
    /// largest activation or im2col buffer.
    pub(crate) fn floats_per_pair(&self) -> i64 {
        self.steps
            .iter()
            .zip(&self.shapes)
            .filter_map(|(s, shape)| s.layer().map(|l| l.floats_per_pair(shape)))
            .max()
            .unwrap_or(1)
            .max(1)
    }

    /// Runs steps `from..` on `x` under `masks`.
    fn run(&self, from: usize, mut x: Coalitions, masks: &Tensor) -> Coalitions {
        let mut saved = Vec::new();
        for step in &self.steps[from..] {
            x = match step {
                Step::Gate(g) => g.coalitions(x, self.gate_mask(g, masks)),
                Step::Layer(layer) => layer.forward_coalitions(x),
                Step::Save => {
                    saved.push(x.shallow_clone());
                    x
                }
                Step::Add => Coalitions::add(saved.pop().expect("a block's start"), x),
            };
        }
        x
    }

    /// Logits `[E, K, C]` of `K` coalitions (`masks`: `[K, players]`, 1.0 = present) on the
    /// activations `features` (`[E, …]`) at the start layer's gate (every player of earlier
    /// layers present).
    pub fn masked_logits(&self, features: &Tensor, masks: &Tensor) -> Result<Tensor, NnError> {
        self.check_masks(masks)?;
        let shared = Coalitions::Shared {
            h: features.shallow_clone(),
            pending: None,
            k: masks.size()[0],
        };
        Ok(self.run(0, shared, masks).into_logits())
    }

    /// Logits `[K, C]` for `K` (example, coalition) pairs: row `j` of `features` under mask row
    /// `j` (MCUE's trials, each on its own example).
    pub fn paired_logits(&self, features: &Tensor, masks: &Tensor) -> Result<Tensor, NnError> {
        self.run_paired(features, masks, |layer, h| layer.forward_paired(h))
    }

    /// [`MaskedSuffix::paired_logits`] by the layers' training forward (libtorch's kernels,
    /// differentiable with respect to `masks` and `features`; not the reference's bytes): the
    /// gate gradients of [`crate::linearise`].
    pub(crate) fn differentiable_paired_logits(
        &self,
        features: &Tensor,
        masks: &Tensor,
    ) -> Result<Tensor, NnError> {
        self.run_paired(features, masks, |layer, h| layer.forward(h))
    }

    /// The steps on (example, coalition) pairs, each layer by `forward`.
    fn run_paired(
        &self,
        features: &Tensor,
        masks: &Tensor,
        forward: impl Fn(&dyn Layer, &Tensor) -> Tensor,
    ) -> Result<Tensor, NnError> {
        self.check_masks(masks)?;
        let mut h = features.shallow_clone();
        let mut saved = Vec::new();
        for step in &self.steps {
            h = match step {
                Step::Gate(g) => g.paired(&h, &self.gate_mask(g, masks)),
                Step::Layer(layer) => forward(layer.as_ref(), &h),
                Step::Save => {
                    saved.push(h.shallow_clone());
                    h
                }
                Step::Add => saved.pop().expect("a block's start") + h,
            };
        }
        Ok(h)
    }

    /// (pairs decided, pairs handed back to the reference) by [`MaskedSuffix::paired_correct`]'s
    /// certified path so far, over every handle on this suffix.
    pub fn paired_certification(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        let [decided, handed_back] = &*self.paired_record;
        (decided.load(Relaxed), handed_back.load(Relaxed))
    }

    /// Per pair (row `j` of `features` under mask row `j`, label `labels[j]`): whether the
    /// argmax is the label (MCUE's correctness trials). The reference path's answers; computed
    /// by the certified path ([`crate::certify`]) where it applies, the pairs its bound leaves
    /// open recomputed by [`MaskedSuffix::paired_logits`].
    pub fn paired_correct(
        &self,
        features: &Tensor,
        masks: &Tensor,
        labels: &Tensor,
    ) -> Result<Vec<bool>, NnError> {
        self.check_masks(masks)?;
        let reference = |features: &Tensor, masks: &Tensor, labels: &Tensor| {
            let logits = self.paired_logits(features, masks)?;
            Ok::<_, NnError>(Vec::<bool>::try_from(
                logits
                    .argmax(-1, false)
                    .eq_tensor(labels)
                    .to_device(tch::Device::Cpu),
            )?)
        };
        // As an evaluator does: once the bound has handed most pairs back (a deep suffix),
        // the reference runs alone (the same answers either way).
        use std::sync::atomic::Ordering::Relaxed;
        let [decided, handed_back] = &*self.paired_record;
        let loose =
            decided.load(Relaxed) >= 1_000 && handed_back.load(Relaxed) * 2 > decided.load(Relaxed);
        let certified = (!loose && crate::certify::applies_to(features))
            .then(|| self.certified_paired_logits(features, masks))
            .flatten();
        let Some((logits, bound)) = certified else {
            return reference(features, masks, labels);
        };
        let decisions = crate::certify::decide(&logits.unsqueeze(1), &bound.unsqueeze(1), labels)?;
        let mut correct = decisions.correct;
        let open: Vec<i64> = (0..correct.len() as i64)
            .filter(|&p| !decisions.certain[p as usize])
            .collect();
        decided.fetch_add(correct.len() as u64, Relaxed);
        handed_back.fetch_add(open.len() as u64, Relaxed);
        if !open.is_empty() {
            let rows = Tensor::from_slice(&open);
            let answers = reference(
                &features.index_select(0, &rows),
                &masks.index_select(0, &rows),
                &labels.index_select(0, &rows),
            )?;
            for (p, answer) in open.into_iter().zip(answers) {
                correct[p as usize] = answer;
            }
        }
        Ok(correct)
    }

    /// [`MaskedSuffix::paired_logits`] by fast kernels, and per pair the bound `[P, C]` on the
    /// distance of those logits and of the reference path's from their exact values;
    /// `None` when some step has no bound.
    pub(crate) fn certified_paired_logits(
        &self,
        features: &Tensor,
        masks: &Tensor,
    ) -> Option<(Tensor, Tensor)> {
        if !self.certifiable() {
            return None;
        }
        let p = features.size()[0];
        let each = |h| Coalitions::Each {
            h,
            e: p,
            k: 1,
            rows: false,
        };
        let (x, error) = (each(features.shallow_clone()), each(features.zeros_like()));
        self.run_certified_paired(0, x, error, masks)
    }

    /// Steps `from..` of the certified path for pairs (row `j` under mask row `j`).
    fn run_certified_paired(
        &self,
        from: usize,
        mut x: Coalitions,
        mut error: Coalitions,
        masks: &Tensor,
    ) -> Option<(Tensor, Tensor)> {
        let p = masks.size()[0];
        let each = |h| Coalitions::Each {
            h,
            e: p,
            k: 1,
            rows: false,
        };
        for step in &self.steps[from..] {
            match step {
                Step::Gate(g) => {
                    let m = self.gate_mask(g, masks);
                    let (Coalitions::Each { h, .. }, Coalitions::Each { h: err, .. }) = (x, error)
                    else {
                        unreachable!("pairs stay one row each")
                    };
                    (x, error) = (each(g.paired(&h, &m)), each(g.paired(&err, &m)));
                }
                Step::Layer(layer) => (x, error) = layer.forward_certified(x, error, None)?,
                Step::Save | Step::Add => return None,
            }
        }
        let (Coalitions::Each { h, .. }, Coalitions::Each { h: err, .. }) = (x, error) else {
            unreachable!("pairs stay one row each")
        };
        // One row of logits per pair (a flattened feature map arrives as rows `[P, 1, C]`).
        Some((h.reshape([p, -1]), err.reshape([p, -1])))
    }

    /// Whether every step has a bound ([`crate::certify`]).
    pub(crate) fn certifiable(&self) -> bool {
        self.steps.iter().all(|s| match s {
            Step::Gate(_) => true,
            Step::Layer(l) => l.certifiable(),
            Step::Save | Step::Add => false,
        })
    }

    /// Logits `[E, K, C]` as [`MaskedSuffix::masked_logits`] computes them, by fast kernels,
    /// and per (example, coalition) a bound `[E, K, C]` on the distance of those logits and of
    /// the reference path's from their exact values, given the exact activations `features`
    /// at the start gate ([`crate::certify`]); `None` when some step has no bound.
    ///
    /// `start_bound`: [`MaskedSuffix::start_bound`] of these examples, where the caller keeps
    /// it between calls.
    pub(crate) fn certified_logits(
        &self,
        features: &Tensor,
        masks: &Tensor,
        start_bound: Option<&Tensor>,
    ) -> Option<(Tensor, Tensor)> {
        if !self.certifiable() {
            return None;
        }
        let k = masks.size()[0];
        let shared = |h| Coalitions::Shared {
            h,
            pending: None,
            k,
        };
        // The inputs are exact: no error. Where the first layer's bound is known, it is the
        // only reader of this error, and a zero-stride view serves (no fill).
        let error = match start_bound {
            Some(_) => Tensor::zeros([1], (tch::Kind::Float, features.device()))
                .expand(features.size(), false),
            None => features.zeros_like(),
        };
        self.run_certified(
            0,
            shared(features.shallow_clone()),
            shared(error),
            masks,
            start_bound,
        )
    }

    /// Runs steps `from..` of the certified path on `x` and its bound `error` under `masks`
    /// (`start_bound`: the known bound of step 1's product, as in
    /// [`MaskedSuffix::certified_logits`]); the logits and their bound, `None` when some step
    /// has no bound.
    fn run_certified(
        &self,
        from: usize,
        mut x: Coalitions,
        mut error: Coalitions,
        masks: &Tensor,
        start_bound: Option<&Tensor>,
    ) -> Option<(Tensor, Tensor)> {
        for (i, step) in self.steps.iter().enumerate().skip(from) {
            match step {
                Step::Gate(g) => {
                    let m = self.gate_mask(g, masks);
                    (x, error) = match (x, error) {
                        // A dense layer's rows: both masked in one pass, in place.
                        (
                            Coalitions::Each {
                                h,
                                e,
                                k,
                                rows: true,
                            },
                            Coalitions::Each { h: err, .. },
                        ) => {
                            let (h, err) = crate::certify::mask_rows(h, err, &m);
                            let each = |h| Coalitions::Each {
                                h,
                                e,
                                k,
                                rows: true,
                            };
                            (each(h), each(err))
                        }
                        (x, error) => (g.coalitions(x, m.shallow_clone()), g.coalitions(error, m)),
                    };
                }
                Step::Layer(layer) => {
                    // The first gate's consumer folds its masks: its bound may be known.
                    let known = start_bound.filter(|_| i == 1);
                    (x, error) = layer.forward_certified(x, error, known)?;
                }
                Step::Save | Step::Add => return None,
            }
        }
        Some((x.into_logits(), error.into_logits()))
    }

    /// The bound on the product of the layer consuming the first gate, from the exact
    /// activations `features` there (`[E, out]`, per example): the same for every coalition
    /// (masking only removes terms), so an evaluator computes it once. `None` where that
    /// layer is not a certifiable dense one.
    pub(crate) fn start_bound(&self, features: &Tensor) -> Option<Tensor> {
        let (Some(Step::Gate(_)), Some(Step::Layer(layer))) =
            (self.steps.first(), self.steps.get(1))
        else {
            return None;
        };
        let dense = layer.as_any().downcast_ref::<Dense>()?;
        (self.certifiable() && features.dim() == 2).then(|| dense.shared_product_bound(features))
    }

    // Incremental walks (walks.rs): the first gate's consumer is a dense layer whose
    // pre-activation is updated by rank-one steps.

    /// The activations at the suffix's first gate, run through any layers before it (the same
    /// for every coalition), and that gate's step (`None`: no gate, the result is the logits).
    pub(crate) fn unmasked_start(&self, features: &Tensor) -> (Tensor, Option<usize>) {
        let mut x = Coalitions::Shared {
            h: features.shallow_clone(),
            pending: None,
            k: 1,
        };
        for (i, step) in self.steps.iter().enumerate() {
            match step {
                Step::Gate(_) => {
                    let Coalitions::Shared { h, .. } = x else {
                        unreachable!("shared until the first gate")
                    };
                    return (h, Some(i));
                }
                Step::Layer(layer) => x = layer.forward_coalitions(x),
                Step::Save | Step::Add => unreachable!("walks run on dense suffixes"),
            }
        }
        let Coalitions::Shared { h, .. } = x else {
            unreachable!("shared without a gate")
        };
        (h, None)
    }

    /// The dense layer consuming the gate at step `gate`.
    fn consumer(&self, gate: usize) -> &Dense {
        let layer = self.steps[gate + 1].layer().expect("a gate's consumer");
        layer
            .as_any()
            .downcast_ref::<Dense>()
            .expect("incremental walks need a dense consumer")
    }

    /// Pre-activation (before the bias) `[E, K, out]` of the layer consuming gate step `gate`
    /// for `K` coalitions, from its unmasked input `h` (`[E, in]`): by the reference kernel, or
    /// by the fast one where `fast` (the certified path: only its bound matters).
    pub(crate) fn first_masked_preactivation(
        &self,
        h: &Tensor,
        gate: usize,
        masks: &Tensor,
        fast: bool,
    ) -> Tensor {
        let Step::Gate(g) = &self.steps[gate] else {
            unreachable!("a gate step")
        };
        let (layer, m) = (self.consumer(gate), self.gate_mask(g, masks));
        match fast {
            true => layer.fast_folded_preactivation(h, &m),
            false => layer.folded_preactivation(h, &m),
        }
    }

    /// [`MaskedSuffix::first_masked_preactivation`] by the fast kernel for only the units each
    /// coalition keeps at the next gate (`masks` as `mask_values`, row-major): `[E, N]`, the
    /// coalitions' kept units side by side ([`KeptPerCoalition`]). Units the next gate masks add
    /// exact zeros downstream wherever the inputs are finite and the first product cannot
    /// overflow (the caller's to know), so they need no product. `None` where no gate masks
    /// that layer's outputs one per unit.
    pub(crate) fn fast_kept_preactivation(
        &self,
        h: &Tensor,
        gate: usize,
        masks: &Tensor,
        mask_values: &[f32],
    ) -> Option<(Tensor, KeptPerCoalition)> {
        let (offset, units) = self.next_gate_units(gate)?;
        let Step::Gate(g) = &self.steps[gate] else {
            unreachable!("a gate step")
        };
        let kept = KeptPerCoalition::of(mask_values, masks.size()[1] as usize, (offset, units));
        let (mut unit_index, mut coalition_of) = (Vec::new(), Vec::new());
        for c in 0..masks.size()[0] as usize {
            for &u in kept.of_coalition(c) {
                unit_index.push(i64::from(u));
                coalition_of.push(c as i64);
            }
        }
        let z = self.consumer(gate).fast_folded_units(
            h,
            &self.gate_mask(g, masks),
            (&unit_index, &coalition_of),
        );
        Some((z, kept))
    }

    /// Logits `[E, K, C]` from the pre-activation `z` (`[E, K, out]`, before the bias) of the
    /// layer consuming gate step `gate`: its bias and activation, then every later step.
    pub(crate) fn logits_from(&self, gate: usize, z: Tensor, masks: &Tensor) -> Tensor {
        let (e, k) = (z.size()[0], z.size()[1]);
        let h = self.consumer(gate).finish(z);
        let rows = Coalitions::Each {
            h,
            e,
            k,
            rows: true,
        };
        self.run(gate + 2, rows, masks).into_logits()
    }

    /// [`MaskedSuffix::logits_from`] on the certified path: from a fast pre-activation `z`
    /// (`[E, K, out]`, before the bias; consumed: written in place) of the layer consuming the
    /// first gate and the bound on its distance from exact (rows `[E, out]`, each serving the
    /// example's `K` rows), the logits `[E, K, C]` by fast kernels and their bound
    /// ([`crate::certify`]); `None` when some later step has no bound.
    pub(crate) fn certified_logits_from(
        &self,
        gate: usize,
        z: Tensor,
        error: crate::certify::ProductError,
        masks: &Tensor,
    ) -> Option<(Tensor, Tensor)> {
        if !self.certifiable() {
            return None;
        }
        let (e, k) = (z.size()[0], z.size()[1]);
        let (h, err) = self.consumer(gate).finish_certified(z, error);
        let each = |h| Coalitions::Each {
            h,
            e,
            k,
            rows: true,
        };
        self.run_certified(gate + 2, each(h), each(err), masks, None)
    }

    /// The suffix from the layer consuming gate step `gate` on as row kernels
    /// ([`crate::layers::DenseRows`]): that layer, then masks and dense layers; `None` where
    /// some step is another kind, a gate covers several activations per unit, or a layer has
    /// no bound. Built once for the first gate.
    pub(crate) fn row_chain(&self, gate: usize) -> Option<std::sync::Arc<RowChain>> {
        let first_gate = self.steps.iter().position(|s| matches!(s, Step::Gate(_)));
        if first_gate != Some(gate) {
            return self.build_row_chain(gate).map(std::sync::Arc::new);
        }
        self.first_chain
            .get_or_init(|| self.build_row_chain(gate).map(std::sync::Arc::new))
            .clone()
    }

    fn build_row_chain(&self, gate: usize) -> Option<RowChain> {
        let first = self
            .steps
            .get(gate + 1)?
            .layer()?
            .as_any()
            .downcast_ref::<Dense>()?
            .rows()?;
        let mut width = first.out;
        let mut chain = Vec::new();
        for step in &self.steps[gate + 2..] {
            chain.push(match step {
                Step::Gate(g) => {
                    let pl = &self.players[g.players];
                    if g.spread != 1 || pl.size != width {
                        return None;
                    }
                    RowStep::Mask {
                        offset: pl.offset,
                        units: pl.size,
                    }
                }
                Step::Layer(l) => {
                    let dense = l.as_any().downcast_ref::<Dense>()?.rows()?;
                    if dense.inputs != width {
                        return None;
                    }
                    width = dense.out;
                    RowStep::Dense(dense)
                }
                Step::Save | Step::Add => return None,
            });
        }
        Some((first, chain))
    }

    /// Where the suffix is its first gate (one input per unit, over every feature) then a
    /// dense chain: that gate's player offset and the chain, on which the reference path runs
    /// on slices ([`crate::rows::recompute_open`]).
    pub(crate) fn reference_rows(
        &self,
        features: &Tensor,
    ) -> Option<(usize, std::sync::Arc<RowChain>)> {
        let Some(Step::Gate(g)) = self.steps.first() else {
            return None;
        };
        let pl = &self.players[g.players];
        let width = *features.size().last()?;
        (g.spread == 1 && features.dim() == 2 && pl.size as i64 == width)
            .then(|| self.row_chain(0).map(|chain| (pl.offset, chain)))
            .flatten()
    }

    /// The bias of the layer consuming gate step `gate` (empty: none).
    pub(crate) fn consumer_bias(&self, gate: usize) -> Result<Vec<f32>, NnError> {
        Ok(match self.consumer(gate).bias() {
            Some(b) => {
                Vec::<f32>::try_from(b.to_kind(tch::Kind::Float).to_device(tch::Device::Cpu))?
            }
            None => Vec::new(),
        })
    }

    /// The player range (offset, units) of the gate right after the layer consuming gate step
    /// `gate`, where that gate masks the layer's outputs one per unit; `None` otherwise.
    pub(crate) fn next_gate_units(&self, gate: usize) -> Option<(usize, usize)> {
        let Some(Step::Gate(g)) = self.steps.get(gate + 2) else {
            return None;
        };
        let pl = &self.players[g.players];
        let out = self.consumer(gate).weight().size()[0] as usize;
        (g.spread == 1 && pl.size == out).then_some((pl.offset, pl.size))
    }

    /// Weight `[out, in]` of the layer consuming gate step `gate` and the player offset of the
    /// units masking its input.
    pub(crate) fn masked_weight(&self, gate: usize) -> (&Tensor, usize) {
        let Step::Gate(g) = &self.steps[gate] else {
            unreachable!("a gate step")
        };
        (self.consumer(gate).weight(), self.players[g.players].offset)
    }

    /// Whether every gate covers one input per unit (walks' rank-one updates assume it).
    pub(crate) fn one_input_per_unit(&self) -> bool {
        self.steps
            .iter()
            .all(|s| !matches!(s, Step::Gate(g) if g.spread != 1))
    }
}
