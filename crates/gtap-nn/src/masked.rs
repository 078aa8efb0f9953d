//! Coalition evaluation: the layers after a player layer's gate, run for many coalitions at
//! once ([`MaskedSuffix`], [`MaskedHead`]).

use tch::Tensor;

use crate::model::{gate_columns, ConvBlock, Gate, PlayerLayer};
use crate::NnError;

/// The dense layers of a [`Network`] with their masks: what coalition evaluation needs.
#[derive(Debug)]
pub struct MaskedHead {
    layers: Vec<(Tensor, Option<Tensor>)>,
    players: Vec<PlayerLayer>,
    mask_before: Vec<Option<Gate>>,
}

impl MaskedHead {
    pub(crate) fn new(
        layers: Vec<(Tensor, Option<Tensor>)>,
        players: Vec<PlayerLayer>,
        mask_before: Vec<Option<Gate>>,
    ) -> MaskedHead {
        MaskedHead {
            layers,
            players,
            mask_before,
        }
    }

    /// Another handle on the same weights (no copy), for another thread.
    pub fn shallow_clone(&self) -> MaskedHead {
        MaskedHead {
            layers: self
                .layers
                .iter()
                .map(|(w, b)| (w.shallow_clone(), b.as_ref().map(Tensor::shallow_clone)))
                .collect(),
            players: self.players.clone(),
            mask_before: self.mask_before.clone(),
        }
    }

    pub(crate) fn check_masks(&self, masks: &Tensor) -> Result<(), NnError> {
        let width = masks.size()[1] as usize;
        if width != self.players.iter().map(|l| l.size).sum::<usize>() {
            return Err(NnError::MaskWidth {
                got: width,
                expected: self.players.iter().map(|l| l.size).sum::<usize>(),
            });
        }
        Ok(())
    }

    /// Logits `[E, K, C]` of `K` coalitions (`masks`: `[K, players]`, 1.0 = present) on the prefix
    /// outputs `features` (`[E, n0]`) of `E` examples. The first mask is folded into the next
    /// weight matrix, so the first layer is one GEMM `[E, n0] × [n0, K·m]`; later layers keep
    /// the `[E, K, ·]` layout, which folds into plain GEMMs too.
    pub fn masked_logits(&self, features: &Tensor, masks: &Tensor) -> Result<Tensor, NnError> {
        self.check_masks(masks)?;
        let k = masks.size()[0];
        let e = features.size()[0];
        let (h, first) = self.unmasked_start(features);
        let Some(first) = first else {
            // No player layer at all: every coalition sees the same network.
            return Ok(h.unsqueeze(1).expand([e, k, -1], false));
        };
        let z = self.first_masked_preactivation(&h, first, masks);
        Ok(self.logits_from(first, z, masks))
    }

    /// The head up to the input of its first masked layer (the same for every coalition), and
    /// that layer's index (`None`: no layer is masked, the result is the logits).
    pub(crate) fn unmasked_start(&self, features: &Tensor) -> (Tensor, Option<usize>) {
        let last = self.layers.len() - 1;
        let mut h = features.shallow_clone();
        for (i, (w, bias)) in self.layers.iter().enumerate() {
            if self.mask_before[i].is_some() {
                return (h, Some(i));
            }
            h = h.matmul(&w.tr());
            if let Some(b) = bias {
                h = h + b;
            }
            if i < last {
                h = h.relu();
            }
        }
        (h, None)
    }

    /// Pre-activation (before the bias) `[E, K, out]` of masked layer `i` for `K` coalitions,
    /// from its unmasked input `h` (`[E, in]`): `(h ⊙ m) Wᵀ = h (W ⊙ m)ᵀ`, the `K` masked matrices
    /// stacked as `[in, K·out]`, one GEMM.
    pub(crate) fn first_masked_preactivation(
        &self,
        h: &Tensor,
        i: usize,
        masks: &Tensor,
    ) -> Tensor {
        let (w, _) = &self.layers[i];
        let (k, e) = (masks.size()[0], h.size()[0]);
        let (out_dim, in_dim) = (w.size()[0], w.size()[1]);
        let m = self.layer_mask(i, masks); // [K, in]
        let wm = (w.unsqueeze(0) * m.unsqueeze(1))
            .permute([2, 0, 1])
            .reshape([in_dim, k * out_dim]);
        h.matmul(&wm).view([e, k, out_dim])
    }

