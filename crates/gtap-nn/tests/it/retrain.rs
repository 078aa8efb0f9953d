//! Retraining a kept sub-network: removed units stay removed (their weights are zero and the
//! network is the masked one), kept units learn, and it is deterministic.

use gtap_nn::{retrain, Arch, Network, Optimizer, TrainConfig};
use tch::{Device, Kind, Tensor};

use super::{max_abs_diff, synthetic};

fn config() -> TrainConfig {
    TrainConfig {
        augment: Default::default(),
        schedule: Default::default(),
        micro_batches: 1,
        epochs: 2,
        batch_size: 32,
        lr: 1e-2,
        optimizer: Optimizer::Adam,
        momentum: 0.0,
        // Decay would move removed units' weights if anything but the final zeroing held them.
        weight_decay: 0.01,
        dropout: 0.0,
    }
}

fn var(net: &Network, name: &str) -> Tensor {
    let vars = net.named_variables();
    vars.iter()
        .find(|(n, _)| n == name)
        .unwrap()
        .1
        .detach()
        .copy()
}

#[test]
fn a_retrained_subnetwork_never_uses_a_removed_unit() {
    for arch in [Arch::Lenet300100, Arch::Lenet5] {
        let mut net = Network::new(arch, Device::Cpu, 1);
        let before = var(&net, "fc2.weight");
        let players = net.num_players();
        // Every third unit kept, and LeNet5's conv2 channels 0-3 removed whole.
        let kept: Vec<bool> = (0..players)
            .map(|p| p % 3 == 0 && !(arch == Arch::Lenet5 && p < 100))
            .collect();
        let data = synthetic(128, 3);
        retrain(&mut net, &kept, &data, &config(), 0, &mut || ()).unwrap();

        for (i, layer) in net.player_layers().iter().enumerate() {
            let next = format!("fc{}", if arch == Arch::Lenet5 { i + 1 } else { i + 2 });
            let outgoing = var(&net, &format!("{next}.weight"));
            for u in (0..layer.size).filter(|&u| !kept[layer.offset + u]) {
                assert_eq!(
                    outgoing
                        .select(1, u as i64)
                        .abs()
                        .sum(Kind::Double)
                        .double_value(&[]),
                    0.0,
                    "{arch}: {} unit {u} still feeds {next}",
                    layer.name
                );
            }
            if layer.name.starts_with("fc") {
                let w = var(&net, &format!("{}.weight", layer.name));
                let b = var(&net, &format!("{}.bias", layer.name));
                for u in (0..layer.size).filter(|&u| !kept[layer.offset + u]) {
                    let row = w.get(u as i64).abs().sum(Kind::Double).double_value(&[]);
                    assert_eq!(row + b.double_value(&[u as i64]).abs(), 0.0, "{arch}");
                }
            }
        }
        if arch == Arch::Lenet5 {
            let filters = var(&net, "conv2.weight");
            assert_eq!(
                filters
                    .narrow(0, 0, 4)
                    .abs()
                    .sum(Kind::Double)
                    .double_value(&[]),
                0.0
            );
            assert!(
                filters
                    .narrow(0, 4, 1)
                    .abs()
                    .sum(Kind::Double)
                    .double_value(&[])
                    > 0.0
            );
        }
        // The plain network is the masked one, and the kept units did learn.
        let xs = synthetic(16, 4).inputs;
        let mask: Vec<f32> = kept.iter().map(|&k| f32::from(u8::from(k))).collect();
        let masked = net
            .masked_logits(&net.prefix(&xs), &Tensor::from_slice(&mask).unsqueeze(0))
            .unwrap()
            .squeeze_dim(1);
        assert!(max_abs_diff(&masked, &net.forward(&xs)) < 1e-5, "{arch}");
        // A kept fc2 neuron's incoming row was trained.
        let fc2 = net
            .player_layers()
            .iter()
            .find(|l| l.name == "fc2")
            .unwrap();
        let row = (0..fc2.size).find(|&u| kept[fc2.offset + u]).unwrap() as i64;
        let moved = max_abs_diff(&var(&net, "fc2.weight").get(row), &before.get(row));
        assert!(moved > 0.0, "{arch}: kept weights never moved");
    }
}

#[test]
fn retraining_is_deterministic() {
    let run = || {
        let mut net = Network::new(Arch::Lenet300100, Device::Cpu, 2);
        let kept: Vec<bool> = (0..400).map(|p| p % 2 == 0).collect();
        retrain(&mut net, &kept, &synthetic(64, 5), &config(), 7, &mut || ()).unwrap();
        Vec::<f32>::try_from(var(&net, "fc1.weight").flatten(0, -1)).unwrap()
    };
    assert_eq!(run(), run());
}

/// Retraining works on a transformer's players unchanged: the ViT's heads (4 of 8 kept) and
/// its sublayers as whole players (block 1's FFN removed). The retrained plain network is the
/// masked one, a removed head's output-projection columns are zero, kept weights moved.
#[test]
fn a_retrained_vit_keeps_its_removed_heads_and_sublayers_removed() {
    use gtap_nn::Granularity;
    let layers: Vec<String> = ["block1.attn", "block1.ffn", "block2.attn", "block2.ffn"]
        .map(String::from)
        .to_vec();
    let heads = layers[..1]
        .iter()
        .chain(&layers[2..3])
        .cloned()
        .collect::<Vec<_>>();
    let cases = [
        (
            heads,
            Granularity::Units,
            vec![true, false, true, false, false, true, false, true],
        ),
        (layers, Granularity::Layers, vec![true, false, true, true]),
    ];
    for (names, granularity, kept) in cases {
        let mut net = Network::new(Arch::Vit, Device::Cpu, 1)
            .with_player_layers_as(&names, granularity)
            .unwrap();
        let before = var(&net, "block2.proj.weight");
        let mut cfg = config();
        cfg.epochs = 1;
        retrain(&mut net, &kept, &synthetic(64, 3), &cfg, 0, &mut || ()).unwrap();
        let xs = synthetic(8, 4).inputs;
        let mask: Vec<f32> = kept.iter().map(|&k| f32::from(u8::from(k))).collect();
        let masked = net
            .masked_logits(&net.prefix(&xs), &Tensor::from_slice(&mask).unsqueeze(0))
            .unwrap()
            .squeeze_dim(1);
        assert!(
            max_abs_diff(&masked, &net.forward(&xs)) < 1e-5,
            "{granularity:?}"
        );
        let proj = var(&net, "block1.proj.weight");
        if granularity == Granularity::Units {
            // Head 1 of block 1 is out: its 16 columns of the projection are zero.
            let columns = proj.narrow(1, 16, 16).abs().sum(Kind::Double);
            assert_eq!(columns.double_value(&[]), 0.0);
        } else {
            let ffn_out = var(&net, "block1.ffn_out.weight");
            assert_eq!(ffn_out.abs().sum(Kind::Double).double_value(&[]), 0.0);
        }
        let moved = max_abs_diff(&var(&net, "block2.proj.weight"), &before);
        assert!(moved > 0.0, "{granularity:?}: kept weights never moved");
    }
}
