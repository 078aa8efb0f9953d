//! MCUE: trials, readings on a hand-written network, diagonal maxima.

use super::*;

/// A stub network that is right exactly when player 0 survives: the trial statistic is then
/// Bernoulli(a) with a = P(0 in the sub-network) · (1 − p) = (round((1 − q)·n) / n) · (1 − p),
/// so the cell's variance must be a(1 − a).
#[test]
fn variance_matches_the_closed_form_of_a_one_unit_network() {
    let (n, k) = (40, 40_000);
    for &(p, q) in &[(0.0, 0.0), (0.25, 0.5), (0.5, 0.25), (0.8, 0.1), (0.1, 0.9)] {
        let (masks, _) = draw_trials(n, 10, p, q, k, 7, 3);
        let stats: Vec<f64> = masks.chunks(n).map(|row| f64::from(row[0])).collect();
        let (mean, variance) = mean_variance(&stats);
        let a = (((1.0 - q) * n as f64).round() / n as f64) * (1.0 - p);
        let se = (a * (1.0 - a) / k as f64).sqrt();
        assert!(
            (mean - a).abs() < 5.0 * se + 1e-12,
            "p={p} q={q}: mean {mean} vs {a}"
        );
        assert!(
            (variance - a * (1.0 - a)).abs() < 5.0 * se + 1e-12,
            "p={p} q={q}: variance {variance}"
        );
    }
}

#[test]
fn sub_network_has_exactly_the_requested_size_before_dropout() {
    for q in [0.0, 0.025, 0.5, 0.975, 1.0] {
        let (masks, index) = draw_trials(604, 100, 0.0, q, 50, 1, 2);
        let size = ((1.0 - q) * 604.0).round() as usize;
        assert!(masks
            .chunks(604)
            .all(|row| row.iter().filter(|&&m| m == 1.0).count() == size));
        assert!(index.iter().all(|&i| (0..100).contains(&i)));
    }
}

#[test]
fn trials_depend_on_seed_and_cell_only() {
    assert_eq!(
        draw_trials(30, 5, 0.3, 0.3, 10, 1, 9),
        draw_trials(30, 5, 0.3, 0.3, 10, 1, 9)
    );
    assert_ne!(
        draw_trials(30, 5, 0.3, 0.3, 10, 1, 9),
        draw_trials(30, 5, 0.3, 0.3, 10, 1, 10)
    );
}

