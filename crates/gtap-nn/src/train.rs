use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::nn::OptimizerConfig;
use tch::{Kind, Tensor};

use crate::{Network, NnError, TensorData};

/// Optimiser choice for [`train`].
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Optimizer {
    Adam,
    Sgd,
    /// Adam with decoupled weight decay (Loshchilov & Hutter 2019), the transformer recipe.
    Adamw,
}

/// How the learning rate moves over training: a linear warm-up from lr/steps to lr over the
/// first `warmup_epochs` (the transformer recipe), then constant or a cosine decay to 0 at
/// the last step. The default (no warm-up, constant) is plain training.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    #[serde(default)]
    pub warmup_epochs: f64,
    #[serde(default)]
    pub decay: Decay,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Decay {
    #[default]
    Constant,
    Cosine,
}

impl Schedule {
    pub fn is_constant(&self) -> bool {
        *self == Schedule::default()
    }

    /// The multiple of the base learning rate at step `step` (0-based) of `total`, with
    /// `per_epoch` steps an epoch.
    pub fn factor(&self, step: usize, total: usize, per_epoch: usize) -> f64 {
        let warmup = (self.warmup_epochs * per_epoch as f64).round() as usize;
        let warm = if step < warmup {
            (step + 1) as f64 / warmup as f64
        } else {
            1.0
        };
        let decay = match self.decay {
            Decay::Constant => 1.0,
            Decay::Cosine if step < warmup || total <= warmup => 1.0,
            Decay::Cosine => {
                let t = (step - warmup) as f64 / (total - warmup) as f64;
                0.5 * (1.0 + (std::f64::consts::PI * t).cos())
            }
        };
        warm * decay
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub optimizer: Optimizer,
    /// SGD momentum (ignored by Adam).
    pub momentum: f64,
    pub weight_decay: f64,
    /// Dropout rate on the player layers' activations during training (0 = none).
    pub dropout: f64,
    /// Random flips and shifts of training images (none by default).
    pub augment: Augment,
    /// Warm-up and decay of the learning rate (constant by default).
    pub schedule: Schedule,
    /// Parts each mini-batch is split into ([`MicroBatches`]): 1 is one forward and backward
    /// pass per mini-batch; ≥ 2 computes the parts' gradients side by side.
    pub micro_batches: usize,
}

/// Data augmentation of training images, drawn per example from a ChaCha8 stream seeded with
/// the training seed and the epoch (so it is part of the deterministic recipe).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Augment {
    /// Mirror each image left-right with probability 1/2.
    #[serde(default)]
    pub flip: bool,
    /// Translate each image by up to this many pixels along each axis (zero fill).
    #[serde(default)]
    pub shift: usize,
}

impl Augment {
    pub fn is_none(&self) -> bool {
        !self.flip && self.shift == 0
    }

