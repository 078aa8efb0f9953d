//! Networks as sequences of layer specs: every preset's network reports the specs it was built
//! from, specs survive JSON, a network rebuilt from specs is the same network, and a sequence
//! no preset names (a hand-written MLP) gets players, masked evaluation and costs from the
//! layer interface alone.

use gtap_nn::{Activation, AlexnetWidths, Arch, DenseSpec, GateSpec, LayerSpec, Network, Shape};
use tch::{Device, Kind, Tensor};

fn presets() -> Vec<(Arch, Shape, AlexnetWidths)> {
    let small = AlexnetWidths::scaled(1.0 / 16.0);
    vec![
        (Arch::Lenet300100, Shape::MNIST, AlexnetWidths::FULL),
        (Arch::Lenet5, Shape::MNIST, AlexnetWidths::FULL),
        (Arch::Mlp3x256, Shape::features(50, 4), AlexnetWidths::FULL),
        (Arch::Mlp512x256, Shape::MNIST, AlexnetWidths::FULL),
        (Arch::Vit, Shape::MNIST, AlexnetWidths::FULL),
        (
            Arch::TextTransformer,
            Shape {
                inputs: 2 * 10,
                classes: 4,
                vocabulary: 30,
            },
            AlexnetWidths::FULL,
        ),
        (Arch::Alexnet, Shape::features(3 * 64 * 64, 7), small),
    ]
}

#[test]
fn every_preset_is_its_specs_and_specs_rebuild_the_same_network() {
    for (arch, shape, widths) in presets() {
        let net = Network::with_widths(arch, shape, widths, Device::Cpu, 3).unwrap();
        let specs = arch.specs(shape, widths);
        assert_eq!(net.specs(), specs, "{arch}");
        let json = serde_json::to_string(&specs).unwrap();
        let back: Vec<LayerSpec> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, specs, "{arch}: specs survive JSON");
        let rebuilt = Network::from_specs(arch, shape, &back, Device::Cpu, 3).unwrap();
        assert_eq!(rebuilt.player_layers(), net.player_layers(), "{arch}");
        let (a, b) = (net.named_variables(), rebuilt.named_variables());
        assert_eq!(a.len(), b.len());
        for ((na, ta), (nb, tb)) in a.iter().zip(&b) {
            assert_eq!(na, nb);
            assert!(ta.equal(tb), "{arch}: {na} drawn alike");
        }
        assert_eq!(
            net.player_layers()
                .iter()
                .map(|l| (l.name.as_str(), l.size))
                .collect::<Vec<_>>(),
            arch.player_layers(widths),
            "{arch}"
        );
    }
}

#[test]
fn the_json_form_of_a_spec_is_the_documented_one() {
    let specs = Arch::Lenet5.specs(Shape::MNIST, AlexnetWidths::FULL);
    let json = serde_json::to_value(&specs[..4]).unwrap();
    assert_eq!(
        json,
        serde_json::json!([
            {"kind": "conv", "name": "conv1", "inputs": 1, "outputs": 6, "kernel": 5,
             "stride": 1, "padding": 2, "pool": 2},
            {"kind": "conv", "name": "conv2", "inputs": 6, "outputs": 16, "kernel": 5,
             "stride": 1, "padding": 0, "pool": 2},
            {"kind": "flatten"},
            {"kind": "gate", "spread": 1},
        ])
    );
}

/// A dense layer spec, ReLU or no activation (also the hand-written networks of `linearise`).
pub fn dense(name: &str, inputs: usize, outputs: usize, relu: bool) -> LayerSpec {
    LayerSpec::Dense(DenseSpec {
        name: name.into(),
        inputs,
        outputs,
        activation: if relu {
            Activation::Relu
        } else {
            Activation::None
        },
    })
}

#[test]
fn a_sequence_no_preset_names_gets_players_masks_and_costs_from_its_layers() {
    let gate = || LayerSpec::Gate(GateSpec { spread: 1 });
    let specs = vec![
        dense("a", 20, 7, true),
        gate(),
        dense("b", 7, 5, true),
        gate(),
        dense("c", 5, 3, false),
    ];
    let shape = Shape::features(20, 3);
    let net = Network::from_specs(Arch::Mlp512x256, shape, &specs, Device::Cpu, 1).unwrap();
    let layers: Vec<(&str, usize, usize)> = net
        .player_layers()
        .iter()
        .map(|l| (l.name.as_str(), l.size, l.offset))
        .collect();
    assert_eq!(layers, [("a", 7, 0), ("b", 5, 7)]);

    // Keep units 0-2 of `a` and 0-1 of `b`: a 20·3 + 3, b 3·2 + 2, c 2·3 + 3 parameters.
    let kept: Vec<bool> = (0..12).map(|p| p < 3 || (7..9).contains(&p)).collect();
    let cost = net.cost(&kept);
    assert_eq!((cost.params, cost.flops), (63 + 8 + 9, 2 * (60 + 6 + 6)));

    // The masked evaluation of that coalition is the gated network.
    let _guard = tch::no_grad_guard();
    let xs = gtap_nn::with_torch_rng(2, || Tensor::randn([9, 20], (Kind::Float, Device::Cpu)));
    let row: Vec<f32> = kept.iter().map(|&k| f32::from(u8::from(k))).collect();
    let mask = Network::mask_tensor(&row, 12, Device::Cpu);
    let masked = net
        .masked_logits(&net.prefix(&xs), &mask)
        .unwrap()
        .select(1, 0);
    let gated = net.forward_gated(&xs, &mask.squeeze_dim(0));
    let diff = (masked - gated).abs().max().double_value(&[]);
    assert!(diff < 1e-5, "max |diff| {diff}");
}
