//! `estimator-agreement`: how well power-index estimates rank the players, against two
//! independent high-budget references, at the set sizes pruning uses; and the figure a user
//! picks an estimator from (agreement with the truth against cost, one line per estimator).
//!
//! The truth is unknown; the two references are independent estimates of it. Their Spearman
//! correlation r_ab is the split-half reliability of one reference; their mean is the
//! reference R the estimates are compared with, whose reliability is r_R = 2·r_ab / (1 + r_ab)
//! (Spearman–Brown). With an estimate's noise independent of the references', its correlation
//! with the truth is estimated by disattenuation: ρ(X, truth) ≈ ρ(X, R) / √r_R (Spearman 1904,
//! applied to rank correlations). That correction is only as good as the references are close
//! to each other, so both the raw and the corrected values are reported, with r_ab.

use std::collections::BTreeMap;

use gtap_engine::{ensure, Inputs, Invalid, Stage, StageContext, Upstream};
use gtap_game::rank::{lowest_k, spearman};
use gtap_plot::{LinePanel, Series};

use crate::indices::{INCREMENTAL_SUFFIX, SHRUNK_SUFFIX};
use polars::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EstimatorAgreementParams {
    /// Sizes of the compared bottom-k and top-k sets, as fractions of the players (rounded).
    #[serde(default = "default_fractions")]
    pub fractions: Vec<f64>,
    /// Further set sizes as player counts (e.g. an iterated strategy's step).
    #[serde(default)]
    pub counts: Vec<usize>,
    /// File stem under `figures/` of the agreement-against-cost figure; none when absent.
    #[serde(default)]
    pub figure: Option<String>,
    /// Time of one incrementally evaluated coalition relative to one evaluated in full (the
    /// inverse of the speed-up `gtap bench coalitions` prints for walks): the cost axis counts
    /// full-evaluation equivalents, so estimators are compared at equal time. A measured,
    /// machine-dependent number stated in the pipeline file, so the tables stay deterministic.
    #[serde(default = "one")]
    pub incremental_cost: f64,
    /// Time of one predicted coalition of `control-variate` (a backward pass through the
    /// gates on every probe example) relative to one coalition evaluated in full: measured
    /// like `incremental_cost` and stated in the pipeline file. Default 3 (a backward pass
    /// costs about twice its forward).
    #[serde(default = "three")]
    pub prediction_cost: f64,
}

fn three() -> f64 {
    3.0
}

fn one() -> f64 {
    1.0
}

fn default_fractions() -> Vec<f64> {
    vec![0.1, 0.3, 0.5]
}

pub struct EstimatorAgreementStage;

