//! The [`Game`] trait and the closure adapter [`FnGame`].

use crate::{Coalition, Walk};

/// A transferable-utility game whose value function scores a *batch* of coalitions at once,
/// so a neural network can evaluate many coalitions in one forward pass.
pub trait Game: Sync {
    /// Number of players `n`; every coalition handed to [`Game::values`] has this size.
    fn num_players(&self) -> usize;

    /// `out.len() == coalitions.len()`; `out[j] = ν(coalitions[j])`.
    fn values(&self, coalitions: &[Coalition], out: &mut [f64]);

    /// How many coalitions the estimators should hand to `values` at once (0 is read as 1).
    fn batch_size(&self) -> usize {
        256
    }

    /// A group label per player (e.g. its layer), or `None` for one group of all players. The
    /// cross-fitted estimator's surrogate models each group's active count, since a network's
    /// value depends on how many units of a layer survive more than on which.
    fn player_groups(&self) -> Option<Vec<usize>> {
        None
    }

    /// ν along each walk, walk after walk: for every walk, ν at its start and after each of its
    /// steps ([`Walk::num_values`] values). The default evaluates every coalition with
    /// [`Game::values`]; a network overrides it to update only what a step changes.
    fn walk_values(&self, walks: &[Walk], out: &mut [f64]) {
        crate::walk::walk_values_by_coalition(self, walks, out);
    }

    /// Whether [`Game::walk_values`] is cheaper than the same coalitions one by one: estimators
    /// whose coalitions form walks (permutations, the paper's pairs) then hand them over as
    /// walks. [`crate::Estimator::Sweep`] always does. Walks per call: [`Game::batch_size`].
    fn incremental(&self) -> bool {
        false
    }

    /// Whether [`Game::predicted_marginals`] predicts: the games whose value is a network
    /// that can be differentiated through its units' gates.
    fn predicts_marginals(&self) -> bool {
        false
    }

    /// For each coalition C, a prediction of every player's marginal contribution
    /// ν(C ∪ {i}) − ν(C \ {i}), coalition-major (`num_players` values per coalition), from
    /// something cheaper than evaluating the toggles (a network: one backward pass through its
    /// gates, the first-order change of each example's score). The control-variate estimator
    /// ([`crate::Estimator::ControlVariate`]) needs no accuracy from it to stay unbiased, only
    /// correlation to gain. Games that do not predict ([`Game::predicts_marginals`]) leave
    /// `out` as it is.
    fn predicted_marginals(&self, coalitions: &[Coalition], out: &mut [f64]) {
        let _ = (coalitions, out);
    }

    /// Whether several `values` calls may run concurrently on rayon threads. Cheap pure-Rust
    /// games say true; a network game that is already multi-threaded inside says false.
    fn parallel(&self) -> bool {
        true
    }
}

/// A game from a closure scoring one coalition at a time: `FnGame(n, |c| ...)`.
pub struct FnGame<F>(pub usize, pub F);

impl<F> FnGame<F>
where
    F: Fn(&Coalition) -> f64 + Sync,
{
    /// A game with `n` players and value function `value`.
    pub fn new(n: usize, value: F) -> Self {
        Self(n, value)
    }
}

impl<F> Game for FnGame<F>
where
    F: Fn(&Coalition) -> f64 + Sync,
{
    fn num_players(&self) -> usize {
        self.0
    }

    fn values(&self, coalitions: &[Coalition], out: &mut [f64]) {
        for (c, o) in coalitions.iter().zip(out) {
            *o = (self.1)(c);
        }
    }
}
