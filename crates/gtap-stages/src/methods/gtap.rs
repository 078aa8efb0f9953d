//! GTAP: rank units by a power index (Shapley, Banzhaf, β_d) with the paper's three strategies.

use gtap_engine::{ensure, Inputs, Invalid, Stage};
use gtap_game::{Constraints, IndexKind, PlayerEstimate, SeparationConfig};
use serde::{Deserialize, Serialize};

use crate::indices::{PowerIndexParams, PowerIndexStage};
use crate::ranking::{by_descending_score, serde_name, Label, RankContext, Ranker};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Estimate once, keep the r highest.
    TopN,
    /// Remove the `step` lowest, re-estimate with the removed units always absent, repeat.
    IteratedPruning,
    /// Add the `step` highest, re-estimate with the chosen units always present, repeat.
    IteratedBuilding,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GtapParams {
    pub strategy: Strategy,
    /// Units removed (pruning) or added (building) per iteration; iterated strategies only.
    #[serde(default)]
    pub step: Option<usize>,
    /// The power index and its estimator, as for a `power-indices` stage (`samples` is per
    /// iteration for the iterated strategies). `layers` is not allowed: every player of the
    /// model is ranked (some layers' units only: a `players` stage's model).
    pub estimate: PowerIndexParams,
    /// Order among units with equal estimates. Estimators that average differences of a
    /// discrete ν (accuracy on E examples: `sweep`, `paired`, `permutation`) give many exact
    /// ties at small sample counts (64 sweeps of LeNet5: 360 of 604 units tied, 14 at exactly
    /// 0); by id they would always remove the last layers' units first.
    #[serde(default, skip_serializing_if = "crate::is_default")]
    pub ties: Ties,
    /// Iterated strategies with a Banzhaf-type index only: choose each iteration's `step`
    /// units adaptively (`gtap_game::separate`: the paper's paired marginal contributions,
    /// spent on the units whose confidence interval still straddles the cut, until the `step`
    /// lowest (pruning) or highest (building) are separated at `confidence` or `budget`
    /// evaluations are spent) instead of estimating every index to one precision. The last
    /// iteration, which only orders the survivors, uses `estimate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub separate: Option<SeparateParams>,
    /// Layer-wise games with per-layer budgets (the paper's Figure 7 protocol for AlexNet):
    /// each player layer is its own game (its units free, every other unit present), and at
    /// every target size r each layer keeps as many units as `wmp`'s global choice of r units
    /// keeps there, its highest power indices. Top-n only. The stage also writes the
    /// estimates as a `power_indices` table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer_budgets: Option<LayerBudgets>,
    /// A name that tells this ranking's curves apart from others of the same index and
    /// strategy (the curves' `variant` column, appended to the figure's legend), e.g. the
    /// estimator when two are compared; empty by default.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub variant: String,
}

/// Where [`GtapParams::layer_budgets`] takes each layer's share of a target size from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LayerBudgets {
    /// Unit-level weight magnitude pruning's global ranking.
    Wmp,
}

/// The adaptive choice of [`GtapParams::separate`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeparateParams {
    /// Joint confidence that a separated choice is the true `step` lowest (highest).
    #[serde(default = "default_confidence")]
    pub confidence: f64,
    /// Marginal contributions per unit before the first check (at least 2).
    #[serde(default = "default_initial")]
    pub initial: usize,
    /// Marginal contributions per still-ambiguous unit and round.
    #[serde(default = "default_round")]
    pub round: usize,
    /// Most coalition evaluations per iteration; at least 2 · initial per remaining unit.
    pub budget: usize,
}

fn default_confidence() -> f64 {
    0.9
}
fn default_initial() -> usize {
    4
}
fn default_round() -> usize {
    2
}

/// How [`GtapParams::ties`] orders units with equal estimates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Ties {
    /// By player id (conv features before fc1 before fc2): the first behaviour, kept as the
    /// default so earlier cache entries stay valid.
    #[default]
    PlayerId,
    /// In an order drawn from the stage's seed and the iteration: the estimator cannot tell
    /// them apart, so neither layer is favoured.
    Random,
}

pub struct Gtap;

