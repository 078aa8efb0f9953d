//! Models: masks do what they say, batching changes nothing, training is deterministic.

mod alexnet;
mod certify;
mod equilibrium;
mod export;
mod gemm;
mod importance;
mod layers;
mod linearise;
mod micro_batches;
mod numerics;
mod retrain;
mod text_transformer;
mod vit;
mod walks;

use gtap_game::{Coalition, Game};
use gtap_nn::{Arch, MaskedEvaluator, Network, Optimizer, Shape, TensorData, TrainConfig, Utility};
use tch::{Device, Kind, Tensor};

/// Every architecture at its default (MNIST) shape.
const ARCHS: [Arch; 4] = [
    Arch::Lenet300100,
    Arch::Lenet5,
    Arch::Mlp3x256,
    Arch::Mlp512x256,
];

fn synthetic(n: i64, seed: i64) -> TensorData {
    gtap_nn::with_torch_rng(seed as u64, || TensorData {
        inputs: Tensor::randn([n, 784], (Kind::Float, Device::Cpu)),
        labels: Tensor::randint(10, [n], (Kind::Int64, Device::Cpu)),
    })
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

#[test]
fn player_layers_match_the_brief() {
    let sizes = |arch| {
        Network::new(arch, Device::Cpu, 0)
            .player_layers()
            .iter()
            .map(|l| (l.name.clone(), l.size))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        sizes(Arch::Lenet300100),
        [("fc1".into(), 300), ("fc2".into(), 100)]
    );
    assert_eq!(
        sizes(Arch::Mlp512x256),
        [("fc1".into(), 512), ("fc2".into(), 256)]
    );
    assert_eq!(
        Network::new(Arch::Mlp512x256, Device::Cpu, 0).num_parameters(),
        784 * 512 + 512 + 512 * 256 + 256 + 256 * 10 + 10
    );
    assert_eq!(
        sizes(Arch::Lenet5),
        [
            ("conv2".into(), 400),
            ("fc1".into(), 120),
            ("fc2".into(), 84)
        ]
    );
    let net = Network::new(Arch::Lenet5, Device::Cpu, 0);
    assert_eq!(net.num_players(), 604);
    assert_eq!(
        net.unit(450),
        gtap_nn::UnitId {
            layer: "fc1".into(),
            unit: 50
        }
    );
    assert_eq!(net.num_parameters(), 61_706);
    assert_eq!(
        Network::new(Arch::Lenet300100, Device::Cpu, 0).num_parameters(),
        266_610
    );
}

#[test]
fn full_coalition_equals_the_plain_forward_pass() {
    let _g = tch::no_grad_guard();
    let data = synthetic(32, 1);
    for arch in ARCHS {
        let net = Network::new(arch, Device::Cpu, 3);
        let features = net.prefix(&data.inputs);
        let masks = Tensor::ones([2, net.num_players() as i64], (Kind::Float, Device::Cpu));
        let masked = net.masked_logits(&features, &masks).unwrap(); // [E, K, C]
        let plain = net.forward(&data.inputs);
        for k in 0..2 {
            assert!(max_abs_diff(&masked.select(1, k), &plain) < 1e-4, "{arch}");
        }
    }
}

#[test]
fn removing_a_unit_equals_zeroing_its_outgoing_weights() {
    let _g = tch::no_grad_guard();
    let data = synthetic(16, 2);
    let net = Network::new(Arch::Lenet300100, Device::Cpu, 4);
    // Drop fc1 unit 7 and fc2 unit 3 (global ids 7 and 303).
    let mut mask = vec![1f32; 400];
    mask[7] = 0.0;
    mask[303] = 0.0;
    let masks = Tensor::from_slice(&mask).view([1, 400]);
    let masked = net
        .masked_logits(&net.prefix(&data.inputs), &masks)
        .unwrap()
        .select(1, 0);

    let vars = net.vs.variables();
    let (w1, b1, w2, b2, w3, b3) = (
        &vars["fc1.weight"],
        &vars["fc1.bias"],
        &vars["fc2.weight"],
        &vars["fc2.bias"],
        &vars["fc3.weight"],
        &vars["fc3.bias"],
    );
    let w2 = w2.copy();
    let _ = w2.select(1, 7).fill_(0.0);
    let w3 = w3.copy();
    let _ = w3.select(1, 3).fill_(0.0);
    let h1 = (data.inputs.matmul(&w1.tr()) + b1).relu();
    let h2 = (h1.matmul(&w2.tr()) + b2).relu();
    let manual = h2.matmul(&w3.tr()) + b3;
    assert!(max_abs_diff(&masked, &manual) < 1e-4);
}

#[test]
fn batched_values_equal_one_coalition_at_a_time() {
    let data = synthetic(64, 5);
    for arch in ARCHS {
        for utility in [Utility::Accuracy, Utility::NegativeCrossEntropy] {
            let net = Network::new(arch, Device::Cpu, 6);
            let game = MaskedEvaluator::new(&net, &data, utility, 16);
            let n = game.num_players();
            let coalitions: Vec<Coalition> = (0..9)
                .map(|j| {
                    Coalition::from_players(n, (0..n).filter(|i| (i * 7 + j * 13) % (j + 2) != 0))
                })
                .collect();
            let mut batched = vec![0.0; coalitions.len()];
            game.values(&coalitions, &mut batched);
            for (c, &b) in coalitions.iter().zip(&batched) {
                let mut one = [0.0];
                game.values(std::slice::from_ref(c), &mut one);
                // Accuracy counts agree exactly. A mean cross-entropy of float32 logits may
                // move in the last bits with the GEMM's width (MKL's portable branch blocks
                // by shape), hence 1e-7 for it.
                let tolerance = match utility {
                    Utility::Accuracy => 0.0,
                    Utility::NegativeCrossEntropy => 1e-7,
                };
                assert!(
                    (one[0] - b).abs() <= tolerance,
                    "{arch} {utility:?}: {} vs {b}",
                    one[0]
                );
            }
            // And the full coalition is the plain network.
            let mut full = [0.0];
            game.values(&[Coalition::full(n)], &mut full);
            let eval = gtap_nn::evaluate(&net, &data);
            match utility {
                Utility::Accuracy => assert!((full[0] - eval.accuracy).abs() < 1e-9),
                Utility::NegativeCrossEntropy => assert!((full[0] + eval.loss).abs() < 1e-4),
            }
        }
    }
}

#[test]
fn paired_rows_equal_the_matching_masked_entries() {
    let _g = tch::no_grad_guard();
    let data = synthetic(5, 7);
    for arch in ARCHS {
        let net = Network::new(arch, Device::Cpu, 8);
        let masks = gtap_nn::with_torch_rng(9, || {
            Tensor::rand([5, net.num_players() as i64], (Kind::Float, Device::Cpu))
                .gt(0.5)
                .to_kind(Kind::Float)
        });
        let features = net.prefix(&data.inputs);
        let paired = net.paired_logits(&features, &masks).unwrap();
        let all = net.masked_logits(&features, &masks).unwrap();
        for j in 0..5 {
            assert!(
                max_abs_diff(&paired.get(j), &all.get(j).get(j)) < 1e-4,
                "{arch}"
            );
        }
    }
}

#[test]
fn wrong_mask_width_is_an_error() {
    let net = Network::new(Arch::Lenet300100, Device::Cpu, 0);
    let err = net
        .masked_logits(
            &Tensor::zeros([2, 784], (Kind::Float, Device::Cpu)),
            &Tensor::ones([1, 399], (Kind::Float, Device::Cpu)),
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "mask has 399 columns, the network has 400 players"
    );
}

fn train_once(dir: &std::path::Path, name: &str) -> Vec<u8> {
    train_once_with_dropout(dir, name, 0.0)
}

fn train_once_with_dropout(dir: &std::path::Path, name: &str, dropout: f64) -> Vec<u8> {
    train(dir, Arch::Lenet5, name, dropout)
}

fn train_arch(dir: &std::path::Path, arch: Arch, name: &str) -> Vec<u8> {
    train(dir, arch, name, 0.0)
}

fn train(dir: &std::path::Path, arch: Arch, name: &str, dropout: f64) -> Vec<u8> {
    gtap_nn::set_threads(2);
    let data = synthetic(300, 10);
    let probe = synthetic(50, 11);
    let mut net = Network::new(arch, Device::Cpu, 42);
    let cfg = TrainConfig {
        augment: Default::default(),
        schedule: Default::default(),
        micro_batches: 1,
        epochs: 2,
        batch_size: 64,
        lr: 1e-3,
        optimizer: Optimizer::Adam,
        momentum: 0.0,
        weight_decay: 0.0,
        dropout,
    };
    let metrics = gtap_nn::train(&mut net, &data, &probe, &cfg, 42, &mut || {}).unwrap();
    assert_eq!(metrics.len(), 2);
    let path = dir.join(name);
    net.save(&path).unwrap();
    std::fs::read(path).unwrap()
}

#[test]
fn dropout_training_is_deterministic_and_differs_from_plain_training() {
    let dir = tempfile::tempdir().unwrap();
    let a = train_once_with_dropout(dir.path(), "a.safetensors", 0.3);
    let b = train_once_with_dropout(dir.path(), "b.safetensors", 0.3);
    let plain = train_once(dir.path(), "plain.safetensors");
    assert!(a == b, "two dropout trainings with one seed differ");
    assert!(
        a != plain,
        "dropout 0.3 trained the same weights as no dropout"
    );
}

#[test]
fn training_is_deterministic_to_the_byte() {
    let dir = tempfile::tempdir().unwrap();
    let a = train_once(dir.path(), "a.safetensors");
    let b = train_once(dir.path(), "b.safetensors");
    assert!(
        a == b,
        "two trainings with the same seed wrote different checkpoints"
    );
    // And the checkpoint loads back into the same function.
    let net = Network::load(Arch::Lenet5, &dir.path().join("a.safetensors"), Device::Cpu).unwrap();
    let again = dir.path().join("c.safetensors");
    net.save(&again).unwrap();
    assert!(std::fs::read(again).unwrap() == a);
}

#[test]
fn loading_a_checkpoint_of_the_wrong_architecture_fails_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lenet300.safetensors");
    Network::new(Arch::Lenet300100, Device::Cpu, 0)
        .save(&path)
        .unwrap();
    let err = Network::load(Arch::Lenet5, &path, Device::Cpu).unwrap_err();
    assert!(err.to_string().contains("lenet300.safetensors"), "{err}");
}