    /// Logits `[E, K, C]` from the pre-activation `z` (`[E, K, out]`, before the bias) of masked
    /// layer `i`: its bias and activation, then every later layer under `masks`.
    pub(crate) fn logits_from(&self, i: usize, z: Tensor, masks: &Tensor) -> Tensor {
        self.run_expanded(i, z, true, masks)
    }

    /// Layers `start..` on `[E, K, ·]` activations under `masks`; when `preactivated`, `h` is
    /// already layer `start`'s product with its weights (its bias and ReLU still to come).
    fn run_expanded(&self, start: usize, h: Tensor, preactivated: bool, masks: &Tensor) -> Tensor {
        let last = self.layers.len() - 1;
        let mut h = h;
        for (j, (w, bias)) in self.layers.iter().enumerate().skip(start) {
            if j > start || !preactivated {
                h = match self.mask_before[j] {
                    Some(_) => (h * self.layer_mask(j, masks).unsqueeze(0)).matmul(&w.tr()),
                    None => h.matmul(&w.tr()),
                };
            }
            if let Some(b) = bias {
                h = h + b;
            }
            if j < last {
                h = h.relu();
            }
        }
        h
    }

    /// The widest layer input or output, in floats per (example, coalition) pair.
    pub(crate) fn widest(&self) -> i64 {
        self.layers
            .iter()
            .map(|(w, _)| w.size()[0].max(w.size()[1]))
            .max()
            .unwrap_or(1)
    }

    /// The player layer whose units mask head layer `i`'s input.
    fn masking_players(&self, i: usize) -> &PlayerLayer {
        &self.players[self.mask_before[i].expect("a masked layer").layer]
    }

    /// The mask of layer `i`'s inputs: the columns of `masks` (`[K, players]`) of the player
    /// layer masking it, each repeated over the inputs it covers.
    fn layer_mask(&self, i: usize, masks: &Tensor) -> Tensor {
        let g = self.mask_before[i].expect("a masked layer");
        gate_columns(&self.players[g.layer], g.spread, masks)
    }

    /// Whether every gate covers one input per unit (walks' rank-one updates assume it).
    pub(crate) fn one_input_per_unit(&self) -> bool {
        self.mask_before.iter().flatten().all(|g| g.spread == 1)
    }

    /// Logits `[E, K, C]` from inputs `h` (`[E, K, in]`) that already differ per coalition:
    /// every layer under `masks`.
    pub(crate) fn logits_expanded(&self, h: Tensor, masks: &Tensor) -> Tensor {
        self.run_expanded(0, h, false, masks)
    }

    /// Weight `[out, in]` of head layer `i` and the player offset of the units masking its input.
    pub(crate) fn masked_weight(&self, i: usize) -> (&Tensor, usize) {
        (&self.layers[i].0, self.masking_players(i).offset)
    }

    /// Logits `[K, C]` for `K` (example, coalition) pairs: row `j` of `features` under mask row
    /// `j` (MCUE's trials, each on its own example).
    pub fn paired_logits(&self, features: &Tensor, masks: &Tensor) -> Result<Tensor, NnError> {
        self.check_masks(masks)?;
        let mut h = features.shallow_clone();
        let last = self.layers.len() - 1;
        for (i, (w, bias)) in self.layers.iter().enumerate() {
            if self.mask_before[i].is_some() {
                h = h * self.layer_mask(i, masks);
            }
            h = h.matmul(&w.tr());
            if let Some(b) = bias {
                h = h + b;
            }
            if i < last {
                h = h.relu();
            }
        }
        Ok(h)
    }
}

/// The layers after one player layer's gate, with their masks: conv blocks (AlexNet's, when the
/// game starts at a conv layer) and then the dense head. What coalition evaluation needs.
#[derive(Debug)]
pub struct MaskedSuffix {
    /// Conv blocks from the one consuming the start layer (empty when the head consumes it).
    trunk: Vec<ConvBlock>,
    head: MaskedHead,
    /// The player layer whose gate the suffix starts at.
    start: usize,
}

impl MaskedSuffix {
    pub(crate) fn new(trunk: Vec<ConvBlock>, head: MaskedHead, start: usize) -> MaskedSuffix {
        MaskedSuffix { trunk, head, start }
    }

