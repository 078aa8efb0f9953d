//! Cooperative games: exact and Monte-Carlo Shapley, Banzhaf and biased-Banzhaf power indices.
//!
//! The game-theory core of GTAP, free of libtorch so it can be tested exactly on small games.
//!
//! - [`Coalition`]: a set of players as a bitset; [`Coalition::write_mask`] turns it into the
//!   0/1 mask a network multiplies activations by.
//! - [`Game`]: a value function scoring a *batch* of coalitions at once, so a network can
//!   evaluate many coalitions in one forward pass. [`FnGame`] adapts a closure; [`games`] holds
//!   small games with known answers.
//! - [`Constraints`]: which players are free, always in, or always out (iterated pruning,
//!   one layer at a time).
//! - [`estimate`]: Monte-Carlo estimates ([`Estimator::Permutation`] for Shapley,
//!   [`Estimator::Paired`] and [`Estimator::Shared`] for Banzhaf-type indices), each with a
//!   standard error. [`exact`]: enumeration over up to [`MAX_EXACT_FREE`] free players.
//!
//! Key design decision: **results are a function of the configuration only, never of the
//! thread count.** Every sample draws from its own random stream (seed, sample index), each batch
//! of evaluations writes its own slice of one value vector, and per-sample results are reduced
//! in sample order. Batches run on rayon threads when [`Game::parallel`] says so.
//!
//! ```
//! use gtap_game::games::WeightedVotingGame;
//! use gtap_game::{estimate, exact, Constraints, EstimateConfig, Estimator, IndexKind};
//!
//! // Player 0 has a veto and needs one partner: Shapley value 3/4, Banzhaf index 7/8.
//! let game = WeightedVotingGame { weights: vec![4.0, 2.0, 1.0, 1.0], quota: 5.0 };
//! let shapley = exact(&game, &IndexKind::Shapley, &Constraints::none())?;
//! assert!((shapley[0].estimate - 0.75).abs() < 1e-12);
//!
//! let cfg = EstimateConfig {
//!     index: IndexKind::Banzhaf,
//!     estimator: Estimator::Shared,
//!     samples: 4000,
//!     seed: 7,
//! };
//! let banzhaf = estimate(&game, &cfg, &Constraints::none(), &|_evaluations| {})?;
//! assert!((banzhaf[0].estimate - 0.875).abs() < 4.0 * banzhaf[0].stderr);
//! # Ok::<(), gtap_game::GameError>(())
//! ```

mod adaptive;
mod coalition;
mod constraints;
mod control;
mod crossfit;
mod error;
mod estimate;
mod eval;
mod exact;
mod game;
pub mod games;
mod ols;
pub mod rank;
mod sweep;
mod walk;

pub use adaptive::{separate, Separation, SeparationConfig};
pub use coalition::Coalition;
pub use constraints::{Constraints, Resolved};
pub use control::GroupFit;
pub use error::GameError;
pub use estimate::{
    control_fit, estimate, estimate_from_evaluations, evaluations, EstimateConfig, Estimator,
    IndexKind, PlayerEstimate, MAX_SAMPLES,
};
pub use eval::Part;
pub use exact::{exact, MAX_EXACT_FREE};
pub use game::{FnGame, Game};
pub use walk::{walk_values_by_coalition, Walk};
