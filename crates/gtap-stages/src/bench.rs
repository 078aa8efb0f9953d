//! `gtap bench coalitions`: how fast masked coalition evaluation runs next to libtorch's dense
//! matmul on the same machine.

use std::time::Instant;

use gtap_game::{Coalition, Walk};
use gtap_nn::{Arch, MaskedEvaluator, Network, TensorData, Utility};
use rand::{Rng, SeedableRng};
use tch::{Kind, Tensor};

/// One measured configuration.
#[derive(Debug, Clone)]
pub struct CoalitionRate {
    pub batch: usize,
    pub evaluations_per_second: f64,
    /// The same values by the reference path alone (certification off; the default is the
    /// certified path, [`gtap_nn::certify`]: fast kernels, undecided pairs recomputed).
    pub reference_per_second: f64,
    /// Share of (example, coalition) pairs the certified path handed to the reference path.
    pub recomputed_share: f64,
    /// The same share on the incremental walks (certified too).
    pub walk_recomputed_share: f64,
    pub gflops: f64,
    /// Coalitions per second along `batch` walks of single toggles ([`gtap_game::Walk`]: the
    /// work of permutations, sweeps and the paper's pairs), evaluated incrementally.
    pub walk_evaluations_per_second: f64,
}

#[derive(Debug, Clone)]
pub struct CoalitionBench {
    pub examples: usize,
    /// Where the weights came from: a short training run on MNIST, or random.
    pub weights: String,
    pub threads: i32,
    /// FLOPs of one coalition evaluation (the masked head over every example).
    pub flops_per_evaluation: f64,
    /// GEMM `[E, 400] × [400, 64·120]`: the shape of the first masked layer at a batch of 64.
    pub matmul_same_shape_gflops: f64,
    /// Square 2048³ GEMM: roughly the machine's peak through libtorch.
    pub matmul_square_gflops: f64,
    /// The same two GEMMs through [`gtap_nn::gemm`] (row-invariant, the same bytes on any
    /// FMA+AVX2 CPU) on two threads; `None` where the CPU lacks FMA or AVX2.
    pub portable_gemm_gflops: Option<(f64, f64)>,
    pub rates: Vec<CoalitionRate>,
    /// The paper's Algorithm 2 (β_{1/2}, one pair per player: 1,208 coalitions) through
    /// [`gtap_game::estimate`] with incremental evaluation, coalitions per second.
    pub algorithm2_evaluations_per_second: f64,
    /// Coalitions per second whose every player's marginal contribution is predicted
    /// ([`MaskedEvaluator::predicted_marginals_of`], [`PREDICTED`] per call).
    pub predictions_per_second: f64,
    /// Time of one prediction over one full evaluation of the same coalitions: the
    /// `prediction_cost` of `estimator-agreement`.
    pub prediction_cost: f64,
}

/// Runs `f` until at least `min_seconds` have passed (after one warm-up call); seconds per call.
fn time_per_call(min_seconds: f64, mut f: impl FnMut()) -> f64 {
    f();
    let started = Instant::now();
    let mut calls = 0u32;
    while calls == 0 || started.elapsed().as_secs_f64() < min_seconds {
        f();
        calls += 1;
    }
    started.elapsed().as_secs_f64() / f64::from(calls)
}