impl Stage for EstimatorAgreementStage {
    type Params = EstimatorAgreementParams;
    const KIND: &'static str = "estimator-agreement";
    // 2: sweeps and incremental estimates cost samples · (players + 1) evaluations. 3: `cost`.
    // 4: a ninth line and later ones no longer repeat the first colours.
    const VERSION: u32 = 5;
    // Every seed's estimates against the same seed's references, summarised over seeds.
    const SEEDED: bool = false;
    const INPUTS: &'static [&'static str] = &["estimates", "reference_a", "reference_b"];
    const ABOUT: &'static str =
        "rank agreement of power-index estimates with two independent references, corrected for the references' noise";

    fn validate_inputs(_: &EstimatorAgreementParams, inputs: &Inputs) -> Result<(), Invalid> {
        for name in ["estimates", "reference_a", "reference_b"] {
            crate::checks::input_kinds(inputs, name, &["power-indices"])?;
        }
        Ok(())
    }

    fn validate(p: &EstimatorAgreementParams) -> Result<(), Invalid> {
        ensure(
            p.fractions.iter().all(|f| *f > 0.0 && *f < 1.0),
            "fractions",
            || format!("must lie in (0, 1) (got {:?})", p.fractions),
        )?;
        ensure(p.counts.iter().all(|&k| k >= 1), "counts", || {
            "must be at least 1".into()
        })?;
        ensure(
            p.incremental_cost > 0.0 && p.incremental_cost <= 1.0,
            "incremental_cost",
            || format!("must lie in (0, 1] (got {})", p.incremental_cost),
        )?;
        ensure(
            p.prediction_cost > 0.0 && p.prediction_cost.is_finite(),
            "prediction_cost",
            || format!("must be positive (got {})", p.prediction_cost),
        )?;
        if let Some(name) = &p.figure {
            crate::checks::file_stem("figure", name)?;
        }
        Ok(())
    }

    fn run(p: &EstimatorAgreementParams, ctx: &StageContext<'_>) -> anyhow::Result<()> {
        let mut rows = Rows::default();
        for seed in seeds(ctx.inputs("reference_a")) {
            let reference = |name: &str| -> anyhow::Result<Estimates> {
                let upstream = of_seed(ctx.inputs(name), seed)
                    .ok_or_else(|| anyhow::anyhow!("no `{name}` input for seed {seed:?}"))?;
                Estimates::read(upstream)
            };
            let (a, b) = (reference("reference_a")?, reference("reference_b")?);
            anyhow::ensure!(
                a.players == b.players,
                "the two references rank different players ({} vs {})",
                a.players.len(),
                b.players.len()
            );
            let split_half = spearman(&a.values, &b.values);
            let reliability = 2.0 * split_half / (1.0 + split_half);
            let truth: Vec<f64> = a
                .values
                .iter()
                .zip(&b.values)
                .map(|(x, y)| (x + y) / 2.0)
                .collect();
            let sizes = set_sizes(&p.fractions, &p.counts, truth.len());
            // The references against each other: the ceiling any estimate is read against.
            rows.push_sets(seed, "reference split-half", &a, &b.values, &sizes);
            for upstream in ctx.inputs("estimates").iter().filter(|u| u.seed == seed) {
                let x = Estimates::read(upstream)?;
                anyhow::ensure!(
                    x.players == a.players,
                    "`{}` ranks other players than the references ({} vs {})",
                    upstream.stage,
                    x.players.len(),
                    a.players.len()
                );
                let rho = spearman(&x.values, &truth);
                rows.push(
                    seed,
                    &upstream.stage,
                    &x,
                    (p.incremental_cost, p.prediction_cost),
                    rho,
                    rho / reliability.sqrt(),
                    split_half,
                    reliability,
                );
                rows.push_sets(seed, &upstream.stage, &x, &truth, &sizes);
            }
        }
        anyhow::ensure!(
            !rows.stage.is_empty(),
            "no `estimates` input shares a seed with the references"
        );
        let (mut agreement, mut sets) = rows.tables()?;
        ctx.write_table("agreement", &mut agreement)?;
        ctx.write_table("set_precision", &mut sets)?;
        if let Some(name) = &p.figure {
            figure(&agreement, &ctx.figure_stem(name)?)?;
        }
        Ok(())
    }
}

fn seeds(inputs: &[Upstream]) -> Vec<Option<u64>> {
    let mut seeds: Vec<Option<u64>> = inputs.iter().map(|u| u.seed).collect();
    seeds.sort_unstable();
    seeds.dedup();
    seeds
}

fn of_seed(inputs: &[Upstream], seed: Option<u64>) -> Option<&Upstream> {
    inputs.iter().find(|u| u.seed == seed)
}

/// One power-index table, in player order.
struct Estimates {
    players: Vec<u32>,
    values: Vec<f64>,
    index: String,
    estimator: String,
    samples: u64,
    /// `control-variate`'s predicted coalitions (its `samples` are its stars); 0 elsewhere.
    predicted: u64,
}

