//! The pruned network computes what the masked network computes, costs what `cost` counts, and
//! survives a save / load round trip.

use gtap_nn::{Arch, Network, Optimizer, PrunedNetwork, TensorData, TrainConfig};
use tch::{Device, Kind, Tensor};

fn synthetic(n: i64, seed: u64) -> TensorData {
    gtap_nn::with_torch_rng(seed, || TensorData {
        inputs: Tensor::randn([n, 784], (Kind::Float, Device::Cpu)),
        labels: Tensor::randint(10, [n], (Kind::Int64, Device::Cpu)),
    })
}

/// A network after one short epoch on random data, so weights and biases are not at their
/// initial values.
fn trained_ish(arch: Arch) -> Network {
    let mut net = Network::new(arch, Device::Cpu, 21);
    let cfg = TrainConfig {
        augment: Default::default(),
        schedule: Default::default(),
        micro_batches: 1,
        epochs: 1,
        batch_size: 32,
        lr: 1e-3,
        optimizer: Optimizer::Adam,
        momentum: 0.0,
        weight_decay: 0.0,
        dropout: 0.0,
    };
    let (train, probe) = (synthetic(256, 22), synthetic(32, 23));
    gtap_nn::train(&mut net, &train, &probe, &cfg, 21, &mut || {}).unwrap();
    net
}

/// A pseudo-random kept set with about `percent`% of the players, salted.
fn scattered(n: usize, percent: usize, salt: usize) -> Vec<bool> {
    (0..n)
        .map(|p| (p * 7919 + salt * 104_729) % 997 % 100 < percent)
        .collect()
}

/// The masked network's logits for one kept set.
fn masked(net: &Network, xs: &Tensor, kept: &[bool]) -> Tensor {
    let row: Vec<f32> = kept.iter().map(|&k| f32::from(u8::from(k))).collect();
    let mask = Network::mask_tensor(&row, kept.len(), Device::Cpu);
    net.masked_logits(&net.prefix(xs), &mask)
        .unwrap()
        .select(1, 0)
}

fn check(net: &Network, kept: &[bool], what: &str) {
    let _guard = tch::no_grad_guard();
    let xs = synthetic(64, 30).inputs;
    let pruned = PrunedNetwork::from_network(net, kept).unwrap();
    let diff = (pruned.forward(&xs) - masked(net, &xs, kept))
        .abs()
        .max()
        .double_value(&[]);
    assert!(diff < 1e-4, "{} {what}: max |diff| {diff}", net.arch);
    assert_eq!(
        pruned.num_parameters(),
        net.cost(kept).params,
        "{} {what}",
        net.arch
    );
    // FLOPs it computes: what `cost` counts for a dense network; more for LeNet5, whose conv2
    // computes every position of a kept channel where `cost` counts only kept features.
    let (computed, counted) = (pruned.flops_per_example(), net.cost(kept).flops);
    match net.arch {
        Arch::Lenet5 => assert!(computed >= counted, "{what}: {computed} < {counted}"),
        _ => assert_eq!(computed, counted, "{} {what}", net.arch),
    }
    let layout = pruned.layout();
    let kept_count: usize = layout.kept.iter().map(|k| k.units.len()).sum();
    assert_eq!(kept_count, kept.iter().filter(|&&k| k).count(), "{what}");
}

fn kept_sets(n: usize) -> Vec<(&'static str, Vec<bool>)> {
    let mut single = vec![false; n];
    single[n - 1] = true;
    vec![
        ("full", vec![true; n]),
        ("half", scattered(n, 50, 1)),
        ("a tenth", scattered(n, 10, 2)),
        ("one player", single),
    ]
}

#[test]
fn pruned_lenet300100_equals_the_masked_network() {
    for net in [
        Network::new(Arch::Lenet300100, Device::Cpu, 3),
        trained_ish(Arch::Lenet300100),
    ] {
        for (what, kept) in kept_sets(400) {
            check(&net, &kept, what);
        }
        // fc2 emptied: the logits are fc3's bias.
        let mut no_fc2 = scattered(400, 60, 3);
        no_fc2[300..].fill(false);
        check(&net, &no_fc2, "without fc2");
    }
}

#[test]
fn pruned_lenet5_equals_the_masked_network() {
    for net in [
        Network::new(Arch::Lenet5, Device::Cpu, 4),
        trained_ish(Arch::Lenet5),
    ] {
        for (what, kept) in kept_sets(604) {
            check(&net, &kept, what);
        }
        // Channels 0, 5, 6 and 15 lose all 25 features; the rest keep about half.
        let mut holes = scattered(604, 50, 4);
        for c in [0, 5, 6, 15] {
            holes[c * 25..(c + 1) * 25].fill(false);
        }
        let pruned = PrunedNetwork::from_network(&net, &holes).unwrap();
        let channels = pruned.layout().channels.clone().unwrap();
        assert_eq!(channels.len(), 12);
        assert!(!channels.contains(&5));
        check(&net, &holes, "with four channels removed");
        // Whole channels kept or removed: every computed position is a kept feature.
        let mut whole_channels = vec![true; 604];
        for c in [1, 2, 9] {
            whole_channels[c * 25..(c + 1) * 25].fill(false);
        }
        whole_channels[450..470].fill(false);
        let pruned = PrunedNetwork::from_network(&net, &whole_channels).unwrap();
        assert_eq!(pruned.flops_per_example(), net.cost(&whole_channels).flops);
        // No conv2 feature at all: fc1 sees only its bias.
        let mut head_only = scattered(604, 50, 5);
        head_only[..400].fill(false);
        check(&net, &head_only, "without conv2 features");
    }
}

