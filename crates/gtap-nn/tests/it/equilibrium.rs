//! Equilibrium-driven sparsification: the participation step is the stated formula, the sign of
//! the benefit keeps useful units, and the pruned network is the gated one.

use gtap_nn::{
    train_equilibrium, Arch, Equilibrium, EquilibriumConfig, Network, Optimizer,
    ParticipationTrainer, Shape, TensorData, TrainConfig,
};
use tch::{Device, Kind, Tensor};

use super::{max_abs_diff, synthetic};

fn config(alpha: f64, beta: f64, gamma: f64, eta: f64, participation_lr: f64) -> EquilibriumConfig {
    EquilibriumConfig {
        train: TrainConfig {
            augment: Default::default(),
            schedule: Default::default(),
            micro_batches: 1,
            epochs: 1,
            batch_size: 64,
            // Weights frozen: these tests are about the participations.
            lr: 0.0,
            optimizer: Optimizer::Sgd,
            momentum: 0.0,
            weight_decay: 0.0,
            dropout: 0.0,
        },
        alpha,
        beta,
        gamma,
        eta,
        participation_lr,
        epsilon: 0.01,
        benefit: gtap_nn::Benefit::LossReduction,
    }
}

fn values(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.to_kind(Kind::Double).flatten(0, -1)).unwrap()
}

/// At s = 1, ∂L/∂s_i = ⟨∇_{θ_i} L, θ_i⟩ for the plain network (scaling a ReLU unit's activation
/// is scaling its incoming weights and bias), so one step can be computed by hand from the plain
/// network's weight gradients, with every cost term in f64.
#[test]
fn a_participation_step_matches_the_hand_computed_one() {
    let net = Network::new(Arch::Lenet300100, Device::Cpu, 3);
    let data = synthetic(64, 5);
    let cfg = config(1.0, 0.05, 0.01, 0.002, 0.5);
    let (alpha, beta, gamma, eta, lr) = (1.0, 0.05, 0.01, 0.002, 0.5);

    let grads = net.loss_gradients(&data);
    let var = |name: &str| {
        let vars = net.named_variables();
        values(&vars.iter().find(|(n, _)| n == name).unwrap().1.detach())
    };
    let grad = |name: &str| values(&grads.iter().find(|(n, _)| n == name).unwrap().1);
    let mut expected = Vec::new();
    let mut benefits = Vec::new();
    for (layer, (units, fan_in)) in [("fc1", (300, 784)), ("fc2", (100, 300))] {
        let (w, b) = (
            var(&format!("{layer}.weight")),
            var(&format!("{layer}.bias")),
        );
        let (gw, gb) = (
            grad(&format!("{layer}.weight")),
            grad(&format!("{layer}.bias")),
        );
        let group = |u: usize| -> Vec<f64> {
            let mut g = w[u * fan_in..(u + 1) * fan_in].to_vec();
            g.push(b[u]);
            g
        };
        let groups: Vec<Vec<f64>> = (0..units).map(group).collect();
        let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
        for u in 0..units {
            let mut g = gw[u * fan_in..(u + 1) * fan_in].to_vec();
            g.push(gb[u]);
            let loss_grad = dot(&g, &groups[u]);
            let competition: f64 = (0..units)
                .filter(|&j| j != u)
                .map(|j| dot(&groups[u], &groups[j]))
                .sum();
            let ascent = -alpha * loss_grad
                - 2.0 * beta * dot(&groups[u], &groups[u])
                - gamma
                - eta * competition;
            expected.push((1.0 + lr * ascent).clamp(0.0, 1.0));
            benefits.push(alpha * loss_grad);
        }
    }

    let mut trainer = ParticipationTrainer::new(&net, &cfg).unwrap();
    trainer.step(&net, &data);
    let got = trainer.participation();
    let worst = got
        .iter()
        .zip(&expected)
        .map(|(&g, e)| (g as f64 - e).abs())
        .fold(0.0, f64::max);
    assert!(
        worst < 1e-5,
        "largest deviation from the hand-computed step: {worst}"
    );
    // The benefit moves the step by far more than the tolerance, so its sign is checked.
    let largest_benefit = benefits.iter().map(|b| (lr * b).abs()).fold(0.0, f64::max);
    assert!(
        largest_benefit > 1e-3,
        "benefit too small to test: {largest_benefit}"
    );
    assert!(got.iter().any(|&s| s < 1.0) && got.iter().all(|&s| (0.0..=1.0).contains(&s)));
}

