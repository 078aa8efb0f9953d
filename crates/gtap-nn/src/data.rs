use tch::{Device, Kind, Tensor};

/// Examples and labels as tensors: `inputs` is `[N, …]` float, `labels` is `[N]` int64.
#[derive(Debug)]
pub struct TensorData {
    pub inputs: Tensor,
    pub labels: Tensor,
}

impl TensorData {
    /// From flat row-major features (`features_per_example` values per example) and labels.
    pub fn from_flat(
        features: &[f32],
        features_per_example: usize,
        labels: &[u8],
        device: Device,
    ) -> TensorData {
        crate::numerics::current();
        let n = labels.len() as i64;
        assert_eq!(
            features.len(),
            labels.len() * features_per_example,
            "features and labels disagree"
        );
        let inputs = Tensor::from_slice(features)
            .view([n, features_per_example as i64])
            .to_device(device);
        let labels = Tensor::from_slice(labels)
            .to_kind(Kind::Int64)
            .to_device(device);
        TensorData { inputs, labels }
    }

    pub fn len(&self) -> usize {
        self.labels.size()[0] as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The first `n` examples (all if fewer).
    pub fn head(&self, n: usize) -> TensorData {
        let n = n.min(self.len()) as i64;
        TensorData {
            inputs: self.inputs.narrow(0, 0, n),
            labels: self.labels.narrow(0, 0, n),
        }
    }

    /// The examples at `index` (an int64 tensor).
    pub fn select(&self, index: &Tensor) -> TensorData {
        TensorData {
            inputs: self.inputs.index_select(0, index),
            labels: self.labels.index_select(0, index),
        }
    }
}
