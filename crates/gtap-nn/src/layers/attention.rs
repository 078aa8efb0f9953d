//! Multi-head self-attention on `[N, T, dim]` tokens, up to the heads' concatenated outputs
//! `[N, T, heads·head_dim]`. The output projection is the dense layer after the gate that
//! follows it (spread `head_dim`): that gate's players are the heads, and a head's gate
//! multiplies its slice of the concatenation before the projection, as a dense unit's gate
//! multiplies its column (Michel et al. 2019's head mask).
//!
//! Weights: one `[3·heads·head_dim, dim]` projection (rows: every head's queries, then keys,
//! then values) and its bias. A head's parameters θ_h are its query, key and value rows.

use serde::{Deserialize, Serialize};
use tch::{nn, Kind, Tensor};

use super::{KeptOutputs, Layer, LayerSpec};
use crate::Cost;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttentionSpec {
    pub name: String,
    pub dim: usize,
    pub heads: usize,
    pub head_dim: usize,
}

#[derive(Debug)]
pub(crate) struct Attention {
    spec: AttentionSpec,
    weight: Tensor,
    bias: Tensor,
}

impl AttentionSpec {
    pub(crate) fn variables(&self) -> Vec<(String, Vec<i64>)> {
        let width = (3 * self.heads * self.head_dim) as i64;
        super::weight_and_bias(&self.name, vec![width, self.dim as i64], width)
    }
}

impl Attention {
    pub fn new(root: &nn::Path<'_>, spec: &AttentionSpec) -> Attention {
        let width = 3 * spec.heads * spec.head_dim;
        let l = nn::linear(
            super::sub(root, &spec.name),
            spec.dim as i64,
            width as i64,
            Default::default(),
        );
        Attention {
            spec: spec.clone(),
            weight: l.ws,
            bias: l.bs.expect("a biased projection"),
        }
    }

    pub fn from_tensors(spec: &AttentionSpec, weight: Tensor, bias: Tensor) -> Attention {
        Attention {
            spec: spec.clone(),
            weight,
            bias,
        }
    }

    /// Rows `[3, heads, head_dim, …]` of a weight-shaped tensor (or `[3, heads, head_dim]` of
    /// a bias-shaped one), heads first: `[heads, 3·head_dim·…]`.
    fn by_head(&self, t: &Tensor) -> Tensor {
        let (h, dh) = (self.spec.heads as i64, self.spec.head_dim as i64);
        let mut shape = vec![3, h, dh];
        shape.extend(&t.size()[1..]);
        let mut order: Vec<i64> = (0..shape.len() as i64).collect();
        order.swap(0, 1);
        t.view(shape.as_slice())
            .permute(order.as_slice())
            .reshape([h, -1])
    }

    /// Rows of the projection that belong to heads `kept`: their queries, keys and values.
    fn head_rows(&self, kept: &[i64]) -> Vec<i64> {
        let (h, dh) = (self.spec.heads as i64, self.spec.head_dim as i64);
        (0..3)
            .flat_map(|part| {
                kept.iter()
                    .flat_map(move |&head| (0..dh).map(move |j| (part * h + head) * dh + j))
            })
            .collect()
    }
}

impl Layer for Attention {
    fn spec(&self) -> LayerSpec {
        LayerSpec::Attention(self.spec.clone())
    }

    fn name(&self) -> Option<&str> {
        Some(&self.spec.name)
    }

    fn weights(&self) -> Option<(&Tensor, Option<&Tensor>)> {
        Some((&self.weight, Some(&self.bias)))
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let (n, t) = (x.size()[0], x.size()[1]);
        let (h, dh) = (self.spec.heads as i64, self.spec.head_dim as i64);
        let qkv = x
            .linear(&self.weight, Some(&self.bias))
            .view([n, t, 3, h, dh])
            .permute([2, 0, 3, 1, 4]); // [3, N, H, T, dh]
        let (q, k, v) = (qkv.get(0), qkv.get(1), qkv.get(2));
        let scores = q.matmul(&k.transpose(-2, -1)) / (dh as f64).sqrt();
        scores
            .softmax(-1, Kind::Float)
            .matmul(&v) // [N, H, T, dh]
            .transpose(1, 2)
            .reshape([n, t, h * dh])
    }

    fn takes(&self, input: &[i64]) -> bool {
        matches!(input, [_, d] if *d == self.spec.dim as i64)
    }

    fn output_shape(&self, input: &[i64]) -> Vec<i64> {
        vec![input[0], (self.spec.heads * self.spec.head_dim) as i64]
    }

    fn floats_per_pair(&self, input: &[i64]) -> i64 {
        let (h, dh, t) = (self.spec.heads as i64, self.spec.head_dim as i64, input[0]);
        t * 3 * h * dh + h * t * t
    }

    /// Projections of the kept heads, their scores and weighted sums over `T` tokens.
    fn cost(&self, input: &[i64], inputs: u64, outputs: KeptOutputs) -> Cost {
        let (t, dh) = (input[0] as u64, self.spec.head_dim as u64);
        let heads = outputs.rows;
        Cost {
            params: heads * 3 * dh * (inputs + 1),
            flops: 2 * t * inputs * 3 * dh * heads + 2 * 2 * t * t * dh * heads,
        }
    }

    fn units(&self) -> usize {
        self.spec.heads
    }

    fn group(&self, weight: &Tensor, bias: Option<&Tensor>) -> Tensor {
        let rows = self.by_head(weight);
        match bias {
            Some(b) => Tensor::cat(&[rows, self.by_head(b)], 1),
            None => rows,
        }
    }

    fn unit_sums(&self, weight: &Tensor, bias: &Tensor) -> (Tensor, usize) {
        let groups = self.group(weight, Some(bias));
        let fan = groups.size()[1] as usize;
        (groups.sum_dim_intlist(1, false, Kind::Double), fan)
    }

    /// A head's output is linear in its values: scaling its value rows scales it exactly
    /// (queries and keys left alone, which would change where it attends).
    fn scale_units(&self, keep: &Tensor) {
        let width = (self.spec.heads * self.spec.head_dim) as i64;
        let per_row = keep.repeat_interleave_self_int(self.spec.head_dim as i64, Some(0), None);
        let values = self.weight.narrow(0, 2 * width, width);
        let _ = values.shallow_clone().g_mul_(&per_row.unsqueeze(1));
        let _ = self.bias.narrow(0, 2 * width, width).g_mul_(&per_row);
    }

    fn slice(&self, inputs: Option<&Tensor>, outputs: Option<&Tensor>) -> Box<dyn Layer> {
        assert!(inputs.is_none(), "attention keeps its whole input");
        let kept: Vec<i64> = match outputs {
            Some(o) => Vec::<i64>::try_from(o).expect("head ids"),
            None => (0..self.spec.heads as i64).collect(),
        };
        let rows = Tensor::from_slice(&self.head_rows(&kept)).to_device(self.weight.device());
        let (weight, bias) = super::sliced(&self.weight, Some(&self.bias), None, Some(&rows));
        Box::new(Attention {
            spec: AttentionSpec {
                heads: kept.len(),
                ..self.spec.clone()
            },
            weight,
            bias: bias.expect("a biased projection"),
        })
    }

    fn shallow_clone(&self) -> Box<dyn Layer> {
        Box::new(Attention {
            spec: self.spec.clone(),
            weight: self.weight.shallow_clone(),
            bias: self.bias.shallow_clone(),
        })
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
