//! The layer kinds a [`crate::Network`] is a sequence of, one file each, behind one interface
//! ([`Layer`]); and the [`Gate`]s between them, where a player layer's mask acts.
//!
//! What a layer kind knows lives in its file: its plain forward pass (training, evaluation,
//! gated evaluation, the exported model), its forward pass for `K` coalitions at once (the
//! masks folded into its weights where that is exact), its output shape, its cost in
//! parameters and FLOPs for kept inputs and outputs, and its serialisable [`LayerSpec`].
//! Whole-network operations (grouping θ_i, scaling and removing units, unit scores, costs)
//! are written once over the sequence, using only this interface.

mod conv;
mod dense;
mod flatten;
mod gate;
mod select;

use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

pub(crate) use conv::Conv;
pub use conv::ConvSpec;
pub(crate) use dense::Dense;
pub use dense::DenseSpec;
pub(crate) use flatten::Flatten;
pub(crate) use gate::Gate;
pub use gate::GateSpec;
pub(crate) use select::Select;

use crate::Cost;

/// One step of a network as `model.json`-style data: what [`crate::Arch`]'s presets produce
/// and a network is built from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum LayerSpec {
    /// A fully connected layer (ReLU after it or not).
    Dense(DenseSpec),
    /// Convolution, ReLU, then max-pooling.
    Conv(ConvSpec),
    /// `[N, C, H, W]` to `[N, C·H·W]`.
    Flatten,
    /// Where the units of the weighted layer before it become players: each unit's
    /// activation is multiplied by its player's gate.
    Gate(GateSpec),
    /// Features `index` of `[N, F]`, in that order (an exported model's kept features).
    Select { index: Vec<usize> },
}

/// Activations of `K` coalitions on `E` examples, as they flow through a masked suffix.
#[derive(Debug)]
pub(crate) enum Coalitions {
    /// The same activations for every coalition (`[E, …]`); `pending` is a gate's mask
    /// (`[K, width]`) not applied yet: the next weighted layer folds it into its weights.
    Shared {
        h: Tensor,
        pending: Option<Tensor>,
        k: i64,
    },
    /// Activations per (example, coalition): rows `[E, K, n]` or feature maps
    /// `[E·K, C, H, W]`.
    Each { h: Tensor, e: i64, k: i64 },
}

impl Coalitions {
    /// The logits `[E, K, C]` at the end of a suffix.
    pub fn into_logits(self) -> Tensor {
        match self {
            Coalitions::Shared { h, pending, k } => {
                assert!(pending.is_none(), "a gate is never a network's last step");
                let e = h.size()[0];
                h.unsqueeze(1).expand([e, k, -1], false)
            }
            Coalitions::Each { h, .. } => h,
        }
    }
}

/// What every layer kind provides. Layers own shallow handles on tensors of the network's
/// `VarStore` (no copy), so a suffix can move to another thread.
pub(crate) trait Layer: Send + std::fmt::Debug {
    fn spec(&self) -> LayerSpec;

    /// The checkpoint prefix of its variables (`fc1`, `conv2`), for weighted layers.
    fn name(&self) -> Option<&str> {
        None
    }

    /// Weight and bias, for weighted layers: rows are output units, dimension 1 the inputs.
    fn weights(&self) -> Option<(&Tensor, Option<&Tensor>)> {
        None
    }

    /// The plain forward pass of examples `[N, …]`.
    fn forward(&self, x: &Tensor) -> Tensor;

    /// The forward pass of `K` coalitions at once.
    fn forward_coalitions(&self, x: Coalitions) -> Coalitions;

    /// The forward pass of `K` (example, coalition) pairs, row `j` already under mask `j`.
    fn forward_paired(&self, x: &Tensor) -> Tensor {
        self.forward(x)
    }

    /// Output shape of one example of input shape `input` (no batch dimension).
    fn output_shape(&self, input: &[i64]) -> Vec<i64>;

    /// Floats one (example, coalition) pair occupies at this layer's widest buffer.
    fn floats_per_pair(&self, _input: &[i64]) -> i64 {
        0
    }

    /// Output positions each weight is applied at, per example (1 for dense layers).
    fn positions(&self, _input: &[i64]) -> u64 {
        1
    }

