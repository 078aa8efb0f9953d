//! Features `index` of `[N, F]`, in that order: an exported LeNet5 gathers its kept conv2
//! features (pooled positions of the kept channels) in the order of fc1's kept columns.

use tch::{Device, Tensor};

use super::{Coalitions, Layer, LayerSpec};

#[derive(Debug)]
pub(crate) struct Select {
    index: Vec<usize>,
    tensor: Tensor,
}

impl Select {
    pub fn new(index: &[usize], device: Device) -> Select {
        let ids: Vec<i64> = index.iter().map(|&i| i as i64).collect();
        Select {
            index: index.to_vec(),
            tensor: Tensor::from_slice(&ids).to_device(device),
        }
    }
}

impl Layer for Select {
    fn spec(&self) -> LayerSpec {
        LayerSpec::Select {
            index: self.index.clone(),
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        x.index_select(1, &self.tensor)
    }

    fn forward_coalitions(&self, x: Coalitions) -> Coalitions {
        match x {
            Coalitions::Shared { h, pending, k } => {
                assert!(pending.is_none(), "a gate acts after selecting, not before");
                Coalitions::Shared {
                    h: self.forward(&h),
                    pending,
                    k,
                }
            }
            Coalitions::Each { h, e, k, rows } => Coalitions::Each {
                h: h.index_select(if rows { 2 } else { 1 }, &self.tensor),
                e,
                k,
                rows,
            },
        }
    }

    fn certifiable(&self) -> bool {
        true
    }

    /// Selecting moves values and their bounds alike.
    fn forward_certified(
        &self,
        x: Coalitions,
        error: Coalitions,
        _shared_bound: Option<&Tensor>,
    ) -> Option<(Coalitions, Coalitions)> {
        super::moved_alike(self, x, error)
    }

    fn takes(&self, input: &[i64]) -> bool {
        matches!(input, [n] if self.index.iter().all(|&i| (i as i64) < *n))
    }

    fn output_shape(&self, _input: &[i64]) -> Vec<i64> {
        vec![self.index.len() as i64]
    }

    fn shallow_clone(&self) -> Box<dyn Layer> {
        Box::new(Select {
            index: self.index.clone(),
            tensor: self.tensor.shallow_clone(),
        })
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
