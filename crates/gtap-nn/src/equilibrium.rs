//! Equilibrium-driven sparsification ("Pruning as a Game", Shah & Khan): every player (hidden
//! neuron, or LeNet5 conv feature) chooses a participation level s_i ∈ [0, 1]; the network runs
//! on the gated activations ([`Network::forward_gated`], the same as running it on the scaled
//! groups s_i·θ_i); weight steps and participation steps alternate; players whose participation
//! ends below ε are removed.
//!
//! Player i's utility is U_i = B_i − C_i with C_i = β‖θ_i‖²s_i² + γs_i + η s_i Σ_{j≠i} s_j⟨θ_i, θ_j⟩
//! (θ_i: the weights producing the unit's activation, [`Network::incoming_groups`]; j over the
//! same layer). **Sign of the benefit**: B_i is α times the loss *reduction* i's participation
//! buys, so ∂B_i/∂s_i = −α ∂L/∂s_i. Then ∂U_i/∂s_i = −∂Φ/∂s_i for the one potential
//! Φ(s) = αL(s) + Σ_i (β‖θ_i‖²s_i² + γs_i) + (η/2) Σ_{i≠j} s_i s_j ⟨θ_i, θ_j⟩: the game is a
//! potential game, projected gradient ascent of every utility is projected gradient descent of Φ,
//! and its fixed points are Nash equilibria (s_i* = clip((−α ∂L/∂s_i − γ − competition) /
//! (2β‖θ_i‖²))). The paper's literal α⟨∇L, θ_i⟩ (= +α ∂L/∂s_i) would raise a unit's
//! participation exactly when that *raises* the loss.

use tch::{Kind, Tensor};

use crate::train::{epoch_order, optimizer};
use crate::{evaluate_gated, Network, NnError, TensorData, TrainConfig};

/// Which way the benefit term pushes a participation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Benefit {
    /// ∂B_i/∂s_i = −α ∂L/∂s_i: participation grows when it lowers the loss (the potential game
    /// of the module docs).
    #[default]
    LossReduction,
    /// ∂B_i/∂s_i = +α ∂L/∂s_i = α⟨∇_{θ_i}L, θ_i⟩, the paper's formula read literally: a unit
    /// whose participation lowers the loss is pushed *down*. For comparison with the paper.
    PaperLiteral,
}

/// The game's coefficients and the participation update.
#[derive(Debug, Clone, PartialEq)]
pub struct EquilibriumConfig {
    /// Weight training: epochs, mini-batches, optimiser, learning-rate schedule (dropout is
    /// not used).
    pub train: TrainConfig,
    /// Benefit weight α.
    pub alpha: f64,
    /// L2 cost β (scaled by each group's squared norm).
    pub beta: f64,
    /// L1 cost γ.
    pub gamma: f64,
    /// Competition η through the weight inner products of a layer's groups.
    pub eta: f64,
    /// Step size of the projected gradient ascent on each participation.
    pub participation_lr: f64,
    /// Players with final participation below this are removed.
    pub epsilon: f64,
    pub benefit: Benefit,
}

/// Per-epoch record of an equilibrium run.
#[derive(Debug, Clone, PartialEq)]
pub struct EquilibriumEpoch {
    pub epoch: usize,
    /// Mean mini-batch cross-entropy of the gated network.
    pub loss: f64,
    /// Probe accuracy of the gated network.
    pub probe_accuracy: f64,
    /// Players with participation ≥ ε.
    pub active: usize,
    pub mean_participation: f64,
}

/// The outcome: final participations, the kept players, the history.
#[derive(Debug, Clone, PartialEq)]
pub struct Equilibrium {
    pub participation: Vec<f32>,
    pub kept: Vec<bool>,
    pub epochs: Vec<EquilibriumEpoch>,
}

impl Equilibrium {
    /// Per player, what [`Network::scale_outgoing`] multiplies its outgoing weights by to make
    /// the pruned network: its participation if kept, 0 if removed.
    pub fn fold_scale(&self) -> Vec<f32> {
        self.participation
            .iter()
            .zip(&self.kept)
            .map(|(&s, &k)| if k { s } else { 0.0 })
            .collect()
    }
}

/// ∂U_i/∂s_i for every player at participations `gates`, from ∂L/∂s (`loss_grad`, `[players]`)
/// and the current weights: −α ∂L/∂s_i − 2β‖θ_i‖²s_i − γ − η Σ_{j≠i} s_j⟨θ_i, θ_j⟩ (the first
/// sign flipped under [`Benefit::PaperLiteral`]).
pub fn utility_gradient(
    net: &Network,
    gates: &Tensor,
    loss_grad: &Tensor,
    cfg: &EquilibriumConfig,
) -> Tensor {
    let _guard = tch::no_grad_guard();
    let parts: Vec<Tensor> = net
        .player_layers()
        .iter()
        .enumerate()
        .map(|(l, pl)| {
            let (offset, size) = (pl.offset as i64, pl.size as i64);
            let groups = net.incoming_groups(l).detach();
            let s = gates.detach().narrow(0, offset, size);
            let sq_norms = groups.square().sum_dim_intlist(1, false, Kind::Float);
            let mut cost = &sq_norms * &s * (2.0 * cfg.beta) + cfg.gamma;
            if cfg.eta != 0.0 {
                let others = groups.matmul(&groups.tr()).matmul(&s) - &sq_norms * &s;
                cost += others * cfg.eta;
            }
            let sign = match cfg.benefit {
                Benefit::LossReduction => -1.0,
                Benefit::PaperLiteral => 1.0,
            };
            loss_grad.narrow(0, offset, size) * (sign * cfg.alpha) - cost
        })
        .collect();
    Tensor::cat(&parts, 0)
}