#[test]
fn trial_rows_over_free_players_spread_into_full_masks() {
    let free = [1, 3, 4];
    let trials = [vec![0.0, 1.0, 0.0, 1.0, 1.0, 1.0], vec![0.0, 0.0, 0.0]];
    let masks = spread_over(&free, 6, trials.iter().map(|t| &t[..]));
    assert_eq!(
        masks,
        [
            [1.0, 0.0, 1.0, 1.0, 0.0, 1.0],
            [1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
            [1.0, 0.0, 1.0, 0.0, 0.0, 1.0]
        ]
        .concat()
    );
}

#[test]
fn diagonal_argmax_prefers_the_smallest_tie() {
    let cells = [
        (0.0, 0.0, 0.0, 0.1),
        (0.5, 0.5, 0.0, 0.3),
        (0.75, 0.75, 0.0, 0.3),
        (0.5, 0.25, 0.0, 0.9),
    ];
    assert_eq!(diagonal_argmax(&cells), (0.5, 0.3));
}

#[test]
fn diagonal_argmax_never_picks_an_end_point() {
    // A degenerate model: the largest variance at t = 0 (d would be 1) and t = 1 (d = 0).
    let cells = [
        (0.0, 0.0, 0.0, 0.9),
        (0.25, 0.25, 0.0, 0.1),
        (0.5, 0.5, 0.0, 0.2),
        (1.0, 1.0, 0.0, 0.8),
    ];
    assert_eq!(diagonal_argmax(&cells), (0.5, 0.2));
}

#[test]
fn grid_has_41_points_at_step_0_025() {
    let g = grid(0.025);
    assert_eq!(g.len(), 41);
    assert_eq!((g[0], g[40]), (0.0, 1.0));
    assert!((g[33] - 0.825).abs() < 1e-12);
}

// ---- Readings on a hand-written network ----

use gtap_nn::{Activation, Arch, DenseSpec, GateSpec, LayerSpec, Shape};
use tch::Device;

/// x = (1, 2) → a: identity, ReLU → gate (2 players) → out: logits (3·h0, h1 + 0.5).
/// Under mask m (zeroed): logits (3·m0, 2·m1 + 0.5); rescaled, a lone survivor doubles.
fn hand_network() -> (Network, Tensor, Tensor) {
    let dense = |name: &str, relu| {
        LayerSpec::Dense(DenseSpec {
            name: name.into(),
            inputs: 2,
            outputs: 2,
            activation: if relu {
                Activation::Relu
            } else {
                Activation::None
            },
        })
    };
    let specs = vec![
        dense("a", true),
        LayerSpec::Gate(GateSpec { spread: 1 }),
        dense("out", false),
    ];
    let net = Network::from_specs(
        Arch::Mlp512x256,
        Shape::features(2, 2),
        &specs,
        Device::Cpu,
        0,
    )
    .unwrap();
    let vars = net.vs.variables();
    let set = |name: &str, values: &[f32], shape: &[i64]| {
        let var = vars
            .get(name)
            .unwrap_or_else(|| panic!("{name} in {:?}", vars.keys()));
        tch::no_grad(|| {
            var.shallow_clone()
                .copy_(&Tensor::from_slice(values).view(shape))
        });
    };
    set("a.weight", &[1.0, 0.0, 0.0, 1.0], &[2, 2]);
    set("a.bias", &[0.0, 0.0], &[2]);
    set("out.weight", &[3.0, 0.0, 0.0, 1.0], &[2, 2]);
    set("out.bias", &[0.0, 0.5], &[2]);
    let xs = Tensor::from_slice(&[1.0f32, 2.0]).view([1, 2]);
    let labels = Tensor::from_slice(&[0i64]);
    (net, xs, labels)
}

/// The hand network's suffix (from its only gate), activations and labels.
struct Hand {
    net: Network,
    suffix: MaskedSuffix,
    features: Tensor,
    labels: Tensor,
}

impl Hand {
    fn new() -> Hand {
        let (net, xs, labels) = hand_network();
        Hand {
            suffix: net.masked_suffix(0),
            features: net.activations_at(&xs, 0),
            net,
            labels,
        }
    }

    /// `k` trials a cell over both players.
    fn trials(&self, k: usize, seed: u64, batch: usize) -> Trials<'_> {
        Trials {
            net: &self.net,
            suffix: &self.suffix,
            features: &self.features,
            labels: &self.labels,
            free: &[0, 1],
            trials: k,
            seed,
            batch,
        }
    }
}

/// The hand-computed logits of the hand network under a mask.
fn hand_logits(mask: [f32; 2], dilution: Dilution) -> [f64; 2] {
    let kept = mask.iter().filter(|&&m| m != 0.0).count();
    let scale = match (dilution, kept) {
        (Dilution::Rescaled, 1) => 2.0,
        _ => 1.0,
    };
    [
        3.0 * f64::from(mask[0]) * scale,
        2.0 * f64::from(mask[1]) * scale + 0.5,
    ]
}

/// Each statistic of those logits for label 0, by hand.
fn hand_statistic(logits: [f64; 2], statistic: Statistic) -> Vec<f64> {
    let z = logits[0].exp() + logits[1].exp();
    let probs = [logits[0].exp() / z, logits[1].exp() / z];
    let predicted = if logits[1] > logits[0] { 1.0 } else { 0.0 };
    match statistic {
        Statistic::Correctness => vec![1.0 - predicted],
        Statistic::PredictedLabel => vec![predicted],
        Statistic::TrueClassProbability => vec![probs[0]],
        Statistic::SoftmaxVariance => probs.to_vec(),
        Statistic::Entropy => vec![-(probs[0] * probs[0].ln() + probs[1] * probs[1].ln())],
    }
}

const EVERY_STATISTIC: [Statistic; 5] = [
    Statistic::Correctness,
    Statistic::PredictedLabel,
    Statistic::TrueClassProbability,
    Statistic::SoftmaxVariance,
    Statistic::Entropy,
];

fn close(a: &[f64], b: &[f64], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}");
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() < 1e-6, "{what}: {a:?} vs {b:?}");
    }
}

