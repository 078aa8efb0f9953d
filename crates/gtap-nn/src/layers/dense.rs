//! A fully connected layer: `x Wᵀ + b`, then its activation (ReLU in the MLPs and CNNs, GELU in
//! a transformer's FFN, none for a classifier or a projection). On `[N, T, in]` token rows it
//! acts on every token.

use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

use super::{Coalitions, KeptOutputs, Layer, LayerSpec};
use crate::certify::ProductError;
use crate::Cost;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DenseSpec {
    /// Checkpoint prefix of its variables (`fc1.weight`, `fc1.bias`).
    pub name: String,
    pub inputs: usize,
    pub outputs: usize,
    pub activation: Activation,
}

/// What follows a dense layer's product.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Activation {
    Relu,
    Gelu,
    None,
}

impl DenseSpec {
    pub(crate) fn variables(&self) -> Vec<(String, Vec<i64>)> {
        let (i, o) = (self.inputs as i64, self.outputs as i64);
        super::weight_and_bias(&self.name, vec![o, i], o)
    }
}

impl Activation {
    pub(crate) fn apply(self, h: Tensor) -> Tensor {
        match self {
            Activation::Relu => h.relu(),
            Activation::Gelu => h.gelu("none"),
            Activation::None => h,
        }
    }
}

#[derive(Debug)]
pub(crate) struct Dense {
    name: String,
    weight: Tensor,
    bias: Option<Tensor>,
    activation: Activation,
}

impl Dense {
    pub fn new(root: &nn::Path<'_>, spec: &DenseSpec) -> Dense {
        let l = nn::linear(
            super::sub(root, &spec.name),
            spec.inputs as i64,
            spec.outputs as i64,
            Default::default(),
        );
        Dense {
            name: spec.name.clone(),
            weight: l.ws,
            bias: l.bs,
            activation: spec.activation,
        }
    }

    /// Bias and activation after the product with the weight.
    pub fn finish(&self, z: Tensor) -> Tensor {
        let z = match &self.bias {
            Some(b) => z + b,
            None => z,
        };
        self.activation.apply(z)
    }

    /// [`Dense::finish`] of a fast product `z`, and the bound after it from the product's
    /// ([`crate::certify::finish`]).
    pub(crate) fn finish_certified(&self, z: Tensor, error: ProductError) -> (Tensor, Tensor) {
        // `certifiable` keeps GELU out: the activation is ReLU or none.
        let relu = self.activation == Activation::Relu;
        crate::certify::finish(z, error, self.bias.as_ref(), relu)
    }

    /// The bound on its product's error from a shared, exact input `h` (`[E, in]`): what
    /// the certified path's first masked layer uses for every coalition.
    pub fn shared_product_bound(&self, h: &Tensor) -> Tensor {
        crate::certify::product_error(h, &h.zeros_like(), &self.weight).into_raw()
    }

    /// Pre-activation (before the bias) `[E, K, out]` of `K` coalitions from the input `h`
    /// (`[E, in]`) shared by all of them and their masks `m` (`[K, in]`):
    /// `(h ⊙ m) Wᵀ = h (W ⊙ m)ᵀ`, the `K` masked matrices stacked as `[in, K·out]`, one GEMM.
    pub fn folded_preactivation(&self, h: &Tensor, m: &Tensor) -> Tensor {
        self.folded_by(h, m, crate::certify::linear)
    }

    /// [`Dense::folded_preactivation`] by the fast kernel ([`crate::certify::fast_linear`]).
    pub(crate) fn fast_folded_preactivation(&self, h: &Tensor, m: &Tensor) -> Tensor {
        self.folded_by(h, m, crate::certify::fast_linear)
    }

    /// [`Dense::fast_folded_preactivation`] of some outputs only: output `units[i]` of
    /// coalition `coalitions[i]` as column `i`, `[E, N]`.
    pub(crate) fn fast_folded_units(
        &self,
        h: &Tensor,
        m: &Tensor,
        (units, coalitions): (&[i64], &[i64]),
    ) -> Tensor {
        let rows = self.weight.index_select(0, &Tensor::from_slice(units));
        let wm = rows * m.index_select(0, &Tensor::from_slice(coalitions));
        crate::certify::fast_linear(h, &wm)
    }