/// One gradient evaluation per mini-batch: the loss of the gated network at (θ_t, s_t) gives
/// both the weight gradient and ∂L/∂s; the participation step is formed there, then the weight
/// step (the optimiser) and the projected participation step s ← clip(s + lr·∂U/∂s, 0, 1) are
/// applied. Returns the mini-batch loss.
pub struct ParticipationTrainer {
    pub gates: Tensor,
    opt: tch::nn::Optimizer,
    cfg: EquilibriumConfig,
}

impl ParticipationTrainer {
    /// Every participation starts at 1 (the whole network plays).
    pub fn new(net: &Network, cfg: &EquilibriumConfig) -> Result<ParticipationTrainer, NnError> {
        crate::numerics::current();
        let gates = Tensor::ones([net.num_players() as i64], (Kind::Float, net.device()))
            .set_requires_grad(true);
        Ok(ParticipationTrainer {
            gates,
            opt: optimizer(net, &cfg.train)?,
            cfg: cfg.clone(),
        })
    }

    pub fn step(&mut self, net: &Network, batch: &TensorData) -> f64 {
        let loss = net
            .forward_gated(&batch.inputs, &self.gates)
            .cross_entropy_for_logits(&batch.labels);
        self.opt.zero_grad();
        self.gates.zero_grad();
        loss.backward();
        let loss_grad = self.gates.grad().detach().copy();
        let ascent = utility_gradient(net, &self.gates, &loss_grad, &self.cfg);
        self.opt.step();
        {
            let _guard = tch::no_grad_guard();
            let next = (self.gates.detach() + ascent * self.cfg.participation_lr).clamp(0.0, 1.0);
            let _ = self.gates.copy_(&next);
        }
        loss.to_kind(Kind::Double).double_value(&[])
    }

    /// Current participations.
    pub fn participation(&self) -> Vec<f32> {
        Vec::<f32>::try_from(self.gates.detach().to_device(tch::Device::Cpu))
            .expect("a float vector")
    }
}

/// Trains `net` and the participations together (see the module docs); deterministic for a
/// seed like [`crate::train()`] (same mini-batch order; no dropout). `net` keeps the trained
/// weights *without* the gates: fold them with [`Network::scale_outgoing`] and
/// [`Equilibrium::fold_scale`] to get the pruned network.
pub fn train_equilibrium(
    net: &mut Network,
    train: &TensorData,
    probe: &TensorData,
    cfg: &EquilibriumConfig,
    seed: u64,
    on_step: &mut dyn FnMut(),
) -> Result<Equilibrium, NnError> {
    let mut trainer = ParticipationTrainer::new(net, cfg)?;
    let n = train.len();
    let mut epochs = Vec::with_capacity(cfg.train.epochs);
    let (per_epoch, mut step) = (n.div_ceil(cfg.train.batch_size), 0);
    for epoch in 0..cfg.train.epochs {
        let order = epoch_order(n, seed, epoch);
        let (mut loss_sum, mut batches) = (0.0, 0usize);
        for chunk in order.chunks(cfg.train.batch_size) {
            // The weights' learning rate follows the schedule as in `train` (the
            // participations' step stays constant); a constant schedule sets nothing.
            let schedule = &cfg.train.schedule;
            if !schedule.is_constant() {
                let total = cfg.train.epochs * per_epoch;
                trainer
                    .opt
                    .set_lr(cfg.train.lr * schedule.factor(step, total, per_epoch));
            }
            step += 1;
            let index = Tensor::from_slice(chunk).to_device(net.device());
            loss_sum += trainer.step(net, &train.select(&index));
            batches += 1;
            on_step();
        }
        let s = trainer.participation();
        epochs.push(EquilibriumEpoch {
            epoch: epoch + 1,
            loss: loss_sum / batches.max(1) as f64,
            probe_accuracy: evaluate_gated(net, probe, &trainer.gates).accuracy,
            active: s.iter().filter(|&&v| v as f64 >= cfg.epsilon).count(),
            mean_participation: s.iter().map(|&v| v as f64).sum::<f64>() / s.len().max(1) as f64,
        });
    }
    let participation = trainer.participation();
    let kept = participation
        .iter()
        .map(|&s| s as f64 >= cfg.epsilon)
        .collect();
    Ok(Equilibrium {
        participation,
        kept,
        epochs,
    })
}