impl Ranker for Gtap {
    const METHOD: &'static str = "gtap";
    // 3: incremental accuracy walks certified (as `power-indices` 3).
    const VERSION: u32 = 3;
    const ABOUT: &'static str =
        "GTAP: rank units by Shapley / Banzhaf / β_d (top-n, iterated pruning or building)";
    type Params = GtapParams;

    fn validate(p: &GtapParams) -> Result<(), Invalid> {
        PowerIndexStage::validate(&p.estimate).map_err(|e| Invalid {
            key: format!("estimate.{}", e.key),
            ..e
        })?;
        ensure(p.estimate.layers.is_none(), "estimate.layers", || {
            "gtap ranks every player of its model; to rank only some layers' units (the others always present), give it the model of a `players` stage (kind = \"players\", layers = [\"fc1\", \"fc2\"]), as pipelines/figure-3-fc.toml does"
                .into()
        })?;
        ensure(!p.estimate.layer_wise, "estimate.layer_wise", || {
            "gtap plays layer-wise games through `layer_budgets`, which says how to merge the layers".into()
        })?;
        if p.layer_budgets.is_some() {
            ensure(p.strategy == Strategy::TopN, "layer_budgets", || {
                "layer budgets apply to top-n (one estimate per layer, kept by budget)".into()
            })?;
            ensure(p.estimate.parts() == 1, "estimate.shards", || {
                "layer-wise games are estimated in one instance".into()
            })?;
        }
        match (p.strategy, p.step) {
            (Strategy::TopN, Some(_)) => Err(Invalid::new("step", "top-n takes no step")),
            (Strategy::TopN, None) => Ok(()),
            (_, None) => Err(Invalid::new(
                "step",
                "iterated strategies need step: units removed or added per iteration",
            )),
            (_, Some(step)) => ensure(step >= 1, "step", || "must be at least 1".into()),
        }?;
        ensure(
            p.estimate.parts() == 1 || p.separate.is_none(),
            "estimate.shards",
            || {
                "splits fixed estimates across jobs; `separate` spends its samples adaptively"
                    .into()
            },
        )?;
        let Some(sep) = &p.separate else {
            return Ok(());
        };
        ensure(p.strategy != Strategy::TopN, "separate", || {
            "chooses each iteration's step units: iterated strategies only".into()
        })?;
        ensure(
            p.estimate.index != crate::indices::IndexName::Shapley,
            "separate",
            || "uses paired marginal contributions: Banzhaf or biased-banzhaf only".into(),
        )?;
        ensure(
            sep.confidence > 0.0 && sep.confidence < 1.0,
            "separate.confidence",
            || format!("must be in (0, 1) (got {})", sep.confidence),
        )?;
        ensure(
            (2..=1_000_000).contains(&sep.initial),
            "separate.initial",
            || format!("must be between 2 and 1000000 (got {})", sep.initial),
        )?;
        ensure(
            (1..=1_000_000).contains(&sep.round),
            "separate.round",
            || format!("must be between 1 and 1000000 (got {})", sep.round),
        )
    }

    fn validate_inputs(p: &GtapParams, inputs: &Inputs) -> Result<(), Invalid> {
        p.estimate.validate_with(inputs)?;
        let Some((arch, layers)) = crate::checks::model_layers(inputs) else {
            return Ok(());
        };
        let players: usize = layers.iter().map(|(_, units)| units).sum();
        if let Some(step) = p.step {
            ensure(step < players, "step", || {
                format!("must be below the {players} players of {arch} (got {step})")
            })?;
        }
        if let Some(sep) = &p.separate {
            let first = 2 * sep.initial * players;
            ensure(sep.budget >= first, "separate.budget", || {
                format!(
                    "must cover the first round: at least 2 x initial ({}) x the {players} players of {arch} = {first} evaluations (got {})",
                    sep.initial, sep.budget
                )
            })?;
        }
        Ok(())
    }

    fn label(p: &GtapParams) -> Label {
        Label {
            index: serde_name(&p.estimate.index),
            strategy: match p.layer_budgets {
                Some(budgets) => format!("layer-wise, {} budgets", serde_name(&budgets)),
                None => serde_name(&p.strategy),
            },
            variant: p.variant.clone(),
        }
    }

