//! Certified evaluation (`gtap_nn::certify`): fast kernels with a bound, undecided pairs
//! recomputed, values equal to the reference path's bit for bit; the reference value of a
//! pair does not depend on what else is in the batch.

use gtap_nn::{Arch, MaskedEvaluator, Network, TensorData, Utility};
use tch::{Device, Kind, Tensor};

use super::synthetic;

/// Masks of `k` coalitions whose sizes sweep from nearly empty to nearly full.
fn sweep_masks(k: i64, players: i64, seed: u64) -> Tensor {
    gtap_nn::with_torch_rng(seed, || {
        let p = Tensor::linspace(0.05, 0.95, k, (Kind::Float, Device::Cpu)).unsqueeze(1);
        Tensor::rand([k, players], (Kind::Float, Device::Cpu))
            .lt_tensor(&p)
            .to_kind(Kind::Float)
    })
}

/// Multiplies a variable in place (sharper logits: more pairs decided without recomputing).
fn scale(net: &Network, name: &str, by: f64) {
    let _g = tch::no_grad_guard();
    let _ = net.vs.variables()[name].shallow_clone().g_mul_scalar_(by);
}

/// Per pair, whether the reference path's argmax is the label.
fn reference_answers(
    head: &gtap_nn::MaskedSuffix,
    features: &Tensor,
    masks: &Tensor,
    labels: &Tensor,
) -> Vec<bool> {
    let logits = head.paired_logits(features, masks).unwrap();
    Vec::<bool>::try_from(logits.argmax(-1, false).eq_tensor(labels)).unwrap()
}

fn values(
    net: &Network,
    data: &TensorData,
    masks: &Tensor,
    certify: bool,
) -> (Vec<f64>, (u64, u64)) {
    let ev = MaskedEvaluator::new(net, data, Utility::Accuracy, 64).with_certification(certify);
    let values = ev.values_of_masks(masks).unwrap();
    (values, ev.certification())
}

#[test]
fn certified_values_are_the_reference_values() {
    let data = synthetic(300, 11);
    let (mut decided, mut recomputed) = (0, 0);
    for (arch, last) in [
        (Arch::Lenet300100, "fc3.weight"),
        (Arch::Mlp3x256, "fc4.weight"),
        (Arch::Mlp512x256, "fc3.weight"),
    ] {
        for factor in [1.0, 40.0] {
            let net = Network::new(arch, Device::Cpu, 5);
            scale(&net, last, factor);
            let masks = sweep_masks(24, net.num_players() as i64, 3);
            let (fast, counts) = values(&net, &data, &masks, true);
            let (reference, none) = values(&net, &data, &masks, false);
            assert_eq!(fast, reference, "{arch} ×{factor}");
            assert_eq!(none, (0, 0), "the reference path certifies nothing");
            assert_eq!(counts.0, 300 * 24, "{arch}: every pair decided");
            decided += counts.0;
            recomputed += counts.1;
        }
    }
    // Both branches ran: pairs settled by the bound and pairs recomputed.
    assert!(
        recomputed > 0 && recomputed < decided / 2,
        "{recomputed} of {decided}"
    );
}

/// Masks with every unit out, every unit in, and each player layer alone in (the units a
/// coalition keeps at the second gate decide which products the certified path skips).
fn edge_masks(net: &Network) -> Tensor {
    let players = net.num_players() as i64;
    let mut rows = vec![
        Tensor::zeros([1, players], (Kind::Float, Device::Cpu)),
        Tensor::ones([1, players], (Kind::Float, Device::Cpu)),
    ];
    let mut offset = 0;
    for layer in net.player_layers() {
        let row = Tensor::zeros([1, players], (Kind::Float, Device::Cpu));
        let _ = row.narrow(1, offset, layer.size as i64).fill_(1.0);
        rows.push(row);
        offset += layer.size as i64;
    }
    Tensor::cat(&rows, 0)
}

