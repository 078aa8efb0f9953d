//! [`GameError`]: everything that can go wrong before a game is evaluated.

use thiserror::Error;

/// Invalid estimator configurations and constraints. All are detected before the first
/// evaluation of the game.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum GameError {
    /// A constraint names a player outside `0..n`.
    #[error("{field} names player {player}, but the game has only {n} players (0..{n})")]
    PlayerOutOfRange {
        /// Which constraint list (`always_in`, `always_out`, `restrict_to`).
        field: &'static str,
        /// The offending player id.
        player: usize,
        /// Number of players of the game.
        n: usize,
    },
    /// A player is both always in and always out.
    #[error("player {0} is in both always_in and always_out")]
    ConflictingConstraints(usize),
    /// The bias `d` of a biased Banzhaf index is not in the open interval (0, 1).
    #[error("biased Banzhaf index needs d in (0, 1), got {0}")]
    InvalidBias(f64),
    /// The estimator cannot estimate this kind of index.
    #[error("the {estimator} estimator cannot estimate the {index} index (use {instead})")]
    IncompatibleEstimator {
        /// The estimator asked for.
        estimator: &'static str,
        /// The index asked for.
        index: &'static str,
        /// What works instead.
        instead: &'static str,
    },
    /// `samples` is zero.
    #[error("samples must be at least 1, got 0")]
    NoSamples,
    /// `samples` does not fit the per-sample random stream numbering.
    #[error("samples must be at most {max}, got {got}")]
    TooManySamples {
        /// The requested number.
        got: usize,
        /// The largest supported number.
        max: usize,
    },
    /// The regression estimator needs more coalitions than unknowns.
    #[error(
        "the shared-regression estimator fits one coefficient per free player: it needs more than {free} + 1 samples, got {samples}"
    )]
    TooFewSamplesForRegression {
        /// The requested pool size.
        samples: usize,
        /// Number of free players.
        free: usize,
    },
    /// The cross-fitted estimator needs at least two folds of at least two coalitions each.
    #[error(
        "the shared-crossfit estimator needs folds >= 2 and at least 2 samples per fold: got {folds} folds for {samples} samples"
    )]
    InvalidFolds {
        /// The requested number of folds.
        folds: usize,
        /// The requested pool size.
        samples: usize,
    },
    /// The control-variate estimator's stars do not fit its folds or its coalitions.
    #[error(
        "the control-variate estimator needs 2 <= folds, 2 x folds <= stars <= samples \
         (each fold at least 2 stars, the stars among the predicted coalitions); got \
         stars = {stars}, folds = {folds}, samples = {samples}"
    )]
    InvalidStars {
        /// Coalitions with exact contributions.
        stars: usize,
        /// Cross-fitting folds.
        folds: usize,
        /// Coalitions with predicted contributions.
        samples: usize,
    },
    /// The control-variate estimator on a game without predictions.
    #[error(
        "the control-variate estimator needs a game that predicts marginal contributions \
         (a network's gate gradients); this game does not"
    )]
    NoPredictions,
    /// The adaptive separation was configured inconsistently.
    #[error("adaptive separation: {0}")]
    InvalidSeparation(String),
    /// Exact enumeration was asked for over too many free players.
    #[error(
        "exact enumeration over {free} free players needs 2^{free} evaluations; at most {max} free players are supported"
    )]
    TooManyFreePlayers {
        /// Number of free players.
        free: usize,
        /// The largest supported number.
        max: usize,
    },
    /// A part of an estimate's evaluations outside `0..of`.
    #[error("part {index} of {of} does not exist (parts are 0..of, of at least 1)")]
    InvalidPart {
        /// The part asked for.
        index: usize,
        /// The number of parts.
        of: usize,
    },
    /// The evaluations handed to `estimate_from_evaluations` are not all of them.
    #[error("expected {expected} evaluations (every part, in order), got {got}")]
    WrongEvaluationCount {
        /// What the configuration needs.
        expected: usize,
        /// What was handed over.
        got: usize,
    },
}