    fn parts(p: &GtapParams) -> usize {
        p.estimate.parts()
    }

    /// An iterated strategy in parts has one round per iteration: its iterations are
    /// `⌈players / step⌉`, the players known from the `model` input's architecture.
    fn rounds(
        p: &GtapParams,
        inputs: &std::collections::BTreeMap<String, Vec<serde_json::Value>>,
    ) -> Result<usize, Invalid> {
        let Some(step) = p.step else {
            return Ok(1);
        };
        let players = inputs
            .get("model")
            .and_then(|models| models.first())
            .and_then(crate::checks::model_stage_layers)
            .map(|(_, layers)| layers.iter().map(|(_, units)| units).sum::<usize>())
            .ok_or_else(|| {
                Invalid::new(
                    "estimate.shards",
                    "an iterated strategy in parts needs its `model` input's architecture (a stage with a `model` parameter, e.g. `train`) to count its iterations",
                )
            })?;
        Ok(players.div_ceil(step))
    }

    /// One part of an iteration's estimate: the iteration's seed and constraints, as `rank`
    /// uses them (Top-n: iteration 0, no constraints).
    fn run_part(p: &GtapParams, cx: &RankContext<'_>, part: (usize, usize)) -> anyhow::Result<()> {
        let d = p.estimate.resolve_bias(cx.stage)?;
        let game = p.estimate.game(cx.net, cx.probe);
        let iteration = cx.stage.round.map_or(0, |(r, _)| r);
        let so_far = IterationState::before(cx)?;
        let constraints = so_far.constraints(p.strategy);
        p.estimate.write_part(
            &game,
            d,
            iteration_seed(cx.seed, iteration),
            &constraints,
            cx.stage,
            part,
        )
    }

    /// An iteration but the last, from its parts: the units it removes (adds) join the state.
    fn run_round(p: &GtapParams, cx: &RankContext<'_>, iteration: usize) -> anyhow::Result<()> {
        let d = p.estimate.resolve_bias(cx.stage)?;
        let game = p.estimate.game(cx.net, cx.probe);
        let mut state = IterationState::before(cx)?;
        let constraints = state.constraints(p.strategy);
        let estimates = p.estimate.estimate(
            cx.net,
            &game,
            d,
            iteration_seed(cx.seed, iteration),
            &constraints,
            cx.stage,
        )?;
        let ranked = order(p, cx, iteration, &estimates);
        let step = p.step.expect("iterated strategies have a step");
        anyhow::ensure!(
            ranked.len() > step,
            "round {} of {}: {} units left, the rounds were miscounted",
            iteration + 1,
            cx.stage.round.map_or(1, |(_, of)| of),
            ranked.len()
        );
        state.step(p.strategy, &ranked, step);
        std::fs::write(
            cx.stage.out_dir().join(STATE_FILE),
            serde_json::to_vec(&state)?,
        )?;
        Ok(())
    }

