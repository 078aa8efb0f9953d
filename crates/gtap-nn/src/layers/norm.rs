//! Layer normalisation over the last axis, with a learned scale and shift: no players.

use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

use super::{KeptOutputs, Layer, LayerSpec};
use crate::Cost;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NormSpec {
    pub name: String,
    pub dim: usize,
}

impl NormSpec {
    pub(crate) fn variables(&self) -> Vec<(String, Vec<i64>)> {
        super::weight_and_bias(&self.name, vec![self.dim as i64], self.dim as i64)
    }
}

#[derive(Debug)]
pub(crate) struct LayerNorm {
    spec: NormSpec,
    weight: Tensor,
    bias: Tensor,
}

impl LayerNorm {
    pub fn new(root: &nn::Path<'_>, spec: &NormSpec) -> LayerNorm {
        let n = nn::layer_norm(
            super::sub(root, &spec.name),
            vec![spec.dim as i64],
            Default::default(),
        );
        LayerNorm {
            spec: spec.clone(),
            weight: n.ws.expect("an affine layer norm"),
            bias: n.bs.expect("an affine layer norm"),
        }
    }
}

impl LayerNorm {
    pub fn from_tensors(spec: &NormSpec, weight: Tensor, bias: Tensor) -> LayerNorm {
        LayerNorm {
            spec: spec.clone(),
            weight,
            bias,
        }
    }
}

impl Layer for LayerNorm {
    fn spec(&self) -> LayerSpec {
        LayerSpec::LayerNorm(self.spec.clone())
    }

    fn variables(&self) -> Vec<(String, Tensor)> {
        let name = &self.spec.name;
        vec![
            (format!("{name}.weight"), self.weight.shallow_clone()),
            (format!("{name}.bias"), self.bias.shallow_clone()),
        ]
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        x.layer_norm(
            [self.spec.dim as i64],
            Some(&self.weight),
            Some(&self.bias),
            1e-5,
            false,
        )
    }

    fn takes(&self, input: &[i64]) -> bool {
        input.last() == Some(&(self.spec.dim as i64))
    }

    fn output_shape(&self, input: &[i64]) -> Vec<i64> {
        input.to_vec()
    }

    fn floats_per_pair(&self, input: &[i64]) -> i64 {
        input.iter().product()
    }

    /// Scale and shift; FLOPs not counted (as ReLU and pooling are not).
    fn cost(&self, _input: &[i64], _inputs: u64, _outputs: KeptOutputs) -> Cost {
        Cost {
            params: 2 * self.spec.dim as u64,
            flops: 0,
        }
    }

    fn shallow_clone(&self) -> Box<dyn Layer> {
        Box::new(LayerNorm {
            spec: self.spec.clone(),
            weight: self.weight.shallow_clone(),
            bias: self.bias.shallow_clone(),
        })
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
