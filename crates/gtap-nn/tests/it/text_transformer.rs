//! The text transformer preset: token ids (two values each) read exactly, ids outside the
//! table read as unknown words, K coalitions of its heads and FFN neurons at once equal the
//! gated network, the exported model computes the masked one, a checkpoint loads back with
//! its vocabulary and length, and it learns a task only the tokens' identity can solve.

use gtap_nn::{Arch, Network, Optimizer, PrunedNetwork, Shape, TensorData, TrainConfig};
use tch::{Device, Tensor};

const TOKENS: usize = 6;
/// More than 256 ids, so the high byte of an id matters.
const SHAPE: Shape = Shape {
    inputs: 2 * TOKENS,
    classes: 3,
    vocabulary: 300,
};

/// Inputs `[N, 2T]` holding `ids` (`[N][T]`) as the text datasets store them.
fn encode(ids: &[Vec<u16>]) -> Tensor {
    let flat: Vec<f32> = ids
        .iter()
        .flat_map(|row| row.iter().flat_map(|id| id.to_le_bytes().map(f32::from)))
        .collect();
    Tensor::from_slice(&flat).view([ids.len() as i64, -1])
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

/// Pseudo-random ids of `n` texts, some padding (0) at the end of each.
fn texts(n: usize, seed: usize) -> Vec<Vec<u16>> {
    (0..n)
        .map(|i| {
            let len = 2 + (i + seed) % (TOKENS - 1);
            (0..TOKENS)
                .map(|t| {
                    if t < len {
                        (2 + (i * 131 + t * 17 + seed * 7) % 298) as u16
                    } else {
                        0
                    }
                })
                .collect()
        })
        .collect()
}

#[test]
fn ids_read_both_bytes_and_ids_outside_the_table_read_as_unknown() {
    let _guard = tch::no_grad_guard();
    let net = Network::with_shape(Arch::TextTransformer, SHAPE, Device::Cpu, 1).unwrap();
    assert_eq!(net.num_players(), 264);
    let base = texts(4, 0);
    let logits = |ids: &[Vec<u16>]| net.forward(&encode(ids));
    let mut high = base.clone();
    high[0][0] = 257; // bytes [1, 1]
    let mut low = base.clone();
    low[0][0] = 1; // bytes [1, 0]: unknown
    assert!(max_diff(&logits(&high).get(0), &logits(&low).get(0)) > 1e-4);
    let mut outside = base.clone();
    outside[0][0] = 40_000;
    let a = logits(&outside);
    assert!(
        max_diff(&a.get(0), &logits(&low).get(0)) < 1e-6,
        "40,000 reads as unknown"
    );
    assert!(max_diff(&a.narrow(0, 1, 3), &logits(&base).narrow(0, 1, 3)) < 1e-6);
}

#[test]
fn coalitions_at_once_and_the_exported_model_equal_the_gated_network() {
    let _guard = tch::no_grad_guard();
    let net = Network::with_shape(Arch::TextTransformer, SHAPE, Device::Cpu, 2).unwrap();
    let xs = encode(&texts(9, 1));
    let rows: Vec<Vec<bool>> = (0..4)
        .map(|j| (0..264).map(|p| (p * 31 + j * 7) % 5 < 3).collect())
        .collect();
    let flat: Vec<f32> = rows
        .iter()
        .flatten()
        .map(|&k| f32::from(u8::from(k)))
        .collect();
    let m = Network::mask_tensor(&flat, 264, Device::Cpu);
    let batched = net.masked_logits(&net.prefix(&xs), &m).unwrap();
    for (j, kept) in rows.iter().enumerate() {
        let gated = net.forward_gated(&xs, &m.get(j as i64));
        let diff = max_diff(&batched.select(1, j as i64), &gated);
        assert!(diff < 1e-5, "coalition {j}: max |diff| {diff}");
        let pruned = PrunedNetwork::from_network(&net, kept).unwrap();
        let diff = max_diff(&pruned.forward(&xs), &gated);
        assert!(diff < 1e-5, "exported {j}: max |diff| {diff}");
        let dir = tempfile::tempdir().unwrap();
        pruned.save(dir.path()).unwrap();
        let loaded = PrunedNetwork::load(dir.path(), Device::Cpu).unwrap();
        assert!(
            loaded.forward(&xs).equal(&pruned.forward(&xs)),
            "loaded {j}"
        );
        assert_eq!(pruned.num_parameters(), net.cost(kept).params);
    }
}

#[test]
fn it_learns_from_token_identity_and_loads_back_with_its_vocabulary_and_length() {
    // The class is which of three words the text holds, anywhere, among filler words: a bag
    // of positions cannot solve it, the tokens' identity must reach the classifier.
    let make = |n: usize, seed: usize| {
        let ids: Vec<Vec<u16>> = (0..n)
            .map(|i| {
                let class = (i * 7 + seed) % 3;
                let at = (i * 5 + seed) % TOKENS;
                (0..TOKENS)
                    .map(|t| {
                        if t == at {
                            (260 + class) as u16
                        } else {
                            (10 + (i * 13 + t * 29 + seed) % 240) as u16
                        }
                    })
                    .collect()
            })
            .collect();
        let labels: Vec<i64> = (0..n).map(|i| ((i * 7 + seed) % 3) as i64).collect();
        TensorData {
            inputs: encode(&ids),
            labels: Tensor::from_slice(&labels),
        }
    };
    let (train, probe) = (make(600, 0), make(150, 1));
    let cfg = TrainConfig {
        augment: Default::default(),
        schedule: Default::default(),
        micro_batches: 1,
        epochs: 4,
        batch_size: 30,
        lr: 3e-3,
        optimizer: Optimizer::Adam,
        momentum: 0.0,
        weight_decay: 0.0,
        dropout: 0.0,
    };
    let mut net = Network::with_shape(Arch::TextTransformer, SHAPE, Device::Cpu, 3).unwrap();
    gtap_nn::train(&mut net, &train, &probe, &cfg, 3, &mut || {}).unwrap();
    let _guard = tch::no_grad_guard();
    let accuracy = gtap_nn::evaluate(&net, &probe).accuracy;
    assert!(accuracy > 0.9, "probe accuracy {accuracy}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("text.safetensors");
    net.save(&path).unwrap();
    let back = Network::load(Arch::TextTransformer, &path, Device::Cpu).unwrap();
    assert_eq!(
        back.shape(),
        SHAPE,
        "vocabulary and length come from the checkpoint"
    );
    assert!(back
        .forward(&probe.inputs)
        .equal(&net.forward(&probe.inputs)));
}

#[test]
fn token_shapes_and_feature_shapes_are_not_interchangeable() {
    let err = |arch: Arch, shape: Shape| {
        Network::with_shape(arch, shape, Device::Cpu, 0)
            .unwrap_err()
            .to_string()
    };
    assert!(err(Arch::Mlp3x256, SHAPE).contains("not token sequences"));
    assert!(err(Arch::TextTransformer, Shape::features(50, 3)).contains("takes token sequences"));
    let odd = Shape { inputs: 7, ..SHAPE };
    assert!(err(Arch::TextTransformer, odd).contains("two values each"));
    let tiny = Shape {
        vocabulary: 2,
        ..SHAPE
    };
    assert!(err(Arch::TextTransformer, tiny).contains("3 token ids"));
}