/// LeNet5 and `examples` examples to evaluate it on: trained for one epoch on 12,000 MNIST
/// training images (Adam, dropout 0.3, as the pipelines train) with MNIST probe examples when
/// the files are in `data_dir`, random otherwise. The FLOPs do not depend on the weights, but
/// the share of pairs the certified path recomputes does: it needs a trained network's
/// margins.
fn bench_network(
    examples: usize,
    data_dir: &std::path::Path,
) -> anyhow::Result<(Network, TensorData, String)> {
    let device = gtap_nn::device();
    let mut net = Network::new(Arch::Lenet5, device, 0);
    let e = examples as i64;
    let Ok(files) = gtap_data::mnist_files(data_dir, gtap_data::FetchPolicy::Never) else {
        let data = gtap_nn::with_torch_rng(1, || TensorData {
            inputs: Tensor::randn([e, 784], (Kind::Float, device)),
            labels: Tensor::randint(10, [e], (Kind::Int64, device)),
        });
        return Ok((net, data, "random (no MNIST in the data directory)".into()));
    };
    let mnist = gtap_data::load_mnist(
        &files,
        &gtap_data::MnistConfig {
            probe_size: examples.max(1),
            ..Default::default()
        },
    )?;
    let tensors = |split: &gtap_data::Split| {
        TensorData::from_flat(split.images(), 784, split.labels(), device)
    };
    let (train, probe) = (tensors(&mnist.train).head(12_000), tensors(&mnist.probe));
    let cfg = gtap_nn::TrainConfig {
        augment: Default::default(),
        schedule: Default::default(),
        micro_batches: 1,
        epochs: 1,
        batch_size: 64,
        lr: 1e-3,
        optimizer: gtap_nn::Optimizer::Adam,
        momentum: 0.0,
        weight_decay: 0.0,
        dropout: 0.3,
    };
    gtap_nn::train(&mut net, &train, &probe.head(100), &cfg, 0, &mut || {})?;
    let accuracy = gtap_nn::evaluate(&net, &probe).accuracy;
    let weights = format!("trained 1 epoch on 12,000 MNIST images (probe accuracy {accuracy:.3})");
    Ok((net, probe, weights))
}

