//! Walks: coalitions one step apart, so a network can update what a step changes instead of
//! evaluating every coalition from scratch ([`Game::walk_values`]).

use std::ops::Range;

use rayon::prelude::*;

use crate::{Coalition, Game};

/// ν is wanted at `start` and after each step; a step toggles its players (adds the absent ones,
/// removes the present ones). A permutation is a walk of single insertions, the paper's
/// Algorithm 2 pair a walk of one step, a sweep ([`crate::Estimator::Sweep`]) a walk that
/// toggles every free player once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Walk {
    pub start: Coalition,
    pub steps: Vec<Vec<usize>>,
}

impl Walk {
    /// Values the walk asks for: its start and one per step.
    pub fn num_values(&self) -> usize {
        self.steps.len() + 1
    }

    /// The walk's coalitions in order (`num_values` of them).
    pub fn coalitions(&self) -> Vec<Coalition> {
        let mut c = self.start.clone();
        let mut out = Vec::with_capacity(self.num_values());
        out.push(c.clone());
        for step in &self.steps {
            step.iter().for_each(|&p| c.toggle(p));
            out.push(c.clone());
        }
        out
    }
}

/// What [`Game::walk_values`] does unless a game knows better: every coalition through
/// [`Game::values`], `batch_size` at a time. Public so that an override can fall back to it.
pub fn walk_values_by_coalition(game: &(impl Game + ?Sized), walks: &[Walk], out: &mut [f64]) {
    let coalitions: Vec<Coalition> = walks.iter().flat_map(Walk::coalitions).collect();
    assert_eq!(coalitions.len(), out.len(), "out holds every walk's values");
    let batch = game.batch_size().max(1);
    for (cs, o) in coalitions.chunks(batch).zip(out.chunks_mut(batch)) {
        game.values(cs, o);
    }
}

/// Evaluates the walks of `part` among `0..total`, each with `per` values, numbered by the
/// estimator; `build(range, out)` pushes exactly the walks of `range` in order. As
/// [`crate::eval::evaluate`], each call writes its own slice, so the result does not depend on
/// the threads.
pub(crate) fn evaluate_walks<B>(
    game: &dyn Game,
    total: usize,
    per: usize,
    part: crate::Part,
    build: B,
    progress: &(dyn Fn(u64) + Sync),
) -> Vec<f64>
where
    B: Fn(Range<usize>, &mut Vec<Walk>) + Sync,
{
    let units = part.units(total, game.batch_size().max(1));
    evaluate_walk_units(game, units, per, build, progress)
}

/// [`evaluate_walks`] of the walks `units` (starting at a multiple of the game's batch size,
/// so that every call gets the same walks whatever the parts).
pub(crate) fn evaluate_walk_units<B>(
    game: &dyn Game,
    units: Range<usize>,
    per: usize,
    build: B,
    progress: &(dyn Fn(u64) + Sync),
) -> Vec<f64>
where
    B: Fn(Range<usize>, &mut Vec<Walk>) + Sync,
{
    let walks_per_call = game.batch_size().max(1);
    let mut vals = vec![f64::NAN; units.len() * per];
    let run = |(b, out): (usize, &mut [f64])| {
        let start = units.start + b * walks_per_call;
        let mut walks = Vec::with_capacity(out.len() / per);
        build(start..start + out.len() / per, &mut walks);
        assert!(
            walks.len() * per == out.len() && walks.iter().all(|w| w.num_values() == per),
            "walk builder miscounted"
        );
        game.walk_values(&walks, out);
        progress(out.len() as u64);
    };
    if game.parallel() {
        vals.par_chunks_mut(walks_per_call * per)
            .enumerate()
            .for_each(run);
    } else {
        vals.chunks_mut(walks_per_call * per)
            .enumerate()
            .for_each(run);
    }
    vals
}
