//! Images to tokens: non-overlapping `patch`×`patch` patches, each embedded linearly
//! (a stride-`patch` convolution), `[N, C, H, W]` to `[N, (H/patch)·(W/patch), dim]`. No
//! players: the embedding is shared by every token.

use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

use super::{KeptOutputs, Layer, LayerSpec};
use crate::Cost;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatchesSpec {
    pub name: String,
    pub channels: usize,
    pub patch: usize,
    pub dim: usize,
}

impl PatchesSpec {
    pub(crate) fn variables(&self) -> Vec<(String, Vec<i64>)> {
        let (c, p, d) = (self.channels as i64, self.patch as i64, self.dim as i64);
        super::weight_and_bias(&self.name, vec![d, c, p, p], d)
    }
}

#[derive(Debug)]
pub(crate) struct Patches {
    spec: PatchesSpec,
    weight: Tensor,
    bias: Tensor,
}

impl Patches {
    pub fn new(root: &nn::Path<'_>, spec: &PatchesSpec) -> Patches {
        let config = nn::ConvConfig {
            stride: spec.patch as i64,
            ..Default::default()
        };
        let c = nn::conv2d(
            super::sub(root, &spec.name),
            spec.channels as i64,
            spec.dim as i64,
            spec.patch as i64,
            config,
        );
        Patches {
            spec: spec.clone(),
            weight: c.ws,
            bias: c.bs.expect("a biased embedding"),
        }
    }
}

impl Patches {
    pub fn from_tensors(spec: &PatchesSpec, weight: Tensor, bias: Tensor) -> Patches {
        Patches {
            spec: spec.clone(),
            weight,
            bias,
        }
    }
}

impl Layer for Patches {
    fn spec(&self) -> LayerSpec {
        LayerSpec::Patches(self.spec.clone())
    }

    fn variables(&self) -> Vec<(String, Tensor)> {
        let name = &self.spec.name;
        vec![
            (format!("{name}.weight"), self.weight.shallow_clone()),
            (format!("{name}.bias"), self.bias.shallow_clone()),
        ]
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let p = self.spec.patch as i64;
        crate::numerics::conv2d_strided(x, &self.weight, Some(&self.bias), p, 0)
            .flatten(2, -1)
            .transpose(1, 2)
    }

    fn takes(&self, input: &[i64]) -> bool {
        let p = self.spec.patch as i64;
        matches!(input, [c, h, w] if *c == self.spec.channels as i64 && p >= 1 && *h >= p && *w >= p)
    }

    fn output_shape(&self, input: &[i64]) -> Vec<i64> {
        let p = self.spec.patch as i64;
        vec![(input[1] / p) * (input[2] / p), self.spec.dim as i64]
    }

    fn floats_per_pair(&self, input: &[i64]) -> i64 {
        input
            .iter()
            .product::<i64>()
            .max(self.output_shape(input).iter().product())
    }

    fn cost(&self, input: &[i64], _inputs: u64, _outputs: KeptOutputs) -> Cost {
        let per_token = (self.spec.channels * self.spec.patch * self.spec.patch) as u64;
        let tokens = self.output_shape(input)[0] as u64;
        let dim = self.spec.dim as u64;
        Cost {
            params: dim * (per_token + 1),
            flops: 2 * tokens * dim * per_token,
        }
    }

    fn shallow_clone(&self) -> Box<dyn Layer> {
        Box::new(Patches {
            spec: self.spec.clone(),
            weight: self.weight.shallow_clone(),
            bias: self.bias.shallow_clone(),
        })
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
