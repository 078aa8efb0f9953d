//! `power-indices`: Shapley, Banzhaf or β_d of every player of a trained network, by Monte Carlo
//! on the probe split; and `rank-agreement`: Spearman correlation between two index tables.

use std::collections::BTreeMap;

use gtap_engine::{ensure, Inputs, Invalid, Stage, StageContext};
use gtap_game::{Constraints, EstimateConfig, Estimator, IndexKind, PlayerEstimate};
use gtap_nn::{MaskedEvaluator, Network, TensorData, Utility};
use polars::prelude::*;
use serde::{Deserialize, Serialize};

use crate::progress;
use crate::train::{load_model, load_split};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IndexName {
    Shapley,
    Banzhaf,
    BiasedBanzhaf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EstimatorName {
    /// Random permutations (Shapley).
    Permutation,
    /// The paper's Algorithm 2: k coalitions per player (Banzhaf-type).
    Paired,
    /// Footnote 5 / maximum sample reuse: one pool of coalitions (Banzhaf-type).
    Shared,
    /// The `shared` pool read by least squares on the players' membership indicators.
    SharedRegression,
    /// The `shared` pool read by cross-fitted regression adjustment: unbiased, with the
    /// variance of the residuals of a surrogate (linear + each layer's active count).
    SharedCrossfit,
    /// One walk per sample toggling every player once from a random coalition: an Algorithm 2
    /// difference for every player at n + 1 evaluations (Banzhaf-type).
    Sweep,
    /// Every coalition of the free players (at most 20 of them): the index itself, for any
    /// index; no `samples`.
    Exact,
    /// Exact contributions on `stars` coalitions (each free player toggled alone, as walks),
    /// the network's gate-gradient predictions on all `samples` coalitions, the predictions
    /// as a cross-fitted control variate: unbiased, tighter where the linearisation explains
    /// the contributions; any index (Shapley: each coalition's inclusion probability drawn
    /// uniformly).
    ControlVariate,
}

/// The bias d of β_d: a number in (0, 1), or "mcue" to take d = 1 − argmax of the MCUE diagonal
/// from the stage's `bias` input (an `mcue-bias` stage).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Bias {
    Fixed(f64),
    Named(String),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PowerIndexParams {
    pub index: IndexName,
    /// Required for `biased-banzhaf`.
    #[serde(default)]
    pub d: Option<Bias>,
    pub estimator: EstimatorName,
    /// Permutations (permutation), coalitions per player (paired) or pool size (shared); left
    /// out for `exact`.
    #[serde(default)]
    pub samples: usize,
    /// Permutation estimator only: permutations in (π, reversed π) pairs.
    #[serde(default)]
    pub antithetic: bool,
    /// Evaluate walks (permutation, paired, sweep) by rank-one updates of the first player
    /// layer's pre-activations instead of in full ([`MaskedEvaluator::with_incremental`]).
    /// Accuracy values (certified, the default) are full evaluation's bit for bit, cross-entropy
    /// ones agree up to float32 rounding, so it is part of the key; false (the default) is left
    /// out of it.
    #[serde(default, skip_serializing_if = "crate::is_default")]
    pub incremental: bool,
    /// `shared-crossfit` and `control-variate`: parts of the pool or of the stars (default 5);
    /// each part's surrogate or coefficient is fitted on the others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub folds: Option<usize>,
    /// `control-variate` only (required there): coalitions whose exact contributions are
    /// evaluated, among the `samples` whose contributions are predicted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stars: Option<usize>,
    /// `control-variate` only: pull each layer's estimates towards a prior from the mean
    /// predictions (empirical Bayes; [`gtap_game::Estimator::ControlVariate`]): a biased
    /// ranking estimator, smaller errors where the linearisation ranks the units well. The
    /// same evaluations; false (the default) is left out of the key.
    #[serde(default, skip_serializing_if = "crate::is_default")]
    pub shrink: bool,
    #[serde(default = "default_utility")]
    pub utility: Utility,
    /// Player layers that are free; the others are always present. Default: every layer.
    #[serde(default)]
    pub layers: Option<Vec<String>>,
    /// One game per player layer (of `layers`, or every layer): its units are the free players,
    /// every other unit of the network is present, and the game is evaluated from the layer's
    /// gate (the network before it runs once). The paper's protocol for AlexNet. `samples` is
    /// per layer; a least-squares pool (`shared-regression`) has at least 2 · (units + 1)
    /// coalitions in each game (AlexNet's conv layers have tens of units, its FC layers
    /// hundreds). False (the default: one game over all free players) is left out of the key.
    #[serde(default, skip_serializing_if = "crate::is_default")]
    pub layer_wise: bool,
    /// Probe examples ν is measured on (the first n of the probe split). Default: all.
    #[serde(default)]
    pub probe_examples: Option<usize>,
    /// Coalitions per forward pass.
    #[serde(default = "default_batch")]
    pub batch: usize,
    /// Extra seed of the Monte-Carlo draws. Two stages with the same pipeline seed draw the same
    /// coalitions (a 4,000-coalition pool is the start of a 40,000 one); a different
    /// `sampling_seed` makes their samples independent, as a reference must be. 0 (the default)
    /// draws from the pipeline seed alone and is left out of the cache key.
    #[serde(default, skip_serializing_if = "crate::is_default")]
    pub sampling_seed: u64,
    /// Split the coalition evaluations into this many parts, each its own stage instance (and
    /// Slurm job), cut at batch boundaries; the stage's own instance merges their values into
    /// the same estimate, byte for byte, as one run. Default: one part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shards: Option<usize>,
}

/// A part's coalition values, little-endian f64 in evaluation order.
const EVALUATIONS_FILE: &str = "evaluations.f64";

/// Appended to the `estimator` column of estimates evaluated incrementally.
pub const INCREMENTAL_SUFFIX: &str = " (incremental)";

/// Appended to the `estimator` column of shrunk control-variate estimates (before
/// [`INCREMENTAL_SUFFIX`]).
pub const SHRUNK_SUFFIX: &str = ", shrunk";

/// Folds of `shared-crossfit` when the stage does not say.
pub const DEFAULT_FOLDS: usize = 5;

fn default_utility() -> Utility {
    Utility::Accuracy
}
fn default_batch() -> usize {
    64
}

impl PowerIndexParams {
    /// d for a biased-Banzhaf index: the fixed number, or the `bias` input's for "mcue".
    /// The checks of an estimate that need the stage's inputs (shared with `gtap`'s
    /// `estimate`): d = "mcue" has a `bias` input to read.
    pub(crate) fn validate_with(&self, inputs: &Inputs) -> Result<(), Invalid> {
        let wants_bias = matches!(self.d, Some(Bias::Named(_)));
        let has_bias = inputs.get("bias").is_some_and(|b| !b.is_empty());
        ensure(!wants_bias || has_bias, "inputs.bias", || {
            "d = \"mcue\" needs a `bias` input: an `mcue-bias` stage (inputs = { bias = \"<stage>\" })".into()
        })?;
        self.validate_exact(inputs)
    }

    /// `exact` on a game of at most [`gtap_game::MAX_EXACT_FREE`] free players, where the
    /// pipeline declares the model's player layers.
    pub(crate) fn validate_exact(&self, inputs: &Inputs) -> Result<(), Invalid> {
        if self.estimator != EstimatorName::Exact {
            return Ok(());
        }
        let Some((arch, layers)) = crate::checks::model_layers(inputs) else {
            return Ok(());
        };
        let free = |name: &str| {
            self.layers
                .as_ref()
                .is_none_or(|l| l.iter().any(|n| n == name))
        };
        let sizes: Vec<usize> = layers
            .iter()
            .filter(|(name, _)| free(name))
            .map(|(_, units)| *units)
            .collect();
        let largest = match self.layer_wise {
            true => sizes.iter().copied().max().unwrap_or(0),
            false => sizes.iter().sum(),
        };
        let max = gtap_game::MAX_EXACT_FREE;
        ensure(largest <= max, "estimator", || {
            format!(
                "`exact` enumerates 2^players coalitions, at most {max} free players; this game on {arch} has {largest}{}",
                if self.layer_wise { " in one layer" } else { "" }
            )
        })
    }

    pub(crate) fn resolve_bias(&self, ctx: &StageContext<'_>) -> anyhow::Result<Option<f64>> {
        Ok(match &self.d {
            None => None,
            Some(Bias::Fixed(d)) => Some(*d),
            Some(Bias::Named(_)) => {
                let Some(bias) = ctx.inputs("bias").first() else {
                    anyhow::bail!("d = \"mcue\" needs a `bias` input: an `mcue-bias` stage (inputs = {{ bias = \"<stage>\" }})");
                };
                Some(crate::mcue::read_bias(bias)?)
            }
        })
    }

    /// The network game ν on the first `probe_examples` of `probe` (the prefix runs here, once).
    pub(crate) fn game(&self, net: &Network, probe: &TensorData) -> MaskedEvaluator {
        let probe = probe.head(self.probe_examples.unwrap_or(usize::MAX));
        MaskedEvaluator::new(net, &probe, self.utility, self.batch)
            .with_incremental(self.incremental)
    }

    /// Layer-wise games ([`Self::layer_wise`]): the estimates of every selected layer's units,
    /// each layer in its own game drawn from its own stream, in player order.
    pub(crate) fn estimate_layer_wise(
        &self,
        net: &Network,
        probe: &TensorData,
        d: Option<f64>,
        seed: u64,
        ctx: &StageContext<'_>,
    ) -> anyhow::Result<Vec<PlayerEstimate>> {
        let probe = probe.head(self.probe_examples.unwrap_or(usize::MAX));
        let layers: Vec<usize> = match &self.layers {
            None => (0..net.player_layers().len()).collect(),
            Some(names) => {
                let mut ids = Vec::new();
                for name in names {
                    ids.push(layer_id(net, name)?);
                }
                ids.sort_unstable();
                ids.dedup();
                ids
            }
        };
        let mut all = Vec::new();
        for layer in layers {
            let pl = &net.player_layers()[layer];
            let game = MaskedEvaluator::starting_at(net, &probe, self.utility, self.batch, layer)
                .with_incremental(self.incremental);
            let constraints = Constraints {
                restrict_to: Some((pl.offset..pl.offset + pl.size).collect()),
                ..Constraints::none()
            };
            let mut params = self.clone();
            if self.estimator == EstimatorName::SharedRegression {
                params.samples = self.samples.max(2 * (pl.size + 1));
            }
            tracing::info!(
                "{}: layer {} ({} units, {} samples)",
                ctx.instance,
                pl.name,
                pl.size,
                params.samples
            );
            all.extend(params.estimate(
                net,
                &game,
                d,
                layer_seed(seed, layer),
                &constraints,
                ctx,
            )?);
        }
        Ok(all)
    }

    /// Estimates the index of every free player of `constraints` in `game` (from
    /// [`Self::game`]), with a progress bar and a log line.
    pub(crate) fn estimate(
        &self,
        net: &Network,
        game: &MaskedEvaluator,
        d: Option<f64>,
        seed: u64,
        constraints: &Constraints,
        ctx: &StageContext<'_>,
    ) -> anyhow::Result<Vec<PlayerEstimate>> {
        let free = constraints.resolve(net.num_players())?.free.len();
        let total = match self.estimator {
            EstimatorName::Permutation => {
                self.samples
                    .next_multiple_of(if self.antithetic { 2 } else { 1 })
                    * (free + 1)
            }
            EstimatorName::Paired => 2 * self.samples * free,
            EstimatorName::Sweep => self.samples * (free + 1),
            EstimatorName::Shared
            | EstimatorName::SharedRegression
            | EstimatorName::SharedCrossfit => self.samples,
            EstimatorName::Exact => 1 << free.min(gtap_game::MAX_EXACT_FREE),
            // Star values, then one prediction (a backward pass) per coalition.
            EstimatorName::ControlVariate => self.stars.unwrap_or(0) * (free + 1) + self.samples,
        };
        let cfg = self.config(d, seed);
        if !ctx.parts().is_empty() {
            // Merge: the parts' values, in part order, are every evaluation.
            let mut values = Vec::with_capacity(total);
            for part in ctx.parts() {
                let bytes = std::fs::read(part.path(EVALUATIONS_FILE))?;
                values.extend(
                    bytes
                        .chunks_exact(8)
                        .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes"))),
                );
            }
            let estimates = gtap_game::estimate_from_evaluations(game, &cfg, constraints, &values)?;
            self.record_fit(net, game, &cfg, constraints, &values, ctx)?;
            tracing::info!(
                "{}: {} players from {total} coalition values in {} parts",
                ctx.instance,
                estimates.len(),
                ctx.parts().len()
            );
            return Ok(estimates);
        }
        let bar = progress::bar(ctx.env.progress, total as u64, ctx.instance);
        let started = std::time::Instant::now();
        let values =
            gtap_game::evaluations(game, &cfg, constraints, gtap_game::Part::WHOLE, &|n| {
                bar.inc(n)
            })?;
        let estimates = gtap_game::estimate_from_evaluations(game, &cfg, constraints, &values)?;
        bar.finish_and_clear();
        self.record_fit(net, game, &cfg, constraints, &values, ctx)?;
        let seconds = started.elapsed().as_secs_f64();
        tracing::info!(
            "{}: {} players, {total} coalitions in {seconds:.1}s ({:.0}/s)",
            ctx.instance,
            estimates.len(),
            total as f64 / seconds
        );
        Ok(estimates)
    }

    /// `control-variate` only: how well the predictions tracked the exact contributions at
    /// the stars, per player layer ([`gtap_game::control_fit`]), logged and written as (or
    /// appended to) the `linearisation` table.
    fn record_fit(
        &self,
        net: &Network,
        game: &MaskedEvaluator,
        cfg: &EstimateConfig,
        constraints: &Constraints,
        values: &[f64],
        ctx: &StageContext<'_>,
    ) -> anyhow::Result<()> {
        let fits = gtap_game::control_fit(game, cfg, constraints, values)?;
        if fits.is_empty() {
            return Ok(());
        }
        let layer = |f: &gtap_game::GroupFit| net.player_layers()[f.group].name.clone();
        for f in &fits {
            tracing::info!(
                "{}: layer {} ({} players): predicted vs exact contributions, correlation {:.3}, coefficient {:.3}",
                ctx.instance,
                layer(f),
                f.players,
                f.correlation,
                f.coefficient
            );
        }
        let index_name = serde_json::to_value(self.index)?
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let d = cfg.index.bias()?.unwrap_or(f64::NAN);
        let mut df = df!(
            "index" => vec![index_name.as_str(); fits.len()],
            "d" => vec![d; fits.len()],
            "layer" => fits.iter().map(layer).collect::<Vec<_>>(),
            "players" => fits.iter().map(|f| f.players as u32).collect::<Vec<_>>(),
            "correlation" => fits.iter().map(|f| f.correlation).collect::<Vec<_>>(),
            "coefficient" => fits.iter().map(|f| f.coefficient).collect::<Vec<_>>(),
            "stars" => vec![self.stars.unwrap_or(0) as u64; fits.len()],
            "predicted" => vec![self.samples as u64; fits.len()],
        )?;
        // An iterated `gtap` stage estimates once per iteration: its table lists every
        // iteration's fit in order (fewer free players each time).
        let path = ctx
            .out_dir()
            .join(gtap_engine::table::table_file("linearisation"));
        if path.exists() {
            df = gtap_engine::table::read_parquet(&path)?.vstack(&df)?;
        }
        ctx.write_table("linearisation", &mut df)?;
        Ok(())
    }

    /// Writes the `power_indices` table: one row per estimated player.
    pub(crate) fn write_table(
        &self,
        net: &Network,
        model: &crate::train::ModelInfo,
        seed: u64,
        d: Option<f64>,
        estimates: &[PlayerEstimate],
        ctx: &StageContext<'_>,
    ) -> anyhow::Result<()> {
        let units: Vec<_> = estimates.iter().map(|e| net.unit(e.player)).collect();
        let n = estimates.len();
        let index_name = serde_json::to_value(self.index)?
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let mut estimator_name = serde_json::to_value(self.estimator)?
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if self.shrink {
            estimator_name.push_str(SHRUNK_SUFFIX);
        }
        if self.incremental {
            // Same estimator, cheaper evaluations: told apart wherever estimators are compared.
            estimator_name.push_str(INCREMENTAL_SUFFIX);
        }
        let mut df = df!(
            "model" => vec![model.arch.name(); n],
            "dataset" => vec![model.dataset.as_str(); n],
            "seed" => vec![seed; n],
            "player" => estimates.iter().map(|e| e.player as u32).collect::<Vec<_>>(),
            "layer" => units.iter().map(|u| u.layer.as_str()).collect::<Vec<_>>(),
            "unit" => units.iter().map(|u| u.unit as u32).collect::<Vec<_>>(),
            "index" => vec![index_name.as_str(); n],
            "d" => vec![d.unwrap_or(f64::NAN); n],
            "estimator" => vec![estimator_name.as_str(); n],
            "estimate" => estimates.iter().map(|e| e.estimate).collect::<Vec<_>>(),
            "stderr" => estimates.iter().map(|e| e.stderr).collect::<Vec<_>>(),
            "samples" => estimates.iter().map(|e| e.samples as u64).collect::<Vec<_>>(),
        )?;
        ctx.write_table("power_indices", &mut df)?;
        Ok(())
    }

    /// Parts of the estimate (`shards`), at least 1.
    pub(crate) fn parts(&self) -> usize {
        self.shards.unwrap_or(1).max(1)
    }

    /// One part's share of the evaluations of [`Self::estimate`], written to the part's entry.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn write_part(
        &self,
        game: &MaskedEvaluator,
        d: Option<f64>,
        seed: u64,
        constraints: &Constraints,
        ctx: &StageContext<'_>,
        (index, of): (usize, usize),
    ) -> anyhow::Result<()> {
        let cfg = self.config(d, seed);
        let started = std::time::Instant::now();
        let part = gtap_game::Part { index, of };
        let values = gtap_game::evaluations(game, &cfg, constraints, part, &|_| ())?;
        tracing::info!(
            "{}: {} coalition values in {:.1}s",
            ctx.instance,
            values.len(),
            started.elapsed().as_secs_f64()
        );
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(ctx.out_dir().join(EVALUATIONS_FILE), bytes)?;
        Ok(())
    }

    fn config(&self, d: Option<f64>, seed: u64) -> EstimateConfig {
        let index = match self.index {
            IndexName::Shapley => IndexKind::Shapley,
            IndexName::Banzhaf => IndexKind::Banzhaf,
            IndexName::BiasedBanzhaf => IndexKind::BiasedBanzhaf {
                d: d.expect("validated: biased-banzhaf has d"),
            },
        };
        EstimateConfig {
            index,
            estimator: self.estimator(),
            samples: self.samples,
            seed: sampling_stream(seed, self.sampling_seed),
        }
    }

    fn estimator(&self) -> Estimator {
        match self.estimator {
            EstimatorName::Permutation => Estimator::Permutation {
                antithetic: self.antithetic,
            },
            EstimatorName::Paired => Estimator::Paired,
            EstimatorName::Shared => Estimator::Shared,
            EstimatorName::SharedRegression => Estimator::SharedRegression,
            EstimatorName::SharedCrossfit => Estimator::SharedCrossFit {
                folds: self.folds.unwrap_or(DEFAULT_FOLDS),
            },
            EstimatorName::Sweep => Estimator::Sweep,
            EstimatorName::Exact => Estimator::Exact,
            EstimatorName::ControlVariate => Estimator::ControlVariate {
                stars: self.stars.unwrap_or(0),
                folds: self.folds.unwrap_or(DEFAULT_FOLDS),
                shrink: self.shrink,
            },
        }
    }
}

