//! Token ids to vectors: a learned embedding table, `[N, 2T]` to `[N, T, dim]`. No players:
//! every token's vector is shared by the texts that hold it.
//!
//! The inputs are the text datasets' token sequences as a split stores them: two values per
//! token, the id's low and high byte (`gtap_data::Vocabulary::encode_tokens_into`), read here
//! as `low + 256·high` (exact: both are small integers in f32).

use serde::{Deserialize, Serialize};
use tch::{nn, Kind, Tensor};

use super::{KeptOutputs, Layer, LayerSpec};
use crate::Cost;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokensSpec {
    pub name: String,
    /// Rows of the table: every token id the inputs may hold (padding, unknown, words).
    pub vocabulary: usize,
    pub dim: usize,
}

/// The token id that stands in for any id outside the table (`gtap_data::UNKNOWN_TOKEN`):
/// an input that does not come from the table's vocabulary reads as unknown words instead
/// of indexing past the table.
impl TokensSpec {
    pub(crate) fn variables(&self) -> Vec<(String, Vec<i64>)> {
        let shape = vec![self.vocabulary as i64, self.dim as i64];
        vec![(format!("{}.weight", self.name), shape)]
    }
}

const UNKNOWN: i64 = 1;

#[derive(Debug)]
pub(crate) struct Tokens {
    spec: TokensSpec,
    weight: Tensor,
}

impl Tokens {
    pub fn new(root: &nn::Path<'_>, spec: &TokensSpec) -> Tokens {
        let init = nn::Init::Randn {
            mean: 0.0,
            stdev: 0.02,
        };
        let weight = super::sub(root, &spec.name).var(
            "weight",
            &[spec.vocabulary as i64, spec.dim as i64],
            init,
        );
        Tokens {
            spec: spec.clone(),
            weight,
        }
    }

    /// The token ids `[N, T]` of inputs `[N, 2T]`.
    pub fn from_tensors(spec: &TokensSpec, weight: Tensor) -> Tokens {
        Tokens {
            spec: spec.clone(),
            weight,
        }
    }

    fn ids(&self, x: &Tensor) -> Tensor {
        let n = x.size()[0];
        let pairs = x.view([n, -1, 2]);
        let ids = (pairs.select(2, 0) + pairs.select(2, 1) * 256.0).to_kind(Kind::Int64);
        let inside = ids.ge(0).logical_and(&ids.lt(self.spec.vocabulary as i64));
        ids.where_self(&inside, &Tensor::from(UNKNOWN).to_device(x.device()))
    }
}

impl Layer for Tokens {
    fn spec(&self) -> LayerSpec {
        LayerSpec::Tokens(self.spec.clone())
    }

    fn variables(&self) -> Vec<(String, Tensor)> {
        vec![(
            format!("{}.weight", self.spec.name),
            self.weight.shallow_clone(),
        )]
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        Tensor::embedding(&self.weight, &self.ids(x), -1, false, false)
    }

    /// Two values per token id.
    fn takes(&self, input: &[i64]) -> bool {
        matches!(input, [n] if n % 2 == 0)
    }

    fn output_shape(&self, input: &[i64]) -> Vec<i64> {
        vec![input[0] / 2, self.spec.dim as i64]
    }

    fn floats_per_pair(&self, input: &[i64]) -> i64 {
        self.output_shape(input).iter().product()
    }

    fn cost(&self, _input: &[i64], _inputs: u64, _outputs: KeptOutputs) -> Cost {
        // A table look-up: parameters, no multiply-adds.
        Cost {
            params: (self.spec.vocabulary * self.spec.dim) as u64,
            flops: 0,
        }
    }

    fn shallow_clone(&self) -> Box<dyn Layer> {
        Box::new(Tokens {
            spec: self.spec.clone(),
            weight: self.weight.shallow_clone(),
        })
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
