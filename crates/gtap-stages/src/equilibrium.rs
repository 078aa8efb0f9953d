//! `equilibrium` ("Pruning as a Game"): trains a model per seed together with one participation
//! level per player, removes the players whose participation ends below ε, and writes the pruned
//! network as a checkpoint that every model stage reads (`evaluate`, `curves`, `export`), with
//! `equilibrium`, `participation` and `equilibrium_training` tables.
//! `figure-equilibrium`: those runs against the paper's numbers (`summary` table) and the
//! histograms of final participation (mean ± σ over seeds per bin).

use gtap_engine::{ensure, Inputs, Invalid, Stage, StageContext};
use gtap_nn::{
    AlexnetWidths, Arch, Benefit, EquilibriumConfig, Granularity, Network, Optimizer, Schedule,
    Shape, TrainConfig,
};
use gtap_plot::{LinePanel, Series};
use polars::prelude::*;
use serde::{Deserialize, Serialize};

use crate::mnist::read_info;
use crate::progress;
use crate::train::{
    default_batch, default_lr, default_optimizer, load_split, load_train_split, validate_recipe,
    ModelInfo, Recipe, CHECKPOINT,
};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EquilibriumParams {
    /// Any architecture `train` builds; the paper's is `mlp-512-256`.
    pub model: Arch,
    pub epochs: usize,
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Weight learning rate.
    #[serde(default = "default_lr")]
    pub lr: f64,
    #[serde(default = "default_optimizer")]
    pub optimizer: Optimizer,
    #[serde(default)]
    pub momentum: f64,
    #[serde(default)]
    pub weight_decay: f64,
    /// Benefit weight α (the paper: 1).
    #[serde(default = "one")]
    pub alpha: f64,
    /// L2 cost β, scaled by each player's squared group norm.
    pub beta: f64,
    /// L1 cost γ.
    #[serde(default)]
    pub gamma: f64,
    /// Competition η through the inner products of a layer's weight groups (the paper: 0).
    #[serde(default)]
    pub eta: f64,
    /// Step of the projected gradient ascent on participations, per mini-batch (the paper: 0.001).
    #[serde(default = "default_participation_lr")]
    pub participation_lr: f64,
    /// Players whose final participation is below this are removed (the paper: 0.01).
    #[serde(default = "default_epsilon")]
    pub epsilon: f64,
    /// Train on the first this many examples (quick runs); all by default, and then not keyed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_examples: Option<usize>,
    /// `loss-reduction` (default: participation grows when it lowers the loss) or
    /// `paper-literal` (the paper's α⟨∇L, θ_i⟩ as written, which pushes useful units down);
    /// the default is left out of the cache key.
    #[serde(default, skip_serializing_if = "crate::is_default")]
    pub benefit: Benefit,
    /// The player layers that play (`["block1.attn", "block2.attn"]`: a participation per
    /// attention head, FFN neurons always present); every player layer when not given, and
    /// then not keyed. Downstream stages see these players, as after a `players` stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layers: Option<Vec<String>>,
    /// With `layers`: `units` (default) or `layers` (each named layer one participation).
    #[serde(default, skip_serializing_if = "Granularity::is_units")]
    pub granularity: Granularity,
    /// The weights' learning-rate warm-up and decay, as `train`'s; constant (the default) is
    /// not keyed.
    #[serde(default, skip_serializing_if = "Schedule::is_constant")]
    pub schedule: Schedule,
}

fn one() -> f64 {
    1.0
}
fn default_participation_lr() -> f64 {
    1e-3
}
fn default_epsilon() -> f64 {
    0.01
}

/// Final participations and kept flags, beside the checkpoint.
pub const PARTICIPATION: &str = "participation.json";

pub struct EquilibriumStage;