#[test]
fn certified_values_are_the_reference_values_on_hostile_examples_and_edge_coalitions() {
    // Finite examples: the path that skips units masked at the second gate. Then one example
    // overflows the first product and one is NaN: nothing skipped, those pairs recomputed.
    // Then an infinite bias on a unit of the layer whose masked units' products are skipped:
    // its reference value is `relu(z + ∞) · 0`, NaN, on every path (the row path adds the
    // bias to a skipped unit's zero), and every pair is recomputed.
    for case in ["finite", "hostile examples", "infinite bias"] {
        let data = synthetic(200, 13);
        if case == "hostile examples" {
            let _ = data.inputs.get(3).fill_(3e37);
            let _ = data.inputs.get(7).narrow(0, 0, 5).fill_(f64::NAN);
        }
        let net = Network::new(Arch::Lenet300100, Device::Cpu, 6);
        scale(&net, "fc3.weight", 40.0);
        if case == "infinite bias" {
            let _g = tch::no_grad_guard();
            let _ = net.vs.variables()["fc2.bias"].get(0).fill_(f64::INFINITY);
        }
        let masks = Tensor::cat(
            &[
                edge_masks(&net),
                sweep_masks(12, net.num_players() as i64, 4),
            ],
            0,
        );
        let (fast, counts) = values(&net, &data, &masks, true);
        let (reference, _) = values(&net, &data, &masks, false);
        assert_eq!(fast, reference, "{case}");
        if case != "infinite bias" {
            assert!(
                counts.1 < counts.0 / 2,
                "{counts:?}: the bound decides most pairs"
            );
        }
    }
}

#[test]
fn lenet5_is_certified_from_its_pooled_positions_on() {
    // LeNet5's players start after its convolutions: a dense suffix.
    let data = synthetic(60, 12);
    let net = Network::new(Arch::Lenet5, Device::Cpu, 5);
    scale(&net, "fc3.weight", 20.0);
    let masks = sweep_masks(6, net.num_players() as i64, 4);
    let (fast, counts) = values(&net, &data, &masks, true);
    assert_eq!(counts.0, 360);
    assert_eq!(fast, values(&net, &data, &masks, false).0);
}

/// An eighth-width AlexNet (players from conv1's channels on: its suffix is convolutions,
/// then dense layers) and random 64×64 images.
fn small_alexnet(examples: i64, seed: u64) -> (Network, TensorData) {
    let data = gtap_nn::with_torch_rng(seed, || TensorData {
        inputs: Tensor::randn([examples, 3 * 64 * 64], (Kind::Float, Device::Cpu)),
        labels: Tensor::randint(10, [examples], (Kind::Int64, Device::Cpu)),
    });
    let net = Network::with_widths(
        Arch::Alexnet,
        gtap_nn::Shape::features(3 * 64 * 64, 10),
        gtap_nn::AlexnetWidths::scaled(0.125),
        Device::Cpu,
        5,
    )
    .unwrap();
    (net, data)
}

#[test]
fn alexnet_is_certified_through_its_convolutions() {
    let (net, data) = small_alexnet(12, 12);
    let masks = sweep_masks(4, net.num_players() as i64, 4);
    let reference = values(&net, &data, &masks, false).0;
    let (fast, counts) = values(&net, &data, &masks, true);
    assert_eq!(counts.0, 12 * 4, "every pair decided");
    assert_eq!(fast, reference);
    // Sharper logits: pairs settled by the bound, the same values.
    scale(&net, "fc3.weight", 50.0);
    let reference = values(&net, &data, &masks, false).0;
    let (fast, (decided, recomputed)) = values(&net, &data, &masks, true);
    assert_eq!(fast, reference);
    assert!(recomputed < decided, "{recomputed} of {decided} recomputed");
    // MCUE's trials: example j under mask j.
    let _g = tch::no_grad_guard();
    let head = net.masked_suffix(0);
    let features = net.prefix(&data.inputs);
    let pairs = masks.repeat([3, 1]);
    assert_eq!(
        head.paired_correct(&features, &pairs, &data.labels)
            .unwrap(),
        reference_answers(&head, &features, &pairs, &data.labels)
    );
}

