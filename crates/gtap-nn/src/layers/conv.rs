//! A conv block: square convolution (stride, zero padding), ReLU, then max-pooling.

use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

use super::{Coalitions, KeptOutputs, Layer, LayerSpec};
use crate::Cost;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConvSpec {
    /// Checkpoint prefix of its variables (`conv1.weight`, `conv1.bias`).
    pub name: String,
    /// Input and output channels.
    pub inputs: usize,
    pub outputs: usize,
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
    /// Max-pooling window and stride after the ReLU (1 = none).
    pub pool: usize,
}

impl ConvSpec {
    pub(crate) fn variables(&self) -> Vec<(String, Vec<i64>)> {
        let (i, o, k) = (self.inputs as i64, self.outputs as i64, self.kernel as i64);
        super::weight_and_bias(&self.name, vec![o, i, k, k], o)
    }

    /// Output side of a square input of side `side` after convolution and pooling.
    pub fn output_side(&self, side: i64) -> i64 {
        self.conv_side(side) / self.pool as i64
    }

    /// Side before pooling (the positions each filter is applied at, per axis).
    pub fn conv_side(&self, side: i64) -> i64 {
        (side + 2 * self.padding as i64 - self.kernel as i64) / self.stride as i64 + 1
    }
}

#[derive(Debug)]
pub(crate) struct Conv {
    spec: ConvSpec,
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Conv {
    pub fn new(root: &nn::Path<'_>, spec: &ConvSpec) -> Conv {
        let config = nn::ConvConfig {
            stride: spec.stride as i64,
            padding: spec.padding as i64,
            ..Default::default()
        };
        let c = nn::conv2d(
            super::sub(root, &spec.name),
            spec.inputs as i64,
            spec.outputs as i64,
            spec.kernel as i64,
            config,
        );
        Conv {
            spec: spec.clone(),
            weight: c.ws,
            bias: c.bs,
        }
    }

    /// An exported model's conv block from its tensors.
    pub fn from_tensors(spec: &ConvSpec, weight: Tensor, bias: Option<Tensor>) -> Conv {
        Conv {
            spec: spec.clone(),
            weight,
            bias,
        }
    }

    /// The block with `weight`. A block pruned to no output channels passes on none; one
    /// pruned to no input channels computes its bias alone at every position (what the
    /// masked network computes with all its inputs zeroed).
    fn run(&self, x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Tensor {
        let (stride, padding) = (self.spec.stride as i64, self.spec.padding as i64);
        let (o, c) = (weight.size()[0], weight.size()[1]);
        let (n, side) = (x.size()[0], self.spec.conv_side(x.size()[2]));
        if o == 0 {
            let pooled = side / self.spec.pool as i64;
            return Tensor::zeros([n, 0, pooled, pooled], (x.kind(), x.device()));
        }
        let h = match bias {
            Some(b) if c == 0 => b
                .view([1, o, 1, 1])
                .expand([n, o, side, side], false)
                .contiguous(),
            _ if c == 0 => Tensor::zeros([n, o, side, side], (x.kind(), x.device())),
            _ => crate::numerics::conv2d_strided(x, weight, bias, stride, padding),
        }
        .relu();
        if self.spec.pool > 1 {
            crate::numerics::max_pool2d(&h, self.spec.pool as i64)
        } else {
            h
        }
    }
}

impl Layer for Conv {
    fn spec(&self) -> LayerSpec {
        let size = self.weight.size();
        LayerSpec::Conv(ConvSpec {
            inputs: size[1] as usize,
            outputs: size[0] as usize,
            ..self.spec.clone()
        })
    }

    fn name(&self) -> Option<&str> {
        Some(&self.spec.name)
    }

    fn weights(&self) -> Option<(&Tensor, Option<&Tensor>)> {
        Some((&self.weight, self.bias.as_ref()))
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        self.run(x, &self.weight, self.bias.as_ref())
    }

    /// With a pending mask (`[K, C]`) the `K` masked filter banks are stacked as one
    /// convolution of `K·O` filters over the shared input; otherwise the plain block runs on
    /// `[E·K, C, H, W]`.
    fn forward_coalitions(&self, x: Coalitions) -> Coalitions {
        match x {
            Coalitions::Shared {
                h,
                pending: Some(m),
                k,
            } => {
                let e = h.size()[0];
                let (o, c, kh, kw) = self.weight.size4().expect("a conv weight");
                let weight =
                    (self.weight.unsqueeze(0) * m.view([k, 1, c, 1, 1])).view([k * o, c, kh, kw]);
                let bias = self.bias.as_ref().map(|b| b.repeat([k]));
                let out = self.run(&h, &weight, bias.as_ref()); // [E, K·O, H, W]
                let (side_h, side_w) = (out.size()[2], out.size()[3]);
                Coalitions::Each {
                    h: out.view([e * k, o, side_h, side_w]),
                    e,
                    k,
                    rows: false,
                }
            }
            Coalitions::Shared {
                h,
                pending: None,
                k,
            } => Coalitions::Shared {
                h: self.forward(&h),
                pending: None,
                k,
            },
            Coalitions::Each { h, e, k, rows } => Coalitions::Each {
                h: self.forward(&h),
                e,
                k,
                rows,
            },
        }
    }

    fn certifiable(&self) -> bool {
        true
    }

    /// Values by libtorch's convolution (oneDNN), the bound by
    /// [`crate::certify::conv_product_error`] (with a pending mask, the `K` masked banks
    /// stacked as in [`Layer::forward_coalitions`], and the unmasked bound serving each:
    /// masking only removes terms); ReLU settles as a dense layer's does, and max-pooling
    /// moves a value by at most the largest bound in its window, so the bound pools as the
    /// values do.
    fn forward_certified(
        &self,
        x: Coalitions,
        error: Coalitions,
        _shared_bound: Option<&Tensor>,
    ) -> Option<(Coalitions, Coalitions)> {
        use crate::certify::{conv_product_error, fast_conv, finish_planes};
        let (stride, padding) = (self.spec.stride as i64, self.spec.padding as i64);
        let (o, c, kh, kw) = self.weight.size4().ok()?;
        if o == 0 || c == 0 {
            // A bank pruned to nothing computes its bias alone: the reference path runs it.
            return None;
        }
        let pool = self.spec.pool as i64;
        let finish = |z: Tensor, h: &Tensor, err: &Tensor, stacked: i64| {
            let raw = conv_product_error(h, err, &self.weight, stride, padding);
            let (v, b) = finish_planes(z, raw, stacked, self.bias.as_ref(), true);
            match pool > 1 {
                true => (v.max_pool2d_default(pool), b.max_pool2d_default(pool)),
                false => (v, b),
            }
        };
        Some(match (x, error) {
            (
                Coalitions::Shared {
                    h,
                    pending: Some(m),
                    k,
                },
                Coalitions::Shared { h: err, .. },
            ) => {
                let e = h.size()[0];
                let weight =
                    (self.weight.unsqueeze(0) * m.view([k, 1, c, 1, 1])).view([k * o, c, kh, kw]);
                let z = fast_conv(&h, &weight, stride, padding);
                let (v, b) = finish(z, &h, &err, k);
                let (side_h, side_w) = (v.size()[2], v.size()[3]);
                let each = |t: Tensor| Coalitions::Each {
                    h: t.view([e * k, o, side_h, side_w]),
                    e,
                    k,
                    rows: false,
                };
                (each(v), each(b))
            }
            (
                Coalitions::Shared {
                    h,
                    pending: None,
                    k,
                },
                Coalitions::Shared { h: err, .. },
            ) => {
                let (v, b) = finish(fast_conv(&h, &self.weight, stride, padding), &h, &err, 1);
                let shared = |h| Coalitions::Shared {
                    h,
                    pending: None,
                    k,
                };
                (shared(v), shared(b))
            }
            (Coalitions::Each { h, e, k, rows }, Coalitions::Each { h: err, .. }) => {
                let (v, b) = finish(fast_conv(&h, &self.weight, stride, padding), &h, &err, 1);
                let each = |h| Coalitions::Each { h, e, k, rows };
                (each(v), each(b))
            }
            _ => return None,
        })
    }

    /// Square maps of its input channels, large enough for a kernel and a pooling window.
    fn takes(&self, input: &[i64]) -> bool {
        let s = &self.spec;
        let sizes = s.kernel >= 1 && s.stride >= 1 && s.pool >= 1;
        matches!(input, [c, h, w] if *c == self.weight.size()[1] && h == w)
            && sizes
            && input[1] + 2 * s.padding as i64 >= s.kernel as i64
            && s.conv_side(input[1]) >= s.pool as i64
    }

    fn output_shape(&self, input: &[i64]) -> Vec<i64> {
        let side = self.spec.output_side(input[1]);
        vec![self.weight.size()[0], side, side]
    }

    /// The larger of its im2col buffer and its output before pooling.
    fn floats_per_pair(&self, input: &[i64]) -> i64 {
        let (o, _, k, _) = self.weight.size4().expect("a conv weight");
        let conv = self.spec.conv_side(input[1]);
        (input[0] * k * k * conv * conv).max(o * conv * conv)
    }

    fn positions(&self, input: &[i64]) -> u64 {
        (self.spec.conv_side(input[1]) as u64).pow(2)
    }

    /// Kept filters over kept input channels; FLOPs at every pre-pooling position of a kept
    /// filter, or, when single pooled positions are the players, at the `pool²` positions
    /// under each kept one. Pooling and ReLU are not counted.
    fn cost(&self, input: &[i64], inputs: u64, outputs: KeptOutputs) -> Cost {
        let k = self.spec.kernel as u64;
        let per_filter = inputs * k * k;
        let bias = u64::from(self.bias.is_some());
        let flops = match outputs.positions {
            Some(kept) => 2 * kept * (self.spec.pool as u64).pow(2) * per_filter,
            None => 2 * outputs.rows * per_filter * self.positions(input),
        };
        Cost {
            params: outputs.rows * (per_filter + bias),
            flops,
        }
    }

    fn stride_padding(&self) -> Option<(i64, i64)> {
        Some((self.spec.stride as i64, self.spec.padding as i64))
    }

    fn slice(&self, inputs: Option<&Tensor>, outputs: Option<&Tensor>) -> Box<dyn Layer> {
        let (weight, bias) = super::sliced(&self.weight, self.bias.as_ref(), inputs, outputs);
        Box::new(Conv::from_tensors(&self.spec, weight, bias))
    }

    fn shallow_clone(&self) -> Box<dyn Layer> {
        Box::new(Conv {
            spec: self.spec.clone(),
            weight: self.weight.shallow_clone(),
            bias: self.bias.as_ref().map(Tensor::shallow_clone),
        })
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