impl Estimates {
    fn read(upstream: &Upstream) -> anyhow::Result<Estimates> {
        let df = upstream.read_table("power_indices")?;
        let by_player: BTreeMap<u32, f64> = df
            .column("player")?
            .u32()?
            .into_no_null_iter()
            .zip(df.column("estimate")?.f64()?.into_no_null_iter())
            .collect();
        let first = |c: &str| -> anyhow::Result<String> {
            Ok(df.column(c)?.str()?.get(0).unwrap_or_default().to_owned())
        };
        Ok(Estimates {
            players: by_player.keys().copied().collect(),
            values: by_player.values().copied().collect(),
            index: first("index")?,
            estimator: first("estimator")?,
            samples: df.column("samples")?.u64()?.get(0).unwrap_or(0),
            // `control-variate` writes its predicted coalitions beside its per-layer fit.
            predicted: match upstream.read_table("linearisation") {
                Ok(fit) => fit.column("predicted")?.u64()?.get(0).unwrap_or(0),
                Err(_) => 0,
            },
        })
    }

    /// Whether its coalitions were evaluated incrementally (`power-indices` names it so).
    fn incremental(&self) -> bool {
        self.estimator.ends_with(INCREMENTAL_SUFFIX)
    }

    /// Coalition evaluations the estimate cost (as `power-indices` counts them), predictions
    /// aside.
    fn evaluations(&self) -> u64 {
        let players = self.players.len() as u64;
        // "(incremental)" names the same coalitions, each evaluated more cheaply.
        let estimator = self.estimator.trim_end_matches(INCREMENTAL_SUFFIX);
        match estimator.trim_end_matches(SHRUNK_SUFFIX) {
            "permutation" | "sweep" | "control-variate" => self.samples * (players + 1),
            "paired" => 2 * self.samples * players,
            _ => self.samples,
        }
    }
}

/// Set sizes: each fraction of `n` rounded (at least 1), then the counts below n; sorted, unique.
fn set_sizes(fractions: &[f64], counts: &[usize], n: usize) -> Vec<usize> {
    let mut sizes: Vec<usize> = fractions
        .iter()
        .map(|f| ((f * n as f64).round() as usize).max(1))
        .chain(counts.iter().copied())
        .filter(|&k| k < n)
        .collect();
    sizes.sort_unstable();
    sizes.dedup();
    sizes
}

/// |A ∩ B| / k for the k lowest of `a` and of `b`.
pub(crate) fn bottom_precision(a: &[f64], b: &[f64], k: usize) -> f64 {
    let y: std::collections::BTreeSet<usize> = lowest_k(b, k).into_iter().collect();
    lowest_k(a, k).iter().filter(|i| y.contains(i)).count() as f64 / k as f64
}

fn negated(v: &[f64]) -> Vec<f64> {
    v.iter().map(|x| -x).collect()
}

#[derive(Default)]
struct Rows {
    seed: Vec<Option<u64>>,
    stage: Vec<String>,
    index: Vec<String>,
    estimator: Vec<String>,
    samples: Vec<u64>,
    evaluations: Vec<u64>,
    cost: Vec<f64>,
    spearman: Vec<f64>,
    corrected: Vec<f64>,
    split_half: Vec<f64>,
    reliability: Vec<f64>,
    set_rows: SetRows,
}

#[derive(Default)]
struct SetRows {
    seed: Vec<Option<u64>>,
    stage: Vec<String>,
    estimator: Vec<String>,
    samples: Vec<u64>,
    k: Vec<u32>,
    fraction: Vec<f64>,
    bottom: Vec<f64>,
    top: Vec<f64>,
}