    fn folded_by(&self, h: &Tensor, m: &Tensor, product: fn(&Tensor, &Tensor) -> Tensor) -> Tensor {
        let (k, e) = (m.size()[0], h.size()[0]);
        let (out_dim, in_dim) = (self.weight.size()[0], self.weight.size()[1]);
        let wm = (self.weight.unsqueeze(0) * m.unsqueeze(1)).reshape([k * out_dim, in_dim]);
        product(h, &wm).view([e, k, out_dim])
    }

    /// The product by the reference kernel where it is on ([`crate::certify::linear`]).
    fn product(&self, h: &Tensor) -> Tensor {
        crate::certify::linear(h, &self.weight)
    }

    /// This layer's certified path on rows held in slices ([`DenseRows`]); `None` where it
    /// has no bound (GELU), its tensors are not float32 CPU ones, a weight is not finite or
    /// a bias is not below 1e30 in magnitude (the tensor path runs then).
    pub(crate) fn rows(&self) -> Option<DenseRows> {
        let floats = |t: &Tensor| {
            (t.device() == tch::Device::Cpu && t.kind() == tch::Kind::Float)
                .then(|| Vec::<f32>::try_from(t.contiguous().view([-1])).ok())
                .flatten()
        };
        let weight = floats(&self.weight)?;
        let bias = match &self.bias {
            Some(b) => floats(b)?,
            None => Vec::new(),
        };
        // The row kernels skip zero inputs ([`crate::sparse`]): sound for finite weights only.
        // Batched evaluation skips the products of units a later gate masks, whose reference
        // values are `relu(z + b) · 0` (the row path computes `relu(0 + b) · 0`): the same
        // zeros while `z + b` cannot overflow, which a bias below 1e30 and the caller's bound
        // on `z` ensure (a NaN bias fails the test too).
        if !self.certifiable()
            || !weight.iter().all(|w| w.is_finite())
            || !bias.iter().all(|b| b.abs() < 1e30)
        {
            return None;
        }
        let (inputs, out) = (
            self.weight.size()[1] as usize,
            self.weight.size()[0] as usize,
        );
        let weight_t: Vec<f32> = (0..inputs * out)
            .map(|p| weight[(p % out) * inputs + p / out])
            .collect();
        Some(DenseRows {
            abs_t: weight_t.iter().map(|w| w.abs()).collect(),
            weight_t,
            bias,
            inputs,
            out,
            relu: self.activation == Activation::Relu,
        })
    }

    /// An exported model's dense layer from its tensors.
    pub fn from_tensors(
        name: &str,
        weight: Tensor,
        bias: Option<Tensor>,
        activation: Activation,
    ) -> Dense {
        Dense {
            name: name.to_owned(),
            weight,
            bias,
            activation,
        }
    }

    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }

    /// The `K`-coalition pass by the reference kernel.
    fn reference_coalitions(&self, x: Coalitions) -> Coalitions {
        let product = crate::certify::linear;
        let w = &self.weight;
        match x {
            Coalitions::Shared {
                h,
                pending: None,
                k,
            } => Coalitions::Shared {
                h: self.finish(product(&h, w)),
                pending: None,
                k,
            },
            Coalitions::Shared {
                h,
                pending: Some(m),
                k,
            } if h.dim() == 2 => {
                let (e, out_dim, in_dim) = (h.size()[0], w.size()[0], w.size()[1]);
                // `(h ⊙ m) Wᵀ = h (W ⊙ m)ᵀ`: the `K` masked weights stacked, one product.
                let wm = (w.unsqueeze(0) * m.unsqueeze(1)).reshape([k * out_dim, in_dim]);
                Coalitions::Each {
                    e,
                    h: self.finish(product(&h, &wm).view([e, k, out_dim])),
                    k,
                    rows: true,
                }
            }
            Coalitions::Each { h, e, k, rows } => Coalitions::Each {
                h: self.finish(product(&h, w)),
                e,
                k,
                rows,
            },
            shared => {
                let (h, e, k) = shared.expanded();
                Coalitions::Each {
                    h: self.finish(product(&h, w)),
                    e,
                    k,
                    rows: false,
                }
            }
        }
    }
}

