use tch::{Kind, Tensor};

use gtap_game::{Coalition, Game, Walk};

use crate::masked::MaskedSuffix;
use crate::{Network, NnError, TensorData};

/// Loss and accuracy of the whole network on a data set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Evaluation {
    pub loss: f64,
    pub accuracy: f64,
}

/// Mean cross-entropy and accuracy, in chunks so memory stays bounded; chunks run side by side
/// ([`crate::numerics::map_in_parallel`]) and are summed in order.
pub fn evaluate(net: &Network, data: &TensorData) -> Evaluation {
    evaluate_with(net, data, None)
}

/// [`evaluate`] of the gated network ([`Network::forward_gated`], `gates`: `[players]`).
pub fn evaluate_gated(net: &Network, data: &TensorData, gates: &Tensor) -> Evaluation {
    evaluate_with(net, data, Some(gates))
}

fn evaluate_with(net: &Network, data: &TensorData, gates: Option<&Tensor>) -> Evaluation {
    crate::numerics::current();
    let n = data.len();
    let work: Vec<_> = chunks_of(net, data, 2_000)
        .into_iter()
        .map(|(net, xs, ys)| (net, xs, ys, gates.map(|g| g.detach())))
        .collect();
    let parts = crate::numerics::map_in_parallel(work, |(net, xs, ys, gates)| {
        let _guard = tch::no_grad_guard();
        let logits = match gates {
            Some(g) => net.forward_gated(&xs, &g),
            None => net.forward(&xs),
        };
        let loss = logits
            .cross_entropy_loss::<Tensor>(&ys, None, tch::Reduction::Sum, -100, 0.0)
            .double_value(&[]);
        let correct = logits
            .argmax(-1, false)
            .eq_tensor(&ys)
            .to_kind(Kind::Double)
            .sum(Kind::Double)
            .double_value(&[]);
        (loss, correct)
    });
    let (loss, correct) = parts
        .into_iter()
        .fold((0.0, 0.0), |(l, c), (dl, dc)| (l + dl, c + dc));
    Evaluation {
        loss: loss / n as f64,
        accuracy: correct / n as f64,
    }
}

/// The share of `data` the network classifies right: [`evaluate`]'s accuracy, the same count,
/// without the loss. Having no float sum to keep in one order, it cuts the examples into small
/// chunks ([`ACCURACY_CHUNK`]) so that every core has a share even of a few thousand (a
/// training run's per-epoch accuracies).
pub fn accuracy(net: &Network, data: &TensorData) -> f64 {
    crate::numerics::current();
    let n = data.len();
    if n == 0 {
        return f64::NAN;
    }
    let work = chunks_of(net, data, ACCURACY_CHUNK);
    let correct: i64 = crate::numerics::map_in_parallel(work, |(net, xs, ys)| {
        let _guard = tch::no_grad_guard();
        net.forward(&xs)
            .argmax(-1, false)
            .eq_tensor(&ys)
            .sum(Kind::Int64)
            .int64_value(&[])
    })
    .into_iter()
    .sum();
    correct as f64 / n as f64
}

/// A network that maps a batch of inputs to logits, with a handle another thread can run.
pub trait Inference {
    fn logits(&self, xs: &Tensor) -> Tensor;
    /// A handle on the same weights for another thread.
    fn handle(&self) -> Self;
}

impl Inference for Network {
    fn logits(&self, xs: &Tensor) -> Tensor {
        self.forward(xs)
    }
    fn handle(&self) -> Self {
        self.shallow_clone()
    }
}