    fn rank(p: &GtapParams, cx: &RankContext<'_>) -> anyhow::Result<Vec<usize>> {
        let d = p.estimate.resolve_bias(cx.stage)?;
        let n = cx.net.num_players();
        if let Some(LayerBudgets::Wmp) = p.layer_budgets {
            let estimates = p
                .estimate
                .estimate_layer_wise(cx.net, cx.probe, d, cx.seed, cx.stage)?;
            // The estimates behind the ranking, as a `power-indices` stage writes them.
            p.estimate
                .write_table(cx.net, cx.model, cx.seed, d, &estimates, cx.stage)?;
            let by_index = order(p, cx, 0, &estimates);
            let wmp = by_descending_score(
                &cx.net
                    .unit_scores(gtap_nn::WeightCriterion::Magnitude, None)?,
            );
            return Ok(within_layer_budgets(cx.net, &wmp, &by_index));
        }
        // One game for every iteration: the prefix runs once.
        let game = p.estimate.game(cx.net, cx.probe);
        let estimate = |iteration: usize, constraints: &Constraints| {
            p.estimate.estimate(
                cx.net,
                &game,
                d,
                iteration_seed(cx.seed, iteration),
                constraints,
                cx.stage,
            )
        };
        let step = p.step.unwrap_or(n);
        // The `step` units an iteration removes (pruning, lowest first) or adds (building,
        // highest first), when `separate` chooses them; `None` when it does not apply.
        let separate =
            |iteration: usize, constraints: &Constraints| -> anyhow::Result<Option<Vec<usize>>> {
                let Some(sep) = &p.separate else {
                    return Ok(None);
                };
                let free = constraints.resolve(n)?.free.len();
                if free <= step {
                    return Ok(None);
                }
                let highest = p.strategy == Strategy::IteratedBuilding;
                let cfg = SeparationConfig {
                    index: match d {
                        Some(d) => IndexKind::BiasedBanzhaf { d },
                        None => IndexKind::Banzhaf,
                    },
                    k: step,
                    highest,
                    confidence: sep.confidence,
                    initial: sep.initial,
                    round: sep.round,
                    budget: sep.budget,
                    seed: iteration_seed(cx.seed, iteration),
                };
                let started = std::time::Instant::now();
                let found = gtap_game::separate(&game, &cfg, constraints, &|_| ())?;
                tracing::info!(
                    "{}: {free} units, {} of {step} {} separated: {} ({} coalitions in {:.1}s)",
                    cx.stage.instance,
                    found.chosen.len(),
                    if highest { "highest" } else { "lowest" },
                    found.separated,
                    found.evaluations,
                    started.elapsed().as_secs_f64()
                );
                let value = |q: usize| {
                    found
                        .estimates
                        .iter()
                        .find(|e| e.player == q)
                        .map_or(0.0, |e| e.estimate)
                };
                let mut chosen = found.chosen;
                chosen.sort_by(|&a, &b| {
                    let order = value(a).total_cmp(&value(b)).then(a.cmp(&b));
                    if highest {
                        order.reverse()
                    } else {
                        order
                    }
                });
                Ok(Some(chosen))
            };
        let descending =
            |iteration: usize, estimates: &[PlayerEstimate]| order(p, cx, iteration, estimates);
        if let Some((last, _)) = cx.stage.round {
            // The last round of an iteration split in rounds: the state says what the rounds
            // before removed (added); this round's parts hold the last estimate.
            let state = IterationState::before(cx)?;
            let ranked = descending(last, &estimate(last, &state.constraints(p.strategy))?);
            anyhow::ensure!(
                ranked.len() <= step,
                "the last round left {} units (step {step}): the rounds were miscounted",
                ranked.len()
            );
            return Ok(match p.strategy {
                Strategy::IteratedBuilding => state.units.into_iter().chain(ranked).collect(),
                _ => ranked
                    .into_iter()
                    .chain(state.units.into_iter().rev())
                    .collect(),
            });
        }
        match p.strategy {
            Strategy::TopN => Ok(descending(0, &estimate(0, &Constraints::none())?)),
            Strategy::IteratedPruning => {
                let mut removed: Vec<usize> = Vec::new();
                let mut iteration = 0;
                loop {
                    let constraints = Constraints {
                        always_out: removed.clone(),
                        ..Constraints::none()
                    };
                    if let Some(lowest) = separate(iteration, &constraints)? {
                        removed.extend(lowest);
                        iteration += 1;
                        continue;
                    }
                    let ranked = descending(iteration, &estimate(iteration, &constraints)?);
                    if ranked.len() <= step {
                        // Last survivors, best first, then the removed in reverse removal order.
                        return Ok(ranked
                            .into_iter()
                            .chain(removed.into_iter().rev())
                            .collect());
                    }
                    // The `step` lowest leave, lowest first.
                    removed.extend(ranked.iter().rev().take(step));
                    iteration += 1;
                }
            }
            Strategy::IteratedBuilding => {
                let mut chosen: Vec<usize> = Vec::new();
                let mut iteration = 0;
                loop {
                    let constraints = Constraints {
                        always_in: chosen.clone(),
                        ..Constraints::none()
                    };
                    if let Some(highest) = separate(iteration, &constraints)? {
                        chosen.extend(highest);
                        iteration += 1;
                        continue;
                    }
                    let ranked = descending(iteration, &estimate(iteration, &constraints)?);
                    if ranked.len() <= step {
                        chosen.extend(ranked);
                        return Ok(chosen);
                    }
                    chosen.extend(ranked.iter().take(step));
                    iteration += 1;
                }
            }
        }
    }
}