impl Rows {
    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        seed: Option<u64>,
        stage: &str,
        x: &Estimates,
        (incremental_cost, prediction_cost): (f64, f64),
        rho: f64,
        corrected: f64,
        split_half: f64,
        reliability: f64,
    ) {
        self.seed.push(seed);
        self.stage.push(stage.to_owned());
        self.index.push(x.index.clone());
        self.estimator.push(x.estimator.clone());
        self.samples.push(x.samples);
        self.evaluations.push(x.evaluations());
        let per_evaluation = if x.incremental() {
            incremental_cost
        } else {
            1.0
        };
        self.cost
            .push(x.evaluations() as f64 * per_evaluation + x.predicted as f64 * prediction_cost);
        self.spearman.push(rho);
        self.corrected.push(corrected);
        self.split_half.push(split_half);
        self.reliability.push(reliability);
    }

    fn push_sets(
        &mut self,
        seed: Option<u64>,
        stage: &str,
        x: &Estimates,
        truth: &[f64],
        sizes: &[usize],
    ) {
        let s = &mut self.set_rows;
        for &k in sizes {
            s.seed.push(seed);
            s.stage.push(stage.to_owned());
            s.estimator.push(x.estimator.clone());
            s.samples.push(x.samples);
            s.k.push(k as u32);
            s.fraction.push(k as f64 / truth.len() as f64);
            s.bottom.push(bottom_precision(&x.values, truth, k));
            s.top
                .push(bottom_precision(&negated(&x.values), &negated(truth), k));
        }
    }

    fn tables(self) -> anyhow::Result<(DataFrame, DataFrame)> {
        let agreement = df!(
            "seed" => self.seed,
            "stage" => self.stage,
            "index" => self.index,
            "estimator" => self.estimator,
            "samples" => self.samples,
            "evaluations" => self.evaluations,
            "cost" => self.cost,
            "spearman" => self.spearman,
            "spearman_corrected" => self.corrected,
            "reference_split_half" => self.split_half,
            "reference_reliability" => self.reliability,
        )?;
        let s = self.set_rows;
        let sets = df!(
            "seed" => s.seed,
            "stage" => s.stage,
            "estimator" => s.estimator,
            "samples" => s.samples,
            "k" => s.k,
            "fraction" => s.fraction,
            "bottom_precision" => s.bottom,
            "top_precision" => s.top,
        )?;
        Ok((agreement, sets))
    }
}

/// Corrected Spearman against log10 of the cost (full-evaluation equivalents), one line per
/// index and estimator, mean ± σ over seeds.
fn figure(agreement: &DataFrame, stem: &std::path::Path) -> anyhow::Result<()> {
    let log_cost = agreement
        .column("cost")?
        .f64()?
        .into_no_null_iter()
        .map(f64::log10)
        .collect::<Vec<_>>();
    let labelled = agreement
        .clone()
        .with_column(Column::new("log10_cost".into(), log_cost))?
        .clone();
    let series: Vec<Series> = gtap_plot::summarise(
        &labelled,
        &["index", "estimator"],
        "log10_cost",
        "spearman_corrected",
    )?
    .into_iter()
    .map(|(_, s)| s)
    .collect();
    let panel = LinePanel {
        title: "Agreement with the truth (corrected Spearman) against cost".into(),
        x_label: "cost: coalition evaluations, in full-evaluation time (log10)".into(),
        y_label: "Spearman with the truth".into(),
        series,
        vline: None,
    };
    gtap_plot::line_figure(&[panel], stem)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_sizes_round_fractions_and_keep_counts_below_n() {
        assert_eq!(
            set_sizes(&[0.1, 0.3, 0.5], &[60, 604], 604),
            vec![60, 181, 302]
        );
        assert_eq!(set_sizes(&[0.001], &[], 10), vec![1]);
    }

    #[test]
    fn bottom_precision_counts_the_shared_lowest() {
        let a = [0.1, 0.5, 0.2, 0.9, 0.3];
        let b = [0.2, 0.1, 0.3, 0.8, 0.9];
        // Lowest two: a → {0, 2}, b → {0, 1}: one shared.
        assert_eq!(bottom_precision(&a, &b, 2), 0.5);
        assert_eq!(bottom_precision(&a, &a, 3), 1.0);
        // Top two: a → {3, 1}, b → {3, 4}.
        assert_eq!(bottom_precision(&negated(&a), &negated(&b), 2), 0.5);
    }
}