impl Layer for Dense {
    fn spec(&self) -> LayerSpec {
        LayerSpec::Dense(DenseSpec {
            name: self.name.clone(),
            inputs: self.weight.size()[1] as usize,
            outputs: self.weight.size()[0] as usize,
            activation: self.activation,
        })
    }

    fn name(&self) -> Option<&str> {
        Some(&self.name)
    }

    fn weights(&self) -> Option<(&Tensor, Option<&Tensor>)> {
        Some((&self.weight, self.bias.as_ref()))
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        self.activation
            .apply(x.linear(&self.weight, self.bias.as_ref()))
    }

    // The coalition paths multiply and add apart (not `linear`'s fused form), the product by
    // the reference kernel (`crate::certify`): every value is the reference value.
    fn forward_coalitions(&self, x: Coalitions) -> Coalitions {
        self.reference_coalitions(x)
    }

    fn forward_paired(&self, x: &Tensor) -> Tensor {
        self.finish(self.product(x))
    }

    fn certifiable(&self) -> bool {
        // GELU's bound would need its Lipschitz constant and its kernel's error: not yet.
        self.activation != Activation::Gelu
    }

    fn forward_certified(
        &self,
        x: Coalitions,
        error: Coalitions,
        shared_bound: Option<&Tensor>,
    ) -> Option<(Coalitions, Coalitions)> {
        use crate::certify::{fast_linear, product_error};
        if !self.certifiable() {
            return None;
        }
        let w = &self.weight;
        Some(match (x, error) {
            (
                Coalitions::Shared {
                    h,
                    pending: Some(m),
                    k,
                },
                Coalitions::Shared { h: err, .. },
            ) if h.dim() == 2 => {
                let (e, out_dim, in_dim) = (h.size()[0], w.size()[0], w.size()[1]);
                let wm = (w.unsqueeze(0) * m.unsqueeze(1)).reshape([k * out_dim, in_dim]);
                let z = fast_linear(&h, &wm).view([e, k, out_dim]);
                // Masking only removes non-negative terms from the bound: the unmasked one,
                // per example, serves every coalition (and costs one coalition's product).
                let err = match shared_bound {
                    Some(raw) => ProductError::known(raw.shallow_clone(), in_dim),
                    None => product_error(&h, &err, w),
                };
                let (h, err) = self.finish_certified(z, err);
                let each = |h| Coalitions::Each {
                    h,
                    e,
                    k,
                    rows: true,
                };
                (each(h), each(err))
            }
            (
                Coalitions::Shared {
                    h,
                    pending: None,
                    k,
                },
                Coalitions::Shared { h: err, .. },
            ) => {
                let z = fast_linear(&h, w);
                let (h, err) = self.finish_certified(z, product_error(&h, &err, w));
                let shared = |h| Coalitions::Shared {
                    h,
                    pending: None,
                    k,
                };
                (shared(h), shared(err))
            }
            (Coalitions::Each { h, e, k, rows }, Coalitions::Each { h: err, .. }) => {
                let z = fast_linear(&h, w);
                let (h, err) = self.finish_certified(z, product_error(&h, &err, w));
                let each = |h| Coalitions::Each { h, e, k, rows };
                (each(h), each(err))
            }
            (x, error) => {
                let ((h, e, k), (err, _, _)) = (x.expanded(), error.expanded());
                let z = fast_linear(&h, w);
                let (h, err) = self.finish_certified(z, product_error(&h, &err, w));
                let each = |h| Coalitions::Each {
                    h,
                    e,
                    k,
                    rows: false,
                };
                (each(h), each(err))
            }
        })
    }

    fn output_shape(&self, input: &[i64]) -> Vec<i64> {
        let mut out = input.to_vec();
        *out.last_mut().expect("a feature axis") = self.weight.size()[0];
        out
    }

    fn floats_per_pair(&self, input: &[i64]) -> i64 {
        let tokens: i64 = input[..input.len() - 1].iter().product();
        tokens * self.weight.size()[0].max(self.weight.size()[1])
    }