impl Stage for EquilibriumStage {
    type Params = EquilibriumParams;
    const KIND: &'static str = "equilibrium";
    const FLOAT_MATH: bool = true;
    // 2: optimizer, lr and participation_lr columns.
    const VERSION: u32 = 2;
    const SEEDED: bool = true;
    const INPUTS: &'static [&'static str] = &["data"];
    const ABOUT: &'static str =
        "equilibrium-driven sparsification: trains weights and participations, removes players below ε";

    fn validate_inputs(p: &EquilibriumParams, inputs: &Inputs) -> Result<(), Invalid> {
        crate::checks::input_kinds(inputs, "data", &crate::checks::DATASET_KINDS)?;
        if let Some(layers) = &p.layers {
            let all = p.model.player_layers(AlexnetWidths::FULL);
            crate::checks::layer_names_of("layers", layers, Some((p.model, all)))?;
        }
        match inputs.get("data").and_then(|d| d.first()) {
            Some(data) => crate::checks::arch_takes(p.model, data),
            None => Ok(()),
        }
    }

    fn validate(p: &EquilibriumParams) -> Result<(), Invalid> {
        validate_recipe(&Recipe {
            epochs: p.epochs,
            batch_size: p.batch_size,
            lr: p.lr,
            momentum: p.momentum,
            weight_decay: p.weight_decay,
            train_examples: p.train_examples,
            schedule: p.schedule,
            micro_batches: 1,
        })?;
        for (key, value) in [
            ("alpha", p.alpha),
            ("beta", p.beta),
            ("gamma", p.gamma),
            ("eta", p.eta),
        ] {
            ensure(value >= 0.0 && value.is_finite(), key, || {
                format!("must be a non-negative number (got {value})")
            })?;
        }
        ensure(
            p.participation_lr > 0.0 && p.participation_lr.is_finite(),
            "participation_lr",
            || format!("must be positive (got {})", p.participation_lr),
        )?;
        ensure((0.0..1.0).contains(&p.epsilon), "epsilon", || {
            format!("must be in [0, 1) (got {})", p.epsilon)
        })?;
        ensure(
            p.layers.is_some() || p.granularity.is_units(),
            "granularity",
            || "needs `layers`: the player layers that play whole".into(),
        )
    }

    fn run(p: &EquilibriumParams, ctx: &StageContext<'_>) -> anyhow::Result<()> {
        let seed = ctx.seed()?;
        let data = ctx.input("data")?;
        let info = read_info(&data.dir)?;
        let train = load_train_split(&data.dir, p.train_examples)?;
        let probe = load_split(&data.dir, "probe")?;
        let test = load_split(&data.dir, "test")?;
        let shape = Shape {
            inputs: info.features,
            classes: info.num_classes,
            vocabulary: info.token_ids.unwrap_or(0),
        };
        let mut net = Network::with_shape(p.model, shape, train.inputs.device(), seed)?;
        if let Some(layers) = &p.layers {
            net = net.with_player_layers_as(layers, p.granularity)?;
        }
        let cfg = EquilibriumConfig {
            train: TrainConfig {
                augment: Default::default(),
                schedule: p.schedule,
                micro_batches: 1,
                epochs: p.epochs,
                batch_size: p.batch_size,
                lr: p.lr,
                optimizer: p.optimizer,
                momentum: p.momentum,
                weight_decay: p.weight_decay,
                dropout: 0.0,
            },
            alpha: p.alpha,
            beta: p.beta,
            gamma: p.gamma,
            eta: p.eta,
            participation_lr: p.participation_lr,
            epsilon: p.epsilon,
            benefit: p.benefit,
        };
        let steps = (p.epochs * train.len().div_ceil(p.batch_size)) as u64;
        let bar = progress::bar(ctx.env.progress, steps, ctx.instance);
        let eq =
            gtap_nn::train_equilibrium(&mut net, &train, &probe, &cfg, seed, &mut || bar.inc(1))?;
        bar.finish_and_clear();

        let players = net.num_players();
        let full = net.cost(&vec![true; players]);
        let cost = net.cost(&eq.kept);
        net.scale_outgoing(&eq.fold_scale());
        net.save(&ctx.out_dir().join(CHECKPOINT))?;
        let model = ModelInfo {
            arch: p.model,
            dataset: info.name.clone(),
            seed,
            players: p.layers.clone(),
            granularity: p.granularity,
        };
        std::fs::write(
            ctx.out_dir().join("model.json"),
            serde_json::to_vec_pretty(&model)?,
        )?;
        std::fs::write(
            ctx.out_dir().join(PARTICIPATION),
            serde_json::to_vec(&serde_json::json!({
                "participation": eq.participation,
                "kept": eq.kept,
            }))?,
        )?;

        let on_test = gtap_nn::evaluate(&net, &test);
        let on_probe = gtap_nn::evaluate(&net, &probe);
        let kept = eq.kept.iter().filter(|&&k| k).count();
        let per_layer: Vec<String> = net
            .player_layers()
            .iter()
            .map(|l| {
                let k = eq.kept[l.offset..l.offset + l.size]
                    .iter()
                    .filter(|&&k| k)
                    .count();
                format!("{} {k}/{}", l.name, l.size)
            })
            .collect();
        let ratio = |a: u64, b: u64| a as f64 / b.max(1) as f64;
        let mut summary = df!(
            "model" => [p.model.name()],
            "dataset" => [info.name.as_str()],
            "seed" => [seed],
            "alpha" => [p.alpha],
            "beta" => [p.beta],
            "gamma" => [p.gamma],
            "eta" => [p.eta],
            "epsilon" => [p.epsilon],
            "epochs" => [p.epochs as u32],
            "optimizer" => [optimizer_name(p.optimizer)],
            "lr" => [p.lr],
            "participation_lr" => [p.participation_lr],
            "players" => [players as u64],
            "players_kept" => [kept as u64],
            "pruned_fraction" => [1.0 - kept as f64 / players as f64],
            "kept_per_layer" => [per_layer.join(", ")],
            "test_accuracy" => [on_test.accuracy],
            "probe_accuracy" => [on_probe.accuracy],
            "params_kept" => [cost.params],
            "params_fraction" => [ratio(cost.params, full.params)],
            "flops_kept" => [cost.flops],
            "flops_fraction" => [ratio(cost.flops, full.flops)],
        )?;
        ctx.write_table("equilibrium", &mut summary)?;

        let (mut layer, mut unit) = (Vec::new(), Vec::new());
        for l in net.player_layers() {
            for u in 0..l.size {
                layer.push(l.name.clone());
                unit.push(u as u32);
            }
        }
        let mut participation = df!(
            "model" => vec![p.model.name(); players],
            "dataset" => vec![info.name.as_str(); players],
            "seed" => vec![seed; players],
            "alpha" => vec![p.alpha; players],
            "beta" => vec![p.beta; players],
            "gamma" => vec![p.gamma; players],
            "eta" => vec![p.eta; players],
            "layer" => layer,
            "unit" => unit,
            "participation" => eq.participation.iter().map(|&s| s as f64).collect::<Vec<_>>(),
            "kept" => eq.kept.clone(),
        )?;
        ctx.write_table("participation", &mut participation)?;

        let n = eq.epochs.len();
        let mut history = df!(
            "seed" => vec![seed; n],
            "beta" => vec![p.beta; n],
            "gamma" => vec![p.gamma; n],
            "epoch" => eq.epochs.iter().map(|e| e.epoch as u32).collect::<Vec<_>>(),
            "loss" => eq.epochs.iter().map(|e| e.loss).collect::<Vec<_>>(),
            "probe_accuracy" => eq.epochs.iter().map(|e| e.probe_accuracy).collect::<Vec<_>>(),
            "active" => eq.epochs.iter().map(|e| e.active as u64).collect::<Vec<_>>(),
            "mean_participation" => eq.epochs.iter().map(|e| e.mean_participation).collect::<Vec<_>>(),
        )?;
        ctx.write_table("equilibrium_training", &mut history)?;
        tracing::info!(
            "{}: β {} γ {}: kept {kept}/{players} players, test accuracy {:.4}",
            ctx.instance,
            p.beta,
            p.gamma,
            on_test.accuracy
        );
        Ok(())
    }
}

