//! Training with micro-batches (`TrainConfig::micro_batches`): a mini-batch's parts computed
//! side by side give its gradient (to rounding), deterministically, for any split.

use gtap_nn::{retrain, Arch, Network, Optimizer, TrainConfig};
use tch::{Device, Tensor};

use super::{max_abs_diff, synthetic};

/// Plain SGD with learning rate 1: a step moves each weight by minus its gradient.
fn sgd(micro_batches: usize, batch_size: usize, dropout: f64) -> TrainConfig {
    TrainConfig {
        augment: Default::default(),
        schedule: Default::default(),
        micro_batches,
        epochs: 1,
        batch_size,
        lr: 1.0,
        optimizer: Optimizer::Sgd,
        momentum: 0.0,
        weight_decay: 0.0,
        dropout,
    }
}

fn parameters(net: &Network) -> Vec<(String, Tensor)> {
    let mut vars: Vec<_> = net
        .named_variables()
        .into_iter()
        .map(|(n, t)| (n, t.detach().copy()))
        .collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars
}

/// The parameters after training a fresh network of `arch` (seed 4) on `data` with `cfg`.
fn trained(arch: Arch, data: &gtap_nn::TensorData, cfg: &TrainConfig) -> Vec<(String, Tensor)> {
    let mut net = Network::new(arch, Device::Cpu, 4);
    gtap_nn::train(&mut net, data, &data.head(10), cfg, 11, &mut || {}).unwrap();
    parameters(&net)
}

#[test]
fn the_parts_gradients_add_up_to_the_mini_batchs() {
    // One step over 50 examples: each part's summed loss over 50, so the parts' gradients add
    // up to the mean loss's gradient, whatever the split (2 parts of 25, 3 of 17/17/16, 7).
    let data = synthetic(50, 1);
    for arch in [Arch::Lenet5, Arch::Lenet300100] {
        let whole = trained(arch, &data, &sgd(1, 50, 0.0));
        let before = parameters(&Network::new(arch, Device::Cpu, 4));
        for parts in [2, 3, 7] {
            let split = trained(arch, &data, &sgd(parts, 50, 0.0));
            for (((name, a), (_, b)), (_, start)) in whole.iter().zip(&split).zip(&before) {
                let step = max_abs_diff(a, start);
                assert!(step > 0.0, "{arch} {name}: SGD moved nothing");
                let gap = max_abs_diff(a, b);
                assert!(
                    gap <= 1e-5 * step.max(1e-3),
                    "{arch} {name}, {parts} parts: {gap} apart (the step was {step})"
                );
            }
        }
    }
}

#[test]
fn micro_batched_training_is_deterministic_for_every_split() {
    // 3 epochs of batches of 9 over 40 examples: the last batch has 4 examples, fewer than
    // the 5 parts asked for (it runs as 4 parts of one).
    let data = synthetic(40, 2);
    let mut cfg = sgd(5, 9, 0.0);
    cfg.epochs = 3;
    cfg.lr = 0.01;
    let a = trained(Arch::Lenet5, &data, &cfg);
    let b = trained(Arch::Lenet5, &data, &cfg);
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        assert!(x.equal(y), "{name} differs between two identical runs");
        assert!(
            x.isfinite().all().int64_value(&[]) == 1,
            "{name} is not finite"
        );
    }
    // With dropout the parts run in order on one thread (one stream of draws): also fixed.
    cfg.dropout = 0.3;
    let c = trained(Arch::Lenet5, &data, &cfg);
    let d = trained(Arch::Lenet5, &data, &cfg);
    for ((name, x), (_, y)) in c.iter().zip(&d) {
        assert!(
            x.equal(y),
            "{name} differs between two identical dropout runs"
        );
    }
}

#[test]
fn retraining_with_parts_is_retraining() {
    let data = synthetic(64, 3);
    let kept: Vec<bool> = (0..604).map(|p| p % 3 != 0).collect();
    let run = |parts| {
        let mut net = Network::new(Arch::Lenet5, Device::Cpu, 5);
        let mut cfg = sgd(parts, 32, 0.0);
        cfg.lr = 0.05;
        retrain(&mut net, &kept, &data, &cfg, 6, &mut || {}).unwrap();
        parameters(&net)
    };
    let (whole, split) = (run(1), run(2));
    for ((name, a), (_, b)) in whole.iter().zip(&split) {
        let gap = max_abs_diff(a, b);
        assert!(gap <= 1e-5, "{name}: {gap} apart");
    }
}