/// The MLP's bag-of-words shape in these tests: a 50-word vocabulary, 6 classes.
const TEXT: Shape = Shape::features(50, 6);

/// Binary bag-of-words examples whose class is decided by which of six word groups occurs:
/// class `c` switches on words `8c..8c+4` (plus random noise words 48, 49).
fn bag_of_words(n: i64, seed: u64) -> TensorData {
    gtap_nn::with_torch_rng(seed, || {
        let labels = Tensor::randint(6, [n], (Kind::Int64, Device::Cpu));
        let mut rows = vec![0f32; (n * 50) as usize];
        let noise = Tensor::rand([n, 2], (Kind::Float, Device::Cpu));
        for i in 0..n {
            let c = labels.int64_value(&[i]);
            for w in 8 * c..8 * c + 4 {
                rows[(i * 50 + w) as usize] = 1.0;
            }
            for j in 0..2 {
                if noise.double_value(&[i, j]) > 0.5 {
                    rows[(i * 50 + 48 + j) as usize] = 1.0;
                }
            }
        }
        TensorData {
            inputs: Tensor::from_slice(&rows).view([n, 50]),
            labels,
        }
    })
}

#[test]
fn mlp_players_are_the_three_hidden_layers() {
    let net = Network::with_shape(Arch::Mlp3x256, TEXT, Device::Cpu, 0).unwrap();
    let layers: Vec<_> = net
        .player_layers()
        .iter()
        .map(|l| (l.name.clone(), l.size, l.offset))
        .collect();
    assert_eq!(
        layers,
        [
            ("fc1".into(), 256, 0),
            ("fc2".into(), 256, 256),
            ("fc3".into(), 256, 512)
        ]
    );
    assert_eq!(net.num_players(), 768);
    assert_eq!(
        net.unit(600),
        gtap_nn::UnitId {
            layer: "fc3".into(),
            unit: 88
        }
    );
    assert_eq!(net.shape(), TEXT);
    assert_eq!(
        net.num_parameters(),
        50 * 256 + 256 + 2 * (256 * 256 + 256) + 256 * 6 + 6
    );
    let _g = tch::no_grad_guard();
    assert_eq!(net.forward(&bag_of_words(3, 1).inputs).size(), [3, 6]);
    // The default shape is MNIST's, like the LeNets'.
    let mnist = Network::new(Arch::Mlp3x256, Device::Cpu, 0);
    assert_eq!(mnist.shape(), Shape::MNIST);
    assert_eq!(Arch::Mlp3x256.name(), "mlp-3x256");
}

