//! Michel et al.'s gate importance E_x |∂L(x)/∂ξ_i|: per example before the absolute value,
//! equal to the gradient of the gated network's loss, and to a finite difference of it.

use gtap_nn::{Arch, Network, TensorData};
use tch::{Device, Kind, Tensor};

fn synthetic(n: i64, inputs: i64, seed: u64) -> TensorData {
    gtap_nn::with_torch_rng(seed, || TensorData {
        inputs: Tensor::randn([n, inputs], (Kind::Float, Device::Cpu)),
        labels: Tensor::randint(10, [n], (Kind::Int64, Device::Cpu)),
    })
}

fn one(data: &TensorData, j: i64) -> TensorData {
    TensorData {
        inputs: data.inputs.narrow(0, j, 1),
        labels: data.labels.narrow(0, j, 1),
    }
}

/// |∂L/∂ξ| of one example through `forward_gated` (one gate vector for the batch).
fn gated_gradient(net: &Network, data: &TensorData, at: &[f32]) -> Vec<f64> {
    let gates = Tensor::from_slice(at).set_requires_grad(true);
    let loss = net
        .forward_gated(&data.inputs, &gates)
        .cross_entropy_for_logits(&data.labels);
    let grad = Tensor::run_backward(&[loss], &[&gates], false, false).remove(0);
    Vec::<f64>::try_from(grad.abs().to_kind(Kind::Double)).unwrap()
}

fn check(arch: Arch, inputs: i64) {
    let net = Network::new(arch, Device::Cpu, 5);
    let players = net.num_players();
    let data = synthetic(6, inputs, 6);
    // Some players removed, as the iterative variant evaluates it.
    let at: Vec<f32> = (0..players).map(|p| f32::from(p % 5 != 2)).collect();
    let all = net.gate_importance(&data, &at).unwrap();
    let mut mean = vec![0.0; players];
    for j in 0..6 {
        let single = net.gate_importance(&one(&data, j), &at).unwrap();
        let reference = gated_gradient(&net, &one(&data, j), &at);
        for p in 0..players {
            assert!(
                (single[p] - reference[p]).abs() <= 1e-5 * (1.0 + reference[p]),
                "{arch} example {j} player {p}: {} vs {}",
                single[p],
                reference[p]
            );
            mean[p] += single[p] / 6.0;
        }
    }
    for p in 0..players {
        assert!(
            (all[p] - mean[p]).abs() <= 1e-6 * (1.0 + mean[p]),
            "{arch} player {p}"
        );
    }
    // Not the gradient of the mean loss: |mean of gradients| ≤ mean of |gradients|, strictly
    // for some player on random data.
    let pooled = gated_gradient(&net, &data, &at);
    assert!((0..players).all(|p| pooled[p] <= all[p] + 1e-6));
    assert!((0..players).any(|p| pooled[p] < all[p] - 1e-4));
    // A finite difference of the first example's loss in the most important player's gate.
    let ex = one(&data, 0);
    let single = net.gate_importance(&ex, &at).unwrap();
    let top = (0..players)
        .max_by(|&a, &b| single[a].total_cmp(&single[b]))
        .unwrap();
    let loss_at = |delta: f32| {
        let mut g = at.clone();
        g[top] += delta;
        let _guard = tch::no_grad_guard();
        net.forward_gated(&ex.inputs, &Tensor::from_slice(&g))
            .cross_entropy_for_logits(&ex.labels)
            .double_value(&[])
    };
    let fd = ((loss_at(1e-2) - loss_at(-1e-2)) / 2e-2).abs();
    assert!(
        (fd - single[top]).abs() <= 0.02 * single[top] + 1e-4,
        "{arch}: finite difference {fd} vs {}",
        single[top]
    );
}

#[test]
fn gate_importance_is_the_mean_absolute_per_example_gate_gradient() {
    check(Arch::Lenet300100, 784);
    check(Arch::Vit, 784);
    check(Arch::Lenet5, 784);
}

#[test]
fn gate_importance_wants_one_gate_per_player_and_examples() {
    let net = Network::new(Arch::Lenet300100, Device::Cpu, 0);
    let err = net
        .gate_importance(&synthetic(2, 784, 0), &[1.0; 3])
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "mask has 3 columns, the network has 400 players"
    );
    let empty = synthetic(0, 784, 0);
    let err = net.gate_importance(&empty, &[1.0; 400]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "gate importances need examples to compute gradients on"
    );
}
