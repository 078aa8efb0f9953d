//! A network's predicted marginal contributions (one backward pass through its gates): exact
//! where the network is linear in the gates, the gate derivative of ν for cross-entropy, and
//! usable by the control-variate estimator.

use gtap_game::{Coalition, Constraints, EstimateConfig, Estimator, Game, IndexKind};
use gtap_nn::{Arch, GateSpec, LayerSpec, MaskedEvaluator, Network, Shape, TensorData, Utility};
use tch::{Device, Kind, Tensor};

use crate::layers::dense;

/// 12 inputs, one hidden layer of 9 players, `classes` logits.
fn network(classes: usize, seed: u64) -> Network {
    let specs = vec![
        dense("hidden", 12, 9, true),
        LayerSpec::Gate(GateSpec { spread: 1 }),
        dense("out", 9, classes, false),
    ];
    let shape = Shape::features(12, classes);
    Network::from_specs(Arch::Mlp512x256, shape, &specs, Device::Cpu, seed).unwrap()
}

fn data(n: i64, classes: i64, seed: u64) -> TensorData {
    gtap_nn::with_torch_rng(seed, || TensorData {
        inputs: Tensor::randn([n, 12], (Kind::Float, Device::Cpu)),
        labels: Tensor::randint(classes, [n], (Kind::Int64, Device::Cpu)),
    })
}

fn coalitions(n: usize, count: usize) -> Vec<Coalition> {
    (0..count)
        .map(|j| Coalition::from_players(n, (0..n).filter(|i| (i * 7 + j * 3) % 5 < 3)))
        .collect()
}

/// Exact contributions ν(C ∪ {i}) − ν(C \ {i}), coalition-major.
fn exact_marginals(game: &MaskedEvaluator, cs: &[Coalition]) -> Vec<f64> {
    let n = game.num_players();
    let mut out = Vec::new();
    for c in cs {
        for i in 0..n {
            let (mut with, mut without) = (c.clone(), c.clone());
            with.insert(i);
            without.remove(i);
            let mut v = [0.0; 2];
            game.values(&[with, without], &mut v);
            out.push(v[0] - v[1]);
        }
    }
    out
}

/// Two classes and players that feed the logits directly: the margin is linear in the gates,
/// so the linearised flips are the exact flips and the predictions the exact contributions.
#[test]
fn exact_where_the_margin_is_linear_in_the_gates() {
    let net = network(2, 3);
    let data = data(300, 2, 4);
    let game = MaskedEvaluator::new(&net, &data, Utility::Accuracy, 8);
    assert!(game.predicts_marginals());
    let cs = coalitions(game.num_players(), 6);
    let mut predicted = vec![f64::NAN; cs.len() * game.num_players()];
    game.predicted_marginals(&cs, &mut predicted);
    let exact = exact_marginals(&game, &cs);
    assert!(exact.iter().any(|&x| x != 0.0), "some unit matters");
    for (p, x) in predicted.iter().zip(&exact) {
        assert!((p - x).abs() < 1e-12, "predicted {p}, exact {x}");
    }
}

/// Cross-entropy ν: the prediction is ∂ν/∂m_i at C, a central difference of ν along the gate.
#[test]
fn cross_entropy_predictions_are_the_gate_derivative() {
    let net = network(4, 5);
    let data = data(200, 4, 6);
    let game = MaskedEvaluator::new(&net, &data, Utility::NegativeCrossEntropy, 8);
    let n = game.num_players();
    let cs = coalitions(n, 3);
    let mut predicted = vec![f64::NAN; cs.len() * n];
    game.predicted_marginals(&cs, &mut predicted);
    let head = net.masked_suffix(0);
    let _guard = tch::no_grad_guard();
    let features = net.prefix(&data.inputs);
    let mean_log_p = |mask: &[f32]| {
        let logits = head
            .masked_logits(&features, &Tensor::from_slice(mask).view([1, n as i64]))
            .unwrap()
            .squeeze_dim(1)
            .to_kind(Kind::Double);
        logits
            .log_softmax(-1, Kind::Double)
            .gather(1, &data.labels.unsqueeze(1), false)
            .mean(Kind::Double)
            .double_value(&[])
    };
    let h = 1e-2;
    for (c, row) in cs.iter().zip(predicted.chunks(n)) {
        let mut mask = vec![0f32; n];
        c.write_mask(&mut mask);
        for i in 0..n {
            let (mut up, mut down) = (mask.clone(), mask.clone());
            up[i] += h as f32;
            down[i] -= h as f32;
            let derivative = (mean_log_p(&up) - mean_log_p(&down)) / (2.0 * h);
            assert!(
                (row[i] - derivative).abs() < 1e-3 * (1.0 + derivative.abs()),
                "player {i}: predicted {}, finite difference {derivative}",
                row[i]
            );
        }
    }
}