/// The stream of layer `layer`'s game in layer-wise estimation.
fn layer_seed(seed: u64, layer: usize) -> u64 {
    seed ^ ((layer as u64 + 1) << 48)
}

/// The estimator's seed: the stage's own seed, mixed with `sampling_seed` unless that is 0.
fn sampling_stream(seed: u64, sampling_seed: u64) -> u64 {
    if sampling_seed == 0 {
        seed
    } else {
        // An odd multiplier is a bijection of u64: distinct sampling seeds, distinct streams.
        seed ^ sampling_seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }
}

pub struct PowerIndexStage;

impl Stage for PowerIndexStage {
    type Params = PowerIndexParams;
    const KIND: &'static str = "power-indices";
    const FLOAT_MATH: bool = true;
    // 3: incremental accuracy walks are certified: every value is full evaluation's, bit for
    // bit (before, within the running sums' rounding of it: a near-tie could differ).
    const VERSION: u32 = 3;
    const SEEDED: bool = true;
    const INPUTS: &'static [&'static str] = &["model", "data"];
    const OPTIONAL_INPUTS: &'static [&'static str] = &["bias"];
    const ABOUT: &'static str =
        "Monte-Carlo Shapley / Banzhaf / β_d of every player, on the probe split";

    fn parts(p: &PowerIndexParams) -> usize {
        p.parts()
    }

    fn validate_inputs(p: &PowerIndexParams, inputs: &Inputs) -> Result<(), Invalid> {
        crate::checks::model_and_data(inputs)?;
        crate::checks::input_kinds(inputs, "bias", &["mcue-bias"])?;
        p.validate_with(inputs)?;
        if let Some(layers) = &p.layers {
            crate::checks::layer_names("layers", layers, inputs)?;
        }
        Ok(())
    }

    fn validate(p: &PowerIndexParams) -> Result<(), Invalid> {
        if p.estimator == EstimatorName::Exact {
            ensure(p.samples == 0, "samples", || {
                "`exact` evaluates every coalition: leave `samples` out".into()
            })?;
            ensure(!p.incremental, "incremental", || {
                "applies to the estimators that walk (permutation, paired, sweep)".into()
            })?;
        } else {
            ensure(p.samples >= 1, "samples", || "must be at least 1".into())?;
        }
        ensure(p.samples <= u32::MAX as usize, "samples", || {
            format!("must be at most {} (got {})", u32::MAX, p.samples)
        })?;
        if let Some(shards) = p.shards {
            ensure((1..=1024).contains(&shards), "shards", || {
                format!("must be between 1 and 1024 (got {shards})")
            })?;
        }
        ensure(p.batch >= 1, "batch", || "must be at least 1".into())?;
        let banzhaf_type = p.index != IndexName::Shapley;
        match p.estimator {
            EstimatorName::Exact | EstimatorName::ControlVariate => {}
            EstimatorName::Permutation => ensure(!banzhaf_type, "estimator", || {
                "`permutation` estimates Shapley values; use `paired`, `sweep`, `shared`, `shared-regression`, `shared-crossfit` or `control-variate` for Banzhaf-type indices".into()
            })?,
            _ => ensure(banzhaf_type, "estimator", || {
                "Shapley values use the `permutation` or `control-variate` estimator (`paired`, `sweep` and the `shared` family are for Banzhaf-type indices)".into()
            })?,
        }
        ensure(
            !p.antithetic || p.estimator == EstimatorName::Permutation,
            "antithetic",
            || "applies to the permutation estimator only".into(),
        )?;
        ensure(
            !p.incremental
                || matches!(
                    p.estimator,
                    EstimatorName::Permutation
                        | EstimatorName::Paired
                        | EstimatorName::Sweep
                        | EstimatorName::ControlVariate
                ),
            "incremental",
            || {
                "applies to the estimators that walk (permutation, paired, sweep, control-variate's stars); a shared pool's coalitions are independent draws".into()
            },
        )?;
        if let Some(folds) = p.folds {
            ensure(
                matches!(
                    p.estimator,
                    EstimatorName::SharedCrossfit | EstimatorName::ControlVariate
                ),
                "folds",
                || "applies to the shared-crossfit and control-variate estimators only".into(),
            )?;
            ensure(folds >= 2, "folds", || {
                format!("must be at least 2 (got {folds})")
            })?;
        }
        match (p.estimator, p.stars) {
            (EstimatorName::ControlVariate, None) => {
                return Err(Invalid::new(
                    "stars",
                    "control-variate needs `stars`: the coalitions whose exact contributions are evaluated (at most `samples`)",
                ))
            }
            (EstimatorName::ControlVariate, Some(stars)) => {
                let folds = p.folds.unwrap_or(DEFAULT_FOLDS);
                ensure(stars >= 2 * folds && stars <= p.samples, "stars", || {
                    format!("needs 2 stars per fold and at most `samples` ({folds} folds: between {} and {}; got {stars})", 2 * folds, p.samples)
                })?;
            }
            (_, Some(_)) => {
                return Err(Invalid::new(
                    "stars",
                    "applies to the control-variate estimator only",
                ))
            }
            (_, None) => {}
        }
        ensure(
            !p.shrink || p.estimator == EstimatorName::ControlVariate,
            "shrink",
            || {
                "applies to the control-variate estimator only (its prior is the predictions)"
                    .into()
            },
        )?;
        if p.estimator == EstimatorName::SharedCrossfit {
            let folds = p.folds.unwrap_or(DEFAULT_FOLDS);
            ensure(p.samples >= 2 * folds, "samples", || {
                format!("shared-crossfit needs at least 2 coalitions per fold: {folds} folds need samples >= {}", 2 * folds)
            })?;
        }
        match (&p.index, &p.d) {
            (IndexName::BiasedBanzhaf, None) => Err(Invalid::new(
                "d",
                "biased-banzhaf needs d: a number in (0, 1) or \"mcue\"",
            )),
            (IndexName::BiasedBanzhaf, Some(Bias::Fixed(d))) => {
                ensure(*d > 0.0 && *d < 1.0, "d", || {
                    format!("must be in (0, 1) (got {d})")
                })
            }
            (IndexName::BiasedBanzhaf, Some(Bias::Named(name))) => {
                ensure(name == "mcue", "d", || {
                    format!("must be a number in (0, 1) or \"mcue\" (got \"{name}\")")
                })
            }
            (_, Some(_)) => Err(Invalid::new("d", "only biased-banzhaf takes a bias d")),
            (_, None) => Ok(()),
        }?;
        if let Some(n) = p.probe_examples {
            ensure(n >= 1, "probe_examples", || "must be at least 1".into())?;
        }
        ensure(!p.layer_wise || p.parts() == 1, "shards", || {
            "layer-wise games are estimated in one instance (shards split one game)".into()
        })?;
        Ok(())
    }

    fn run(p: &PowerIndexParams, ctx: &StageContext<'_>) -> anyhow::Result<()> {
        let seed = ctx.seed()?;
        let (net, model) = load_model(ctx.input("model")?)?;
        let probe = load_split(&ctx.input("data")?.dir, "probe")?;
        let d = p.resolve_bias(ctx)?;
        let estimates = if p.layer_wise {
            p.estimate_layer_wise(&net, &probe, d, seed, ctx)?
        } else {
            let constraints = layer_constraints(&net, p.layers.as_deref())?;
            let game = p.game(&net, &probe);
            if let Some(part) = ctx.part {
                return p.write_part(&game, d, seed, &constraints, ctx, part);
            }
            p.estimate(&net, &game, d, seed, &constraints, ctx)?
        };
        p.write_table(&net, &model, seed, d, &estimates, ctx)
    }
}