#[test]
fn every_statistic_and_dilution_of_four_masks_is_the_hand_computed_value() {
    let hand = Hand::new();
    let features = hand.features.repeat([4, 1]);
    let labels = hand.labels.repeat([4]);
    let masks = [[1.0, 1.0], [1.0, 0.0], [0.0, 1.0], [0.0, 0.0]];
    for dilution in [Dilution::Zeroed, Dilution::Rescaled] {
        let mut rows: Vec<f32> = masks.concat();
        if dilution == Dilution::Rescaled {
            rescale(&mut rows, 2, &[(0, 2)]);
        }
        let mask_tensor = Network::mask_tensor(&rows, 2, Device::Cpu);
        let values = trial_values(
            &hand.suffix,
            &features,
            &mask_tensor,
            &labels,
            &EVERY_STATISTIC,
            dilution,
        )
        .unwrap();
        for (statistic, got) in EVERY_STATISTIC.iter().zip(&values) {
            let expected: Vec<f64> = masks
                .iter()
                .flat_map(|&m| hand_statistic(hand_logits(m, dilution), *statistic))
                .collect();
            assert_eq!(got.width, expected.len() / 4);
            close(
                &got.values,
                &expected,
                &format!("{statistic:?} {dilution:?}"),
            );
        }
    }
    // Hand values for the record: rescaled, (1, 0) gives logits (6, 0.5), (0, 1) gives (0, 4.5).
    assert_eq!(hand_logits([1.0, 0.0], Dilution::Rescaled), [6.0, 0.5]);
    assert_eq!(hand_logits([0.0, 1.0], Dilution::Rescaled), [0.0, 4.5]);
}

/// The cell (p, q) = (0.5, 0.5) of the hand network: one unit of two kept, then dropped with
/// probability 1/2, so trials see (1, 0), (0, 1) and (0, 0) with probabilities 1/4, 1/4, 1/2.
/// The cell's numbers are the hand statistics of the masks drawn, and close to the closed form.
#[test]
fn a_grid_cell_of_the_hand_network_is_its_hand_computed_mean_and_variance() {
    let hand = Hand::new();
    let k = 4000;
    let trials = hand.trials(k, 5, 8192);
    // Step 0.25: the grid is 5 x 5, and (0.5, 0.5) is cell 2 · 5 + 2.
    let cell = (12, 0.5, 0.5);
    assert!(cells(0.25, false).contains(&cell));
    let (drawn, _) = draw_trials(2, 1, 0.5, 0.5, k, 5, cell.0);
    for dilution in [Dilution::Zeroed, Dilution::Rescaled] {
        let got = trials
            .run(&[cell], &EVERY_STATISTIC, dilution, &|_| ())
            .unwrap();
        for (statistic, cells) in EVERY_STATISTIC.iter().zip(&got) {
            let width = if *statistic == Statistic::SoftmaxVariance {
                2
            } else {
                1
            };
            let values: Vec<f64> = drawn
                .chunks(2)
                .flat_map(|m| hand_statistic(hand_logits([m[0], m[1]], dilution), *statistic))
                .collect();
            let (mean, variance) = cell_summary(&TrialValues { width, values });
            let what = format!("{statistic:?} {dilution:?}");
            close(
                &[cells[0].mean, cells[0].variance],
                &[mean, variance],
                &what,
            );
        }
        // Closed forms: correctness is Bernoulli(1/4) (only (1, 0) is right); the predicted
        // label is its complement, with the same variance 3/16.
        let correct = &got[0][0];
        assert!((correct.mean - 0.25).abs() < 0.03, "{correct:?}");
        assert!((correct.variance - 3.0 / 16.0).abs() < 0.01, "{correct:?}");
        assert!((got[1][0].variance - correct.variance).abs() < 1e-9);
    }
}

#[test]
fn correctness_alone_on_the_certified_path_equals_correctness_among_others() {
    let hand = Hand::new();
    let trials = hand.trials(50, 1, 120);
    let grid = cells(0.25, false);
    let alone = trials
        .run(&grid, &[Statistic::Correctness], Dilution::Zeroed, &|_| ())
        .unwrap();
    let among = trials
        .run(&grid, &EVERY_STATISTIC, Dilution::Zeroed, &|_| ())
        .unwrap();
    assert_eq!(alone[0], among[0]);
}

#[test]
fn the_diagonal_alone_has_the_whole_grids_diagonal_cells() {
    let hand = Hand::new();
    let trials = hand.trials(30, 2, 100);
    let diagonal = cells(0.125, true);
    assert_eq!(diagonal.len(), 9);
    assert!(diagonal.iter().all(|&(i, p, q)| p == q && i % 10 == 0));
    for dilution in [Dilution::Zeroed, Dilution::Rescaled] {
        let whole = trials
            .run(&cells(0.125, false), &EVERY_STATISTIC, dilution, &|_| ())
            .unwrap();
        let alone = trials
            .run(&diagonal, &EVERY_STATISTIC, dilution, &|_| ())
            .unwrap();
        for (w, a) in whole.iter().zip(&alone) {
            let on_diagonal: Vec<Cell> = w.iter().copied().filter(|c| c.p == c.q).collect();
            assert_eq!(&on_diagonal, a);
        }
    }
}