#[test]
fn shapes_an_architecture_cannot_take_are_errors() {
    let err = Network::with_shape(Arch::Lenet5, TEXT, Device::Cpu, 0).unwrap_err();
    assert_eq!(
        err.to_string(),
        "lenet5 cannot be built for 50 inputs and 6 classes: it takes 28x28 images (784 inputs) \
         and 10 classes"
    );
    let bad = Shape::features(10, 1);
    assert!(Network::with_shape(Arch::Mlp3x256, bad, Device::Cpu, 0).is_err());
    // The default shape gives the same weights as `Network::new`.
    let a = Network::with_shape(Arch::Lenet300100, Shape::MNIST, Device::Cpu, 5).unwrap();
    let b = Network::new(Arch::Lenet300100, Device::Cpu, 5);
    let (va, vb) = (a.vs.variables(), b.vs.variables());
    assert!(va.iter().all(|(k, t)| t.equal(&vb[k])));
}

#[test]
fn mlp_batched_values_equal_one_coalition_at_a_time() {
    let data = bag_of_words(40, 3);
    let net = Network::with_shape(Arch::Mlp3x256, TEXT, Device::Cpu, 4).unwrap();
    let head = net.masked_suffix(0);
    let game = MaskedEvaluator::new(&net, &data, Utility::NegativeCrossEntropy, 8);
    let n = game.num_players();
    assert_eq!(n, 768);
    let coalitions: Vec<Coalition> = (0..11)
        .map(|j| Coalition::from_players(n, (0..n).filter(|i| (i * 5 + j * 11) % (j + 2) != 0)))
        .collect();
    let mut batched = vec![0.0; coalitions.len()];
    game.values(&coalitions, &mut batched);
    for (c, &b) in coalitions.iter().zip(&batched) {
        let mut one = [0.0];
        game.values(std::slice::from_ref(c), &mut one);
        assert!((one[0] - b).abs() < 1e-9, "{} vs {b}", one[0]);
    }
    // The masked head agrees with zeroing hidden activations by hand.
    let _g = tch::no_grad_guard();
    let mut mask = vec![1f32; 768];
    for i in (0..768).step_by(3) {
        mask[i] = 0.0;
    }
    let masks = Tensor::from_slice(&mask).view([1, 768]);
    let masked = head
        .masked_logits(&net.prefix(&data.inputs), &masks)
        .unwrap()
        .select(1, 0);
    let vars = net.vs.variables();
    let layer = |h: &Tensor, name: &str| {
        h.matmul(&vars[&format!("{name}.weight")].tr()) + &vars[&format!("{name}.bias")]
    };
    let m = |l: i64| masks.narrow(1, l * 256, 256);
    let h1 = layer(&data.inputs, "fc1").relu() * m(0);
    let h2 = layer(&h1, "fc2").relu() * m(1);
    let h3 = layer(&h2, "fc3").relu() * m(2);
    let manual = layer(&h3, "fc4");
    assert!(max_abs_diff(&masked, &manual) < 1e-4);
}

