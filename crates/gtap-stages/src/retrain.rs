//! `retrain`: the sub-network each input ranking keeps at each target size, trained again
//! (fine-tuned from the trained weights, or rewound to the training run's initial weights,
//! lottery-ticket style) with the removed units held at zero; writes a `retrained` table: the
//! `curves` columns plus `retraining` and `retrain_epochs`, which `figure-curves` reads beside
//! plain curves. (A table name holds one schema across a pipeline's stages, hence the own name.)

use gtap_engine::{ensure, Inputs, Invalid, Stage, StageContext};
use gtap_nn::{Network, Optimizer, TrainConfig};
use serde::{Deserialize, Serialize};

use crate::curves::{curves_frame, Point};
use crate::progress;
use crate::ranking::Ranking;
use crate::train::{
    default_batch, default_lr, default_optimizer, load_model, load_split, load_train_split,
    validate_recipe, Recipe,
};

/// Where retraining starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RetrainFrom {
    /// The trained weights (fine-tuning).
    Trained,
    /// The weights the training run started from: `Network::with_shape(arch, shape, seed)` with
    /// the model's own seed, as `train` drew them (lottery-ticket rewinding).
    Init,
}

impl RetrainFrom {
    /// The `retraining` column's value.
    pub fn label(self) -> &'static str {
        match self {
            RetrainFrom::Trained => "fine-tune",
            RetrainFrom::Init => "rewind",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrainParams {
    pub from: RetrainFrom,
    /// Fractions of the players to keep (each rounded to whole units, at least one).
    pub sizes: Vec<f64>,
    pub epochs: usize,
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    #[serde(default = "default_lr")]
    pub lr: f64,
    #[serde(default = "default_optimizer")]
    pub optimizer: Optimizer,
    #[serde(default)]
    pub momentum: f64,
    #[serde(default)]
    pub weight_decay: f64,
    /// Retrain on the first this many training examples; all by default, and then not keyed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_examples: Option<usize>,
    /// As `train`'s: parts of each mini-batch computed side by side; 1 is not keyed.
    #[serde(
        default = "crate::train::one",
        skip_serializing_if = "crate::train::is_one"
    )]
    pub micro_batches: usize,
}

pub struct RetrainStage;

impl Stage for RetrainStage {
    type Params = RetrainParams;
    const KIND: &'static str = "retrain";
    const FLOAT_MATH: bool = true;
    // 2: the curves' `variant` column.
    const VERSION: u32 = 2;
    const SEEDED: bool = true;
    const INPUTS: &'static [&'static str] = &["model", "data", "rankings"];
    const ABOUT: &'static str =
        "test accuracy of each ranking's kept sub-network after retraining (fine-tune or rewind)";

    fn validate_inputs(_: &RetrainParams, inputs: &Inputs) -> Result<(), Invalid> {
        crate::checks::model_and_data(inputs)?;
        crate::checks::rankings(inputs)
    }

    fn validate(p: &RetrainParams) -> Result<(), Invalid> {
        ensure(
            !p.sizes.is_empty() && p.sizes.iter().all(|s| *s > 0.0 && *s <= 1.0),
            "sizes",
            || format!("must be fractions in (0, 1] (got {:?})", p.sizes),
        )?;
        validate_recipe(&Recipe {
            epochs: p.epochs,
            batch_size: p.batch_size,
            lr: p.lr,
            momentum: p.momentum,
            weight_decay: p.weight_decay,
            train_examples: p.train_examples,
            schedule: Default::default(),
            micro_batches: p.micro_batches,
        })
    }

    fn run(p: &RetrainParams, ctx: &StageContext<'_>) -> anyhow::Result<()> {
        let seed = ctx.seed()?;
        let model_dir = ctx.input("model")?;
        let (trained, model) = load_model(model_dir)?;
        let data = ctx.input("data")?;
        let train = load_train_split(&data.dir, p.train_examples)?;
        let test = load_split(&data.dir, "test")?;
        let n = trained.num_players();
        let full = trained.cost(&vec![true; n]);
        let cfg = TrainConfig {
            augment: Default::default(),
            schedule: Default::default(),
            micro_batches: p.micro_batches,
            epochs: p.epochs,
            batch_size: p.batch_size,
            lr: p.lr,
            optimizer: p.optimizer,
            momentum: p.momentum,
            weight_decay: p.weight_decay,
            dropout: 0.0,
        };
        let rankings = ctx
            .inputs("rankings")
            .iter()
            .map(|upstream| Ranking::read_for(upstream, &trained))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let steps = rankings.len() * p.sizes.len() * p.epochs * train.len().div_ceil(p.batch_size);
        let bar = progress::bar(ctx.env.progress, steps as u64, ctx.instance);
        let mut points = Vec::new();
        for ranking in &rankings {
            for &size in &p.sizes {
                let r = ((size * n as f64).round() as usize).clamp(1, n);
                let mut kept = vec![false; n];
                ranking.order[..r].iter().for_each(|&q| kept[q] = true);
                let mut net = match p.from {
                    RetrainFrom::Trained => Network::load(
                        model.arch,
                        &model_dir.path(crate::train::CHECKPOINT),
                        trained.device(),
                    )?,
                    // At the trained network's widths (AlexNet may be narrowed).
                    RetrainFrom::Init => Network::with_widths(
                        model.arch,
                        trained.shape(),
                        trained.widths(),
                        trained.device(),
                        model.seed,
                    )?,
                };
                gtap_nn::retrain(&mut net, &kept, &train, &cfg, seed, &mut || bar.inc(1))?;
                let cost = net.cost(&kept);
                points.push(Point {
                    method: ranking.method.clone(),
                    index: ranking.label.index.clone(),
                    strategy: ranking.label.strategy.clone(),
                    variant: ranking.label.variant.clone(),
                    size_fraction: r as f64 / n as f64,
                    players_kept: r as u32,
                    params_kept: cost.params,
                    flops_kept: cost.flops,
                    test_accuracy: gtap_nn::accuracy(&net, &test),
                });
            }
        }
        bar.finish_and_clear();
        let mut df = curves_frame(ctx.seed()?, &model, full, &points)?;
        let rows = df.height();
        df.with_column(polars::prelude::Column::new(
            "retraining".into(),
            vec![p.from.label(); rows],
        ))?;
        df.with_column(polars::prelude::Column::new(
            "retrain_epochs".into(),
            vec![p.epochs as u32; rows],
        ))?;
        ctx.write_table(RETRAINED_TABLE, &mut df)
    }
}

/// The table a `retrain` stage writes.
pub const RETRAINED_TABLE: &str = "retrained";
