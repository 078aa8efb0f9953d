//! MCUE's readings: what a trial records of the diluted network (`t_i = S'_i(d_i)`, which the
//! paper's Algorithm 1 leaves open) and how the diluted network is evaluated.

use gtap_nn::MaskedSuffix;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// What each MCUE trial records about the diluted network's prediction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Statistic {
    /// 1 if the diluted network classifies the example correctly, else 0 (the default).
    #[default]
    Correctness,
    /// The predicted class as a number (0, 1, …): its variance counts changes of prediction,
    /// weighted by how far apart the class numbers are.
    PredictedLabel,
    /// Softmax probability of the true class.
    TrueClassProbability,
    /// The softmax vector: the cell's variance is its total variance (the trace of its
    /// covariance, Σ_c Var p_c); the cell's mean is the mean largest probability.
    SoftmaxVariance,
    /// Entropy of the predictive distribution (nats).
    Entropy,
}

impl Statistic {
    /// The name pipelines and tables use.
    pub fn name(self) -> &'static str {
        match self {
            Statistic::Correctness => "correctness",
            Statistic::PredictedLabel => "predicted-label",
            Statistic::TrueClassProbability => "true-class-probability",
            Statistic::SoftmaxVariance => "softmax-variance",
            Statistic::Entropy => "entropy",
        }
    }
}

/// One statistic, or several read from the same trials (`statistic = ["correctness",
/// "entropy"]`): the grid then has one set of rows per statistic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Statistics {
    One(Statistic),
    Many(Vec<Statistic>),
}

impl Default for Statistics {
    fn default() -> Self {
        Statistics::One(Statistic::default())
    }
}

impl Statistics {
    pub fn as_slice(&self) -> &[Statistic] {
        match self {
            Statistics::One(one) => std::slice::from_ref(one),
            Statistics::Many(many) => many,
        }
    }
}

/// How a trial's diluted network is evaluated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Dilution {
    /// Removed units output 0, survivors unchanged (the pruned network as pruning uses it).
    #[default]
    Zeroed,
    /// Survivors rescaled as in inverted dropout, per diluted layer: each survivor's output
    /// times the layer's size over its survivors (the realised keep rate), so the next layer's
    /// input keeps its scale.
    Rescaled,
}

impl Dilution {
    pub fn name(self) -> &'static str {
        match self {
            Dilution::Zeroed => "zeroed",
            Dilution::Rescaled => "rescaled",
        }
    }
}

/// Scales each row's survivors (nonzero) in each `diluted` layer (`(offset, size)`: players
/// `offset..offset + size` of a row `players` wide) by the layer's size over its survivors.
/// Positive scales commute with ReLU and max-pooling, so scaling the consumer's input is
/// scaling the unit.
pub fn rescale(masks: &mut [f32], players: usize, diluted: &[(usize, usize)]) {
    for row in masks.chunks_mut(players) {
        for &(offset, size) in diluted {
            let units = &mut row[offset..offset + size];
            let kept = units.iter().filter(|&&m| m != 0.0).count();
            if kept == 0 {
                continue;
            }
            let scale = size as f32 / kept as f32;
            for m in units.iter_mut().filter(|m| **m != 0.0) {
                *m = scale;
            }
        }
    }
}

/// A statistic's values over `K` trials: `width` numbers per trial (1, or the classes for
/// [`Statistic::SoftmaxVariance`]).
#[derive(Debug, Clone, PartialEq)]
pub struct TrialValues {
    pub width: usize,
    pub values: Vec<f64>,
}

/// Each statistic's values on `K` (example, mask) pairs: row `j` of `features` (activations at
/// the suffix's start) under mask row `j` of `masks` (`[K, players]`), label `labels[j]`.
/// Correctness alone on 0/1 masks runs the certified path (the reference's answers, faster);
/// everything else reads the reference path's logits once.
pub fn trial_values(
    suffix: &MaskedSuffix,
    features: &Tensor,
    masks: &Tensor,
    labels: &Tensor,
    statistics: &[Statistic],
    dilution: Dilution,
) -> anyhow::Result<Vec<TrialValues>> {
    let _guard = tch::no_grad_guard();
    let scalar = |t: Tensor| -> anyhow::Result<TrialValues> {
        Ok(TrialValues {
            width: 1,
            values: Vec::<f64>::try_from(t.to_kind(Kind::Double).to_device(tch::Device::Cpu))?,
        })
    };
    if statistics == [Statistic::Correctness] && dilution == Dilution::Zeroed {
        let correct = suffix.paired_correct(features, masks, labels)?;
        return Ok(vec![TrialValues {
            width: 1,
            values: correct
                .into_iter()
                .map(|c| f64::from(u8::from(c)))
                .collect(),
        }]);
    }
    let logits = suffix.paired_logits(features, masks)?;
    let classes = *logits.size().last().unwrap_or(&1) as usize;
    statistics
        .iter()
        .map(|statistic| match statistic {
            Statistic::Correctness => scalar(logits.argmax(-1, false).eq_tensor(labels)),
            Statistic::PredictedLabel => scalar(logits.argmax(-1, false)),
            Statistic::TrueClassProbability => scalar(
                logits
                    .softmax(-1, Kind::Double)
                    .gather(1, &labels.unsqueeze(1), false)
                    .squeeze_dim(1),
            ),
            Statistic::SoftmaxVariance => Ok(TrialValues {
                width: classes,
                values: Vec::<f64>::try_from(
                    logits
                        .softmax(-1, Kind::Double)
                        .reshape([-1])
                        .to_device(tch::Device::Cpu),
                )?,
            }),
            Statistic::Entropy => {
                let logp = logits.log_softmax(-1, Kind::Double);
                scalar(-(logp.exp() * &logp).sum_dim_intlist(1, false, Kind::Double))
            }
        })
        .collect()
}

/// A cell's (mean, variance) from its trials' values: the sample mean and unbiased variance of
/// a scalar statistic; for a vector (width > 1) the total variance Σ_c Var x_c and the mean of
/// each trial's largest component.
pub fn cell_summary(trials: &TrialValues) -> (f64, f64) {
    if trials.width == 1 {
        return mean_variance(&trials.values);
    }
    let rows = trials.values.chunks(trials.width);
    let largest: Vec<f64> = rows
        .clone()
        .map(|r| r.iter().copied().fold(f64::NEG_INFINITY, f64::max))
        .collect();
    let total = (0..trials.width)
        .map(|c| {
            let column: Vec<f64> = rows.clone().map(|r| r[c]).collect();
            mean_variance(&column).1
        })
        .sum();
    (mean_variance(&largest).0, total)
}

/// Mean and unbiased sample variance.
pub fn mean_variance(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let ss: f64 = xs.iter().map(|x| (x - mean) * (x - mean)).sum();
    (
        mean,
        if xs.len() > 1 {
            ss / (n - 1.0)
        } else {
            f64::NAN
        },
    )
}
