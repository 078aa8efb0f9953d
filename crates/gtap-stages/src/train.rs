//! `train` (a model per seed, checkpoint + per-epoch metrics) and `evaluate` (test accuracy).

use std::path::Path;

use gtap_engine::{ensure, Inputs, Invalid, Stage, StageContext, Upstream};
use gtap_nn::{
    AlexnetWidths, Arch, Augment, Network, Optimizer, Schedule, Shape, TensorData, TrainConfig,
};
use polars::prelude::*;
use serde::{Deserialize, Serialize};

use crate::checks;
use crate::mnist::{read_info, read_split};
use crate::progress;

pub struct TrainStage;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainParams {
    /// `lenet-300-100`, `lenet5` (MNIST), `mlp-3x256` / `mlp-512-256` (any dataset: built for
    /// its `dataset.json` feature count and classes) or `alexnet` (3×64×64 images, any classes).
    pub model: Arch,
    /// AlexNet only: multiplier of every layer's width (channels and dense neurons; 1 = the
    /// full 64-192-384-256-256 / 4096-4096 network). Left out of the key when not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<f64>,
    /// Random flips / shifts of the training images (`{ flip = true, shift = 4 }`); image
    /// models only. Left out of the key when off.
    #[serde(default, skip_serializing_if = "Augment::is_none")]
    pub augment: Augment,
    pub epochs: usize,
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    #[serde(default = "default_lr")]
    pub lr: f64,
    #[serde(default = "default_optimizer")]
    pub optimizer: Optimizer,
    /// SGD only.
    #[serde(default)]
    pub momentum: f64,
    #[serde(default)]
    pub weight_decay: f64,
    /// Dropout rate on the player layers during training; 0 (the default) is left out of the
    /// cache key, so configurations without it keep their keys.
    #[serde(default, skip_serializing_if = "crate::is_default")]
    pub dropout: f64,
    /// Learning-rate warm-up and decay (`{ warmup_epochs = 1, decay = "cosine" }`); constant
    /// (the default) is left out of the cache key.
    #[serde(default, skip_serializing_if = "Schedule::is_constant")]
    pub schedule: Schedule,
    /// Train on the first this many examples of the train split (a quick run, e.g. in tests);
    /// all by default, and then left out of the cache key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_examples: Option<usize>,
    /// Parts each mini-batch is split into, their gradients computed side by side on the
    /// cores and added in order: the same bytes on any thread count, other bytes than 1
    /// (`gtap_nn::TrainConfig::micro_batches`). 1 (the default: one pass per mini-batch) is
    /// left out of the cache key.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub micro_batches: usize,
}

pub(crate) fn one() -> usize {
    1
}
pub(crate) fn is_one(n: &usize) -> bool {
    *n == 1
}

pub(crate) fn default_batch() -> usize {
    128
}
pub(crate) fn default_lr() -> f64 {
    1e-3
}
pub(crate) fn default_optimizer() -> Optimizer {
    Optimizer::Adam
}

/// What `train` writes beside the checkpoint, so downstream stages rebuild the right network.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelInfo {
    pub arch: Arch,
    pub dataset: String,
    pub seed: u64,
    /// The player layers that are players (a `players` stage's choice); every player layer
    /// when absent, and then not written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub players: Option<Vec<String>>,
    /// Whether those layers play unit by unit or each as one player; written only for
    /// whole layers.
    #[serde(default, skip_serializing_if = "gtap_nn::Granularity::is_units")]
    pub granularity: gtap_nn::Granularity,
}

pub const CHECKPOINT: &str = "model.safetensors";

/// Loads the network a `train` stage wrote.
pub fn load_model(upstream: &Upstream) -> anyhow::Result<(Network, ModelInfo)> {
    let info: ModelInfo = serde_json::from_slice(&std::fs::read(upstream.path("model.json"))?)?;
    let net = Network::load(info.arch, &upstream.path(CHECKPOINT), gtap_nn::device())?;
    match &info.players {
        Some(layers) => Ok((net.with_player_layers_as(layers, info.granularity)?, info)),
        None => Ok((net, info)),
    }
}

/// Loads one split of a dataset stage's output as tensors.
pub fn load_split(dir: &Path, split: &str) -> anyhow::Result<TensorData> {
    let info = read_info(dir)?;
    let name = split;
    let split = read_split(dir, split)?;
    anyhow::ensure!(
        split.images().len() == split.labels().len() * info.features,
        "{}: the {name} split holds {} values for {} examples, not {} features each (dataset.json)",
        dir.display(),
        split.images().len(),
        split.labels().len(),
        info.features
    );
    Ok(TensorData::from_flat(
        split.images(),
        info.features,
        split.labels(),
        gtap_nn::device(),
    ))
}