/// Measures LeNet5's 604-player head on `examples` probe examples ([`bench_network`]).
pub fn coalitions(
    examples: usize,
    batches: &[usize],
    min_seconds: f64,
    data_dir: &std::path::Path,
) -> anyhow::Result<CoalitionBench> {
    let (net, data, weights) = bench_network(examples, data_dir)?;
    let _guard = tch::no_grad_guard();
    let device = gtap_nn::device();
    let e = data.len() as i64;
    let head_macs: f64 = (400 * 120 + 120 * 84 + 84 * 10) as f64;
    let flops_per_evaluation = 2.0 * head_macs * examples as f64;

    let a = Tensor::randn([e, 400], (Kind::Float, device));
    let b = Tensor::randn([400, 64 * 120], (Kind::Float, device));
    let t = time_per_call(min_seconds, || {
        let _ = a.matmul(&b).sum(Kind::Float).double_value(&[]);
    });
    let matmul_same_shape_gflops = 2.0 * (e * 400 * 64 * 120) as f64 / t / 1e9;
    let sq = Tensor::randn([2048, 2048], (Kind::Float, device));
    let t = time_per_call(min_seconds, || {
        let _ = sq.matmul(&sq).sum(Kind::Float).double_value(&[]);
    });
    let matmul_square_gflops = 2.0 * 2048f64.powi(3) / t / 1e9;
    let portable_gemm_gflops = match gtap_nn::gemm::supported() {
        true => {
            let (a, b, sq) = (
                a.to_device(tch::Device::Cpu),
                b.to_device(tch::Device::Cpu),
                sq.to_device(tch::Device::Cpu),
            );
            let gemm = |x: &Tensor, y: &Tensor| gtap_nn::gemm::matmul(x, y, 2);
            // An error surfaces here, once, not inside the timed loops.
            drop(gemm(&a, &b)?);
            let same = time_per_call(min_seconds, || drop(gemm(&a, &b)));
            let square = time_per_call(min_seconds, || drop(gemm(&sq, &sq)));
            Some((
                2.0 * (e * 400 * 64 * 120) as f64 / same / 1e9,
                2.0 * 2048f64.powi(3) / square / 1e9,
            ))
        }
        false => None,
    };

    // One evaluator (one prefix pass): `values_of_masks` always evaluates in full, walks and
    // Algorithm 2 go incrementally.
    let evaluator = MaskedEvaluator::new(&net, &data, Utility::Accuracy, 64).with_incremental(true);
    let reference =
        MaskedEvaluator::new(&net, &data, Utility::Accuracy, 64).with_certification(false);
    let mut rates = Vec::new();
    for &batch in batches {
        let masks = Tensor::rand([batch as i64, 604], (Kind::Float, device))
            .gt(0.5)
            .to_kind(Kind::Float);
        let before = evaluator.certification();
        let t = time_per_call(min_seconds, || {
            evaluator
                .values_of_masks(&masks)
                .expect("mask width matches");
        });
        let after = evaluator.certification();
        let evaluations_per_second = batch as f64 / t;
        let t_reference = time_per_call(min_seconds, || {
            reference
                .values_of_masks(&masks)
                .expect("mask width matches");
        });
        let recomputed_share = (after.1 - before.1) as f64 / ((after.0 - before.0) as f64).max(1.0);
        let walks = toggle_walks(batch, 604);
        let values: usize = walks.iter().map(Walk::num_values).sum();
        let before = evaluator.certification();
        let t = time_per_call(min_seconds, || {
            evaluator.walk_values_incremental(&walks);
        });
        let after = evaluator.certification();
        let walk_recomputed_share =
            (after.1 - before.1) as f64 / ((after.0 - before.0) as f64).max(1.0);
        rates.push(CoalitionRate {
            batch,
            evaluations_per_second,
            reference_per_second: batch as f64 / t_reference,
            recomputed_share,
            walk_recomputed_share,
            gflops: evaluations_per_second * flops_per_evaluation / 1e9,
            walk_evaluations_per_second: values as f64 / t,
        });
    }
    let algorithm2 = gtap_game::EstimateConfig {
        index: gtap_game::IndexKind::Banzhaf,
        estimator: gtap_game::Estimator::Paired,
        samples: 1,
        seed: 0,
    };
    let t = time_per_call(min_seconds, || {
        gtap_game::estimate(
            &evaluator,
            &algorithm2,
            &gtap_game::Constraints::none(),
            &|_| {},
        )
        .expect("a valid configuration");
    });
    let algorithm2_evaluations_per_second = (2 * 604) as f64 / t;
    // The control-variate estimator's predictions: one backward pass through the gates per
    // coalition, against a full (certified) evaluation of the same coalitions.
    let coalitions: Vec<Coalition> = {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        (0..PREDICTED)
            .map(|_| Coalition::from_players(604, (0..604).filter(|_| rng.random_bool(0.5))))
            .collect()
    };
    let t_predicted = time_per_call(min_seconds, || {
        evaluator
            .predicted_marginals_of(&coalitions)
            .expect("mask width matches");
    });
    let mut out = vec![0.0; PREDICTED];
    let t_full = time_per_call(min_seconds, || {
        gtap_game::Game::values(&evaluator, &coalitions, &mut out)
    });
    Ok(CoalitionBench {
        algorithm2_evaluations_per_second,
        predictions_per_second: PREDICTED as f64 / t_predicted,
        prediction_cost: t_predicted / t_full,
        examples: data.len(),
        weights,
        threads: tch::get_num_threads(),
        flops_per_evaluation,
        matmul_same_shape_gflops,
        matmul_square_gflops,
        portable_gemm_gflops,
        rates,
    })
}

/// `count` walks from random coalitions (each player in with probability ½), each toggling
/// `WALK_STEPS` random players one at a time: one refresh period of incremental evaluation.
fn toggle_walks(count: usize, players: usize) -> Vec<Walk> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    (0..count)
        .map(|_| Walk {
            start: Coalition::from_players(players, (0..players).filter(|_| rng.random_bool(0.5))),
            steps: (0..WALK_STEPS)
                .map(|_| vec![rng.random_range(0..players)])
                .collect(),
        })
        .collect()
}

/// Coalitions per call when predictions are timed.
const PREDICTED: usize = 8;

/// Steps per benchmark walk: [`gtap_nn::walks::REFRESH`], so each walk pays one full evaluation
/// per period, as a long walk does.
const WALK_STEPS: usize = gtap_nn::walks::REFRESH - 1;

