//! Gradient importance of gated players: Michel, Levy & Neubig (2019), "Are Sixteen Heads
//! Really Better than One?": I_i = E_x |∂L(x)/∂ξ_i|, the gate ξ_i of player i multiplying its
//! output (a head's before the output projection, a neuron's activation), evaluated at the
//! current gates.

use tch::{Kind, Tensor};

use crate::{Network, NnError, TensorData};

/// Examples per backward pass (bounds the activations kept for the gradient).
const CHUNK: i64 = 500;

impl Network {
    /// E_x |∂L(x)/∂ξ_i| for every player i, L(x) the cross-entropy of example x, at the gates
    /// `at` (one per player: 1 = present, 0 = removed, as the iterative variant uses). Each
    /// example has its own copy of the gates, so the gradient is per example before its
    /// absolute value is taken. Chunks of 500 examples, summed in order.
    pub fn gate_importance(&self, data: &TensorData, at: &[f32]) -> Result<Vec<f64>, NnError> {
        let players = self.num_players();
        if at.len() != players {
            return Err(NnError::MaskWidth {
                got: at.len(),
                expected: players,
            });
        }
        let n = data.len() as i64;
        if n == 0 {
            return Err(NnError::NeedsExamples("gate importances"));
        }
        let device = self.device();
        let base = Tensor::from_slice(at).to_device(device).unsqueeze(0);
        let mut total = Tensor::zeros([players as i64], (Kind::Double, device));
        let mut start = 0;
        while start < n {
            let len = CHUNK.min(n - start);
            let gates = base.repeat([len, 1]).set_requires_grad(true);
            let xs = data.inputs.narrow(0, start, len);
            let logits = self.walk(&xs, None, &mut |g, h| {
                g.paired(&h, &g.columns(&self.player_layers()[g.players], &gates))
            });
            let loss = logits.cross_entropy_loss::<Tensor>(
                &data.labels.narrow(0, start, len),
                None,
                tch::Reduction::Sum,
                -100,
                0.0,
            );
            let grad = Tensor::run_backward(&[loss], &[&gates], false, false)
                .pop()
                .expect("one gradient");
            total += grad
                .abs()
                .to_kind(Kind::Double)
                .sum_dim_intlist(0, false, None);
            start += len;
        }
        Ok(Vec::<f64>::try_from(total / n as f64)?)
    }
}