/// A layer-wise game starts past the earlier layers (their units all present): its predictions
/// for the later layer's units are the whole network's at coalitions holding every earlier unit
/// (up to float32 rounding: the prefix runs apart).
#[test]
fn a_game_starting_at_a_later_layer_predicts_as_the_whole_network() {
    let specs = vec![
        dense("first", 12, 9, true),
        LayerSpec::Gate(GateSpec { spread: 1 }),
        dense("second", 9, 7, true),
        LayerSpec::Gate(GateSpec { spread: 1 }),
        dense("out", 7, 3, false),
    ];
    let net = Network::from_specs(
        Arch::Mlp512x256,
        Shape::features(12, 3),
        &specs,
        Device::Cpu,
        8,
    )
    .unwrap();
    let data = data(200, 3, 9);
    let utility = Utility::NegativeCrossEntropy;
    let whole = MaskedEvaluator::new(&net, &data, utility, 8);
    let later = MaskedEvaluator::starting_at(&net, &data, utility, 8, 1);
    let n = whole.num_players();
    assert_eq!(n, 16);
    let cs: Vec<Coalition> = (0..5)
        .map(|j| Coalition::from_players(n, (0..9).chain((9..n).filter(|i| (i * 3 + j) % 4 < 2))))
        .collect();
    let (mut a, mut b) = (vec![f64::NAN; cs.len() * n], vec![f64::NAN; cs.len() * n]);
    whole.predicted_marginals(&cs, &mut a);
    later.predicted_marginals(&cs, &mut b);
    for (ra, rb) in a.chunks(n).zip(b.chunks(n)) {
        for i in 9..n {
            assert!(
                (ra[i] - rb[i]).abs() < 1e-6,
                "player {i}: {} vs {}",
                ra[i],
                rb[i]
            );
        }
        assert!(ra[9..].iter().any(|&p| p.abs() > 1e-4), "{ra:?}");
    }
}

/// On a ten-class network (the margin's best rival can change) the predictions are not exact
/// but the control-variate estimator runs on the network game and stays near the exact
/// index; every byte repeats.
#[test]
fn the_control_variate_estimator_runs_on_a_network() {
    let net = network(10, 7);
    let data = data(400, 10, 8);
    let game = MaskedEvaluator::new(&net, &data, Utility::Accuracy, 16).with_incremental(true);
    let index = IndexKind::BiasedBanzhaf { d: 0.6 };
    let exact = gtap_game::exact(&game, &index, &Constraints::none()).unwrap();
    let cfg = EstimateConfig {
        index,
        estimator: Estimator::ControlVariate {
            stars: 40,
            folds: 4,
            shrink: false,
        },
        samples: 200,
        seed: 2,
    };
    let est = gtap_game::estimate(&game, &cfg, &Constraints::none(), &|_| {}).unwrap();
    for (e, x) in est.iter().zip(&exact) {
        assert!(
            (e.estimate - x.estimate).abs() <= 4.0 * e.stderr + 1e-9,
            "{e:?} vs {x:?}"
        );
    }
    let again = gtap_game::estimate(&game, &cfg, &Constraints::none(), &|_| {}).unwrap();
    assert_eq!(est, again);
}

/// A label outside the network's classes is an error of the prediction, not a panic.
#[test]
fn a_label_out_of_range_is_an_error() {
    let net = network(3, 9);
    let mut bad = data(20, 3, 10);
    bad.labels = bad.labels.fill(7);
    let game = MaskedEvaluator::new(&net, &bad, Utility::Accuracy, 8);
    let cs = coalitions(game.num_players(), 2);
    assert!(game.predicted_marginals_of(&cs).is_err());
}
