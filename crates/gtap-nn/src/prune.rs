//! What pruning needs from a network besides coalition values: unit-level weight scores for the
//! WMP and W·GMP baselines, the parameters and FLOPs a set of kept units leaves, and global
//! unstructured (weight-level) pruning.

use tch::{Kind, Tensor};

use crate::layers::{Gate, KeptOutputs};
use crate::model::PlayerLayer;
use crate::{evaluate, Network, NnError, TensorData};

/// How a weight is scored by the magnitude baselines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WeightCriterion {
    /// |w| (WMP).
    Magnitude,
    /// |w · ∂L/∂w|, L the mean cross-entropy on the given examples (W·GMP).
    WeightGradient,
}

/// Parameters and floating-point operations (per example, multiply and add counted apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cost {
    pub params: u64,
    pub flops: u64,
}

/// One point of a global unstructured pruning curve.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UnstructuredPoint {
    /// Weights kept / prunable weights (biases are never pruned).
    pub weights_kept: u64,
    pub weights_total: u64,
    /// Parameters (non-zero weights + biases) and sparse FLOPs.
    pub cost: Cost,
    pub accuracy: f64,
}

impl Network {
    /// ∂L/∂w of every variable, L the mean cross-entropy over `data` (in chunks). Returned in
    /// the `VarStore`'s name order; gradients are cleared afterwards.
    pub fn loss_gradients(&self, data: &TensorData) -> Vec<(String, Tensor)> {
        let vars = self.named_variables();
        for (_, v) in &vars {
            let mut g = v.grad();
            if g.defined() {
                let _ = g.zero_();
            }
        }
        let n = data.len() as i64;
        let chunk = 5_000;
        let mut start = 0;
        while start < n {
            let len = chunk.min(n - start);
            let logits = self.forward(&data.inputs.narrow(0, start, len));
            let loss = logits.cross_entropy_loss::<Tensor>(
                &data.labels.narrow(0, start, len),
                None,
                tch::Reduction::Sum,
                -100,
                0.0,
            ) / n as f64;
            loss.backward();
            start += len;
        }
        let grads = vars
            .iter()
            .map(|(name, v)| (name.clone(), v.grad().detach().copy()))
            .collect();
        for (_, v) in &vars {
            let mut g = v.grad();
            if g.defined() {
                let _ = g.zero_();
            }
        }
        grads
    }

    /// Variables sorted by name (`conv1.weight`, …, `fc3.bias`).
    pub fn named_variables(&self) -> Vec<(String, Tensor)> {
        let mut named: Vec<(String, Tensor)> = self.vs.variables().into_iter().collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        named
    }

    /// Per-weight scores under `criterion`, by variable name. `probe` is needed for gradients.
    fn weight_scores(
        &self,
        criterion: WeightCriterion,
        probe: Option<&TensorData>,
    ) -> Result<Vec<(String, Tensor)>, NnError> {
        let vars = self.named_variables();
        Ok(match criterion {
            WeightCriterion::Magnitude => vars
                .into_iter()
                .map(|(n, v)| (n, v.detach().abs()))
                .collect(),
            WeightCriterion::WeightGradient => {
                let probe = probe.ok_or(NnError::NeedsExamples("weight-gradient scores"))?;
                let grads = self.loss_gradients(probe);
                vars.into_iter()
                    .zip(grads)
                    .map(|((n, v), (_, g))| (n, (v.detach() * g).abs()))
                    .collect()
            }
        })
    }