    /// `xs` (`[B, …]` images of `image` = `[C, H, W]`) flipped and shifted per example.
    fn apply(&self, xs: &Tensor, image: [i64; 3], rng: &mut ChaCha8Rng) -> Tensor {
        use rand::Rng;
        let [c, h, w] = image;
        let s = self.shift as i64;
        let b = xs.size()[0];
        let padded = xs.view([b, c, h, w]).constant_pad_nd([s, s, s, s]);
        let out: Vec<Tensor> = (0..b)
            .map(|i| {
                let (dy, dx) = if s > 0 {
                    (rng.random_range(0..=2 * s), rng.random_range(0..=2 * s))
                } else {
                    (0, 0)
                };
                let x = padded.get(i).narrow(1, dy, h).narrow(2, dx, w);
                if self.flip && rng.random_bool(0.5) {
                    x.flip([2])
                } else {
                    x
                }
            })
            .collect();
        Tensor::stack(&out, 0).view([b, -1])
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct EpochMetrics {
    pub epoch: usize,
    /// Mean training loss over the epoch's mini-batches.
    pub loss: f64,
    /// Accuracy on the training split after the epoch.
    pub train_accuracy: f64,
    pub probe_accuracy: f64,
}

/// Trains `net` in place. Deterministic for a seed on one machine with a fixed libtorch thread
/// count: initial weights come from `Network::new(.., seed)`, and the mini-batch order of epoch
/// `e` from a ChaCha8 stream seeded with `(seed, e)`; dropout masks from libtorch's RNG seeded
/// with `seed` (held for the whole run when dropout is on). `on_step` is called after each mini-batch.
pub fn train(
    net: &mut Network,
    train: &TensorData,
    probe: &TensorData,
    cfg: &TrainConfig,
    seed: u64,
    on_step: &mut dyn FnMut(),
) -> Result<Vec<EpochMetrics>, NnError> {
    // Only dropout draws from libtorch's global RNG: without it, training holds no process-wide
    // lock, so trainings in concurrent engine jobs overlap.
    crate::numerics::current();
    let _rng = (cfg.dropout > 0.0).then(|| crate::lock_torch_rng(seed));
    let mut opt = optimizer(net, cfg)?;
    let image = match (cfg.augment.is_none(), net.image()) {
        (true, _) => None,
        (false, Some(image)) => Some(image),
        (false, None) => {
            return Err(NnError::Augment {
                arch: net.arch.to_string(),
            })
        }
    };
    let n = train.len();
    let per_epoch = n.div_ceil(cfg.batch_size.max(1));
    let micro_batches = MicroBatches::new(cfg.micro_batches);
    let mut step = 0;
    let mut metrics = Vec::with_capacity(cfg.epochs);
    for epoch in 0..cfg.epochs {
        let order = epoch_order(n, seed, epoch);
        let mut augment_rng = ChaCha8Rng::seed_from_u64(seed);
        augment_rng.set_stream(AUGMENT_STREAMS + epoch as u64);
        let (mut loss_sum, mut batches) = (0.0, 0usize);
        for chunk in order.chunks(cfg.batch_size) {
            let index = Tensor::from_slice(chunk).to_device(net.device());
            let batch = train.select(&index);
            let inputs = match image {
                Some(image) => cfg.augment.apply(&batch.inputs, image, &mut augment_rng),
                None => batch.inputs,
            };
            if !cfg.schedule.is_constant() {
                opt.set_lr(cfg.lr * cfg.schedule.factor(step, cfg.epochs * per_epoch, per_epoch));
            }
            step += 1;
            let pass = Pass::Train {
                dropout: cfg.dropout,
            };
            loss_sum += micro_batches.step(net, &mut opt, &pass, &inputs, &batch.labels)?;
            batches += 1;
            on_step();
        }
        // Accuracies only: the same counts as `evaluate`'s, in chunks small enough for
        // both cores.
        let train_accuracy = crate::eval::accuracy(net, train);
        let probe_accuracy = crate::eval::accuracy(net, probe);
        metrics.push(EpochMetrics {
            epoch: epoch + 1,
            loss: loss_sum / batches.max(1) as f64,
            train_accuracy,
            probe_accuracy,
        });
    }
    Ok(metrics)
}

/// Trains the sub-network of the players with `kept[p]` again (fine-tuning when `net` holds
/// trained weights, lottery-ticket retraining when it holds its initial ones): every mini-batch
/// runs the network with the other players' activations at zero ([`Network::forward_gated`] with
/// a 0/1 gate), so they receive no gradient, and at the end their weights are zeroed
/// ([`Network::remove_units`]): the plain forward pass of the result is the sub-network.
/// Deterministic for a seed like [`train`] (same mini-batch order; `cfg.dropout` is not used).
pub fn retrain(
    net: &mut Network,
    kept: &[bool],
    train: &TensorData,
    cfg: &TrainConfig,
    seed: u64,
    on_step: &mut dyn FnMut(),
) -> Result<(), NnError> {
    crate::numerics::current();
    assert_eq!(kept.len(), net.num_players(), "one flag per player");
    let gates: Vec<f32> = kept.iter().map(|&k| f32::from(u8::from(k))).collect();
    let gates = Tensor::from_slice(&gates).to_device(net.device());
    let mut opt = optimizer(net, cfg)?;
    let micro_batches = MicroBatches::new(cfg.micro_batches);
    let pass = Pass::Gated(gates);
    for epoch in 0..cfg.epochs {
        for chunk in epoch_order(train.len(), seed, epoch).chunks(cfg.batch_size) {
            let index = Tensor::from_slice(chunk).to_device(net.device());
            let batch = train.select(&index);
            micro_batches.step(net, &mut opt, &pass, &batch.inputs, &batch.labels)?;
            on_step();
        }
    }
    net.remove_units(kept);
    Ok(())
}

/// The training forward pass of one mini-batch.
enum Pass {
    /// [`Network::forward_train`] with this dropout rate.
    Train { dropout: f64 },
    /// [`Network::forward_gated`] with these gates (retraining a sub-network).
    Gated(Tensor),
}

impl Pass {
    fn logits(&self, net: &Network, xs: &Tensor) -> Tensor {
        match self {
            Pass::Train { dropout } => net.forward_train(xs, *dropout),
            Pass::Gated(gates) => net.forward_gated(xs, gates),
        }
    }

    /// This pass for another thread.
    fn shallow_clone(&self) -> Pass {
        match self {
            Pass::Train { dropout } => Pass::Train { dropout: *dropout },
            Pass::Gated(gates) => Pass::Gated(gates.shallow_clone()),
        }
    }

    /// Whether it draws from libtorch's global RNG (dropout), whose draws must come in one
    /// order.
    fn draws(&self) -> bool {
        matches!(self, Pass::Train { dropout } if *dropout > 0.0)
    }
}

/// How a mini-batch's gradient is computed (`TrainConfig::micro_batches`).
///
/// With one part: one forward and backward pass over the mini-batch (the bytes of every
/// checkpoint trained before micro-batches). With M ≥ 2: the mini-batch's examples split into
/// M consecutive parts (sizes differing by at most one), each part's gradient of its summed
/// loss over the mini-batch size computed on one libtorch thread
/// ([`crate::numerics::map_in_parallel`]; convolutions by strided columns, see
/// [`crate::numerics::with_strided_gradients`]), and the M gradients added in part order.
/// The result depends on M, never on the number of threads: the same bytes on one core or
/// sixteen. Dropout draws from libtorch's global RNG, so with dropout the parts run one after
/// another on this thread, in order.
#[derive(Debug, Clone, Copy)]
struct MicroBatches(usize);

impl MicroBatches {
    fn new(parts: usize) -> MicroBatches {
        MicroBatches(parts.max(1))
    }

    /// One optimiser step on the mini-batch `(xs, ys)`; returns its mean loss.
    fn step(
        self,
        net: &Network,
        opt: &mut tch::nn::Optimizer,
        pass: &Pass,
        xs: &Tensor,
        ys: &Tensor,
    ) -> Result<f64, NnError> {
        if self.0 == 1 {
            let loss = pass.logits(net, xs).cross_entropy_for_logits(ys);
            opt.backward_step(&loss);
            return Ok(loss.to_kind(Kind::Double).double_value(&[]));
        }
        let b = xs.size()[0];
        let parts = (self.0 as i64).min(b);
        let variables = net.vs.trainable_variables();
        let mut work = Vec::with_capacity(parts as usize);
        let mut start = 0;
        for part in 0..parts {
            let len = b / parts + i64::from(part < b % parts);
            work.push((
                net.shallow_clone(),
                pass.shallow_clone(),
                xs.narrow(0, start, len),
                ys.narrow(0, start, len),
                variables
                    .iter()
                    .map(Tensor::shallow_clone)
                    .collect::<Vec<_>>(),
            ));
            start += len;
        }
        let gradients =
            |(net, pass, xs, ys, variables): (Network, Pass, Tensor, Tensor, Vec<Tensor>)| {
                crate::numerics::with_strided_gradients(|| {
                    let loss = pass.logits(&net, &xs).cross_entropy_loss::<Tensor>(
                        &ys,
                        None,
                        tch::Reduction::Sum,
                        -100,
                        0.0,
                    ) / b as f64;
                    let grads = Tensor::f_run_backward(&[&loss], &variables, false, false)?;
                    Ok::<_, NnError>((loss.to_kind(Kind::Double).double_value(&[]), grads))
                })
            };
        let done = if pass.draws() {
            work.into_iter().map(gradients).collect::<Vec<_>>()
        } else {
            crate::numerics::map_in_parallel(work, gradients)
        };
        // Gradients added in part order; a variable no part reached has none.
        let mut loss = 0.0;
        let mut total: Vec<Option<Tensor>> = variables.iter().map(|_| None).collect();
        for part in done {
            let (part_loss, grads) = part?;
            loss += part_loss;
            for (sum, g) in total.iter_mut().zip(grads) {
                if g.defined() {
                    *sum = Some(match sum.take() {
                        Some(s) => s + g,
                        None => g,
                    });
                }
            }
        }
        // The optimiser reads `.grad`: a backward pass of Σ⟨v, g⟩ sets each variable's
        // gradient to g exactly (1·g), whatever state the optimiser left it in.
        let surrogate = variables
            .iter()
            .zip(&total)
            .filter_map(|(v, g)| g.as_ref().map(|g| (v * g.detach()).sum(Kind::Float)))
            .reduce(|a, b| a + b);
        if let Some(surrogate) = surrogate {
            opt.backward_step(&surrogate);
        }
        Ok(loss)
    }
}

/// The optimiser `cfg` names, over every variable of `net`.
pub(crate) fn optimizer(net: &Network, cfg: &TrainConfig) -> Result<tch::nn::Optimizer, NnError> {
    Ok(match cfg.optimizer {
        Optimizer::Adam => tch::nn::Adam {
            wd: cfg.weight_decay,
            ..Default::default()
        }
        .build(&net.vs, cfg.lr)?,
        Optimizer::Adamw => tch::nn::AdamW {
            wd: cfg.weight_decay,
            ..Default::default()
        }
        .build(&net.vs, cfg.lr)?,
        Optimizer::Sgd => tch::nn::Sgd {
            momentum: cfg.momentum,
            wd: cfg.weight_decay,
            ..Default::default()
        }
        .build(&net.vs, cfg.lr)?,
    })
}

/// First ChaCha8 stream of the augmentation draws (epoch e uses this + e), apart from the
/// mini-batch orders' streams 1, 2, ….
const AUGMENT_STREAMS: u64 = 1 << 32;

/// The mini-batch order of epoch `epoch` (0-based): a permutation of `0..n` from a ChaCha8
/// stream seeded with `(seed, epoch)`.
pub(crate) fn epoch_order(n: usize, seed: u64, epoch: usize) -> Vec<i64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(epoch as u64 + 1);
    let mut order: Vec<i64> = (0..n as i64).collect();
    order.shuffle(&mut rng);
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warm_up_rises_linearly_and_cosine_decays_to_zero() {
        let s = Schedule {
            warmup_epochs: 1.0,
            decay: Decay::Cosine,
        };
        // 4 steps an epoch, 3 epochs: warm-up over steps 0..4, decay over steps 4..12.
        let f: Vec<f64> = (0..12).map(|t| s.factor(t, 12, 4)).collect();
        assert_eq!(&f[..4], &[0.25, 0.5, 0.75, 1.0]);
        assert_eq!(f[4], 1.0);
        assert!((f[8] - 0.5).abs() < 1e-12);
        assert!(f[11] > 0.0 && f[11] < 0.04);
        assert!(f[4..].windows(2).all(|w| w[1] < w[0]));
        let constant = Schedule::default();
        assert!(constant.is_constant());
        assert!((0..12).all(|t| constant.factor(t, 12, 4) == 1.0));
        let warm_only = Schedule {
            warmup_epochs: 0.5,
            decay: Decay::Constant,
        };
        assert_eq!(warm_only.factor(0, 12, 4), 0.5);
        assert_eq!(warm_only.factor(5, 12, 4), 1.0);
    }
}
