//! The vision transformer preset: its heads and FFN neurons are players, and every operation
//! the layer interface provides is exact on it: K coalitions at once equal the gated network
//! one coalition at a time, a layer-wise game inside a residual block agrees with the whole
//! game, removing units and the exported model compute the masked network, and training is
//! deterministic with head dropout.

use gtap_game::{Coalition, Game};
use gtap_nn::{
    Arch, MaskedEvaluator, Network, Optimizer, PrunedNetwork, TensorData, TrainConfig, Utility,
    WeightCriterion,
};
use tch::{Device, Kind, Tensor};

fn synthetic(n: i64, seed: u64) -> TensorData {
    gtap_nn::with_torch_rng(seed, || TensorData {
        inputs: Tensor::randn([n, 784], (Kind::Float, Device::Cpu)),
        labels: Tensor::randint(10, [n], (Kind::Int64, Device::Cpu)),
    })
}

fn masks(rows: &[Vec<bool>]) -> Tensor {
    let flat: Vec<f32> = rows
        .iter()
        .flatten()
        .map(|&k| f32::from(u8::from(k)))
        .collect();
    Network::mask_tensor(&flat, rows[0].len(), Device::Cpu)
}

/// Pseudo-random coalitions of the 264 players, about half of each layer.
fn coalitions(count: usize) -> Vec<Vec<bool>> {
    (0..count)
        .map(|j| {
            (0..264)
                .map(|p| (p * 7919 + j * 104_729) % 13 < 7)
                .collect()
        })
        .collect()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

#[test]
fn heads_and_ffn_neurons_are_the_players() {
    let net = Network::new(Arch::Vit, Device::Cpu, 0);
    let layers: Vec<(&str, usize, usize)> = net
        .player_layers()
        .iter()
        .map(|l| (l.name.as_str(), l.size, l.offset))
        .collect();
    assert_eq!(
        layers,
        [
            ("block1.attn", 4, 0),
            ("block1.ffn", 128, 4),
            ("block2.attn", 4, 132),
            ("block2.ffn", 128, 136)
        ]
    );
    assert_eq!(Arch::Vit.num_players(), 264);
    // A head's group θ_h: its query, key and value rows with their biases (3 · 16 · 65).
    assert_eq!(net.incoming_groups(0).size(), [4, 3 * 16 * 65]);
    assert_eq!(net.incoming_groups(1).size(), [128, 65]);
    let full = net.cost(&[true; 264]);
    assert_eq!(full.params, net.num_parameters() as u64);
}

#[test]
fn k_coalitions_at_once_equal_the_gated_network_and_the_paired_rows() {
    let _guard = tch::no_grad_guard();
    let net = Network::new(Arch::Vit, Device::Cpu, 1);
    let xs = synthetic(12, 2).inputs;
    let rows = coalitions(5);
    let m = masks(&rows);
    let batched = net.masked_logits(&net.prefix(&xs), &m).unwrap(); // [E, K, C]
    for (j, _) in rows.iter().enumerate() {
        let gated = net.forward_gated(&xs, &m.get(j as i64));
        let diff = max_diff(&batched.select(1, j as i64), &gated);
        assert!(diff < 1e-5, "coalition {j}: max |diff| {diff}");
    }
    // Pairs: example j under coalition j.
    let pairs = xs.narrow(0, 0, 5);
    let paired = net.paired_logits(&net.prefix(&pairs), &m).unwrap();
    for j in 0..5 {
        let diff = max_diff(&paired.get(j), &batched.get(j).get(j));
        assert!(diff < 1e-5, "pair {j}: max |diff| {diff}");
    }
    // An empty coalition is not the full one: the gates act.
    let none = masks(&[vec![false; 264]]);
    let empty = net.masked_logits(&net.prefix(&xs), &none).unwrap();
    assert!(max_diff(&empty.select(1, 0), &net.forward(&xs)) > 1e-3);
}

#[test]
fn a_layer_game_inside_a_residual_block_agrees_with_the_whole_game() {
    let net = Network::new(Arch::Vit, Device::Cpu, 3);
    let data = synthetic(40, 4);
    let whole = MaskedEvaluator::new(&net, &data, Utility::NegativeCrossEntropy, 4);
    let ffn = MaskedEvaluator::starting_at(&net, &data, Utility::NegativeCrossEntropy, 4, 3);
    let coalitions: Vec<Coalition> = (0..6)
        .map(|j| Coalition::from_players(264, (0..264).filter(|&p| p < 136 || (p + j) % 3 != 0)))
        .collect();
    let (mut a, mut b) = (vec![0.0; 6], vec![0.0; 6]);
    whole.values(&coalitions, &mut a);
    ffn.values(&coalitions, &mut b);
    for (x, y) in a.iter().zip(&b) {
        assert!((x - y).abs() < 1e-6, "{x} vs {y}");
    }
    // It refuses a coalition without an earlier layer's unit.
    let without_head = Coalition::from_players(264, 1..264);
    let row = masks(&[(0..264).map(|p| without_head.contains(p)).collect()]);
    assert!(ffn.values_of_masks(&row).is_err());
}

#[test]
fn removed_units_and_the_exported_model_compute_the_masked_network() {
    let _guard = tch::no_grad_guard();
    let xs = synthetic(10, 6).inputs;
    // Half of each layer, and block 1 without heads and block 2 without FFN neurons.
    let mut kept_sets = coalitions(3);
    kept_sets.push((0..264).map(|p| !(0..4).contains(&p) && p < 136).collect());
    for kept in kept_sets {
        let net = Network::new(Arch::Vit, Device::Cpu, 5);
        let m = masks(std::slice::from_ref(&kept));
        let masked = net
            .masked_logits(&net.prefix(&xs), &m)
            .unwrap()
            .select(1, 0);
        let pruned = PrunedNetwork::from_network(&net, &kept).unwrap();
        assert!(max_diff(&pruned.forward(&xs), &masked) < 1e-5);
        assert_eq!(pruned.flops_per_example(), net.cost(&kept).flops);
        // Saved and loaded back, it is the same network: the layer sequence is in the file.
        let dir = tempfile::tempdir().unwrap();
        pruned.save(dir.path()).unwrap();
        let loaded = PrunedNetwork::load(dir.path(), Device::Cpu).unwrap();
        assert!(loaded.forward(&xs).equal(&pruned.forward(&xs)));
        assert_eq!(loaded.layout(), pruned.layout());
        assert_eq!(pruned.num_parameters(), net.cost(&kept).params);
        assert!(net.cost(&kept).params < net.num_parameters() as u64);
        let mut removed = Network::new(Arch::Vit, Device::Cpu, 5);
        removed.remove_units(&kept);
        assert!(max_diff(&removed.forward(&xs), &masked) < 1e-5);
    }
}

#[test]
fn training_with_head_dropout_is_deterministic_and_scores_every_unit() {
    let train = synthetic(200, 7);
    let probe = synthetic(40, 8);
    let cfg = TrainConfig {
        augment: Default::default(),
        schedule: Default::default(),
        micro_batches: 1,
        epochs: 1,
        batch_size: 50,
        lr: 1e-3,
        optimizer: Optimizer::Adam,
        momentum: 0.0,
        weight_decay: 0.0,
        dropout: 0.2,
    };
    let run = || {
        let mut net = Network::new(Arch::Vit, Device::Cpu, 9);
        gtap_nn::train(&mut net, &train, &probe, &cfg, 9, &mut || {}).unwrap();
        net
    };
    let (a, b) = (run(), run());
    for ((n, x), (_, y)) in a.named_variables().iter().zip(&b.named_variables()) {
        assert!(x.equal(y), "{n} differs between two seeded trainings");
    }
    let scores = a
        .unit_scores(WeightCriterion::WeightGradient, Some(&probe))
        .unwrap();
    assert_eq!(scores.len(), 264);
    assert!(scores.iter().all(|s| s.is_finite() && *s > 0.0));
    // A trained network loads back from its checkpoint.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vit.safetensors");
    a.save(&path).unwrap();
    let back = Network::load(Arch::Vit, &path, Device::Cpu).unwrap();
    let _guard = tch::no_grad_guard();
    assert!(back.forward(&probe.inputs).equal(&a.forward(&probe.inputs)));
}

#[test]
fn a_network_with_only_the_heads_as_players_is_the_whole_game_with_every_ffn_neuron_present() {
    let _guard = tch::no_grad_guard();
    let net = Network::new(Arch::Vit, Device::Cpu, 3);
    let heads = net
        .with_player_layers(&["block1.attn".into(), "block2.attn".into()])
        .unwrap();
    let layers: Vec<(&str, usize, usize)> = heads
        .player_layers()
        .iter()
        .map(|l| (l.name.as_str(), l.size, l.offset))
        .collect();
    assert_eq!(layers, [("block1.attn", 4, 0), ("block2.attn", 4, 4)]);
    assert_eq!(heads.num_parameters(), net.num_parameters());
    let xs = synthetic(10, 4).inputs;
    assert_eq!(max_diff(&heads.forward(&xs), &net.forward(&xs)), 0.0);
    // Every coalition of the 8 heads, against the whole game with both FFNs present.
    let head_rows: Vec<Vec<bool>> = (0..256)
        .map(|m| (0..8).map(|b| m >> b & 1 == 1).collect())
        .collect();
    let whole_rows: Vec<Vec<bool>> = head_rows
        .iter()
        .map(|h| {
            let mut row = vec![true; 264];
            row[0..4].copy_from_slice(&h[0..4]);
            row[132..136].copy_from_slice(&h[4..8]);
            row
        })
        .collect();
    let restricted = heads
        .masked_logits(&heads.prefix(&xs), &masks(&head_rows))
        .unwrap();
    let whole = net
        .masked_logits(&net.prefix(&xs), &masks(&whole_rows))
        .unwrap();
    let diff = max_diff(&restricted, &whole);
    assert!(diff < 1e-5, "heads-only game differs by {diff}");
    // Removing heads acts on the attention rows alone.
    let mut pruned = heads.with_player_layers(&["block1.attn".into()]).unwrap();
    assert_eq!(pruned.num_players(), 4);
    pruned.remove_units(&[true, false, true, false]);
    let mut row = vec![true; 264];
    row[1] = false;
    row[3] = false;
    let expected = net.masked_logits(&net.prefix(&xs), &masks(&[row])).unwrap();
    let diff = max_diff(&pruned.forward(&xs), &expected.select(1, 0));
    assert!(diff < 1e-5, "removed heads differ by {diff}");

    let err = net.with_player_layers(&["block3.attn".into()]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "no player layer `block3.attn` (the network's player layers: block1.attn, block1.ffn, block2.attn, block2.ffn)"
    );
}

/// The 8 heads of a ViT as a game small enough to be exact: `exact` equals the average of
/// marginal contributions over all 8! orders (brute force from the 256 values), the values
/// sum to ν(N) − ν(∅), and the Monte-Carlo permutation estimator converges to them.
#[test]
fn exact_shapley_of_the_heads_is_brute_force_and_monte_carlo_converges_to_it() {
    use gtap_game::{estimate, exact, Constraints, EstimateConfig, Estimator, IndexKind};
    let net = Network::new(Arch::Vit, Device::Cpu, 11)
        .with_player_layers(&["block1.attn".into(), "block2.attn".into()])
        .unwrap();
    let data = synthetic(24, 12);
    let game = MaskedEvaluator::new(&net, &data, Utility::NegativeCrossEntropy, 64);
    let n = 8;
    let all: Vec<Coalition> = (0..1usize << n)
        .map(|m| Coalition::from_players(n, (0..n).filter(|b| m >> b & 1 == 1)))
        .collect();
    let mut values = vec![0.0; all.len()];
    game.values(&all, &mut values);

    // Brute force: every order of the 8 heads (Heap's algorithm), marginal contributions.
    let mut brute = [0.0f64; 8];
    let mut order: Vec<usize> = (0..n).collect();
    let mut count = 0u32;
    let mut visit = |order: &[usize]| {
        let mut mask = 0usize;
        for &p in order {
            brute[p] += values[mask | 1 << p] - values[mask];
            mask |= 1 << p;
        }
        count += 1;
    };
    let mut c = vec![0usize; n];
    visit(&order);
    let mut i = 0;
    while i < n {
        if c[i] < i {
            order.swap(if i % 2 == 0 { 0 } else { c[i] }, i);
            visit(&order);
            c[i] += 1;
            i = 0;
        } else {
            c[i] = 0;
            i += 1;
        }
    }
    assert_eq!(count, 40_320);
    let exact_values = exact(&game, &IndexKind::Shapley, &Constraints::none()).unwrap();
    for e in &exact_values {
        let want = brute[e.player] / 40_320.0;
        assert!(
            (e.estimate - want).abs() < 1e-9,
            "head {}: {} vs {want}",
            e.player,
            e.estimate
        );
    }
    let total: f64 = exact_values.iter().map(|e| e.estimate).sum();
    let efficiency = values[(1 << n) - 1] - values[0];
    assert!((total - efficiency).abs() < 1e-9, "{total} vs {efficiency}");

    let cfg = EstimateConfig {
        index: IndexKind::Shapley,
        estimator: Estimator::Permutation { antithetic: false },
        samples: 1500,
        seed: 3,
    };
    let mc = estimate(&game, &cfg, &Constraints::none(), &|_| {}).unwrap();
    for (m, e) in mc.iter().zip(&exact_values) {
        assert!(
            (m.estimate - e.estimate).abs() <= 4.0 * m.stderr + 1e-12,
            "head {}: {} ± {} vs exact {}",
            m.player,
            m.estimate,
            m.stderr,
            e.estimate
        );
    }
}

/// Michel et al.'s head mask, written out by hand: a head absent from the coalition is the
/// plain network with that head's columns of the output projection zeroed (its slice of the
/// concatenated head outputs never reaches the residual stream). Tolerance 1e-5 on logits of
/// order 1 (f32 sums in another order).
#[test]
fn a_head_coalition_is_the_plain_network_with_those_heads_projection_columns_zeroed() {
    let _guard = tch::no_grad_guard();
    let xs = synthetic(12, 4).inputs;
    let heads = ["block1.attn".to_owned(), "block2.attn".to_owned()];
    let net = Network::new(Arch::Vit, Device::Cpu, 3)
        .with_player_layers(&heads)
        .unwrap();
    assert_eq!(net.num_players(), 8);
    let head_dim = 64 / 4;
    for code in [0b1010_0110u32, 0b0000_0001, 0b1111_0000, 0] {
        let kept: Vec<bool> = (0..8).map(|h| code >> h & 1 == 1).collect();
        let masked = net
            .masked_logits(&net.prefix(&xs), &masks(std::slice::from_ref(&kept)))
            .unwrap()
            .select(1, 0);
        let zeroed = net.with_player_layers(&heads).unwrap();
        let vars = zeroed.named_variables();
        for (h, _) in kept.iter().enumerate().filter(|(_, &k)| !k) {
            let (block, head) = (h / 4 + 1, (h % 4) as i64);
            let proj = &vars
                .iter()
                .find(|(n, _)| *n == format!("block{block}.proj.weight"))
                .unwrap()
                .1;
            let _ = proj.narrow(1, head * head_dim, head_dim).zero_();
        }
        let diff = max_diff(&zeroed.forward(&xs), &masked);
        assert!(diff < 1e-5, "heads {code:08b}: max |diff| {diff}");
        if code != 0b1111_1111 {
            assert!(max_diff(&net.forward(&xs), &masked) > 1e-4, "the mask acts");
        }
    }
}

/// Whole sublayers as players (the third granularity): the ViT's two attention and two FFN
/// sublayers are 4 players, and each of their 16 coalitions is the unit game's coalition with
/// every head or neuron of the absent sublayers masked; removal, export (saved and loaded),
/// costs, weight scores and the equilibrium's groups treat a sublayer as all of its units.
#[test]
fn whole_sublayers_are_players_and_play_as_all_their_units() {
    use gtap_nn::Granularity;
    let _guard = tch::no_grad_guard();
    let layers: Vec<String> = ["block1.attn", "block1.ffn", "block2.attn", "block2.ffn"]
        .map(String::from)
        .to_vec();
    let base = Network::new(Arch::Vit, Device::Cpu, 8);
    let whole = base
        .with_player_layers_as(&layers, Granularity::Layers)
        .unwrap();
    let shape: Vec<(&str, usize, usize)> = whole
        .player_layers()
        .iter()
        .map(|l| (l.name.as_str(), l.size, l.offset))
        .collect();
    assert_eq!(
        shape,
        [
            ("block1.attn", 1, 0),
            ("block1.ffn", 1, 1),
            ("block2.attn", 1, 2),
            ("block2.ffn", 1, 3)
        ]
    );
    let sizes = [4, 128, 4, 128];
    let expand = |kept: &[bool]| -> Vec<bool> {
        kept.iter()
            .zip(sizes)
            .flat_map(|(&k, n)| std::iter::repeat_n(k, n))
            .collect()
    };
    let xs = synthetic(10, 2).inputs;
    let rows: Vec<Vec<bool>> = (0..16u32)
        .map(|m| (0..4).map(|b| m >> b & 1 == 1).collect())
        .collect();
    let unit_rows: Vec<Vec<bool>> = rows.iter().map(|r| expand(r)).collect();
    let batched = whole
        .masked_logits(&whole.prefix(&xs), &masks(&rows))
        .unwrap();
    let units = base
        .masked_logits(&base.prefix(&xs), &masks(&unit_rows))
        .unwrap();
    assert!(max_diff(&batched, &units) < 1e-5);

    let scores = whole.unit_scores(WeightCriterion::Magnitude, None).unwrap();
    let unit_scores = base.unit_scores(WeightCriterion::Magnitude, None).unwrap();
    assert_eq!(scores.len(), 4);
    assert!(
        scores.iter().all(|s| s.is_finite() && *s > 0.0),
        "{scores:?}"
    );
    assert!(
        scores != unit_scores[..4],
        "a sublayer's score is over all its units"
    );
    assert_eq!(whole.incoming_groups(0).size(), [1, 4 * 3 * 16 * 65]);
    assert_eq!(whole.incoming_groups(1).size(), [1, 128 * 65]);

    for (kept, unit_kept) in rows.iter().zip(&unit_rows).skip(5).step_by(3) {
        let masked = units.select(1, expand_index(&unit_rows, unit_kept));
        assert_eq!(whole.cost(kept), base.cost(unit_kept));
        let pruned = PrunedNetwork::from_network(&whole, kept).unwrap();
        assert!(max_diff(&pruned.forward(&xs), &masked) < 1e-5, "{kept:?}");
        assert_eq!(pruned.num_parameters(), whole.cost(kept).params);
        let dir = tempfile::tempdir().unwrap();
        pruned.save(dir.path()).unwrap();
        let loaded = PrunedNetwork::load(dir.path(), Device::Cpu).unwrap();
        assert!(loaded.forward(&xs).equal(&pruned.forward(&xs)));
        let mut removed = base
            .with_player_layers_as(&layers, Granularity::Layers)
            .unwrap();
        removed.remove_units(kept);
        assert!(max_diff(&removed.forward(&xs), &masked) < 1e-5, "{kept:?}");
    }

    // Feature maps cannot play as one player.
    let alexnet = Network::with_widths(
        Arch::Alexnet,
        gtap_nn::Shape::TINY_IMAGENET,
        gtap_nn::AlexnetWidths {
            convs: [4, 4, 4, 4, 4],
            dense: [8, 8],
        },
        Device::Cpu,
        0,
    )
    .unwrap();
    let err = alexnet
        .with_player_layers_as(&["conv1".into()], Granularity::Layers)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "layer `conv1` gates feature maps: its channels cannot play as one player"
    );
}

