//! The layer kinds a [`crate::Network`] is a sequence of, one file each, behind one interface
//! ([`Layer`]); and the [`Gate`]s between them, where a player layer's mask acts.
//!
//! What a layer kind knows lives in its file: its plain forward pass (training, evaluation,
//! gated evaluation, the exported model), its forward pass for `K` coalitions at once (the
//! masks folded into its weights where that is exact), its output shape, its cost in
//! parameters and FLOPs for kept inputs and outputs, and its serialisable [`LayerSpec`].
//! Whole-network operations (grouping θ_i, scaling and removing units, unit scores, costs)
//! are written once over the sequence, using only this interface.

mod attention;
mod conv;
mod dense;
mod flatten;
mod gate;
mod norm;
mod patches;
mod pool;
mod position;
mod select;
mod tokens;

use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

pub(crate) use attention::Attention;
pub use attention::AttentionSpec;
pub(crate) use conv::Conv;
pub use conv::ConvSpec;
pub use dense::{Activation, DenseSpec};
pub(crate) use dense::{Dense, DenseRows};
pub(crate) use flatten::Flatten;
pub(crate) use gate::Gate;
pub use gate::GateSpec;
pub use norm::NormSpec;
pub use patches::PatchesSpec;
pub use position::PositionSpec;
pub(crate) use select::Select;
pub use tokens::TokensSpec;

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
    /// `x + inner(x)`: a residual block (its gates inside).
    Residual { inner: Vec<LayerSpec> },
    /// Layer normalisation over the last axis (learned scale and shift).
    LayerNorm(NormSpec),
    /// Multi-head self-attention up to the heads' concatenated outputs (the output
    /// projection is the dense layer after its gate, whose players are the heads).
    Attention(AttentionSpec),
    /// Images to tokens: non-overlapping `patch`×`patch` patches, each linearly embedded.
    Patches(PatchesSpec),
    /// Token ids (two values each) to learned vectors: a text's tokens.
    Tokens(TokensSpec),
    /// Learned position embeddings added to `[N, T, d]` tokens.
    Position(PositionSpec),
    /// The mean over tokens: `[N, T, d]` to `[N, d]`.
    MeanPool,
}

impl LayerSpec {
    /// The variables a layer of this spec holds, by checkpoint name, with their shapes (a
    /// residual block's inner layers' too): what a file's tensors are checked against
    /// before any is allocated.
    pub fn variables(&self) -> Vec<(String, Vec<i64>)> {
        match self {
            LayerSpec::Dense(s) => s.variables(),
            LayerSpec::Conv(s) => s.variables(),
            LayerSpec::LayerNorm(s) => s.variables(),
            LayerSpec::Attention(s) => s.variables(),
            LayerSpec::Patches(s) => s.variables(),
            LayerSpec::Tokens(s) => s.variables(),
            LayerSpec::Position(s) => s.variables(),
            LayerSpec::Residual { inner } => inner.iter().flat_map(LayerSpec::variables).collect(),
            LayerSpec::Flatten
            | LayerSpec::Gate(_)
            | LayerSpec::Select { .. }
            | LayerSpec::MeanPool => Vec::new(),
        }
    }
}