fn optimizer_name(o: Optimizer) -> &'static str {
    match o {
        Optimizer::Adam => "adam",
        Optimizer::Sgd => "sgd",
        Optimizer::Adamw => "adamw",
    }
}

/// A configuration's reported result, to print beside ours.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaperPoint {
    #[serde(default = "one")]
    pub alpha: f64,
    pub beta: f64,
    #[serde(default)]
    pub gamma: f64,
    /// Test accuracy (fraction).
    pub accuracy: f64,
    /// Fraction of neurons pruned.
    pub pruned: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FigureEquilibriumParams {
    /// File stem under `figures/` of the participation histograms.
    pub name: String,
    /// Histogram bins over [0, 1].
    #[serde(default = "default_bins")]
    pub bins: usize,
    #[serde(default)]
    pub paper: Vec<PaperPoint>,
}

fn default_bins() -> usize {
    20
}

pub struct FigureEquilibriumStage;

/// A participation this close to 0 or 1 counts as "decided" in the summary's bimodality column.
const DECIDED: f64 = 0.05;

impl Stage for FigureEquilibriumStage {
    type Params = FigureEquilibriumParams;
    const KIND: &'static str = "figure-equilibrium";
    // 2: a ninth line and later ones no longer repeat the first colours.
    const VERSION: u32 = 2;
    const SEEDED: bool = false;
    const INPUTS: &'static [&'static str] = &["runs"];
    const ABOUT: &'static str =
        "equilibrium runs: summary against the paper and final-participation histograms";

    fn validate(p: &FigureEquilibriumParams) -> Result<(), Invalid> {
        crate::checks::file_stem("name", &p.name)?;
        ensure((2..=200).contains(&p.bins), "bins", || {
            format!("must be between 2 and 200 (got {})", p.bins)
        })?;
        for (i, point) in p.paper.iter().enumerate() {
            let fractions = [point.accuracy, point.pruned];
            ensure(
                fractions.iter().all(|f| (0.0..=1.0).contains(f)),
                &format!("paper[{i}]"),
                || "accuracy and pruned are fractions in [0, 1]".into(),
            )?;
        }
        Ok(())
    }

    fn run(p: &FigureEquilibriumParams, ctx: &StageContext<'_>) -> anyhow::Result<()> {
        // One group per configuration, in input order; each upstream is one (config, seed).
        let mut groups: Vec<Group> = Vec::new();
        for upstream in ctx.inputs("runs") {
            let run = upstream.read_table("equilibrium")?;
            let f = |c: &str| -> anyhow::Result<f64> {
                run.column(c)?
                    .f64()?
                    .get(0)
                    .ok_or_else(|| anyhow::anyhow!("`{}`: no `{c}`", upstream.stage))
            };
            let config = [f("alpha")?, f("beta")?, f("gamma")?, f("eta")?];
            let optimizer = run
                .column("optimizer")?
                .str()?
                .get(0)
                .unwrap_or_default()
                .to_owned();
            let participation: Vec<f64> = upstream
                .read_table("participation")?
                .column("participation")?
                .f64()?
                .into_no_null_iter()
                .collect();
            let seed = Seed {
                accuracy: f("test_accuracy")?,
                pruned: f("pruned_fraction")?,
                params_fraction: f("params_fraction")?,
                participation,
            };
            match groups
                .iter_mut()
                .find(|g| g.config == config && g.optimizer == optimizer)
            {
                Some(g) => g.seeds.push(seed),
                None => groups.push(Group {
                    config,
                    optimizer,
                    seeds: vec![seed],
                }),
            }
        }
        anyhow::ensure!(!groups.is_empty(), "no `runs` input");

        let mut panels = Vec::new();
        let mut rows = SummaryRows::default();
        for g in &groups {
            let label = g.label();
            let histograms: Vec<Vec<f64>> = g
                .seeds
                .iter()
                .map(|s| histogram(&s.participation, p.bins))
                .collect();
            let (mean, std): (Vec<f64>, Vec<f64>) = (0..p.bins)
                .map(|b| mean_std(&histograms.iter().map(|h| h[b]).collect::<Vec<_>>()))
                .unzip();
            panels.push(LinePanel {
                title: label.clone(),
                x_label: "final participation s".into(),
                y_label: "fraction of neurons".into(),
                series: vec![Series {
                    label: format!("mean ± σ over {} seeds", g.seeds.len()),
                    x: (0..p.bins)
                        .map(|b| (b as f64 + 0.5) / p.bins as f64)
                        .collect(),
                    mean,
                    std,
                }],
                vline: None,
            });
            let paper = p.paper.iter().find(|q| {
                [q.alpha, q.beta, q.gamma] == [g.config[0], g.config[1], g.config[2]]
                    && g.config[3] == 0.0
            });
            rows.push(g, label, paper);
        }
        gtap_plot::line_figure(&panels, &ctx.figure_stem(&p.name)?)?;
        ctx.write_table("summary", &mut rows.frame()?)?;
        Ok(())
    }
}