    /// Another handle on the same weights (no copy), for another thread.
    pub fn shallow_clone(&self) -> MaskedSuffix {
        MaskedSuffix {
            trunk: self.trunk.iter().map(ConvBlock::shallow_clone).collect(),
            head: self.head.shallow_clone(),
            start: self.start,
        }
    }

    /// The dense head, when the suffix is nothing else (walks update its first layer).
    pub(crate) fn head_only(&self) -> Option<&MaskedHead> {
        self.trunk.is_empty().then_some(&self.head)
    }

    pub(crate) fn players(&self) -> &[PlayerLayer] {
        &self.head.players
    }

    /// The player layer the suffix starts at.
    pub fn start(&self) -> usize {
        self.start
    }

    /// Floats one (example, coalition) pair occupies at the widest point of the suffix, from
    /// features of shape `feature_shape` (`[E, …]`): the largest activation or im2col buffer.
    pub(crate) fn floats_per_pair(&self, feature_shape: &[i64]) -> i64 {
        let mut widest = self.head.widest();
        if let [_, c, side, _] = *feature_shape {
            let (mut c, mut side) = (c, side);
            for b in &self.trunk {
                let (o, _, k, _) = b.weight.size4().expect("a conv weight");
                let conv = b.plan.conv_side(side);
                widest = widest.max(c * k * k * conv * conv).max(o * conv * conv);
                (c, side) = (o, b.plan.output_side(side));
            }
        }
        widest
    }

    /// Logits `[E, K, C]` of `K` coalitions (`masks`: `[K, players]`, 1.0 = present) on the
    /// activations `features` (`[E, …]`) at the start layer's gate (every player of earlier
    /// layers present). The first layer folds the masks into its weights (`K` masked weight
    /// sets, one GEMM or one convolution over the shared input); later layers run on the
    /// `[E·K, …]` activations.
    pub fn masked_logits(&self, features: &Tensor, masks: &Tensor) -> Result<Tensor, NnError> {
        let Some((first, rest)) = self.trunk.split_first() else {
            return self.head.masked_logits(features, masks);
        };
        self.head.check_masks(masks)?;
        let (k, e) = (masks.size()[0], features.size()[0]);
        let gate = first
            .gate_in
            .expect("the first block consumes the start layer");
        let m = gate_columns(&self.head.players[gate.layer], gate.spread, masks); // [K, C]
        let (o, c, kh, kw) = first.weight.size4().expect("a conv weight");
        let weight = (first.weight.unsqueeze(0) * m.view([k, 1, c, 1, 1])).view([k * o, c, kh, kw]);
        let bias = first.bias.as_ref().map(|b| b.repeat([k]));
        let folded = ConvBlock {
            weight,
            bias,
            ..first.shallow_clone()
        };
        let h = folded.forward(features); // [E, K·O, H, W]
        let (side_h, side_w) = (h.size()[2], h.size()[3]);
        let mut h = h.view([e * k, o, side_h, side_w]);
        for block in rest {
            let g = block.gate_in.expect("every later block is gated");
            let m = gate_columns(&self.head.players[g.layer], g.spread, masks);
            let size = h.size();
            h = (h.view([e, k, size[1], size[2], size[3]]) * m.view([1, k, size[1], 1, 1])).view([
                e * k,
                size[1],
                size[2],
                size[3],
            ]);
            h = block.forward(&h);
        }
        Ok(self.head.logits_expanded(h.view([e, k, -1]), masks))
    }

    /// Logits `[K, C]` for `K` (example, coalition) pairs: row `j` of `features` under mask row
    /// `j` (MCUE's trials, each on its own example).
    pub fn paired_logits(&self, features: &Tensor, masks: &Tensor) -> Result<Tensor, NnError> {
        if self.trunk.is_empty() {
            return self.head.paired_logits(features, masks);
        }
        self.head.check_masks(masks)?;
        let mut h = features.shallow_clone();
        for block in &self.trunk {
            let g = block.gate_in.expect("every block of a suffix is gated");
            let m = gate_columns(&self.head.players[g.layer], g.spread, masks);
            h = block.forward(&(h * m.view([m.size()[0], -1, 1, 1])));
        }
        self.head.paired_logits(&h.flatten(1, -1), masks)
    }
}