/// A 2-input MLP where fc1 unit 0 (x₀ → class) and fc2 unit 0 carry the whole decision, fc1
/// unit 1 reads noise into fc2 unit 1, which the output ignores, and every other unit is dead.
fn one_useful_path() -> (Network, TensorData) {
    let shape = Shape::features(2, 2);
    let net = Network::with_shape(Arch::Mlp512x256, shape, Device::Cpu, 0).unwrap();
    {
        let _guard = tch::no_grad_guard();
        for (_, mut v) in net.named_variables() {
            let _ = v.zero_();
        }
        let vars = net.named_variables();
        let set = |name: &str, index: &[i64], value: f64| {
            let v = &vars.iter().find(|(n, _)| n == name).unwrap().1;
            let mut slot = index.iter().fold(v.shallow_clone(), |t, &i| t.get(i));
            let _ = slot.fill_(value);
        };
        set("fc1.weight", &[0, 0], 4.0);
        set("fc1.weight", &[1, 1], 1.0);
        set("fc2.weight", &[0, 0], 1.0);
        set("fc2.weight", &[1, 1], 1.0);
        set("fc3.weight", &[1, 0], 2.0);
        set("fc3.bias", &[1], -4.0);
    }
    let n = 200;
    let labels = Tensor::arange(n, (Kind::Int64, Device::Cpu)).remainder(2);
    let sign = &labels.to_kind(Kind::Float) * 2.0 - 1.0;
    let noise = gtap_nn::with_torch_rng(1, || Tensor::randn([n], (Kind::Float, Device::Cpu)));
    let inputs = Tensor::stack(&[sign, noise], 1);
    (net, TensorData { inputs, labels })
}

#[test]
fn a_useless_unit_collapses_and_an_essential_one_stays() {
    let (mut net, data) = one_useful_path();
    let mut cfg = config(1.0, 0.01, 0.01, 0.0, 0.3);
    cfg.train.epochs = 150;
    cfg.train.batch_size = 50;
    let eq = train_equilibrium(&mut net, &data, &data, &cfg, 0, &mut || ()).unwrap();
    let kept: Vec<usize> = (0..eq.kept.len()).filter(|&p| eq.kept[p]).collect();
    // fc1 unit 0 is player 0, fc2 unit 0 is player 512.
    assert_eq!(
        kept,
        [0, 512],
        "participations {:?}",
        &eq.participation[..4]
    );
    assert!(eq.participation[0] > 0.5 && eq.participation[512] > 0.5);
    // The noise path (fc1 unit 1, fc2 unit 1) had non-zero activations and still collapsed.
    assert!(eq.participation[1] == 0.0 && eq.participation[513] == 0.0);
    assert_eq!(eq.epochs.last().unwrap().probe_accuracy, 1.0);

    // The paper's formula read literally pushes the useful units down instead.
    let (mut net, data) = one_useful_path();
    cfg.benefit = gtap_nn::Benefit::PaperLiteral;
    let eq = train_equilibrium(&mut net, &data, &data, &cfg, 0, &mut || ()).unwrap();
    assert!(
        eq.participation[0] < 0.01 && eq.participation[512] < 0.01,
        "{:?}",
        &eq.participation[..2]
    );
}