/// The order that keeps, at every size r, as many units of each layer as the first r of
/// `budgets` do, choosing them in each layer by `by_index` (every player, best first): where
/// `budgets`' r-th unit is in layer l, layer l's next best unit by index comes r-th. Sets are
/// nested, so this is a ranking like any other.
pub(crate) fn within_layer_budgets(
    net: &gtap_nn::Network,
    budgets: &[usize],
    by_index: &[usize],
) -> Vec<usize> {
    let layer_of = |p: usize| {
        net.player_layers()
            .iter()
            .position(|l| (l.offset..l.offset + l.size).contains(&p))
            .expect("a player of the network")
    };
    let mut queues: Vec<std::collections::VecDeque<usize>> =
        vec![Default::default(); net.player_layers().len()];
    for &p in by_index {
        queues[layer_of(p)].push_back(p);
    }
    budgets
        .iter()
        .map(|&p| {
            queues[layer_of(p)]
                .pop_front()
                .expect("each layer has as many units in both orders")
        })
        .collect()
}

/// Each iteration samples from its own streams.
fn iteration_seed(seed: u64, iteration: usize) -> u64 {
    seed ^ (iteration as u64).rotate_left(32)
}

/// An iteration's free players by descending estimate, ties as the stage says.
fn order(
    p: &GtapParams,
    cx: &RankContext<'_>,
    iteration: usize,
    estimates: &[PlayerEstimate],
) -> Vec<usize> {
    let n = cx.net.num_players();
    let tie_rank = match p.ties {
        Ties::PlayerId => (0..n).collect(),
        Ties::Random => random_ranks(n, cx.seed, iteration),
    };
    descending(estimates, &tie_rank)
}

/// What an iterated strategy split in rounds passes from round to round: the units removed
/// (pruning, in removal order) or chosen (building, in order) so far.
#[derive(Debug, Default, Serialize, Deserialize)]
struct IterationState {
    units: Vec<usize>,
}

const STATE_FILE: &str = "iteration.json";

impl IterationState {
    /// The state after the round before this one (empty in the first round, and for Top-n).
    fn before(cx: &RankContext<'_>) -> anyhow::Result<IterationState> {
        match cx.stage.previous() {
            None => Ok(IterationState::default()),
            Some(previous) => Ok(serde_json::from_slice(&std::fs::read(
                previous.path(STATE_FILE),
            )?)?),
        }
    }

    fn constraints(&self, strategy: Strategy) -> Constraints {
        match strategy {
            Strategy::TopN => Constraints::none(),
            Strategy::IteratedPruning => Constraints {
                always_out: self.units.clone(),
                ..Constraints::none()
            },
            Strategy::IteratedBuilding => Constraints {
                always_in: self.units.clone(),
                ..Constraints::none()
            },
        }
    }

    /// One iteration's choice from its ranking (best first): the `step` lowest leave
    /// (pruning, lowest first) or the `step` highest join (building).
    fn step(&mut self, strategy: Strategy, ranked: &[usize], step: usize) {
        match strategy {
            Strategy::IteratedBuilding => self.units.extend(ranked.iter().take(step)),
            _ => self.units.extend(ranked.iter().rev().take(step)),
        }
    }
}

/// Rank of each of `n` players in a random order drawn from (`seed`, `iteration`).
pub(crate) fn random_ranks(n: usize, seed: u64, iteration: usize) -> Vec<usize> {
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    // Its own stream: independent of the estimator's draws from the same seed.
    rng.set_stream(u64::MAX - iteration as u64);
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut rng);
    let mut rank = vec![0; n];
    for (r, &player) in order.iter().enumerate() {
        rank[player] = r;
    }
    rank
}

