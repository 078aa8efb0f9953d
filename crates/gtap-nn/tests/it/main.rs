//! Models: masks do what they say, batching changes nothing, training is deterministic.

mod export;

use gtap_game::{Coalition, Game};
use gtap_nn::{Arch, MaskedEvaluator, Network, Optimizer, TensorData, TrainConfig, Utility};
use tch::{Device, Kind, Tensor};

const ARCHS: [Arch; 2] = [Arch::Lenet300100, Arch::Lenet5];

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
                assert!(
                    (one[0] - b).abs() < 1e-9,
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
    let net = Network::new(Arch::Lenet5, Device::Cpu, 8);
    let masks = gtap_nn::with_torch_rng(9, || {
        Tensor::rand([5, 604], (Kind::Float, Device::Cpu))
            .gt(0.5)
            .to_kind(Kind::Float)
    });
    let features = net.prefix(&data.inputs);
    let paired = net.paired_logits(&features, &masks).unwrap();
    let all = net.masked_logits(&features, &masks).unwrap();
    for j in 0..5 {
        assert!(max_abs_diff(&paired.get(j), &all.get(j).get(j)) < 1e-4);
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
    gtap_nn::set_threads(2);
    let data = synthetic(300, 10);
    let probe = synthetic(50, 11);
    let mut net = Network::new(Arch::Lenet5, Device::Cpu, 42);
    let cfg = TrainConfig {
        epochs: 2,
        batch_size: 64,
        lr: 1e-3,
        optimizer: Optimizer::Adam,
        momentum: 0.0,
        weight_decay: 0.0,
    };
    let metrics = gtap_nn::train(&mut net, &data, &probe, &cfg, 42, &mut || {}).unwrap();
    assert_eq!(metrics.len(), 2);
    let path = dir.join(name);
    net.save(&path).unwrap();
    std::fs::read(path).unwrap()
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
