//! AlexNet: conv channels as players, layer-wise games evaluated from the layer's gate, the
//! pruned network, and the shapes the architecture documents.

use gtap_game::{Coalition, Game};
use gtap_nn::{
    AlexnetWidths, Arch, MaskedEvaluator, Network, PrunedNetwork, Shape, TensorData, Utility,
};
use tch::{Device, Kind, Tensor};

const SHAPE: Shape = Shape::features(3 * 64 * 64, 10);

/// A small AlexNet (width 1/8: channels 8-24-48-32-32, dense 512-512), quick to evaluate.
fn small(seed: u64) -> Network {
    Network::with_widths(
        Arch::Alexnet,
        SHAPE,
        AlexnetWidths::scaled(0.125),
        Device::Cpu,
        seed,
    )
    .unwrap()
}

fn images(n: i64, seed: u64) -> TensorData {
    gtap_nn::with_torch_rng(seed, || TensorData {
        inputs: Tensor::randn([n, 3 * 64 * 64], (Kind::Float, Device::Cpu)),
        labels: Tensor::randint(10, [n], (Kind::Int64, Device::Cpu)),
    })
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

/// `k` random 0/1 masks over player layer `layer`'s units, every other player present.
fn layer_masks(net: &Network, layer: usize, k: i64, seed: u64) -> Tensor {
    let n = net.num_players() as i64;
    let pl = &net.player_layers()[layer];
    let free = gtap_nn::with_torch_rng(seed, || {
        Tensor::rand([k, pl.size as i64], (Kind::Float, Device::Cpu))
            .gt(0.5)
            .to_kind(Kind::Float)
    });
    let masks = Tensor::ones([k, n], (Kind::Float, Device::Cpu));
    masks
        .narrow(1, pl.offset as i64, pl.size as i64)
        .copy_(&free);
    masks
}

#[test]
fn layers_and_shapes_are_the_documented_ones() {
    let net = small(0);
    let layers: Vec<(String, usize)> = net
        .player_layers()
        .iter()
        .map(|l| (l.name.clone(), l.size))
        .collect();
    let expected = [
        ("conv1", 8),
        ("conv2", 24),
        ("conv3", 48),
        ("conv4", 32),
        ("conv5", 32),
        ("fc1", 512),
        ("fc2", 512),
    ];
    assert_eq!(layers, expected.map(|(n, s)| (n.to_owned(), s)).to_vec());
    // conv: 5x5x3, 5x5x8, 3x3x24, 3x3x48, 3x3x32 filters; fc1 sees conv5's 32 channels x 4x4.
    let params = (8 * 75 + 8)
        + (24 * 200 + 24)
        + (48 * 216 + 48)
        + (32 * 432 + 32)
        + (32 * 288 + 32)
        + (512 * 512 + 512)
        + (512 * 512 + 512)
        + (10 * 512 + 10);
    assert_eq!(net.num_parameters(), params);
    assert_eq!(
        net.cost(&vec![true; net.num_players()]).params,
        params as u64
    );
    let logits = tch::no_grad(|| net.forward(&images(3, 1).inputs));
    assert_eq!(logits.size(), [3, 10]);
    assert_eq!(
        Arch::Alexnet.num_players(),
        64 + 192 + 384 + 256 + 256 + 4096 + 4096
    );
    assert_eq!(
        AlexnetWidths::scaled(0.125).num_players(),
        net.num_players()
    );
}

#[test]
fn layer_wise_masked_evaluation_equals_the_network_with_those_units_removed() {
    let _g = tch::no_grad_guard();
    let net = small(2);
    let xs = images(6, 3).inputs;
    for layer in 0..net.player_layers().len() {
        let masks = layer_masks(&net, layer, 4, 10 + layer as u64);
        let features = net.activations_at(&xs, layer);
        let masked = net
            .masked_suffix(layer)
            .masked_logits(&features, &masks)
            .unwrap();
        assert_eq!(masked.size(), [6, 4, 10]);
        for k in 0..4 {
            let row = masks.get(k);
            let kept: Vec<bool> = Vec::<f32>::try_from(&row)
                .unwrap()
                .iter()
                .map(|&m| m > 0.5)
                .collect();
            // The plain forward pass of a copy whose removed units' weights are zero.
            let mut removed = small(2);
            removed.remove_units(&kept);
            let plain = removed.forward(&xs);
            let gated = net.forward_gated(&xs, &row);
            // Float32 sums in another order (folded weights, im2col blocks): ~1e-6 here.
            let name = &net.player_layers()[layer].name;
            let d = max_abs_diff(&masked.select(1, k), &plain);
            assert!(
                d < 1e-4,
                "{name}, coalition {k}: max |diff| {d} against removal"
            );
            let d = max_abs_diff(&masked.select(1, k), &gated);
            assert!(
                d < 1e-4,
                "{name}, coalition {k}: max |diff| {d} against gating"
            );
        }
    }
}

#[test]
fn whole_network_masks_and_paired_rows_agree_with_gating() {
    let _g = tch::no_grad_guard();
    let net = small(4);
    let xs = images(5, 5).inputs;
    let masks = gtap_nn::with_torch_rng(6, || {
        Tensor::rand([5, net.num_players() as i64], (Kind::Float, Device::Cpu))
            .gt(0.3)
            .to_kind(Kind::Float)
    });
    let features = net.prefix(&xs);
    let all = net.masked_logits(&features, &masks).unwrap();
    let paired = net.paired_logits(&features, &masks).unwrap();
    for j in 0..5 {
        let gated = net
            .forward_gated(&xs.narrow(0, j, 1), &masks.get(j))
            .squeeze_dim(0);
        assert!(
            max_abs_diff(&all.get(j).get(j), &gated) < 1e-4,
            "coalition {j}"
        );
        assert!(max_abs_diff(&paired.get(j), &gated) < 1e-4, "pair {j}");
    }
}

#[test]
fn batched_layer_games_equal_one_coalition_at_a_time() {
    let net = small(7);
    let data = images(40, 8);
    for (layer, utility) in [
        (0, Utility::Accuracy),
        (2, Utility::NegativeCrossEntropy),
        (4, Utility::Accuracy),
        (5, Utility::NegativeCrossEntropy),
    ] {
        let game = MaskedEvaluator::starting_at(&net, &data, utility, 8, layer);
        let whole = MaskedEvaluator::new(&net, &data, utility, 8);
        let n = game.num_players();
        let pl = &net.player_layers()[layer];
        let coalitions: Vec<Coalition> = (0..5)
            .map(|j| {
                Coalition::from_players(
                    n,
                    (0..n).filter(|&p| {
                        !(pl.offset..pl.offset + pl.size).contains(&p) || (p * 7 + j * 13) % 3 != 0
                    }),
                )
            })
            .collect();
        let mut batched = vec![0.0; coalitions.len()];
        game.values(&coalitions, &mut batched);
        let mut from_start = vec![0.0; coalitions.len()];
        whole.values(&coalitions, &mut from_start);
        let tolerance = match utility {
            Utility::Accuracy => 0.0,
            Utility::NegativeCrossEntropy => 1e-6,
        };
        for (j, c) in coalitions.iter().enumerate() {
            let mut one = [0.0];
            game.values(std::slice::from_ref(c), &mut one);
            assert!(
                (one[0] - batched[j]).abs() <= tolerance,
                "layer {layer}: {one:?} vs {batched:?}"
            );
            // Starting at the layer's gate or at the first layer: the same game.
            assert!(
                (from_start[j] - batched[j]).abs() <= tolerance.max(1e-6),
                "layer {layer}: {from_start:?} vs {batched:?}"
            );
        }
    }
}

#[test]
fn a_layer_game_refuses_masks_that_remove_an_earlier_layer() {
    let net = small(9);
    let data = images(4, 10);
    let game = MaskedEvaluator::starting_at(&net, &data, Utility::Accuracy, 8, 3);
    let mut masks = Tensor::ones([1, net.num_players() as i64], (Kind::Float, Device::Cpu));
    let _ = masks.get(0).get(2).fill_(0.0);
    let err = game.values_of_masks(&masks).unwrap_err();
    assert_eq!(
        err.to_string(),
        "masks must keep every player before layer `conv4` present: the evaluator starts there"
    );
    let _ = masks.fill_(1.0);
    assert!(game.values_of_masks(&masks).is_ok());
}

#[test]
fn pruned_alexnet_equals_the_masked_network_and_round_trips() {
    let _g = tch::no_grad_guard();
    let net = small(11);
    let xs = images(8, 12).inputs;
    let n = net.num_players();
    let mut no_conv3 = vec![true; n];
    let conv3 = &net.player_layers()[2];
    no_conv3[conv3.offset..conv3.offset + conv3.size].fill(false);
    let sets = [
        ("full", vec![true; n]),
        (
            "half",
            (0..n).map(|p| (p * 7919) % 997 % 100 < 50).collect(),
        ),
        (
            "a tenth",
            (0..n).map(|p| (p * 7919 + 3) % 997 % 100 < 10).collect(),
        ),
        ("no conv3 channel", no_conv3),
    ];
    for (what, kept) in sets {
        let row: Vec<f32> = kept.iter().map(|&k| f32::from(u8::from(k))).collect();
        let mask = Network::mask_tensor(&row, n, Device::Cpu);
        let masked = net
            .masked_logits(&net.prefix(&xs), &mask)
            .unwrap()
            .select(1, 0);
        let pruned = PrunedNetwork::from_network(&net, &kept).unwrap();
        let d = max_abs_diff(&pruned.forward(&xs), &masked);
        assert!(d < 1e-4, "{what}: max |diff| {d}");
        assert_eq!(pruned.num_parameters(), net.cost(&kept).params, "{what}");
        assert_eq!(pruned.flops_per_example(), net.cost(&kept).flops, "{what}");
        let dir = tempfile::tempdir().unwrap();
        pruned.save(dir.path()).unwrap();
        let loaded = PrunedNetwork::load(dir.path(), Device::Cpu).unwrap();
        assert!(
            max_abs_diff(&loaded.forward(&xs), &pruned.forward(&xs)) == 0.0,
            "{what}"
        );
    }
}

#[test]
fn a_checkpoint_brings_back_its_widths_and_classes() {
    let net = small(13);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alexnet.safetensors");
    net.save(&path).unwrap();
    let loaded = Network::load(Arch::Alexnet, &path, Device::Cpu).unwrap();
    assert_eq!(loaded.player_layers(), net.player_layers());
    assert_eq!(loaded.shape(), SHAPE);
    let xs = images(2, 14).inputs;
    let _g = tch::no_grad_guard();
    assert_eq!(max_abs_diff(&loaded.forward(&xs), &net.forward(&xs)), 0.0);
}

#[test]
fn channel_scores_count_the_filter_and_its_outgoing_weights() {
    let net = small(15);
    let scores = net
        .unit_scores(gtap_nn::WeightCriterion::Magnitude, None)
        .unwrap();
    let vars = net.vs.variables();
    // conv2 channel 5: its 8x5x5 filter and bias, and its input slice of conv3 (48 x 3x3).
    let filter = vars["conv2.weight"]
        .get(5)
        .abs()
        .sum(Kind::Double)
        .double_value(&[])
        + vars["conv2.bias"].get(5).abs().double_value(&[]);
    let outgoing = vars["conv3.weight"]
        .select(1, 5)
        .abs()
        .sum(Kind::Double)
        .double_value(&[]);
    let count = (8 * 25 + 1 + 48 * 9) as f64;
    let conv2 = &net.player_layers()[1];
    let got = scores[conv2.offset + 5];
    assert!((got - (filter + outgoing) / count).abs() < 1e-9, "{got}");
    // conv5 channel 0 feeds fc1's 16 columns 0..16.
    let outgoing = vars["fc1.weight"]
        .narrow(1, 0, 16)
        .abs()
        .sum(Kind::Double)
        .double_value(&[]);
    let filter = vars["conv5.weight"]
        .get(0)
        .abs()
        .sum(Kind::Double)
        .double_value(&[])
        + vars["conv5.bias"].get(0).abs().double_value(&[]);
    let count = (32 * 9 + 1 + 512 * 16) as f64;
    let conv5 = &net.player_layers()[4];
    let got = scores[conv5.offset];
    assert!((got - (filter + outgoing) / count).abs() < 1e-9, "{got}");
}

#[test]
fn alexnet_takes_only_64x64_colour_images() {
    let err = Network::with_shape(Arch::Alexnet, Shape::MNIST, Device::Cpu, 0).unwrap_err();
    assert_eq!(
        err.to_string(),
        "alexnet cannot be built for 784 inputs and 10 classes: it takes 3x64x64 images (12288 inputs) and at least 2 classes"
    );
}