#[test]
fn training_a_tiny_mlp_reduces_the_loss_and_checkpoints_keep_the_shape() {
    gtap_nn::set_threads(2);
    let data = bag_of_words(300, 12);
    let probe = bag_of_words(60, 13);
    let mut net = Network::with_shape(Arch::Mlp3x256, TEXT, Device::Cpu, 7).unwrap();
    let before = gtap_nn::evaluate(&net, &probe);
    let cfg = TrainConfig {
        augment: Default::default(),
        schedule: Default::default(),
        micro_batches: 1,
        epochs: 3,
        batch_size: 32,
        lr: 1e-3,
        optimizer: Optimizer::Adam,
        momentum: 0.0,
        weight_decay: 0.0,
        dropout: 0.0,
    };
    let metrics = gtap_nn::train(&mut net, &data, &probe, &cfg, 7, &mut || {}).unwrap();
    let after = gtap_nn::evaluate(&net, &probe);
    assert!(metrics[2].loss < metrics[0].loss, "{metrics:?}");
    assert!(after.loss < before.loss / 2.0, "{before:?} -> {after:?}");
    assert!(after.accuracy > 0.9, "{after:?}");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mlp.safetensors");
    net.save(&path).unwrap();
    let loaded = Network::load(Arch::Mlp3x256, &path, Device::Cpu).unwrap();
    assert_eq!(loaded.shape(), TEXT);
    let _g = tch::no_grad_guard();
    assert!(max_abs_diff(&loaded.forward(&probe.inputs), &net.forward(&probe.inputs)) == 0.0);
    // A LeNet checkpoint is no MLP.
    let lenet = dir.path().join("lenet.safetensors");
    Network::new(Arch::Lenet300100, Device::Cpu, 0)
        .save(&lenet)
        .unwrap();
    let err = Network::load(Arch::Mlp3x256, &lenet, Device::Cpu).unwrap_err();
    assert!(err.to_string().contains("lenet.safetensors"), "{err}");
}

