//! The mean over tokens: `[N, T, d]` to `[N, d]` (a transformer's pooling before its head).

use tch::{Kind, Tensor};

use super::{Layer, LayerSpec};

#[derive(Debug)]
pub(crate) struct MeanPool;

impl Layer for MeanPool {
    fn spec(&self) -> LayerSpec {
        LayerSpec::MeanPool
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        x.mean_dim(1, false, Kind::Float)
    }

    fn takes(&self, input: &[i64]) -> bool {
        input.len() == 2
    }

    fn output_shape(&self, input: &[i64]) -> Vec<i64> {
        input[1..].to_vec()
    }

    fn shallow_clone(&self) -> Box<dyn Layer> {
        Box::new(MeanPool)
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