#[test]
fn the_pruned_network_is_the_gated_one_with_removed_gates_at_zero() {
    // The ViT's players are its heads (a head's participation scales its value rows) and FFN
    // neurons.
    for arch in [Arch::Lenet300100, Arch::Lenet5, Arch::Mlp512x256, Arch::Vit] {
        let net = Network::new(arch, Device::Cpu, 2);
        let players = net.num_players();
        let participation: Vec<f32> = (0..players)
            .map(|p| ((p * 37) % 101) as f32 / 100.0)
            .collect();
        let eq = Equilibrium {
            kept: participation.iter().map(|&s| s >= 0.01).collect(),
            participation,
            epochs: vec![],
        };
        assert!(eq.kept.iter().any(|&k| !k));
        let scale = eq.fold_scale();
        let xs = synthetic(32, 9).inputs;
        let gated = net.forward_gated(&xs, &Tensor::from_slice(&scale));
        let mut pruned = Network::new(arch, Device::Cpu, 2);
        pruned.scale_outgoing(&scale);
        let diff = max_abs_diff(&gated, &pruned.forward(&xs));
        assert!(
            diff < 1e-5,
            "{arch}: pruned vs gated logits differ by {diff}"
        );
        // Removed units are really gone: masking them out changes nothing.
        let masks =
            Tensor::from_slice(&eq.kept.iter().map(|&k| k as u8 as f32).collect::<Vec<_>>())
                .unsqueeze(0);
        let masked = pruned
            .masked_logits(&pruned.prefix(&xs), &masks)
            .unwrap()
            .squeeze_dim(1);
        let diff = max_abs_diff(&masked, &pruned.forward(&xs));
        assert!(
            diff < 1e-5,
            "{arch}: masking the removed units moves logits by {diff}"
        );
    }
}

#[test]
fn conv_features_share_their_filter_as_group() {
    let net = Network::new(Arch::Lenet5, Device::Cpu, 0);
    let groups = net.incoming_groups(0);
    assert_eq!(groups.size(), [400, 6 * 25 + 1]);
    // Features 0..25 are channel 0's positions; 25 starts channel 1.
    assert_eq!(max_abs_diff(&groups.get(0), &groups.get(24)), 0.0);
    assert!(max_abs_diff(&groups.get(0), &groups.get(25)) > 0.0);
    assert_eq!(net.incoming_groups(1).size(), [120, 401]);
}

#[test]
fn equilibrium_training_is_deterministic() {
    let run = || {
        let mut net = Network::new(Arch::Lenet300100, Device::Cpu, 1);
        let data = synthetic(96, 2);
        let mut cfg = config(1.0, 0.1, 0.01, 0.0, 0.01);
        cfg.train.lr = 1e-3;
        cfg.train.optimizer = Optimizer::Adam;
        cfg.train.epochs = 2;
        cfg.train.batch_size = 32;
        let eq = train_equilibrium(&mut net, &data, &data, &cfg, 4, &mut || ()).unwrap();
        let weights = values(&net.named_variables()[0].1.detach());
        (eq, weights)
    };
    let (a, wa) = run();
    let (b, wb) = run();
    assert_eq!(a, b);
    assert_eq!(wa, wb);
    assert_eq!(a.epochs.len(), 2);
}

/// A participation per attention head: the equilibrium game played by a ViT's 8 heads alone
/// (FFN neurons always present) trains, is deterministic, and its folded network is the gated
/// one.
#[test]
fn a_vit_s_heads_play_the_equilibrium_game() {
    let heads = ["block1.attn".to_owned(), "block2.attn".to_owned()];
    let data = synthetic(64, 3);
    let run = || {
        let mut net = Network::new(Arch::Vit, Device::Cpu, 1)
            .with_player_layers(&heads)
            .unwrap();
        let mut cfg = config(1.0, 0.5, 0.05, 0.01, 0.5);
        cfg.train.lr = 1e-3;
        cfg.train.optimizer = Optimizer::Adam;
        cfg.train.batch_size = 32;
        let eq = train_equilibrium(&mut net, &data, &data, &cfg, 4, &mut || ()).unwrap();
        (net, eq)
    };
    let (net, a) = run();
    let (_, b) = run();
    assert_eq!(a.participation, b.participation);
    assert_eq!(a.participation.len(), 8);
    assert!(a.participation.iter().all(|s| (0.0..=1.0).contains(s)));
    assert!(
        a.participation.iter().any(|&s| s < 1.0),
        "the cost terms move every head off 1: {:?}",
        a.participation
    );
    let scale = a.fold_scale();
    let xs = synthetic(16, 9).inputs;
    let gated = net.forward_gated(&xs, &Tensor::from_slice(&scale));
    let mut folded = net.with_player_layers(&heads).unwrap();
    folded.scale_outgoing(&scale);
    let diff = max_abs_diff(&gated, &folded.forward(&xs));
    assert!(diff < 1e-5, "folded vs gated logits differ by {diff}");
}
