//! Where a player layer's mask acts: on the activations between the layer that produces its
//! units and the one that consumes them. A 0/1 mask commutes with ReLU and max-pooling, so
//! masking the consumer's input is masking the unit.

use serde::{Deserialize, Serialize};
use tch::Tensor;

use super::Coalitions;
use crate::PlayerLayer;

/// A gate as a network spec states it; the player layer is named after the weighted layer
/// before it and has one unit per `spread` activations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateSpec {
    /// Activations each unit covers: a conv channel feeding a dense layer covers its
    /// flattened positions (AlexNet's conv5: 16).
    #[serde(default = "one")]
    pub spread: usize,
}

fn one() -> usize {
    1
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Gate {
    /// Index of its player layer.
    pub players: usize,
    pub spread: usize,
    /// Whether each unit is a whole feature map (a conv channel), dropped out as one.
    pub maps: bool,
}

impl Gate {
    /// The columns of `values` (`[K, players]`) of this gate's player layer `pl`, each
    /// repeated `spread` times: `[K, size · spread]`, one value per masked activation.
    pub fn columns(&self, pl: &PlayerLayer, values: &Tensor) -> Tensor {
        let columns = values.narrow(1, pl.offset as i64, pl.size as i64);
        if self.spread > 1 {
            columns.repeat_interleave_self_int(self.spread as i64, Some(1), None)
        } else {
            columns
        }
    }

    /// Training-mode dropout with rate `rate` on the units: whole channels for feature maps,
    /// single values for neurons and single features.
    pub fn dropout(&self, h: &Tensor, rate: f64, pl: &PlayerLayer) -> Tensor {
        match (self.maps, h.dim()) {
            (true, 4) => h.feature_dropout(rate, true),
            (true, _) => {
                let n = h.size()[0];
                let (units, spread) = (pl.size as i64, self.spread as i64);
                h.view([n, units, spread, 1])
                    .feature_dropout(rate, true)
                    .view([n, units * spread])
            }
            (false, 3) if self.spread > 1 => {
                // A head of a token sequence: dropped as a whole, per example.
                let n = h.size()[0];
                let (t, units, spread) = (h.size()[1], pl.size as i64, self.spread as i64);
                h.view([n, t, units, spread])
                    .permute([0, 2, 1, 3])
                    .feature_dropout(rate, true)
                    .permute([0, 2, 1, 3])
                    .reshape([n, t, units * spread])
            }
            (false, _) => h.dropout(rate, true),
        }
    }

    /// `h` with every activation multiplied by its unit's gate (`values`: one per activation).
    pub fn gated(&self, h: &Tensor, values: &Tensor) -> Tensor {
        if h.dim() == 4 {
            h * values.view([1, -1, 1, 1])
        } else {
            h * values
        }
    }

    /// `K` coalitions' masks `m` (`[K, width]`) on their activations: left pending on shared
    /// activations (the next weighted layer folds them in), multiplied in otherwise.
    pub fn coalitions(&self, x: Coalitions, m: Tensor) -> Coalitions {
        match x {
            Coalitions::Shared {
                h,
                pending: None,
                k,
            } => Coalitions::Shared {
                h,
                pending: Some(m),
                k,
            },
            Coalitions::Shared {
                pending: Some(_), ..
            } => {
                unreachable!("two gates in a row")
            }
            Coalitions::Each {
                h,
                e,
                k,
                rows: true,
            } => Coalitions::Each {
                h: h * m.unsqueeze(0),
                e,
                k,
                rows: true,
            },
            Coalitions::Each { h, e, k, .. } => {
                let size = h.size();
                let mut split = vec![e, k];
                split.extend(&size[1..]);
                let h = (h.view(split.as_slice()) * super::feature_mask(&m, &split))
                    .view(size.as_slice());
                Coalitions::Each {
                    h,
                    e,
                    k,
                    rows: false,
                }
            }
        }
    }

    /// Pairs: row `j` of `h` under mask row `j` of `m`.
    pub fn paired(&self, h: &Tensor, m: &Tensor) -> Tensor {
        match h.dim() {
            4 => h * m.view([m.size()[0], -1, 1, 1]),
            3 => h * m.unsqueeze(1),
            _ => h * m,
        }
    }
}