#[test]
fn the_full_kept_set_costs_every_parameter() {
    for (arch, params) in [(Arch::Lenet300100, 266_610), (Arch::Lenet5, 61_706)] {
        let net = Network::new(arch, Device::Cpu, 0);
        let all = vec![true; net.num_players()];
        let pruned = PrunedNetwork::from_network(&net, &all).unwrap();
        assert_eq!(pruned.num_parameters(), params, "{arch}");
        assert_eq!(pruned.flops_per_example(), net.cost(&all).flops, "{arch}");
    }
}

#[test]
fn save_and_load_round_trip_to_the_same_function_and_bytes() {
    let _guard = tch::no_grad_guard();
    let dir = tempfile::tempdir().unwrap();
    let xs = synthetic(16, 31).inputs;
    for arch in [Arch::Lenet300100, Arch::Lenet5] {
        let net = Network::new(arch, Device::Cpu, 5);
        let kept = scattered(net.num_players(), 40, 6);
        let pruned = PrunedNetwork::from_network(&net, &kept).unwrap();
        let (a, b) = (dir.path().join(arch.name()), dir.path().join("again"));
        pruned.save(&a).unwrap();
        let loaded = PrunedNetwork::load(&a, Device::Cpu).unwrap();
        assert_eq!(loaded.layout(), pruned.layout());
        assert!(loaded.forward(&xs).equal(&pruned.forward(&xs)), "{arch}");
        loaded.save(&b).unwrap();
        for file in [gtap_nn::PRUNED_WEIGHTS, gtap_nn::PRUNED_LAYOUT] {
            assert!(
                std::fs::read(a.join(file)).unwrap() == std::fs::read(b.join(file)).unwrap(),
                "{arch}: {file} differs after a round trip"
            );
        }
    }
}

#[test]
fn a_kept_set_of_the_wrong_width_and_a_mismatched_file_are_errors() {
    let net = Network::new(Arch::Lenet5, Device::Cpu, 0);
    let err = PrunedNetwork::from_network(&net, &[true; 400]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "mask has 400 columns, the network has 604 players"
    );

    let dir = tempfile::tempdir().unwrap();
    let pruned = PrunedNetwork::from_network(&net, &scattered(604, 50, 7)).unwrap();
    pruned.save(dir.path()).unwrap();
    let layout = dir.path().join(gtap_nn::PRUNED_LAYOUT);
    let text = std::fs::read_to_string(&layout).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let load_edited = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut edited = json.clone();
        edit(&mut edited);
        std::fs::write(&layout, serde_json::to_vec(&edited).unwrap()).unwrap();
        PrunedNetwork::load(dir.path(), Device::Cpu)
            .unwrap_err()
            .to_string()
    };
    // Today's files: the layer sequence is what loading builds.
    let err = load_edited(&|j| j["steps"][0]["outputs"] = 5.into());
    assert!(
        err.contains("`conv1.weight` has shape [6, 1, 5, 5], the layout says [5, 1, 5, 5]"),
        "{err}"
    );
    // A pooling of 0 is an error, not a division by zero.
    let err = load_edited(&|j| j["steps"][0]["pool"] = 0.into());
    assert!(
        err.contains(
            "the layers do not chain: layer 0 (conv1) does not take inputs of shape [1, 28, 28]"
        ),
        "{err}"
    );
    let err = load_edited(&|j| j["input"] = serde_json::json!([1, 28]));
    assert!(
        err.contains("does not take inputs of shape [1, 28]"),
        "{err}"
    );
    let err = load_edited(&|j| j["input"] = serde_json::json!([1, 1 << 30, 28]));
    assert!(err.contains("is not one example's"), "{err}");
    // Files written before the sequence was recorded are read from `layers`.
    let legacy = |j: &mut serde_json::Value| {
        let o = j.as_object_mut().unwrap();
        o.remove("steps");
        o.remove("input");
    };
    let err = load_edited(&|j| {
        legacy(j);
        j["layers"][0]["outputs"] = 5.into();
    });
    assert!(
        err.contains("`conv1.weight` has shape [6, 1, 5, 5], the layout says [5, 1, 5, 5]"),
        "{err}"
    );
    let err = load_edited(&|j| {
        legacy(j);
        j["layers"][0]["pool"] = 0.into();
    });
    assert!(
        err.contains("needs kernel, stride and pool of at least 1"),
        "{err}"
    );
    // And a sound legacy file still loads.
    let mut old = json.clone();
    legacy(&mut old);
    std::fs::write(&layout, serde_json::to_vec(&old).unwrap()).unwrap();
    let loaded = PrunedNetwork::load(dir.path(), Device::Cpu).unwrap();
    let xs = Tensor::randn([3, 1, 28, 28], (tch::Kind::Float, Device::Cpu));
    assert!(loaded.forward(&xs).equal(&pruned.forward(&xs)));
}