struct Seed {
    accuracy: f64,
    pruned: f64,
    params_fraction: f64,
    participation: Vec<f64>,
}

struct Group {
    /// α, β, γ, η.
    config: [f64; 4],
    /// The weights' optimiser (`sgd`, `adam`).
    optimizer: String,
    seeds: Vec<Seed>,
}

impl Group {
    fn label(&self) -> String {
        let [alpha, beta, gamma, eta] = self.config;
        let mut label = format!("β = {beta}, γ = {gamma}");
        if alpha != 1.0 {
            label = format!("α = {alpha}, {label}");
        }
        if eta != 0.0 {
            label.push_str(&format!(", η = {eta}"));
        }
        let optimizer = match self.optimizer.as_str() {
            "adam" => "Adam",
            "sgd" => "SGD",
            other => other,
        };
        format!("{label} ({optimizer})")
    }
}

/// Fraction of `values` in each of `bins` equal bins over [0, 1] (1 falls in the last).
fn histogram(values: &[f64], bins: usize) -> Vec<f64> {
    let mut counts = vec![0.0; bins];
    for &v in values {
        let b = ((v * bins as f64) as usize).min(bins - 1);
        counts[b] += 1.0;
    }
    counts
        .iter()
        .map(|c| c / values.len().max(1) as f64)
        .collect()
}

