//! `[N, C, H, W]` to `[N, C·H·W]`, channel-major: between a conv trunk and dense layers.

use tch::Tensor;

use super::{Coalitions, Layer, LayerSpec};

#[derive(Debug)]
pub(crate) struct Flatten;

impl Layer for Flatten {
    fn spec(&self) -> LayerSpec {
        LayerSpec::Flatten
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        x.flatten(1, -1)
    }

    fn forward_coalitions(&self, x: Coalitions) -> Coalitions {
        match x {
            Coalitions::Shared { h, pending, k } => {
                assert!(
                    pending.is_none(),
                    "a gate acts after flattening, not before"
                );
                Coalitions::Shared {
                    h: h.flatten(1, -1),
                    pending,
                    k,
                }
            }
            // Maps `[E·K, C, H, W]` become rows `[E, K, C·H·W]`.
            Coalitions::Each { h, e, k, .. } => Coalitions::Each {
                h: h.view([e, k, -1]),
                e,
                k,
                rows: true,
            },
        }
    }

    fn certifiable(&self) -> bool {
        true
    }

    /// Reshaping moves values and their bounds alike.
    fn forward_certified(
        &self,
        x: Coalitions,
        error: Coalitions,
        _shared_bound: Option<&Tensor>,
    ) -> Option<(Coalitions, Coalitions)> {
        super::moved_alike(self, x, error)
    }

    fn output_shape(&self, input: &[i64]) -> Vec<i64> {
        vec![input.iter().product()]
    }

    fn shallow_clone(&self) -> Box<dyn Layer> {
        Box::new(Flatten)
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