/// A weight and bias by checkpoint name.
pub(crate) fn weight_and_bias(name: &str, weight: Vec<i64>, bias: i64) -> Vec<(String, Vec<i64>)> {
    vec![
        (format!("{name}.weight"), weight),
        (format!("{name}.bias"), vec![bias]),
    ]
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
    /// Activations per (example, coalition): rows `[E, K, n]` (after a dense layer's fold,
    /// `rows`), else example-major `[E·K, …]` (feature maps `[E·K, C, H, W]`, tokens
    /// `[E·K, T, d]`, features `[E·K, n]`).
    Each {
        h: Tensor,
        e: i64,
        k: i64,
        rows: bool,
    },
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
            Coalitions::Each { h, rows: true, .. } => h,
            Coalitions::Each { h, e, k, .. } => h.view([e, k, -1]),
        }
    }

    pub fn shallow_clone(&self) -> Coalitions {
        match self {
            Coalitions::Shared { h, pending, k } => Coalitions::Shared {
                h: h.shallow_clone(),
                pending: pending.as_ref().map(Tensor::shallow_clone),
                k: *k,
            },
            Coalitions::Each { h, e, k, rows } => Coalitions::Each {
                h: h.shallow_clone(),
                e: *e,
                k: *k,
                rows: *rows,
            },
        }
    }

    /// A residual block's end: the activations kept at its start (`saved`) plus its output.
    pub fn add(saved: Coalitions, x: Coalitions) -> Coalitions {
        match (saved, x) {
            (
                Coalitions::Shared {
                    h: a,
                    pending: None,
                    k,
                },
                Coalitions::Shared {
                    h: b,
                    pending: None,
                    ..
                },
            ) => Coalitions::Shared {
                h: a + b,
                pending: None,
                k,
            },
            (saved, x) => {
                let (a, e, k) = saved.expanded();
                let (b, _, _) = x.expanded();
                Coalitions::Each {
                    h: a + b,
                    e,
                    k,
                    rows: false,
                }
            }
        }
    }

    /// Example-major activations `[E·K, …]` of every coalition: shared ones repeated with
    /// any pending mask applied, rows re-viewed.
    pub fn expanded(self) -> (Tensor, i64, i64) {
        match self {
            Coalitions::Shared { h, pending, k } => {
                let e = h.size()[0];
                let mut size = h.size();
                size.insert(1, k);
                let mut h = h.unsqueeze(1).expand(size.as_slice(), false);
                if let Some(m) = pending {
                    h = h * feature_mask(&m, &size);
                }
                size[0] = e * k;
                size.remove(1);
                (h.reshape(size.as_slice()), e, k)
            }
            Coalitions::Each {
                h,
                e,
                k,
                rows: true,
            } => {
                let width = h.size()[2];
                (h.view([e * k, width]), e, k)
            }
            Coalitions::Each { h, e, k, .. } => (h, e, k),
        }
    }
}

/// Masks `m` (`[K, width]`) shaped to multiply `[E, K, …]` activations of shape `size` on
/// their feature axis: channels of maps (`[E, K, C, H, W]`), the last axis otherwise.
pub(crate) fn feature_mask(m: &Tensor, size: &[i64]) -> Tensor {
    let k = m.size()[0];
    let mut shape = vec![1i64; size.len()];
    shape[1] = k;
    if size.len() == 5 {
        shape[2] = -1;
    } else {
        *shape.last_mut().expect("at least [E, K, n]") = -1;
    }
    m.view(shape.as_slice())
}