/// Free players by descending estimate (NaN last), ties by ascending `tie_rank[player]`.
fn descending(estimates: &[PlayerEstimate], tie_rank: &[usize]) -> Vec<usize> {
    let key = |e: &PlayerEstimate| {
        if e.estimate.is_nan() {
            f64::NEG_INFINITY
        } else {
            e.estimate
        }
    };
    let mut sorted: Vec<&PlayerEstimate> = estimates.iter().collect();
    sorted.sort_by(|a, b| {
        key(b)
            .total_cmp(&key(a))
            .then(tie_rank[a.player].cmp(&tie_rank[b.player]))
    });
    sorted.into_iter().map(|e| e.player).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ranking some layers only is a `players` stage's job; the refusal says so.
    #[test]
    fn estimate_layers_is_refused_with_the_players_stage_named() {
        let params: GtapParams = toml::from_str(
            "strategy = \"top-n\"\nestimate = { index = \"banzhaf\", estimator = \"shared\", samples = 100, layers = [\"fc1\"] }",
        )
        .unwrap();
        let err = <Gtap as Ranker>::validate(&params).unwrap_err();
        assert_eq!(err.key, "estimate.layers");
        assert!(
            err.message.contains("kind = \"players\""),
            "{}",
            err.message
        );
    }

    fn tied(n: usize) -> Vec<PlayerEstimate> {
        (0..n)
            .map(|player| PlayerEstimate {
                player,
                estimate: if player == 3 { 1.0 } else { 0.0 },
                stderr: 0.0,
                samples: 1,
            })
            .collect()
    }

    /// At every size, layer-budget order keeps WMP's count in each layer, and within a layer
    /// the units the index ranks highest.
    #[test]
    fn layer_budgets_keep_the_budget_counts_and_the_best_units_of_each_layer() {
        let net = gtap_nn::Network::new(gtap_nn::Arch::Lenet300100, tch::Device::Cpu, 0);
        let n = net.num_players();
        let layer = |p: usize| usize::from(p >= 300);
        // Budgets: every fourth unit first, then the rest; index order: by descending id.
        let budgets: Vec<usize> = (0..n)
            .step_by(4)
            .chain((0..n).filter(|p| p % 4 != 0))
            .collect();
        let by_index: Vec<usize> = (0..n).rev().collect();
        let order = within_layer_budgets(&net, &budgets, &by_index);
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..n).collect::<Vec<_>>(), "a permutation");
        for r in [1, 7, 100, 250, 399] {
            for l in 0..2 {
                let count = |o: &[usize]| o[..r].iter().filter(|&&p| layer(p) == l).count();
                assert_eq!(count(&order), count(&budgets), "size {r}, layer {l}");
                // Descending id within a layer: the kept units are the layer's highest ids.
                let kept: Vec<usize> = order[..r]
                    .iter()
                    .copied()
                    .filter(|&p| layer(p) == l)
                    .collect();
                let top: Vec<usize> = by_index
                    .iter()
                    .copied()
                    .filter(|&p| layer(p) == l)
                    .take(kept.len())
                    .collect();
                assert_eq!(kept, top, "size {r}, layer {l}");
            }
        }
    }

    #[test]
    fn ties_follow_the_tie_rank() {
        let by_id = descending(&tied(6), &[0, 1, 2, 3, 4, 5]);
        assert_eq!(by_id, [3, 0, 1, 2, 4, 5]);
        let reversed = descending(&tied(6), &[5, 4, 3, 2, 1, 0]);
        assert_eq!(reversed, [3, 5, 4, 2, 1, 0]);
    }

    /// Random ties are a seeded permutation: the same for a seed and iteration, another for
    /// another iteration, and spread over the players rather than by id.
    #[test]
    fn random_ties_are_seeded_and_spread() {
        let n = 200;
        let a = random_ranks(n, 7, 0);
        assert_eq!(a, random_ranks(n, 7, 0));
        assert_ne!(a, random_ranks(n, 7, 1));
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..n).collect::<Vec<_>>());
        // The 50 players a tie puts last are not the 50 highest ids.
        let order = descending(&tied(n), &a);
        let last: Vec<usize> = order[n - 50..].to_vec();
        let high = last.iter().filter(|&&p| p >= n - 50).count();
        assert!(high < 25, "{high} of the last 50 are the highest ids");
    }
}