    /// One score per player from the weights that belong to that unit alone: its outgoing
    /// weights (the next layer's column) and, for a fully connected neuron, its incoming weights
    /// and bias. (A LeNet5 conv feature shares its filter with the other positions of its
    /// channel, so only its outgoing weights count.)
    ///
    /// - `Magnitude` (WMP): the *mean* |w| of those weights. A sum would rank by fan-in (an fc1
    ///   neuron of LeNet-300-100 owns 785 incoming weights, an fc2 neuron 301) and empty the
    ///   narrower layer first, which no magnitude criterion intends.
    /// - `WeightGradient` (W·GMP): the *sum* of |w · ∂L/∂w|, the first-order estimate of the
    ///   loss change when the unit's weights are removed, comparable across layers as it is.
    pub fn unit_scores(
        &self,
        criterion: WeightCriterion,
        probe: Option<&TensorData>,
    ) -> Result<Vec<f64>, NnError> {
        let scores = self.weight_scores(criterion, probe)?;
        let _guard = tch::no_grad_guard();
        let score = |name: &str| -> &Tensor {
            &scores
                .iter()
                .find(|(n, _)| n == name)
                .expect("head variable")
                .1
        };
        let mut out = vec![0.0; self.num_players()];
        let mut owned = vec![0usize; self.num_players()];
        let players = self.player_layers();
        // Columns (input channels) of a layer: outgoing weights of the players gated before it.
        let mut columns = |w: &Tensor, g: &Gate| -> Result<(), NnError> {
            let dims: &[i64] = if w.dim() == 4 { &[0, 2, 3] } else { &[0] };
            let per_input = Vec::<f64>::try_from(w.sum_dim_intlist(dims, false, Kind::Double))?;
            let fan = (w.numel() as i64 / w.size()[1]) as usize;
            let pl = &players[g.players];
            for (j, c) in per_input.iter().enumerate() {
                out[pl.offset + j / g.spread] += c;
                owned[pl.offset + j / g.spread] += fan;
            }
            Ok(())
        };
        for (i, layer, _) in self.weighted_steps() {
            if let Some(g) = i.checked_sub(1).and_then(|j| self.gate_at(j)) {
                let name = layer.name().expect("weighted layers have names");
                columns(score(&format!("{name}.weight")), g)?;
            }
        }
        // Rows of a layer (filters, neurons): incoming weights and bias of its own units. (Two
        // terms per unit with the columns, so the order of the sums does not matter.) A
        // LeNet5 conv2 feature shares its filter with its channel's other positions: no rows.
        for pl in players {
            if self.units_per_row(pl) > 1 {
                continue;
            }
            let layer = &pl.name;
            let (w, b) = (
                score(&format!("{layer}.weight")),
                score(&format!("{layer}.bias")),
            );
            let (sums, fan) = self.producer(pl).unit_sums(w, b);
            // A whole layer as one player owns every row.
            let rows_per_unit = self.rows_per_unit(pl);
            for (row, r) in Vec::<f64>::try_from(sums)?.iter().enumerate() {
                out[pl.offset + row / rows_per_unit] += r;
                owned[pl.offset + row / rows_per_unit] += fan;
            }
        }
        if criterion == WeightCriterion::Magnitude {
            out.iter_mut()
                .zip(&owned)
                .for_each(|(s, &count)| *s /= count.max(1) as f64);
        }
        Ok(out)
    }

    /// Parameters and FLOPs left when only the players with `kept[p]` remain: each weighted
    /// layer keeps the weights between its kept inputs and kept outputs (and the kept outputs'
    /// biases); a LeNet5 conv2 channel is kept while any of its 25 pooled features is, and
    /// costs FLOPs for the 4 pre-pooling positions of each kept feature. Pooling and ReLU are
    /// not counted.
    pub fn cost(&self, kept: &[bool]) -> Cost {
        assert_eq!(kept.len(), self.num_players(), "one flag per player");
        let kept_units = |pl: &PlayerLayer| &kept[pl.offset..pl.offset + pl.size];
        let count = |units: &[bool]| units.iter().filter(|&&k| k).count() as u64;
        let mut total = Cost::default();
        for (i, layer, input) in self.weighted_steps() {
            let w = layer.weights().expect("weighted").0;
            let inputs = match i.checked_sub(1).and_then(|j| self.gate_at(j)) {
                Some(g) => count(kept_units(&self.player_layers()[g.players])) * g.spread as u64,
                None => w.size()[1] as u64,
            };
            let outputs = match self.players_of(i) {
                Some(pl) => {
                    let units = kept_units(pl);
                    KeptOutputs {
                        rows: count(&self.kept_rows(pl, units)),
                        positions: (self.units_per_row(pl) > 1).then(|| count(units)),
                    }
                }
                None => KeptOutputs {
                    rows: layer.units() as u64,
                    positions: None,
                },
            };
            let c = layer.cost(input, inputs, outputs);
            total.params += c.params;
            total.flops += c.flops;
        }
        // Layers without units (layer norms, positions, patch embeddings) cost what they cost.
        for (layer, input) in self.unweighted_layers() {
            let c = layer.cost(
                input,
                0,
                KeptOutputs {
                    rows: 0,
                    positions: None,
                },
            );
            total.params += c.params;
            total.flops += c.flops;
        }
        total
    }