/// The training keys `train`, `retrain` and `equilibrium` share, checked alike.
pub(crate) struct Recipe {
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    pub train_examples: Option<usize>,
    pub schedule: Schedule,
    pub micro_batches: usize,
}

/// Most parts a mini-batch may be split into: beyond the cores of a large node, more parts
/// only make each part's products smaller.
const MAX_MICRO_BATCHES: usize = 64;

/// Most examples in one training step: a batch is one tensor (AlexNet at 65,536 images would
/// already hold tens of GB of activations).
const MAX_BATCH: usize = 65_536;

pub(crate) fn validate_recipe(r: &Recipe) -> Result<(), Invalid> {
    ensure(r.epochs >= 1 && r.epochs <= 1000, "epochs", || {
        format!("must be between 1 and 1000 (got {})", r.epochs)
    })?;
    ensure(
        (1..=MAX_BATCH).contains(&r.batch_size),
        "batch_size",
        || format!("must be between 1 and {MAX_BATCH} (got {})", r.batch_size),
    )?;
    ensure(r.lr > 0.0 && r.lr <= 10.0, "lr", || {
        format!("must be in (0, 10] (got {})", r.lr)
    })?;
    ensure((0.0..1.0).contains(&r.momentum), "momentum", || {
        format!("must be in [0, 1) (got {})", r.momentum)
    })?;
    ensure(
        r.weight_decay >= 0.0 && r.weight_decay.is_finite(),
        "weight_decay",
        || format!("must be finite and non-negative (got {})", r.weight_decay),
    )?;
    ensure(r.train_examples != Some(0), "train_examples", || {
        "must be at least 1".into()
    })?;
    ensure(
        (1..=MAX_MICRO_BATCHES.min(r.batch_size)).contains(&r.micro_batches),
        "micro_batches",
        || {
            format!(
                "must be between 1 and {} (at most the batch size and {MAX_MICRO_BATCHES}; got {})",
                MAX_MICRO_BATCHES.min(r.batch_size),
                r.micro_batches
            )
        },
    )?;
    let warmup = r.schedule.warmup_epochs;
    ensure(
        warmup >= 0.0 && warmup <= r.epochs as f64,
        "schedule.warmup_epochs",
        || {
            format!(
                "must be between 0 and the {} epochs (got {warmup})",
                r.epochs
            )
        },
    )
}

/// The train split, cut to its first `train_examples` when given.
pub(crate) fn load_train_split(
    dir: &Path,
    train_examples: Option<usize>,
) -> anyhow::Result<TensorData> {
    let train = load_split(dir, "train")?;
    Ok(match train_examples {
        Some(n) => train.head(n.min(train.len())),
        None => train,
    })
}

