//! Networks on libtorch (tch) whose prunable units are players of a cooperative game.
//!
//! Main types: [`Arch`] (which network: LeNet-300-100, LeNet5, the text MLP `mlp-3x256`,
//! "Pruning as a Game"'s `mlp-512-256`, AlexNet, the transformers `vit` and
//! `text-transformer`; each a preset of layer specs),
//! [`Shape`] (input width, classes and token ids it is built for: MNIST's for the LeNets, a
//! dataset's for the others), [`Network`] (its weights in a `VarStore` and a sequence of
//! layers, [`LayerSpec`], with gates where player layers' masks act), [`PlayerLayer`] (a named group of players with stable unit ids),
//! [`train()`] (seeded, deterministic training) and [`MaskedEvaluator`] (ν(C) for a batch of
//! coalitions), [`PrunedNetwork`] (the network physically sliced to a kept set, for export),
//! and [`numerics`] (portable floating-point code paths: the same bytes on any x86-64 CPU).
//!
//! Key design decision: a coalition zeroes the *activations* of its non-members, never the
//! weights, and the evaluator folds the first mask into the next layer's weight matrix, so
//! `K` coalitions over `E` examples are one broadcast matmul `[E, n] × [K, n, m]` instead of `K`
//! forward passes; the prefix (LeNet5's convolutions) runs once per example set.
//!
//! ```no_run
//! use gtap_nn::{Arch, Network};
//! let net = Network::new(Arch::Lenet5, tch::Device::Cpu, 0);
//! assert_eq!(net.num_players(), 604);
//! ```

mod arch;
mod build;
pub mod certify;
mod data;
mod device;
mod equilibrium;
mod error;
mod eval;
mod export;
pub mod gemm;
mod importance;
mod layers;
mod linearise;
mod masked;
mod model;
pub mod numerics;
mod prune;
mod rows;
mod sparse;
mod train;
pub mod walks;

pub use arch::{AlexnetWidths, Arch, Shape, VitPlan, VIT};
pub use data::TensorData;
pub use device::{device, set_device, DeviceChoice};
pub use equilibrium::{
    train_equilibrium, utility_gradient, Benefit, Equilibrium, EquilibriumConfig, EquilibriumEpoch,
    ParticipationTrainer,
};
pub use error::NnError;
pub use eval::{
    accuracy, evaluate, evaluate_gated, inference_seconds, Evaluation, Inference, MaskedEvaluator,
    Utility,
};
pub use export::{
    KeptUnits, LayerShape, PrunedLayout, PrunedNetwork, PRUNED_LAYOUT, PRUNED_WEIGHTS,
};
pub use layers::{
    Activation, AttentionSpec, ConvSpec, DenseSpec, GateSpec, LayerSpec, NormSpec, PatchesSpec,
    PositionSpec, TokensSpec,
};
pub use masked::MaskedSuffix;
pub use model::{Granularity, Network, PlayerLayer, UnitId};
pub use numerics::Numerics;
pub use prune::{Cost, UnstructuredPoint, WeightCriterion};
pub use train::{retrain, train, Augment, Decay, EpochMetrics, Optimizer, Schedule, TrainConfig};

/// Runs `f` with libtorch's global RNG seeded to `seed`, holding a process-wide lock, so that
/// concurrent callers (test threads, say) cannot interleave draws and break determinism.
pub fn with_torch_rng<T>(seed: u64, f: impl FnOnce() -> T) -> T {
    let _lock = lock_torch_rng(seed);
    f()
}

/// Seeds libtorch's global RNG with `seed` and holds it until the guard drops
/// (see [`with_torch_rng`]).
pub(crate) fn lock_torch_rng(seed: u64) -> std::sync::MutexGuard<'static, ()> {
    static TORCH_RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());
    numerics::current();
    let lock = TORCH_RNG
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    tch::manual_seed(seed as i64);
    lock
}

/// Fixes libtorch's intra-op thread count in [`Numerics::Fast`] mode, where a different count
/// may change float summation order inside libtorch. Portable numerics always compute each
/// operation on one thread, so there this does nothing.
pub fn set_threads(threads: usize) {
    if numerics::current() == Numerics::Fast {
        tch::set_num_threads(threads.max(1) as i32);
    }
}