    /// Test accuracy after global unstructured pruning: for each fraction, keep the
    /// `round(fraction · W)` highest-scoring weights over all weight matrices and filters
    /// (biases are kept), zero the others, evaluate. Weights are restored afterwards. FLOPs count
    /// the non-zero weights only (a sparse kernel's work): 2 per weight and output position.
    pub fn unstructured_accuracy(
        &mut self,
        criterion: WeightCriterion,
        probe: &TensorData,
        test: &TensorData,
        fractions: &[f64],
    ) -> Result<Vec<UnstructuredPoint>, NnError> {
        let scores = self.weight_scores(criterion, Some(probe))?;
        let _guard = tch::no_grad_guard();
        let weights: Vec<(String, Tensor)> = self
            .named_variables()
            .into_iter()
            .filter(|(n, _)| n.ends_with(".weight"))
            .collect();
        let original: Vec<Tensor> = weights.iter().map(|(_, w)| w.copy()).collect();
        let biases: u64 = self
            .named_variables()
            .iter()
            .filter(|(n, _)| n.ends_with(".bias"))
            .map(|(_, b)| b.numel() as u64)
            .sum();
        let flat_scores = Tensor::cat(
            &weights
                .iter()
                .map(|(n, _)| {
                    let s = &scores.iter().find(|(m, _)| m == n).expect("scored").1;
                    s.flatten(0, -1).to_kind(Kind::Double)
                })
                .collect::<Vec<_>>(),
            0,
        );
        let total = flat_scores.size()[0];
        // Stable descending order: ties keep the lower flat index first.
        let order = flat_scores.argsort_stable(true, 0, true);
        let mut out = Vec::with_capacity(fractions.len());
        for &fraction in fractions {
            let keep = ((fraction * total as f64).round() as i64).clamp(0, total);
            let mask = Tensor::zeros([total], (Kind::Float, flat_scores.device())).index_fill(
                0,
                &order.narrow(0, 0, keep),
                1.0,
            );
            let mut start = 0;
            let mut point = UnstructuredPoint {
                weights_kept: keep as u64,
                weights_total: total as u64,
                cost: Cost {
                    params: biases,
                    flops: 0,
                },
                accuracy: 0.0,
            };
            for ((name, w), orig) in weights.iter().zip(&original) {
                let n = orig.numel() as i64;
                let m = mask.narrow(0, start, n).view(orig.size().as_slice());
                let nonzero = m.sum(Kind::Double).double_value(&[]) as u64;
                point.cost.params += nonzero;
                point.cost.flops += 2 * nonzero * self.output_positions(name);
                let mut w = w.shallow_clone();
                w.copy_(&(orig * m));
                start += n;
            }
            point.accuracy = evaluate(self, test).accuracy;
            out.push(point);
        }
        for ((_, w), orig) in weights.iter().zip(&original) {
            let mut w = w.shallow_clone();
            w.copy_(orig);
        }
        Ok(out)
    }
}