/// Training and evaluation speed of one architecture under the process's numerics.
#[derive(Debug, Clone)]
pub struct TrainingRate {
    pub arch: Arch,
    /// Mini-batches of 128 per second (Adam, forward + backward + step), for each number of
    /// micro-batches in [`TRAINING_PARTS`].
    pub steps_per_second: Vec<(usize, f64)>,
    /// Examples per second through [`gtap_nn::evaluate`] (no gradients).
    pub eval_examples_per_second: f64,
    /// Examples per second through [`gtap_nn::accuracy`] (the count alone, small chunks).
    pub accuracy_examples_per_second: f64,
}

/// Micro-batches per mini-batch that [`training`] measures: 1 (one pass, the default) and
/// the side-by-side recipes.
pub const TRAINING_PARTS: [usize; 3] = [1, 2, 4];

/// Measures training steps and evaluation on random MNIST-shaped data (speed does not depend on
/// the values) for both LeNets.
pub fn training(min_seconds: f64) -> anyhow::Result<Vec<TrainingRate>> {
    let device = gtap_nn::device();
    let data = |n: i64, seed: u64| {
        gtap_nn::with_torch_rng(seed, || TensorData {
            inputs: Tensor::rand([n, 784], (Kind::Float, device)),
            labels: Tensor::randint(10, [n], (Kind::Int64, device)),
        })
    };
    let (train, probe, test) = (data(1280, 1), data(10, 2), data(10_000, 3));
    let cfg = gtap_nn::TrainConfig {
        augment: Default::default(),
        schedule: Default::default(),
        micro_batches: 1,
        epochs: 1,
        batch_size: 128,
        lr: 1e-3,
        optimizer: gtap_nn::Optimizer::Adam,
        momentum: 0.0,
        weight_decay: 0.0,
        dropout: 0.0,
    };
    let mut out = Vec::new();
    for arch in [Arch::Lenet300100, Arch::Lenet5] {
        let mut net = Network::new(arch, device, 0);
        let steps_per_second = TRAINING_PARTS
            .into_iter()
            .map(|parts| {
                let cfg = gtap_nn::TrainConfig {
                    micro_batches: parts,
                    ..cfg.clone()
                };
                let t = time_per_call(min_seconds, || {
                    gtap_nn::train(&mut net, &train, &probe, &cfg, 0, &mut || {})
                        .expect("training runs");
                });
                (parts, 10.0 / t)
            })
            .collect();
        let t = time_per_call(min_seconds, || {
            gtap_nn::evaluate(&net, &test);
        });
        let eval_examples_per_second = 10_000.0 / t;
        let t = time_per_call(min_seconds, || {
            gtap_nn::accuracy(&net, &test);
        });
        out.push(TrainingRate {
            arch,
            steps_per_second,
            eval_examples_per_second,
            accuracy_examples_per_second: 10_000.0 / t,
        });
    }
    Ok(out)
}

/// One player layer's game in [`alexnet_layers`].
#[derive(Debug, Clone)]
pub struct LayerRate {
    pub layer: String,
    pub units: usize,
    /// FLOPs of one (example, coalition) pair: every layer from the one consuming this layer.
    pub flops_per_pair: f64,
    pub evaluations_per_second: f64,
    pub gflops: f64,
    /// The consuming layer's own operation at the evaluator's shape (its `K` masked weight
    /// sets over the shared input: one convolution or one GEMM), on the same threads.
    pub op_gflops: f64,
    /// The same values by the reference path alone (certification off).
    pub reference_per_second: f64,
    /// Share of its (example, coalition) pairs the certified path handed to the reference
    /// path in the timed calls (1 where it gave the game to the reference alone).
    pub recomputed: f64,
}