#[test]
fn a_bound_too_loose_hands_the_game_to_the_reference_path() {
    // conv1's game: seven layers behind the gate, a bound far above the logits' scale, so
    // the first call recomputes most pairs and the later ones run the reference alone.
    let (net, data) = small_alexnet(300, 13);
    let masks = sweep_masks(4, net.num_players() as i64, 5);
    let ev = MaskedEvaluator::new(&net, &data, Utility::Accuracy, 64);
    let first = ev.values_of_masks(&masks).unwrap();
    let (decided, recomputed) = ev.certification();
    assert_eq!(decided, 1200);
    assert!(recomputed * 2 > decided, "{recomputed} of {decided}");
    let second = ev.values_of_masks(&masks).unwrap();
    assert_eq!(
        ev.certification(),
        (decided, recomputed),
        "the reference ran alone"
    );
    assert_eq!(first, second);
    assert_eq!(first, values(&net, &data, &masks, false).0);
    // MCUE's trials likewise.
    let _g = tch::no_grad_guard();
    let head = net.masked_suffix(0);
    let features = net.prefix(&data.inputs);
    let pairs = masks.repeat([75, 1]);
    let expected = reference_answers(&head, &features, &pairs, &data.labels);
    assert_eq!(
        head.paired_correct(&features, &pairs, &data.labels)
            .unwrap(),
        expected
    );
    let (decided, handed_back) = head.paired_certification();
    assert_eq!(decided, 300);
    assert!(handed_back * 2 > decided, "{handed_back} of {decided}");
    let again = head.shallow_clone();
    for _ in 0..4 {
        assert_eq!(
            again
                .paired_correct(&features, &pairs, &data.labels)
                .unwrap(),
            expected
        );
    }
    // Four calls of 300 pairs judged on the first 1,200: the fifth ran the reference alone.
    let counts = head.paired_certification();
    assert_eq!(counts.0, 1200, "{counts:?}");
}

#[test]
fn layers_without_a_bound_run_the_reference_path() {
    // The ViT's suffix has attention and layer norm: no bound yet, so nothing is certified.
    let data = synthetic(8, 12);
    let net = Network::new(Arch::Vit, Device::Cpu, 5);
    let masks = sweep_masks(3, net.num_players() as i64, 4);
    let (fast, counts) = values(&net, &data, &masks, true);
    assert_eq!(counts, (0, 0));
    assert_eq!(fast, values(&net, &data, &masks, false).0);
}

/// Gives classes 3 and 7 the same (dominant) weights and bias: their logits tie exactly on
/// every path, and the reference's argmax is the first (3).
fn tie_classes_3_and_7(net: &Network) {
    let vars = net.vs.variables();
    let (w, b) = (&vars["fc3.weight"], &vars["fc3.bias"]);
    let row = w.get(7).abs() * 50.0;
    w.get(7).copy_(&row);
    w.get(3).copy_(&row);
    let _ = b.get(7).fill_(1.0);
    let _ = b.get(3).fill_(1.0);
}

#[test]
fn an_exact_tie_is_recomputed_and_decided_as_the_reference_decides() {
    // Classes 3 and 7 get the same (dominant) weights and bias: their logits tie exactly on
    // both paths, the reference's argmax is the first (3), so no example labelled 7 is ever
    // classified correctly, and the bound cannot tell: every pair is recomputed.
    let _g = tch::no_grad_guard();
    let data = synthetic(50, 13);
    let labels = Tensor::full([50], 7, (Kind::Int64, Device::Cpu));
    let data = TensorData {
        inputs: data.inputs,
        labels,
    };
    let net = Network::new(Arch::Lenet300100, Device::Cpu, 6);
    tie_classes_3_and_7(&net);
    let masks = sweep_masks(8, 400, 5).narrow(0, 4, 4); // more than half the players present
    let (fast, (decided, recomputed)) = values(&net, &data, &masks, true);
    assert_eq!(fast, values(&net, &data, &masks, false).0);
    assert_eq!(decided, 200);
    assert!(recomputed >= 150, "{recomputed} of 200 recomputed");
    assert!(fast.iter().all(|&v| v < 0.25), "{fast:?}");
    // Paired (MCUE's trials): the tie goes to class 3, as the reference decides.
    let head = net.masked_suffix(0);
    let features = net.prefix(&data.inputs);
    let pairs = masks.repeat([13, 1]).narrow(0, 0, 50);
    let answers = head
        .paired_correct(&features, &pairs, &data.labels)
        .unwrap();
    assert_eq!(
        answers,
        reference_answers(&head, &features, &pairs, &data.labels)
    );
}