/// Mean and sample standard deviation (0 for one value).
fn mean_std(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    if values.len() < 2 {
        return (mean, 0.0);
    }
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

#[derive(Default)]
struct SummaryRows {
    label: Vec<String>,
    config: [Vec<f64>; 4],
    optimizer: Vec<String>,
    seeds: Vec<u32>,
    accuracy: (Vec<f64>, Vec<f64>),
    pruned: (Vec<f64>, Vec<f64>),
    params_fraction: Vec<f64>,
    decided: Vec<f64>,
    paper_accuracy: Vec<Option<f64>>,
    paper_pruned: Vec<Option<f64>>,
}

impl SummaryRows {
    fn push(&mut self, g: &Group, label: String, paper: Option<&PaperPoint>) {
        let per_seed = |f: fn(&Seed) -> f64| g.seeds.iter().map(f).collect::<Vec<f64>>();
        self.label.push(label);
        for (column, value) in self.config.iter_mut().zip(g.config) {
            column.push(value);
        }
        self.optimizer.push(g.optimizer.clone());
        self.seeds.push(g.seeds.len() as u32);
        let (m, s) = mean_std(&per_seed(|s| s.accuracy));
        self.accuracy.0.push(m);
        self.accuracy.1.push(s);
        let (m, s) = mean_std(&per_seed(|s| s.pruned));
        self.pruned.0.push(m);
        self.pruned.1.push(s);
        self.params_fraction
            .push(mean_std(&per_seed(|s| s.params_fraction)).0);
        let all: Vec<f64> = g
            .seeds
            .iter()
            .flat_map(|s| s.participation.clone())
            .collect();
        let decided = all
            .iter()
            .filter(|&&v| v < DECIDED || v > 1.0 - DECIDED)
            .count();
        self.decided.push(decided as f64 / all.len().max(1) as f64);
        self.paper_accuracy.push(paper.map(|q| q.accuracy));
        self.paper_pruned.push(paper.map(|q| q.pruned));
    }

    fn frame(self) -> anyhow::Result<DataFrame> {
        let [alpha, beta, gamma, eta] = self.config;
        Ok(df!(
            "config" => self.label,
            "alpha" => alpha,
            "beta" => beta,
            "gamma" => gamma,
            "eta" => eta,
            "optimizer" => self.optimizer,
            "seeds" => self.seeds,
            "test_accuracy" => self.accuracy.0,
            "test_accuracy_std" => self.accuracy.1,
            "pruned_fraction" => self.pruned.0,
            "pruned_fraction_std" => self.pruned.1,
            "params_fraction" => self.params_fraction,
            "decided_fraction" => self.decided,
            "paper_test_accuracy" => self.paper_accuracy,
            "paper_pruned_fraction" => self.paper_pruned,
        )?)
    }
}