/// Coalition evaluations per second of each AlexNet layer-wise game (width `width`, `examples`
/// random images, `batch` coalitions per call), next to the rate of the same-shape first
/// operation of its evaluation.
pub fn alexnet_layers(
    width: f64,
    examples: usize,
    batch: usize,
    min_seconds: f64,
) -> anyhow::Result<Vec<LayerRate>> {
    let _guard = tch::no_grad_guard();
    let device = gtap_nn::device();
    let shape = gtap_nn::Shape::TINY_IMAGENET;
    let widths = gtap_nn::AlexnetWidths::scaled(width);
    let net = Network::with_widths(Arch::Alexnet, shape, widths, device, 0)?;
    let e = examples as i64;
    let data = gtap_nn::with_torch_rng(1, || TensorData {
        inputs: Tensor::randn([e, shape.inputs as i64], (Kind::Float, device)),
        labels: Tensor::randint(shape.classes as i64, [e], (Kind::Int64, device)),
    });
    let flops = net.layer_flops();
    let n = net.num_players() as i64;
    let k = batch as i64;
    let mut rates = Vec::new();
    for (l, pl) in net.player_layers().iter().enumerate() {
        // The consumer is the weighted layer after the unit's own (conv1 -> conv2, conv5 -> fc1).
        let own = flops
            .iter()
            .position(|(name, _)| *name == pl.name)
            .expect("a weighted layer");
        let flops_per_pair: f64 = flops[own + 1..].iter().map(|(_, f)| *f as f64).sum();
        let evaluator = MaskedEvaluator::starting_at(&net, &data, Utility::Accuracy, batch, l);
        let masks = Tensor::ones([k, n], (Kind::Float, device));
        let free = gtap_nn::with_torch_rng(2, || {
            Tensor::rand([k, pl.size as i64], (Kind::Float, device))
                .gt(0.5)
                .to_kind(Kind::Float)
        });
        masks
            .narrow(1, pl.offset as i64, pl.size as i64)
            .copy_(&free);
        let t = time_per_call(min_seconds, || {
            evaluator
                .values_of_masks(&masks)
                .expect("mask width matches");
        });
        let evaluations_per_second = batch as f64 / t;
        let (decided, recomputed) = evaluator.certification();
        let recomputed = match decided {
            0 => 1.0,
            _ => recomputed as f64 / decided as f64,
        };
        let reference = MaskedEvaluator::starting_at(&net, &data, Utility::Accuracy, batch, l)
            .with_certification(false);
        let t_reference = time_per_call(min_seconds, || {
            reference
                .values_of_masks(&masks)
                .expect("mask width matches");
        });
        // The consumer's operation alone: its weights stacked K times over the shared input.
        let features = net.activations_at(&data.inputs, l);
        let variables = net.named_variables();
        let next = &flops[own + 1].0;
        let weight = &variables
            .iter()
            .find(|(name, _)| *name == format!("{next}.weight"))
            .expect("the consumer's weight")
            .1;
        let mut reps = vec![1i64; weight.dim()];
        reps[0] = batch as i64;
        let stacked = weight.repeat(reps.as_slice());
        let chunks: Vec<Tensor> = features.chunk(gtap_nn::numerics::workers() as i64, 0);
        let geometry = net.conv_stride_padding(next);
        let t_op = time_per_call(min_seconds, || {
            let work: Vec<(Tensor, Tensor)> = chunks
                .iter()
                .map(|x| (x.shallow_clone(), stacked.shallow_clone()))
                .collect();
            gtap_nn::numerics::map_in_parallel(work, |(x, w)| {
                let out = match geometry {
                    Some((stride, padding)) => {
                        gtap_nn::numerics::conv2d_strided(&x, &w, None, stride, padding)
                    }
                    None => x.flatten(1, -1).matmul(&w.tr()),
                };
                let _ = out.sum(Kind::Float).double_value(&[]);
            });
        });
        let op_flops = flops[own + 1].1 as f64 * (examples * batch) as f64;
        rates.push(LayerRate {
            layer: pl.name.clone(),
            units: pl.size,
            flops_per_pair,
            evaluations_per_second,
            gflops: evaluations_per_second * examples as f64 * flops_per_pair / 1e9,
            op_gflops: op_flops / t_op / 1e9,
            reference_per_second: batch as f64 / t_reference,
            recomputed,
        });
    }
    Ok(rates)
}