fn expand_index(all: &[Vec<bool>], row: &[bool]) -> i64 {
    all.iter().position(|r| r == row).unwrap() as i64
}

/// The gate gradients reach heads and FFN neurons alike: each unit's predicted contribution to
/// ν = −cross-entropy is the derivative of ν along its gate (central finite differences on the
/// masked network), at coalitions of about half of each layer.
#[test]
fn predicted_contributions_of_heads_and_ffn_neurons_are_gate_derivatives() {
    let net = Network::new(Arch::Vit, Device::Cpu, 7);
    let data = synthetic(24, 8);
    let game = MaskedEvaluator::new(&net, &data, Utility::NegativeCrossEntropy, 4);
    assert!(game.predicts_marginals());
    let rows = coalitions(2);
    let cs: Vec<Coalition> = rows
        .iter()
        .map(|r| Coalition::from_players(264, (0..264).filter(|&p| r[p])))
        .collect();
    let mut predicted = vec![f64::NAN; cs.len() * 264];
    game.predicted_marginals(&cs, &mut predicted);
    let _guard = tch::no_grad_guard();
    let features = net.prefix(&data.inputs);
    let nu = |mask: &[f32]| {
        net.masked_logits(&features, &Tensor::from_slice(mask).view([1, 264]))
            .unwrap()
            .squeeze_dim(1)
            .to_kind(Kind::Double)
            .log_softmax(-1, Kind::Double)
            .gather(1, &data.labels.unsqueeze(1), false)
            .mean(Kind::Double)
            .double_value(&[])
    };
    let h = 1e-2;
    // Every head of both blocks and a spread of FFN neurons.
    let units: Vec<usize> = (0..4)
        .chain(132..136)
        .chain((4..132).step_by(31))
        .chain((136..264).step_by(29))
        .collect();
    for (row, p) in rows.iter().zip(predicted.chunks(264)) {
        let mask: Vec<f32> = row.iter().map(|&k| f32::from(u8::from(k))).collect();
        for &i in &units {
            let (mut up, mut down) = (mask.clone(), mask.clone());
            up[i] += h as f32;
            down[i] -= h as f32;
            let derivative = (nu(&up) - nu(&down)) / (2.0 * h);
            assert!(
                (p[i] - derivative).abs() < 1e-4 + 1e-2 * derivative.abs(),
                "unit {i}: predicted {}, finite difference {derivative}",
                p[i]
            );
        }
        // Contributions here are 0.001-0.06: the tolerance separates them.
        assert!(units.iter().any(|&i| p[i].abs() > 1e-2), "{p:?}");
    }
}