/// Constraints that free the players of `layers` (all when `None`) and keep the others present.
pub fn layer_constraints(net: &Network, layers: Option<&[String]>) -> anyhow::Result<Constraints> {
    let Some(layers) = layers else {
        return Ok(Constraints::none());
    };
    let mut free = Vec::new();
    for name in layers {
        let layer = &net.player_layers()[layer_id(net, name)?];
        free.extend(layer.offset..layer.offset + layer.size);
    }
    Ok(Constraints {
        restrict_to: Some(free),
        ..Constraints::none()
    })
}

/// The index of player layer `name`, or an error listing the layers.
fn layer_id(net: &Network, name: &str) -> anyhow::Result<usize> {
    net.player_layers()
        .iter()
        .position(|l| l.name == name)
        .ok_or_else(|| {
            let known: Vec<&str> = net
                .player_layers()
                .iter()
                .map(|l| l.name.as_str())
                .collect();
            anyhow::anyhow!(
                "{} has no player layer `{name}` (layers: {})",
                net.arch,
                known.join(", ")
            )
        })
}

pub struct RankAgreementStage;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RankAgreementParams {}

impl Stage for RankAgreementStage {
    type Params = RankAgreementParams;
    const KIND: &'static str = "rank-agreement";
    const VERSION: u32 = 1;
    const SEEDED: bool = true;
    const INPUTS: &'static [&'static str] = &["a", "b"];
    const ABOUT: &'static str =
        "Spearman correlation between the player rankings of two power-index stages";

    fn run(_: &RankAgreementParams, ctx: &StageContext<'_>) -> anyhow::Result<()> {
        let read = |name: &str| -> anyhow::Result<(BTreeMap<u32, f64>, String)> {
            let df = ctx.input(name)?.read_table("power_indices")?;
            let players = df.column("player")?.u32()?.into_no_null_iter();
            let estimates = df.column("estimate")?.f64()?.into_no_null_iter();
            let samples = df.column("samples")?.u64()?.get(0).unwrap_or(0);
            let label = format!(
                "{} {} {}",
                df.column("index")?.str()?.get(0).unwrap_or_default(),
                df.column("estimator")?.str()?.get(0).unwrap_or_default(),
                samples
            );
            Ok((players.zip(estimates).collect(), label))
        };
        let (a, label_a) = read("a")?;
        let (b, label_b) = read("b")?;
        anyhow::ensure!(
            a.keys().eq(b.keys()),
            "inputs `a` and `b` rank different players ({} vs {})",
            a.len(),
            b.len()
        );
        let xs: Vec<f64> = a.values().copied().collect();
        let ys: Vec<f64> = b.values().copied().collect();
        let rho = gtap_game::rank::spearman(&xs, &ys);
        tracing::info!(
            "{}: Spearman {rho:.4} between {label_a} and {label_b}",
            ctx.instance
        );
        let mut df = df!(
            "seed" => [ctx.seed()?],
            "a" => [label_a],
            "b" => [label_b],
            "players" => [xs.len() as u32],
            "spearman" => [rho],
        )?;
        ctx.write_table("rank_agreement", &mut df)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_seed_zero_keeps_the_stream_and_the_cache_key() {
        let params: PowerIndexParams =
            toml::from_str("index = \"banzhaf\"\nestimator = \"shared\"\nsamples = 10").unwrap();
        let key = serde_json::to_value(&params).unwrap();
        assert!(key.get("sampling_seed").is_none(), "{key}");
        assert_eq!(sampling_stream(7, 0), 7);

        let reference = PowerIndexParams {
            sampling_seed: 1,
            ..params
        };
        assert_eq!(
            serde_json::to_value(&reference).unwrap()["sampling_seed"],
            1
        );
        let streams: std::collections::BTreeSet<u64> =
            (0..1000).map(|s| sampling_stream(7, s)).collect();
        assert_eq!(
            streams.len(),
            1000,
            "every sampling seed draws its own stream"
        );
    }

    #[test]
    fn folds_belong_to_shared_crossfit_and_need_two_coalitions_each() {
        let parse = |extra: &str| -> PowerIndexParams {
            toml::from_str(&format!("index = \"banzhaf\"\nsamples = 10\n{extra}")).unwrap()
        };
        let error = |extra: &str| {
            PowerIndexStage::validate(&parse(extra))
                .err()
                .map(|e| format!("{}: {}", e.key, e.message))
        };
        assert_eq!(error("estimator = \"shared-crossfit\""), None);
        assert_eq!(
            error("estimator = \"shared-crossfit\"\nfolds = 5"),
            None,
            "10 samples, 5 folds of 2"
        );
        let cases = [
            (
                "estimator = \"shared\"\nfolds = 3",
                "folds",
                "applies to the shared-crossfit and control-variate estimators only",
            ),
            (
                "estimator = \"shared-crossfit\"\nfolds = 1",
                "folds",
                "must be at least 2 (got 1)",
            ),
            (
                "estimator = \"shared-crossfit\"\nfolds = 6",
                "samples",
                "6 folds need samples >= 12",
            ),
        ];
        for (extra, key, message) in cases {
            let got = error(extra).unwrap_or_default();
            assert!(got.contains(key) && got.contains(message), "{extra}: {got}");
        }
        // Left out of the cache key unless set: existing stages keep their keys.
        let key = serde_json::to_value(parse("estimator = \"shared-crossfit\"")).unwrap();
        assert!(key.get("folds").is_none(), "{key}");
    }

    #[test]
    fn stars_belong_to_control_variate_and_fit_its_folds_and_samples() {
        let error = |extra: &str| {
            let p: PowerIndexParams =
                toml::from_str(&format!("index = \"banzhaf\"\nsamples = 40\n{extra}")).unwrap();
            PowerIndexStage::validate(&p)
                .err()
                .map(|e| format!("{}: {}", e.key, e.message))
        };
        let cv = "estimator = \"control-variate\"";
        assert_eq!(error(&format!("{cv}\nstars = 10")), None);
        assert_eq!(
            error(&format!("{cv}\nstars = 8\nfolds = 4\nincremental = true")),
            None
        );
        let cases = [
            (cv.to_owned(), "stars", "control-variate needs `stars`"),
            (
                format!("{cv}\nstars = 9"),
                "stars",
                "5 folds: between 10 and 40; got 9",
            ),
            (
                format!("{cv}\nstars = 41"),
                "stars",
                "between 10 and 40; got 41",
            ),
            (
                "estimator = \"sweep\"\nstars = 10".to_owned(),
                "stars",
                "applies to the control-variate estimator only",
            ),
        ];
        assert_eq!(error(&format!("{cv}\nstars = 10\nlayer_wise = true")), None);
        assert_eq!(error(&format!("{cv}\nstars = 10\nshrink = true")), None);
        let shrink_elsewhere = error("estimator = \"sweep\"\nshrink = true").unwrap_or_default();
        assert!(
            shrink_elsewhere.contains("shrink: applies to the control-variate estimator only"),
            "{shrink_elsewhere}"
        );
        for (extra, key, message) in cases {
            let got = error(&extra).unwrap_or_default();
            assert!(got.contains(key) && got.contains(message), "{extra}: {got}");
        }
    }
}
