//! Learned position embeddings added to `[N, T, d]` tokens: no players.

use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

use super::{KeptOutputs, Layer, LayerSpec};
use crate::Cost;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PositionSpec {
    pub name: String,
    pub tokens: usize,
    pub dim: usize,
}

impl PositionSpec {
    pub(crate) fn variables(&self) -> Vec<(String, Vec<i64>)> {
        let shape = vec![self.tokens as i64, self.dim as i64];
        vec![(format!("{}.weight", self.name), shape)]
    }
}

#[derive(Debug)]
pub(crate) struct Position {
    spec: PositionSpec,
    weight: Tensor,
}

impl Position {
    pub fn new(root: &nn::Path<'_>, spec: &PositionSpec) -> Position {
        let init = nn::Init::Randn {
            mean: 0.0,
            stdev: 0.02,
        };
        let weight = super::sub(root, &spec.name).var(
            "weight",
            &[spec.tokens as i64, spec.dim as i64],
            init,
        );
        Position {
            spec: spec.clone(),
            weight,
        }
    }
}

impl Position {
    pub fn from_tensors(spec: &PositionSpec, weight: Tensor) -> Position {
        Position {
            spec: spec.clone(),
            weight,
        }
    }
}

impl Layer for Position {
    fn spec(&self) -> LayerSpec {
        LayerSpec::Position(self.spec.clone())
    }

    fn variables(&self) -> Vec<(String, Tensor)> {
        vec![(
            format!("{}.weight", self.spec.name),
            self.weight.shallow_clone(),
        )]
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        x + &self.weight
    }

    fn takes(&self, input: &[i64]) -> bool {
        input == [self.spec.tokens as i64, self.spec.dim as i64]
    }

    fn output_shape(&self, input: &[i64]) -> Vec<i64> {
        input.to_vec()
    }

    fn cost(&self, _input: &[i64], _inputs: u64, _outputs: KeptOutputs) -> Cost {
        Cost {
            params: (self.spec.tokens * self.spec.dim) as u64,
            flops: 0,
        }
    }

    fn shallow_clone(&self) -> Box<dyn Layer> {
        Box::new(Position {
            spec: self.spec.clone(),
            weight: self.weight.shallow_clone(),
        })
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