/// Seconds for one pass of `net` over `inputs` as gtap evaluates: consecutive chunks of
/// `chunk` examples side by side on the worker pool (one libtorch thread each); the median of
/// `repeats` passes after one warm-up.
pub fn inference_seconds<N: Inference + Send>(
    net: &N,
    inputs: &Tensor,
    chunk: i64,
    repeats: usize,
) -> f64 {
    let n = inputs.size().first().copied().unwrap_or(0);
    let pass = || {
        let work: Vec<(N, Tensor)> = (0..n)
            .step_by(chunk.max(1) as usize)
            .map(|start| (net.handle(), inputs.narrow(0, start, chunk.min(n - start))))
            .collect();
        crate::numerics::map_in_parallel(work, |(net, xs)| {
            let _guard = tch::no_grad_guard();
            drop(net.logits(&xs));
        });
    };
    pass();
    let mut times: Vec<f64> = (0..repeats.max(1))
        .map(|_| {
            let started = std::time::Instant::now();
            pass();
            started.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// `data` in consecutive chunks of `size` examples (the last one shorter), each with a handle
/// on the network for another thread.
fn chunks_of(net: &Network, data: &TensorData, size: usize) -> Vec<(Network, Tensor, Tensor)> {
    let n = data.len();
    (0..n)
        .step_by(size.max(1))
        .map(|start| {
            let len = size.min(n - start) as i64;
            (
                net.shallow_clone(),
                data.inputs.narrow(0, start as i64, len),
                data.labels.narrow(0, start as i64, len),
            )
        })
        .collect()
}

/// Examples per chunk of [`accuracy`].
const ACCURACY_CHUNK: usize = 256;

/// What ν(C) measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Utility {
    /// Accuracy on the evaluation examples (the paper's choice).
    Accuracy,
    /// Negative mean cross-entropy.
    NegativeCrossEntropy,
}

/// ν(C) of a trained network on a fixed example set: the network with the activations of
/// non-members zeroed. The prefix runs once at construction.
pub struct MaskedEvaluator {
    // libtorch tensors are not `Sync`; the lock makes the evaluator a `Game` (which must be
    // shareable) while keeping every forward pass on one thread at a time.
    state: std::sync::Mutex<EvalState>,
    players: usize,
    /// Player layer of every player (the game's groups).
    layer_of: Vec<usize>,
    widest: i64,
    utility: Utility,
    batch: usize,
    incremental: bool,
    /// Whether accuracy games run the certified path ([`crate::certify`]).
    certify: bool,
    /// (example, coalition) pairs the certified path decided, and how many of them the
    /// reference path recomputed.
    decided: std::sync::atomic::AtomicU64,
    recomputed: std::sync::atomic::AtomicU64,
}

/// One chunk of the examples, with its own handle on the head.
struct Chunk {
    head: MaskedSuffix,
    features: Tensor,
    labels: Tensor,
    /// The certified path's first-layer bound of these examples, once computed.
    start_bound: Option<Tensor>,
    /// [`EvalState::exact_zeros`].
    exact_zeros: bool,
}

struct EvalState {
    head: MaskedSuffix,
    features: Tensor,
    labels: Tensor,
    /// [`MaskedSuffix::start_bound`] of every example: computed on the certified path's
    /// first call, kept for the others.
    start_bound: Option<Tensor>,
    /// Whether the features are finite and that bound far from overflow: then a unit masked
    /// at the second gate is an exact zero downstream ([`crate::rows::certified_values`]).
    exact_zeros: bool,
}

impl EvalState {
    /// Examples `start..start + len`, with a handle on the head.
    fn chunk(&self, start: i64, len: i64) -> Chunk {
        Chunk {
            head: self.head.shallow_clone(),
            features: self.features.narrow(0, start, len),
            labels: self.labels.narrow(0, start, len),
            start_bound: self.start_bound.as_ref().map(|b| b.narrow(0, start, len)),
            exact_zeros: self.exact_zeros,
        }
    }
}

/// Upper bound on floats in one `[E, K, width]` activation block, to bound memory (≈ 256 MiB).
const BLOCK_FLOATS: i64 = 1 << 26;

/// Examples per evaluation chunk at most: enough chunks for the cores to share.
const EVAL_CHUNK: i64 = 250;

/// Pairs the certified path decides before [`MaskedEvaluator::bound_too_loose`] may judge it.
const LOOSE_AFTER_PAIRS: u64 = 1_000;

/// Examples per tile of the certified path at most.
const CERTIFIED_CHUNK: i64 = 500;

impl MaskedEvaluator {
    pub fn new(
        net: &Network,
        data: &TensorData,
        utility: Utility,
        batch: usize,
    ) -> MaskedEvaluator {
        Self::starting_at(net, data, utility, batch, 0)
    }

    /// An evaluator for games in which every player of the layers before player layer `start`
    /// is always present (layer-wise games): the network up to that layer's gate runs once,
    /// here, and coalitions are evaluated from there. Masks must keep those players at 1
    /// ([`NnError::FixedPlayers`] otherwise).
    pub fn starting_at(
        net: &Network,
        data: &TensorData,
        utility: Utility,
        batch: usize,
        start: usize,
    ) -> MaskedEvaluator {
        let features = tch::no_grad(|| net.activations_at(&data.inputs, start));
        let head = net.masked_suffix(start);
        let widest = if head.dense_only() {
            // Dense layers: the first bound, kept so chunk sizes (and bytes) stay as they were.
            net.player_layers()
                .iter()
                .map(|l| l.size as i64)
                .max()
                .unwrap_or(1)
                .max(300)
        } else {
            head.floats_per_pair()
        };
        let state = EvalState {
            head,
            features,
            labels: data.labels.shallow_clone(),
            start_bound: None,
            exact_zeros: false,
        };
        MaskedEvaluator {
            state: std::sync::Mutex::new(state),
            players: net.num_players(),
            layer_of: net
                .player_layers()
                .iter()
                .enumerate()
                .flat_map(|(layer, l)| std::iter::repeat_n(layer, l.size))
                .collect(),
            widest,
            utility,
            batch: batch.max(1),
            incremental: false,
            certify: true,
            decided: Default::default(),
            recomputed: Default::default(),
        }
    }

    /// The examples cut into chunks for `k` coalitions at once, each with a handle on the head:
    /// chunk sizes depend on `k` and the example count only (never on the cores), so summing
    /// the chunks' totals in order gives the same bytes on any machine.
    fn example_chunks(&self, state: &EvalState, k: i64) -> Vec<Chunk> {
        let e = state.features.size()[0];
        let chunk =
            (BLOCK_FLOATS / (k.max(1) * self.widest).max(1)).clamp(1, EVAL_CHUNK.min(e).max(1));
        (0..e)
            .step_by(chunk as usize)
            .map(|start| state.chunk(start, chunk.min(e - start)))
            .collect()
    }

    /// The certified path's work: tiles of (examples, coalitions), each with the offset of
    /// its first coalition and its masks. Coalitions are split between the cores first (the
    /// first layer's masked weights are then built once per call), examples only where
    /// coalitions are too few to keep every core busy or memory asks for it. Its values are
    /// counts, exact in any order, so cutting by the cores changes no byte.
    fn certified_tiles(&self, state: &EvalState, masks: &Tensor) -> Vec<(Chunk, i64, Tensor)> {
        let (e, k) = (state.features.size()[0], masks.size()[0]);
        let workers = crate::numerics::workers().max(1) as i64;
        let ceil = |a: i64, b: i64| (a + b - 1) / b.max(1);
        let per_part = ceil(k, k.clamp(1, workers)).max(1);
        let example_parts = ceil(workers, ceil(k, per_part));
        let chunk = (BLOCK_FLOATS / (per_part * self.widest).max(1))
            .clamp(1, ceil(e, example_parts).clamp(1, CERTIFIED_CHUNK));
        let mut tiles = Vec::new();
        for first in (0..k).step_by(per_part as usize) {
            let part = masks.narrow(0, first, per_part.min(k - first));
            for start in (0..e).step_by(chunk as usize) {
                let chunk = state.chunk(start, chunk.min(e - start));
                tiles.push((chunk, first, part.shallow_clone()));
            }
        }
        tiles
    }

    /// Whether accuracy values come from the certified path (the default: fast kernels, the
    /// reference path for the pairs the bound leaves undecided; where it applies) or from the
    /// reference path alone. The values are the same either way ([`crate::certify`]); the
    /// certified path runs LeNet5's head at 1.4-1.9× the reference (BENCHMARKS.md).
    pub fn with_certification(mut self, certify: bool) -> MaskedEvaluator {
        self.certify = certify;
        self
    }

    /// (example, coalition) pairs decided by the certified path so far, and how many of
    /// them the reference path recomputed.
    pub fn certification(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.decided.load(Relaxed), self.recomputed.load(Relaxed))
    }

    /// Whether the certified path has handed most of its pairs back so far: its bound grows
    /// about tenfold per layer, so behind many layers (AlexNet's conv1 game) it decides
    /// little and would cost its fast pass on top of the reference's. Then the reference runs
    /// alone (the same values: only speed depends on this).
    fn bound_too_loose(&self) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        let (decided, recomputed) = (self.decided.load(Relaxed), self.recomputed.load(Relaxed));
        decided >= LOOSE_AFTER_PAIRS && recomputed * 2 > decided
    }

    /// Whether this call runs the certified path (accuracy, the reference kernel on, every
    /// step with a bound, the bound not too loose so far); computes the first layer's bound
    /// on the first such call.
    fn certified(&self, state: &mut EvalState) -> bool {
        let certified = self.certify
            && self.utility == Utility::Accuracy
            && crate::certify::applies_to(&state.features)
            && state.head.certifiable()
            && !self.bound_too_loose();
        if certified && state.start_bound.is_none() {
            let _guard = tch::no_grad_guard();
            state.start_bound = state.head.start_bound(&state.features);
            // 1e30: products bounded by it over γ_k stay far below float32's largest value.
            state.exact_zeros = state.start_bound.as_ref().is_some_and(|b| {
                bool::try_from(state.features.isfinite().all()).unwrap_or(false)
                    && b.numel() > 0
                    && b.max().double_value(&[]) < 1e30
            });
        }
        certified
    }

    /// Adds a call's (decided, recomputed) pairs of the certified path to the evaluator's.
    fn record(&self, counts: Option<(u64, u64)>) {
        use std::sync::atomic::Ordering::Relaxed;
        if let Some((decided, recomputed)) = counts {
            self.decided.fetch_add(decided, Relaxed);
            self.recomputed.fetch_add(recomputed, Relaxed);
        }
    }

    pub fn num_examples(&self) -> usize {
        self.lock().labels.size()[0] as usize
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, EvalState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// ν for each row of `masks` (`[K, players]`, float). The examples are cut into chunks
    /// whose size depends on `K` and the example count only, evaluated side by side
    /// ([`crate::numerics::map_in_parallel`]) and summed in chunk order: the same bytes whatever
    /// the number of cores.
    pub fn values_of_masks(&self, masks: &Tensor) -> Result<Vec<f64>, NnError> {
        crate::numerics::current();
        let mut state = self.lock();
        let k = masks.size()[0];
        let e = state.features.size()[0];
        let start = &state.head.players()[state.head.start()];
        if start.offset > 0 {
            let before = masks.narrow(1, 0, start.offset as i64);
            if before.min().double_value(&[]) < 1.0 {
                return Err(NnError::FixedPlayers {
                    layer: start.name.clone(),
                });
            }
        }
        let utility = self.utility;
        let certified = self.certified(&mut state);
        let work: Vec<_> = match certified {
            true => self.certified_tiles(&state, masks),
            false => self
                .example_chunks(&state, k)
                .into_iter()
                .map(|chunk| (chunk, 0, masks.shallow_clone()))
                .collect(),
        };
        let parts = crate::numerics::map_in_parallel(work, |(chunk, first, masks)| {
            chunk_totals(&chunk, &masks, utility, certified).map(|t| (first, t))
        });
        let mut totals = vec![0.0; k as usize];
        for part in parts {
            let (first, (values, counts)) = part?;
            self.record(counts);
            for (total, v) in totals[first as usize..].iter_mut().zip(values) {
                *total += v;
            }
        }
        Ok(totals.into_iter().map(|t| t / e as f64).collect())
    }
}

/// Per-coalition sums over a chunk, and the certified path's (decided, recomputed) counts.
type ChunkTotals = (Vec<f64>, Option<(u64, u64)>);

/// Per-coalition sums of the utility over one chunk of examples; when the certified path ran
/// (`certified`: accuracy, the reference kernel on, every layer with a bound), how many
/// (example, coalition) pairs it decided and how many of them the reference path recomputed.
fn chunk_totals(
    chunk: &Chunk,
    masks: &Tensor,
    utility: Utility,
    certified: bool,
) -> Result<ChunkTotals, NnError> {
    let _guard = tch::no_grad_guard();
    let Chunk {
        head,
        features,
        labels: ys,
        start_bound,
        exact_zeros,
    } = chunk;
    if certified {
        head.check_masks(masks)?;
        if let Some(bound) = start_bound {
            let rows =
                crate::rows::certified_values(head, (features, ys), masks, (bound, *exact_zeros))?;
            if let Some((totals, counts)) = rows {
                return Ok((totals, Some(counts)));
            }
        }
        if let Some((logits, bound)) = head.certified_logits(features, masks, start_bound.as_ref())
        {
            let (totals, counts) = certified_totals(head, features, ys, masks, &logits, &bound)?;
            return Ok((totals, Some(counts)));
        }
    }
    let logits = head.masked_logits(features, masks)?; // [E, K, C]
    Ok((utility_totals(&logits, ys, utility)?, None))
}

/// Correct predictions per coalition from certified logits ([`crate::certify`]): the pairs
/// whose decision the bound leaves open are recomputed by the reference path
/// ([`MaskedSuffix::paired_logits`]), so every count is the reference's.
fn certified_totals(
    head: &MaskedSuffix,
    features: &Tensor,
    ys: &Tensor,
    masks: &Tensor,
    logits: &Tensor,
    bound: &Tensor,
) -> Result<(Vec<f64>, (u64, u64)), NnError> {
    let decisions = crate::certify::decide(logits, bound, ys)?;
    let k = masks.size()[0] as usize;
    let mut correct = decisions.correct;
    let open: Vec<i64> = (0..correct.len() as i64)
        .filter(|&p| !decisions.certain[p as usize])
        .collect();
    crate::rows::recompute_open(head, (features, ys), masks, &open, &mut correct)?;
    let totals = crate::rows::totals_of(&correct, k);
    Ok((totals, (correct.len() as u64, open.len() as u64)))
}

/// Sums over the examples of the utility of each of `K` coalitions, from logits `[E, K, C]`.
fn utility_totals(logits: &Tensor, ys: &Tensor, utility: Utility) -> Result<Vec<f64>, NnError> {
    let (len, k) = (logits.size()[0], logits.size()[1]);
    let per_coalition = match utility {
        Utility::Accuracy => logits
            .argmax(-1, false)
            .eq_tensor(&ys.unsqueeze(1))
            .to_kind(Kind::Double)
            .sum_dim_intlist(0, false, Kind::Double),
        Utility::NegativeCrossEntropy => {
            let logp = logits.log_softmax(-1, Kind::Float);
            let index = ys.view([len, 1, 1]).expand([len, k, 1], false);
            logp.gather(2, &index, false)
                .squeeze_dim(2)
                .to_kind(Kind::Double)
                .sum_dim_intlist(0, false, Kind::Double)
        }
    };
    Ok(Vec::<f64>::try_from(
        per_coalition.to_device(tch::Device::Cpu),
    )?)
}

impl MaskedEvaluator {
    /// Evaluates walks incrementally ([`crate::walks`]) when `incremental`: permutation walks,
    /// the paper's pairs and sweeps then cost a rank-one update of the first masked layer per
    /// step instead of its GEMM. Accuracy on the certified path (the default where it applies)
    /// gives full evaluation's values bit for bit; otherwise values agree with it up to float32
    /// rounding of the running sums (tests: cross-entropy within 1e-5).
    pub fn with_incremental(mut self, incremental: bool) -> MaskedEvaluator {
        self.incremental = incremental;
        self
    }

    /// ν along each walk (walk-major), by [`crate::walks::walk_totals`] on chunks of examples
    /// side by side, summed in chunk order.
    pub fn walk_values_incremental(&self, walks: &[Walk]) -> Vec<f64> {
        crate::numerics::current();
        let mut state = self.lock();
        let e = state.features.size()[0];
        let certified = self.certified(&mut state);
        let work = self.example_chunks(&state, walks.len() as i64);
        let (utility, players) = (self.utility, self.players);
        let parts = crate::numerics::map_in_parallel(work, |chunk| {
            if let (true, Some(bound)) = (certified, chunk.start_bound.as_ref()) {
                let certified = crate::walks::certified_walk_totals(
                    &chunk.head,
                    &chunk.features,
                    &chunk.labels,
                    walks,
                    players,
                    bound,
                )?;
                if let Some((totals, counts)) = certified {
                    return Ok((totals, Some(counts)));
                }
            }
            crate::walks::walk_totals(&chunk.head, &chunk.features, walks, players, &|logits| {
                utility_totals(logits, &chunk.labels, utility)
            })
            .map(|totals| (totals, None))
        });
        let mut totals = vec![0.0; walks.iter().map(Walk::num_values).sum()];
        for part in parts {
            let (part, counts) = part.expect("mask width matches the network");
            self.record(counts);
            for (total, v) in totals.iter_mut().zip(part.into_iter().flatten()) {
                *total += v;
            }
        }
        totals.into_iter().map(|t| t / e as f64).collect()
    }
}

impl Game for MaskedEvaluator {
    fn num_players(&self) -> usize {
        self.players
    }

    fn values(&self, coalitions: &[Coalition], out: &mut [f64]) {
        let players = self.players;
        let mut rows = vec![0f32; coalitions.len() * players];
        for (coalition, row) in coalitions.iter().zip(rows.chunks_mut(players)) {
            coalition.write_mask(row);
        }
        let device = self.lock().features.device();
        let masks = Network::mask_tensor(&rows, players, device);
        let values = self
            .values_of_masks(&masks)
            .expect("mask width matches the network");
        out.copy_from_slice(&values);
    }

    fn batch_size(&self) -> usize {
        self.batch
    }

    fn player_groups(&self) -> Option<Vec<usize>> {
        Some(self.layer_of.clone())
    }

    fn walk_values(&self, walks: &[Walk], out: &mut [f64]) {
        if self.incremental() {
            out.copy_from_slice(&self.walk_values_incremental(walks));
        } else {
            gtap_game::walk_values_by_coalition(self, walks, out);
        }
    }

    fn incremental(&self) -> bool {
        // Rank-one updates need a dense first masked layer with one input per unit, and every
        // player free from the first layer on.
        self.incremental && {
            let state = self.lock();
            state.head.start() == 0 && state.head.dense_only() && state.head.one_input_per_unit()
        }
    }

    fn parallel(&self) -> bool {
        // libtorch already uses every core inside one batch.
        false
    }

    fn predicts_marginals(&self) -> bool {
        true
    }

    /// One backward pass through the gates per coalition ([`crate::linearise`]). Its errors
    /// (a mask of the wrong width, a label outside the logits) cannot arise here: the masks
    /// are built for this network, the loaders validate labels and the stages check that a
    /// model and its data agree on the classes; `Game` has no error channel, as `values`.
    fn predicted_marginals(&self, coalitions: &[Coalition], out: &mut [f64]) {
        out.copy_from_slice(
            &self
                .predicted_marginals_of(coalitions)
                .expect("masks of this network's width, labels among its classes"),
        );
    }
}

impl MaskedEvaluator {
    /// Each player's predicted marginal contribution at each coalition, coalition-major
    /// ([`crate::linearise`]): the mean over the examples of the linearised change of the
    /// utility when the player alone is toggled. Examples in chunks side by side, summed in
    /// chunk order.
    pub fn predicted_marginals_of(&self, coalitions: &[Coalition]) -> Result<Vec<f64>, NnError> {
        crate::numerics::current();
        let players = self.players;
        let mut rows = vec![0f32; coalitions.len() * players];
        for (coalition, row) in coalitions.iter().zip(rows.chunks_mut(players)) {
            coalition.write_mask(row);
        }
        let state = self.lock();
        let masks = Network::mask_tensor(&rows, players, state.features.device());
        let e = state.features.size()[0];
        let work: Vec<_> = self
            .example_chunks(&state, 1)
            .into_iter()
            .map(|chunk| (chunk, masks.shallow_clone()))
            .collect();
        let utility = self.utility;
        let parts = crate::numerics::map_in_parallel(work, |(chunk, masks)| {
            crate::linearise::predicted_totals(
                &chunk.head,
                &chunk.features,
                &chunk.labels,
                &masks,
                utility,
            )
        });
        let mut total: Option<Tensor> = None;
        for part in parts {
            let part = part?;
            total = Some(match total {
                Some(t) => t + part,
                None => part,
            });
        }
        let total = match total {
            Some(t) => t / e as f64,
            None => Tensor::zeros(
                [coalitions.len() as i64, players as i64],
                (Kind::Double, masks.device()),
            ),
        };
        Ok(Vec::<f64>::try_from(
            total.to_device(tch::Device::Cpu).reshape([-1]),
        )?)
    }
}