    /// On token rows `[T, in]`, FLOPs for every token.
    fn cost(&self, input: &[i64], inputs: u64, outputs: KeptOutputs) -> Cost {
        let bias = if self.bias.is_some() { outputs.rows } else { 0 };
        let tokens: i64 = input[..input.len() - 1].iter().product();
        Cost {
            params: inputs * outputs.rows + bias,
            flops: 2 * inputs * outputs.rows * tokens as u64,
        }
    }

    fn slice(&self, inputs: Option<&Tensor>, outputs: Option<&Tensor>) -> Box<dyn Layer> {
        let (weight, bias) = super::sliced(&self.weight, self.bias.as_ref(), inputs, outputs);
        Box::new(Dense::from_tensors(
            &self.name,
            weight,
            bias,
            self.activation,
        ))
    }

    fn shallow_clone(&self) -> Box<dyn Layer> {
        Box::new(Dense {
            name: self.name.clone(),
            weight: self.weight.shallow_clone(),
            bias: self.bias.as_ref().map(Tensor::shallow_clone),
            activation: self.activation,
        })
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// A dense layer's certified path on rows held in slices: what incremental walks run on a
/// tile of (example, coalition) rows that stays in the core's cache, instead of a dozen
/// tensor passes over `[E, K, width]` per step. The same bound as
/// [`Layer::forward_certified`]'s: `|W| (γ|h| + (1 + 2γ) error)`, then [`crate::certify::finish_rows`];
/// the products by [`crate::gemm`]'s kernel (only their bound matters).
#[derive(Debug)]
pub(crate) struct DenseRows {
    /// The weight transposed, `[in, out]` row-major, and its absolute values.
    weight_t: Vec<f32>,
    abs_t: Vec<f32>,
    bias: Vec<f32>,
    pub inputs: usize,
    pub out: usize,
    relu: bool,
}

impl DenseRows {
    /// `rows` rows of activations `h` and their bound `error` (`rows × inputs`) to this
    /// layer's outputs `z` and their bound (`rows × out`); `reach` is scratch. `candidates`:
    /// per row, the only inputs that may be nonzero ([`crate::sparse::value_and_bound`]).
    pub(crate) fn forward(
        &self,
        (h, error): (&[f32], &[f32]),
        (z, bound): (&mut Vec<f32>, &mut Vec<f32>),
        reach: &mut Vec<f32>,
        (rows, candidates): (usize, Option<&[&[u32]]>),
    ) {
        let (n_in, n_out) = (self.inputs, self.out);
        z.resize(rows * n_out, 0.0);
        bound.resize(rows * n_out, 0.0);
        reach.resize(rows * n_in, 0.0);
        crate::certify::reach_rows(&h[..rows * n_in], &error[..rows * n_in], n_in as i64, reach);
        crate::sparse::value_and_bound(
            (h, reach),
            (&self.weight_t, &self.abs_t),
            (z, bound),
            (rows, n_in),
            candidates,
        );
        self.finish(z, bound, crate::certify::allowances(n_in as i64));
    }

    /// The reference path's output of `rows` rows `x` (`rows × inputs`), as
    /// [`Layer::forward_paired`] computes it: the reference product ([`crate::gemm::linear_rows`],
    /// its bytes), then the bias added and ReLU (`x ≤ 0 → 0`, NaN kept) or none.
    pub(crate) fn reference_forward(&self, x: &[f32], rows: usize) -> Vec<f32> {
        let mut z = vec![0f32; rows * self.out];
        crate::gemm::linear_rows(x, &self.weight_t, &mut z, rows, self.inputs);
        for row in z.chunks_mut(self.out.max(1)) {
            if !self.bias.is_empty() {
                for (v, &b) in row.iter_mut().zip(&self.bias) {
                    *v += b;
                }
            }
            if self.relu {
                for v in row.iter_mut() {
                    if *v <= 0.0 {
                        *v = 0.0;
                    }
                }
            }
        }
        z
    }

    /// Bias and activation on product rows `z` whose raw bound is in `bound` (allowances
    /// `pad_tiny`), in place ([`crate::certify::finish_rows`]).
    pub(crate) fn finish(&self, z: &mut [f32], bound: &mut [f32], pad_tiny: (f32, f32)) {
        crate::certify::finish_rows(z, bound, &self.bias, self.out, pad_tiny, self.relu);
    }
}