#[test]
fn rescaling_multiplies_each_diluted_layers_survivors_by_its_size_over_their_count() {
    let (a, b) = ((0, 4), (4, 2));
    let mut rows = vec![
        1.0, 0.0, 1.0, 0.0, 1.0, 0.0, //
        0.0, 0.0, 0.0, 0.0, 1.0, 1.0, //
        1.0, 1.0, 1.0, 0.0, 0.0, 0.0,
    ];
    rescale(&mut rows, 6, &[a, b]);
    let third = 4.0 / 3.0;
    assert_eq!(
        rows,
        [
            2.0, 0.0, 2.0, 0.0, 2.0, 0.0, //
            0.0, 0.0, 0.0, 0.0, 1.0, 1.0, //
            third, third, third, 0.0, 0.0, 0.0
        ]
    );
    // A layer that is not diluted keeps its 0/1 mask.
    let mut rows = vec![1.0, 0.0, 0.0, 0.0, 1.0, 0.0];
    rescale(&mut rows, 6, &[a]);
    assert_eq!(rows, [4.0, 0.0, 0.0, 0.0, 1.0, 0.0]);
}

#[test]
fn the_softmax_reading_is_the_total_variance_and_the_mean_largest_probability() {
    let trials = TrialValues {
        width: 2,
        values: vec![0.2, 0.8, 0.6, 0.4],
    };
    let (mean, variance) = cell_summary(&trials);
    // Var p_0 = Var p_1 = ((0.2 − 0.4)² + (0.6 − 0.4)²) / 1 = 0.08.
    assert!((mean - 0.7).abs() < 1e-12 && (variance - 0.16).abs() < 1e-12);
}

#[test]
fn statistics_are_one_name_or_a_list_without_repeats() {
    let parse = |text: &str| toml::from_str::<McueParams>(text);
    let one = parse("trials = 10\nstatistic = \"entropy\"").unwrap();
    assert_eq!(one.statistic.as_slice(), [Statistic::Entropy]);
    let many =
        parse("trials = 10\nstatistic = [\"predicted-label\", \"softmax-variance\"]").unwrap();
    assert_eq!(
        many.statistic.as_slice(),
        [Statistic::PredictedLabel, Statistic::SoftmaxVariance]
    );
    assert_eq!(
        parse("trials = 10").unwrap().statistic.as_slice(),
        [Statistic::Correctness]
    );
    let twice = parse("trials = 10\nstatistic = [\"entropy\", \"entropy\"]").unwrap();
    let err = McueStage::validate(&twice).unwrap_err();
    assert_eq!(err.key, "statistic");
    assert!(parse("trials = 10\nstatistic = \"variance\"").is_err());
    assert!(parse("trials = 10\ndilution = \"halved\"").is_err());
}

#[test]
fn mcue_bias_refuses_a_grid_of_several_statistics() {
    let grid = |statistic: serde_json::Value| gtap_engine::Declared {
        id: "mcue_all".into(),
        kind: "mcue".into(),
        params: serde_json::json!({ "trials": 10, "statistic": statistic }),
        inputs: Default::default(),
    };
    let inputs = |g| Inputs::from([("grid".to_owned(), vec![g])]);
    let err = McueBiasStage::validate_inputs(
        &McueBiasParams {},
        &inputs(grid(serde_json::json!(["correctness", "entropy"]))),
    )
    .unwrap_err();
    assert!(
        err.message.contains("`mcue_all` reads several statistics"),
        "{}",
        err.message
    );
    McueBiasStage::validate_inputs(
        &McueBiasParams {},
        &inputs(grid(serde_json::json!("entropy"))),
    )
    .unwrap();
}

#[test]
fn a_heatmap_refuses_a_diagonal_only_grid() {
    let grid = |diagonal_only: bool| gtap_engine::Declared {
        id: "mcue_diagonal".into(),
        kind: "mcue".into(),
        params: serde_json::json!({ "trials": 10, "diagonal_only": diagonal_only }),
        inputs: Default::default(),
    };
    let inputs = |g| Inputs::from([("grids".to_owned(), vec![g])]);
    let params = McueFigureParams {
        name: "figure".into(),
    };
    let err = McueFigureStage::validate_inputs(&params, &inputs(grid(true))).unwrap_err();
    assert!(
        err.message
            .contains("`mcue_diagonal` computes only the diagonal"),
        "{}",
        err.message
    );
    McueFigureStage::validate_inputs(&params, &inputs(grid(false))).unwrap();
}