    /// Parameters and FLOPs per example with `inputs` input units (channels or features)
    /// and `outputs` output units kept; see [`KeptOutputs`].
    fn cost(&self, _input: &[i64], _inputs: u64, _outputs: KeptOutputs) -> Cost {
        Cost::default()
    }

    /// Stride and padding, for convolutions.
    fn stride_padding(&self) -> Option<(i64, i64)> {
        None
    }

    /// This weighted layer keeping only weight rows `outputs` and input columns (or
    /// channels) `inputs` (`None`: all), copied off the network: a layer of the exported
    /// model.
    fn slice(&self, _inputs: Option<&Tensor>, _outputs: Option<&Tensor>) -> Box<dyn Layer> {
        self.shallow_clone()
    }

    fn shallow_clone(&self) -> Box<dyn Layer>;

    /// For the few operations that need one kind (incremental walks update a dense
    /// consumer's pre-activation).
    fn as_any(&self) -> &dyn std::any::Any;
}

/// The outputs a pruned weighted layer keeps: `rows` of its weight (neurons, filters), and,
/// when its players are single pooled positions of its feature maps (LeNet5's conv2), how
/// many of those positions are kept (each costs the FLOPs of its pre-pooling positions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KeptOutputs {
    pub rows: u64,
    pub positions: Option<u64>,
}

/// One step of a network: a layer, or the gate of a player layer.
#[derive(Debug)]
pub(crate) enum Step {
    Layer(Box<dyn Layer>),
    Gate(Gate),
}

impl Step {
    pub fn shallow_clone(&self) -> Step {
        match self {
            Step::Layer(l) => Step::Layer(l.shallow_clone()),
            Step::Gate(g) => Step::Gate(*g),
        }
    }

    pub fn layer(&self) -> Option<&dyn Layer> {
        match self {
            Step::Layer(l) => Some(l.as_ref()),
            Step::Gate(_) => None,
        }
    }
}

/// Builds a layer from its spec, creating its variables under `root` (libtorch's global RNG
/// draws the initial weights, in the order the specs come).
pub(crate) fn build(spec: &LayerSpec, root: &nn::Path<'_>) -> Box<dyn Layer> {
    match spec {
        LayerSpec::Dense(s) => Box::new(Dense::new(root, s)),
        LayerSpec::Conv(s) => Box::new(Conv::new(root, s)),
        LayerSpec::Flatten => Box::new(Flatten),
        LayerSpec::Select { index } => Box::new(Select::new(index, root.device())),
        LayerSpec::Gate(_) => unreachable!("gates are not layers"),
    }
}

/// `weight` (and `bias`) keeping rows `outputs` and columns `inputs`, copied.
pub(crate) fn sliced(
    weight: &Tensor,
    bias: Option<&Tensor>,
    inputs: Option<&Tensor>,
    outputs: Option<&Tensor>,
) -> (Tensor, Option<Tensor>) {
    let mut w = weight.detach();
    let mut b = bias.map(Tensor::detach);
    if let Some(rows) = outputs {
        w = w.index_select(0, rows);
        b = b.map(|b| b.index_select(0, rows));
    }
    if let Some(columns) = inputs {
        w = w.index_select(1, columns);
    }
    (w.copy(), b.map(|b| b.copy()))
}

/// A weight flattened to one row per output unit, with its bias as the last column.
pub(crate) fn rows_with_bias(weight: &Tensor, bias: Option<&Tensor>) -> Tensor {
    let w = weight.flatten(1, -1);
    match bias {
        Some(b) => Tensor::cat(&[w, b.unsqueeze(1)], 1),
        None => w,
    }
}

/// A per-input factor `[inputs]` shaped to broadcast over a weight's dimension 1.
pub(crate) fn over_inputs(weight: &Tensor, factor: &Tensor) -> Tensor {
    let mut shape = vec![1i64; weight.dim()];
    shape[1] = -1;
    factor.view(shape.as_slice())
}

/// A per-output factor `[outputs]` shaped to broadcast over a weight's dimension 0.
pub(crate) fn over_outputs(weight: &Tensor, factor: &Tensor) -> Tensor {
    let mut shape = vec![1i64; weight.dim()];
    shape[0] = -1;
    factor.view(shape.as_slice())
}