/// [`Layer::forward_certified`] of a layer that only moves values (a reshape, a selection):
/// the bound moves with them.
fn moved_alike(
    layer: &dyn Layer,
    x: Coalitions,
    error: Coalitions,
) -> Option<(Coalitions, Coalitions)> {
    Some((layer.forward_coalitions(x), layer.forward_coalitions(error)))
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

    /// Its variables by checkpoint name (`fc1.weight`, `fc1.bias`, `norm.weight`, …).
    fn variables(&self) -> Vec<(String, Tensor)> {
        match (self.name(), self.weights()) {
            (Some(name), Some((w, b))) => {
                let mut out = vec![(format!("{name}.weight"), w.shallow_clone())];
                out.extend(b.map(|b| (format!("{name}.bias"), b.shallow_clone())));
                out
            }
            _ => Vec::new(),
        }
    }

    /// The plain forward pass of examples `[N, …]`.
    fn forward(&self, x: &Tensor) -> Tensor;

    /// The forward pass of `K` coalitions at once. By default the plain forward pass: once on
    /// shared activations, else on the example-major `[E·K, …]` ones (a pending mask applied
    /// first); layers whose weights can absorb the masks override it.
    fn forward_coalitions(&self, x: Coalitions) -> Coalitions {
        match x {
            Coalitions::Shared {
                h,
                pending: None,
                k,
            } => Coalitions::Shared {
                h: self.forward(&h),
                pending: None,
                k,
            },
            x => {
                let (h, e, k) = x.expanded();
                Coalitions::Each {
                    h: self.forward(&h),
                    e,
                    k,
                    rows: false,
                }
            }
        }
    }

    /// The forward pass of `K` (example, coalition) pairs, row `j` already under mask `j`:
    /// the reference path ([`crate::certify`]), one example at a time in effect (also the
    /// prefix before a game's first gate).
    fn forward_paired(&self, x: &Tensor) -> Tensor {
        self.forward(x)
    }

    /// Whether the certified path ([`crate::certify`]) can run this layer
    /// ([`Layer::forward_certified`]).
    fn certifiable(&self) -> bool {
        false
    }

    /// [`Layer::forward_coalitions`] by fast kernels, and beside it `error` carried through:
    /// activations laid out as `x`'s (the same variant and shapes; a shared value's pending
    /// mask may be ignored, masking only removes terms) that bound every computed
    /// activation's distance from its exact value, the reference path's and the fast one's
    /// alike ([`crate::certify`]). `None` where this layer kind has no bound. `shared_bound`:
    /// for a layer folding a gate's masks into its weights, its product's bound from the
    /// shared input, where the caller computed it once for every call
    /// ([`crate::masked::MaskedSuffix::start_bound`]).
    fn forward_certified(
        &self,
        _x: Coalitions,
        _error: Coalitions,
        _shared_bound: Option<&Tensor>,
    ) -> Option<(Coalitions, Coalitions)> {
        None
    }

    /// Output shape of one example of input shape `input` (no batch dimension).
    fn output_shape(&self, input: &[i64]) -> Vec<i64>;

    /// Whether one example of shape `input` fits this layer. Sizes read from a file must
    /// chain (a mismatch would only show as libtorch's panic in the first forward pass);
    /// asked before [`Layer::output_shape`], which may divide by the spec's sizes. By
    /// default a weighted layer takes its weight's columns on the last axis.
    fn takes(&self, input: &[i64]) -> bool {
        match self.weights() {
            Some((w, _)) => input.last() == Some(&w.size()[1]),
            None => true,
        }
    }

    /// Floats one (example, coalition) pair occupies at this layer's widest buffer.
    fn floats_per_pair(&self, _input: &[i64]) -> i64 {
        0
    }

    /// Output positions each weight is applied at, per example (1 for dense layers).
    fn positions(&self, _input: &[i64]) -> u64 {
        1
    }

    /// Parameters and FLOPs per example with `inputs` input units (channels or features)
    /// and `outputs` output units kept; see [`KeptOutputs`]. For layers without units
    /// (layer norms, positions), what they cost whatever is kept.
    fn cost(&self, _input: &[i64], _inputs: u64, _outputs: KeptOutputs) -> Cost {
        Cost::default()
    }

    /// Output units of a weighted layer: what a gate after it makes players (weight rows;
    /// an attention layer's heads).
    fn units(&self) -> usize {
        self.weights().map_or(0, |(w, _)| w.size()[0] as usize)
    }

    /// Each unit's incoming parameters as one row, from tensors shaped like the weight and
    /// the bias (the weights themselves: the equilibrium game's groups θ_i).
    fn group(&self, weight: &Tensor, bias: Option<&Tensor>) -> Tensor {
        rows_with_bias(weight, bias)
    }

    /// Per unit, the sum of a weight-shaped and a bias-shaped tensor over its incoming
    /// parameters (`[units]`, in f64), and how many parameters that is.
    fn unit_sums(&self, weight: &Tensor, bias: &Tensor) -> (Tensor, usize) {
        let dims: Vec<i64> = (1..weight.dim() as i64).collect();
        let sums = weight.sum_dim_intlist(dims.as_slice(), false, tch::Kind::Double) + bias;
        (
            sums,
            (weight.numel() as i64 / weight.size()[0]) as usize + 1,
        )
    }

    /// Multiplies each unit's output by `keep[unit]` through its own parameters (0 removes
    /// it): a neuron's or filter's weight row and bias.
    fn scale_units(&self, keep: &Tensor) {
        if let Some((w, b)) = self.weights() {
            let _ = w.shallow_clone().g_mul_(&over_outputs(w, keep));
            if let Some(b) = b {
                let _ = b.shallow_clone().g_mul_(keep);
            }
        }
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

/// One step of a network: a layer, the gate of a player layer, or the two ends of a residual
/// block (`Save` keeps the activations, `Add` adds the kept ones to the block's output).
#[derive(Debug)]
pub(crate) enum Step {
    Layer(Box<dyn Layer>),
    Gate(Gate),
    Save,
    Add,
}

impl Step {
    pub fn shallow_clone(&self) -> Step {
        match self {
            Step::Layer(l) => Step::Layer(l.shallow_clone()),
            Step::Gate(g) => Step::Gate(*g),
            Step::Save => Step::Save,
            Step::Add => Step::Add,
        }
    }

    pub fn layer(&self) -> Option<&dyn Layer> {
        match self {
            Step::Layer(l) => Some(l.as_ref()),
            Step::Gate(_) | Step::Save | Step::Add => None,
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
        LayerSpec::LayerNorm(s) => Box::new(norm::LayerNorm::new(root, s)),
        LayerSpec::Attention(s) => Box::new(Attention::new(root, s)),
        LayerSpec::Patches(s) => Box::new(patches::Patches::new(root, s)),
        LayerSpec::Position(s) => Box::new(position::Position::new(root, s)),
        LayerSpec::Tokens(s) => Box::new(tokens::Tokens::new(root, s)),
        LayerSpec::MeanPool => Box::new(pool::MeanPool),
        LayerSpec::Gate(_) | LayerSpec::Residual { .. } => {
            unreachable!("gates and residual blocks are steps, not layers")
        }
    }
}

/// A layer of `spec` holding `vars`: tensors shaped as [`LayerSpec::variables`] lists them,
/// in that order (an exported model's, read from its file); index tensors on `device`.
pub(crate) fn restore(spec: &LayerSpec, vars: Vec<Tensor>, device: tch::Device) -> Box<dyn Layer> {
    let mut vars = vars.into_iter();
    let mut next = || vars.next().expect("one tensor per variable of the spec");
    match spec {
        LayerSpec::Dense(s) => {
            let (w, b) = (next(), next());
            Box::new(Dense::from_tensors(&s.name, w, Some(b), s.activation))
        }
        LayerSpec::Conv(s) => {
            let (w, b) = (next(), next());
            Box::new(Conv::from_tensors(s, w, Some(b)))
        }
        LayerSpec::LayerNorm(s) => Box::new(norm::LayerNorm::from_tensors(s, next(), next())),
        LayerSpec::Attention(s) => Box::new(Attention::from_tensors(s, next(), next())),
        LayerSpec::Patches(s) => Box::new(patches::Patches::from_tensors(s, next(), next())),
        LayerSpec::Position(s) => Box::new(position::Position::from_tensors(s, next())),
        LayerSpec::Tokens(s) => Box::new(tokens::Tokens::from_tensors(s, next())),
        LayerSpec::Flatten => Box::new(Flatten),
        LayerSpec::Select { index } => Box::new(Select::new(index, device)),
        LayerSpec::MeanPool => Box::new(pool::MeanPool),
        LayerSpec::Gate(_) | LayerSpec::Residual { .. } => {
            unreachable!("gates and residual blocks are steps, not layers")
        }
    }
}

/// The variable path of layer `name` under `root`: `block1.attn` is `root / "block1" / "attn"`.
pub(crate) fn sub<'a>(root: &nn::Path<'a>, name: &str) -> nn::Path<'a> {
    let mut parts = name.split('.');
    let first = parts.next().expect("a layer name");
    parts.fold(root / first, |path, part| &path / part)
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