#[test]
fn a_pairs_reference_logits_do_not_depend_on_the_batch() {
    let _g = tch::no_grad_guard();
    let data = synthetic(37, 14);
    for arch in [Arch::Lenet300100, Arch::Mlp3x256] {
        let net = Network::new(arch, Device::Cpu, 7);
        let masks = sweep_masks(5, net.num_players() as i64, 6);
        let features = net.prefix(&data.inputs);
        // The prefix of a few examples is their rows of the whole set's.
        let some = Tensor::from_slice(&[3i64, 0, 36]);
        assert!(net
            .prefix(&data.inputs.index_select(0, &some))
            .equal(&features.index_select(0, &some)));
        // Every coalition on every example, batched, equals the pair computed alone.
        let batched = net.masked_logits(&features, &masks).unwrap(); // [E, K, C]
        let (e, k) = (37i64, 5i64);
        let examples =
            Tensor::arange(e, (Kind::Int64, Device::Cpu)).repeat_interleave_self_int(k, None, None);
        let coalitions = Tensor::arange(k, (Kind::Int64, Device::Cpu)).repeat([e]);
        let paired = net
            .paired_logits(
                &features.index_select(0, &examples),
                &masks.index_select(0, &coalitions),
            )
            .unwrap();
        assert!(batched.view([e * k, -1]).equal(&paired), "{arch}");
        // And a sub-batch of coalitions gives the same rows.
        let two = net
            .masked_logits(&features, &masks.narrow(0, 1, 2))
            .unwrap();
        assert!(two.equal(&batched.narrow(1, 1, 2)), "{arch}");
    }
}

#[test]
fn paired_answers_are_the_reference_answers() {
    // MCUE's trials: example j under mask j, answered by the certified path.
    let _g = tch::no_grad_guard();
    let data = synthetic(200, 15);
    for (arch, last) in [
        (Arch::Lenet300100, "fc3.weight"),
        (Arch::Lenet5, "fc3.weight"),
    ] {
        for factor in [1.0, 40.0] {
            let net = Network::new(arch, Device::Cpu, 8);
            scale(&net, last, factor);
            let head = net.masked_suffix(0);
            let features = net.prefix(&data.inputs);
            let masks = sweep_masks(200, net.num_players() as i64, 7);
            let answers = head
                .paired_correct(&features, &masks, &data.labels)
                .unwrap();
            let reference = reference_answers(&head, &features, &masks, &data.labels);
            assert_eq!(answers, reference, "{arch} ×{factor}");
        }
    }
}

#[test]
fn an_exact_tie_on_a_walk_is_recomputed_and_decided_as_the_reference_decides() {
    // As above, on incremental walks: every step's pairs that a toggle can change tie exactly
    // and are recomputed; the others keep an answer the reference gave. Values are full
    // evaluation's, bit for bit.
    use gtap_game::{Coalition, Game, Walk};
    let _g = tch::no_grad_guard();
    let data = synthetic(50, 17);
    let data = TensorData {
        labels: Tensor::full([50], 7, (Kind::Int64, Device::Cpu)),
        inputs: data.inputs,
    };
    let net = Network::new(Arch::Lenet300100, Device::Cpu, 8);
    tie_classes_3_and_7(&net);
    let walks: Vec<Walk> = (0..3)
        .map(|i| Walk {
            start: Coalition::from_players(400, (0..400).filter(|p| (p * 7 + i) % 3 != 0)),
            steps: (0..20).map(|s| vec![(s * 37 + i * 11) % 400]).collect(),
        })
        .collect();
    let total: usize = walks.iter().map(Walk::num_values).sum();
    let (mut want, mut got) = (vec![0.0; total], vec![0.0; total]);
    let full = MaskedEvaluator::new(&net, &data, Utility::Accuracy, 8).with_certification(false);
    full.walk_values(&walks, &mut want);
    let walked = MaskedEvaluator::new(&net, &data, Utility::Accuracy, 8).with_incremental(true);
    assert!(walked.incremental());
    walked.walk_values(&walks, &mut got);
    assert_eq!(got, want);
    let (decided, recomputed) = walked.certification();
    assert!(decided >= 150, "{decided} pairs decided");
    assert!(
        recomputed * 4 >= decided * 3,
        "{recomputed} of {decided} recomputed"
    );
    assert!(got.iter().all(|&v| v < 0.25), "{got:?}");
}