impl Stage for TrainStage {
    type Params = TrainParams;
    const KIND: &'static str = "train";
    const FLOAT_MATH: bool = true;
    const VERSION: u32 = 1;
    const SEEDED: bool = true;
    const INPUTS: &'static [&'static str] = &["data"];
    const ABOUT: &'static str =
        "trains a model per seed: safetensors checkpoint and per-epoch metrics";

    fn validate(p: &TrainParams) -> Result<(), Invalid> {
        validate_recipe(&Recipe {
            epochs: p.epochs,
            batch_size: p.batch_size,
            lr: p.lr,
            momentum: p.momentum,
            weight_decay: p.weight_decay,
            train_examples: p.train_examples,
            schedule: p.schedule,
            micro_batches: p.micro_batches,
        })?;
        ensure((0.0..1.0).contains(&p.dropout), "dropout", || {
            format!("must be in [0, 1) (got {})", p.dropout)
        })?;
        if let Some(width) = p.width {
            ensure(p.model.has_width(), "width", || {
                format!(
                    "only alexnet has a width multiplier ({} has fixed layers)",
                    p.model
                )
            })?;
            ensure(width > 0.0 && width <= 4.0, "width", || {
                format!("must be in (0, 4] (got {width})")
            })?;
        }
        ensure(
            p.augment.is_none() || p.model.image().is_some(),
            "augment",
            || {
                format!(
                    "{} does not take images: augmentation needs lenet5 or alexnet",
                    p.model
                )
            },
        )?;
        if let Some([_, side, _]) = p.model.image() {
            // Shifted by its side or more, an image is gone; the padding grows with the shift.
            let most = side as usize / 2 - 1;
            ensure(p.augment.shift <= most, "augment.shift", || {
                format!(
                    "must be at most {most} pixels for {}'s {side}x{side} images (got {})",
                    p.model, p.augment.shift
                )
            })?;
        }
        Ok(())
    }

    fn validate_inputs(p: &TrainParams, inputs: &Inputs) -> Result<(), Invalid> {
        checks::input_kinds(inputs, "data", &checks::DATASET_KINDS)?;
        match inputs.get("data").and_then(|d| d.first()) {
            Some(data) => checks::arch_takes(p.model, data),
            None => Ok(()),
        }
    }

    fn run(p: &TrainParams, ctx: &StageContext<'_>) -> anyhow::Result<()> {
        let seed = ctx.seed()?;
        let data = ctx.input("data")?;
        let info = read_info(&data.dir)?;
        let train = load_train_split(&data.dir, p.train_examples)?;
        let probe = load_split(&data.dir, "probe")?;
        let shape = Shape {
            inputs: info.features,
            classes: info.num_classes,
            vocabulary: info.token_ids.unwrap_or(0),
        };
        let widths = AlexnetWidths::scaled(p.width.unwrap_or(1.0));
        let mut net = Network::with_widths(p.model, shape, widths, train.inputs.device(), seed)?;
        let cfg = TrainConfig {
            augment: p.augment,
            epochs: p.epochs,
            batch_size: p.batch_size,
            lr: p.lr,
            optimizer: p.optimizer,
            momentum: p.momentum,
            weight_decay: p.weight_decay,
            dropout: p.dropout,
            schedule: p.schedule,
            micro_batches: p.micro_batches,
        };
        let steps = (p.epochs * train.len().div_ceil(p.batch_size)) as u64;
        let bar = progress::bar(ctx.env.progress, steps, ctx.instance);
        let metrics = gtap_nn::train(&mut net, &train, &probe, &cfg, seed, &mut || bar.inc(1))?;
        bar.finish_and_clear();
        net.save(&ctx.out_dir().join(CHECKPOINT))?;
        let model = ModelInfo {
            arch: p.model,
            dataset: info.name.clone(),
            seed,
            players: None,
            granularity: Default::default(),
        };
        std::fs::write(
            ctx.out_dir().join("model.json"),
            serde_json::to_vec_pretty(&model)?,
        )?;
        let n = metrics.len();
        let mut df = df!(
            "model" => vec![p.model.name(); n],
            "dataset" => vec![info.name.as_str(); n],
            "seed" => vec![seed; n],
            "epoch" => metrics.iter().map(|m| m.epoch as u32).collect::<Vec<_>>(),
            "loss" => metrics.iter().map(|m| m.loss).collect::<Vec<_>>(),
            "train_accuracy" => metrics.iter().map(|m| m.train_accuracy).collect::<Vec<_>>(),
            "probe_accuracy" => metrics.iter().map(|m| m.probe_accuracy).collect::<Vec<_>>(),
        )?;
        ctx.write_table("training", &mut df)?;
        if let Some(last) = metrics.last() {
            tracing::info!(
                "{}: {} epochs, probe accuracy {:.4}",
                ctx.instance,
                p.epochs,
                last.probe_accuracy
            );
        }
        Ok(())
    }
}

pub struct EvaluateStage;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvaluateParams {}

impl Stage for EvaluateStage {
    type Params = EvaluateParams;
    const KIND: &'static str = "evaluate";
    const FLOAT_MATH: bool = true;
    const VERSION: u32 = 1;
    const SEEDED: bool = true;
    const INPUTS: &'static [&'static str] = &["model", "data"];
    const ABOUT: &'static str =
        "test accuracy and loss of a trained model (never guided by test data)";

    fn validate_inputs(_: &EvaluateParams, inputs: &Inputs) -> Result<(), Invalid> {
        checks::model_and_data(inputs)
    }

    fn run(_: &EvaluateParams, ctx: &StageContext<'_>) -> anyhow::Result<()> {
        let (net, model) = load_model(ctx.input("model")?)?;
        let data = ctx.input("data")?;
        let test = load_split(&data.dir, "test")?;
        let probe = load_split(&data.dir, "probe")?;
        let on_test = gtap_nn::evaluate(&net, &test);
        let on_probe = gtap_nn::evaluate(&net, &probe);
        let mut df = df!(
            "model" => [model.arch.name()],
            "dataset" => [model.dataset.as_str()],
            "seed" => [model.seed],
            "test_accuracy" => [on_test.accuracy],
            "test_loss" => [on_test.loss],
            "probe_accuracy" => [on_probe.accuracy],
            "parameters" => [net.num_parameters() as u64],
        )?;
        ctx.write_table("evaluation", &mut df)?;
        tracing::info!("{}: test accuracy {:.4}", ctx.instance, on_test.accuracy);
        Ok(())
    }
}
