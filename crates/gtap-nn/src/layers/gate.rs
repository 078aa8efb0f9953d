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
            Coalitions::Each { h, e, k } => {
                let h = if h.dim() == 4 {
                    let size = h.size();
                    (h.view([e, k, size[1], size[2], size[3]]) * m.view([1, k, size[1], 1, 1]))
                        .view([e * k, size[1], size[2], size[3]])
                } else {
                    h * m.unsqueeze(0)
                };
                Coalitions::Each { h, e, k }
            }
        }
    }

    /// Pairs: row `j` of `h` under mask row `j` of `m`.
    pub fn paired(&self, h: &Tensor, m: &Tensor) -> Tensor {
        if h.dim() == 4 {
            h * m.view([m.size()[0], -1, 1, 1])
        } else {
            h * m
        }
    }
}