#[test]
fn players_are_known_from_the_architecture_alone() {
    for arch in ARCHS {
        let net = Network::new(arch, Device::Cpu, 0);
        assert_eq!(arch.num_players(), net.num_players(), "{arch}");
    }
}

#[test]
fn player_layers_are_known_from_the_architecture_alone() {
    let narrow = gtap_nn::AlexnetWidths::scaled(0.05);
    for arch in ARCHS.into_iter().chain([Arch::Alexnet]) {
        let net = Network::with_widths(arch, arch.default_shape(), narrow, Device::Cpu, 0).unwrap();
        let built: Vec<(&str, usize)> = net
            .player_layers()
            .iter()
            .map(|l| (l.name.as_str(), l.size))
            .collect();
        assert_eq!(arch.player_layers(narrow), built, "{arch}");
    }
}

#[test]
fn accuracy_counts_what_evaluate_counts() {
    // Chunks of 256 against evaluate's 2,000: the same count (601 examples: a short last chunk).
    let data = synthetic(601, 31);
    for arch in [Arch::Lenet5, Arch::Lenet300100] {
        let net = Network::new(arch, Device::Cpu, 2);
        let accuracy = gtap_nn::accuracy(&net, &data);
        assert_eq!(accuracy, gtap_nn::evaluate(&net, &data).accuracy, "{arch}");
        assert!(accuracy > 0.0 && accuracy < 1.0, "{arch}: {accuracy}");
    }
}
