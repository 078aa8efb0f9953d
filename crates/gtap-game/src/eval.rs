//! Batched, deterministic evaluation of a game and running statistics.

use std::ops::Range;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::{Coalition, Game};

/// One of `of` contiguous parts of an estimate's evaluations, computed on its own (one cluster
/// job each) and concatenated in order: cut at the game's batch boundaries, so every batch is
/// the same coalitions whatever the number of parts, and the concatenation is bit-identical to
/// the evaluations of one [`Part::WHOLE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part {
    /// `0..of`.
    pub index: usize,
    /// At least 1.
    pub of: usize,
}

impl Part {
    /// All the evaluations.
    pub const WHOLE: Part = Part { index: 0, of: 1 };

    /// The units (coalitions or walks) `0..total` of this part, `batch` at a time: batches
    /// `⌊nb·index/of⌋..⌊nb·(index+1)/of⌋` of the `nb` batches.
    pub fn units(&self, total: usize, batch: usize) -> Range<usize> {
        let batches = total.div_ceil(batch);
        let first = batches * self.index / self.of;
        let last = batches * (self.index + 1) / self.of;
        (first * batch).min(total)..(last * batch).min(total)
    }
}

/// Evaluates the coalitions of `part` among `0..total`, numbered by the estimator;
/// `build(range, out)` pushes exactly the coalitions of `range` in order. Each batch writes its
/// own slice of the result, so the result does not depend on which thread ran which batch.
pub(crate) fn evaluate<B>(
    game: &dyn Game,
    total: usize,
    part: Part,
    build: B,
    progress: &(dyn Fn(u64) + Sync),
) -> Vec<f64>
where
    B: Fn(Range<usize>, &mut Vec<Coalition>) + Sync,
{
    let batch = game.batch_size().max(1);
    let units = part.units(total, batch);
    // NaN makes a game that forgets to write a value visible in the estimates.
    let mut vals = vec![f64::NAN; units.len()];
    let run = |(b, out): (usize, &mut [f64])| {
        let start = units.start + b * batch;
        let mut coalitions = Vec::with_capacity(out.len());
        build(start..start + out.len(), &mut coalitions);
        assert_eq!(coalitions.len(), out.len(), "coalition builder miscounted");
        game.values(&coalitions, out);
        progress(out.len() as u64);
    };
    if game.parallel() {
        vals.par_chunks_mut(batch).enumerate().for_each(run);
    } else {
        vals.chunks_mut(batch).enumerate().for_each(run);
    }
    vals
}

/// The random stream of one sample: independent of every other sample and of the thread count.
pub(crate) fn sample_rng(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

/// Draws membership (probability `d`) for each of `f` free slots except `skip`, in slot order,
/// calling `on(slot, member)`. Building and combining both call this, so they see the same draws.
pub(crate) fn draw_members(
    rng: &mut ChaCha8Rng,
    f: usize,
    skip: Option<usize>,
    d: f64,
    mut on: impl FnMut(usize, bool),
) {
    for slot in 0..f {
        if Some(slot) != skip {
            on(slot, rng.random_bool(d));
        }
    }
}

/// Welford's running mean and variance; pushed in sample order for bit-reproducibility.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Stats {
    n: u64,
    mean: f64,
    m2: f64,
}

impl Stats {
    pub(crate) fn push(&mut self, x: f64) {
        self.n += 1;
        let delta = x - self.mean;
        self.mean += delta / self.n as f64;
        self.m2 += delta * (x - self.mean);
    }

    pub(crate) fn count(&self) -> u64 {
        self.n
    }

    /// NaN when empty.
    pub(crate) fn mean(&self) -> f64 {
        if self.n == 0 {
            f64::NAN
        } else {
            self.mean
        }
    }

    /// Unbiased sample variance; NaN with fewer than two values.
    pub(crate) fn var(&self) -> f64 {
        if self.n < 2 {
            f64::NAN
        } else {
            self.m2 / (self.n - 1) as f64
        }
    }

    /// Standard error of the mean.
    pub(crate) fn stderr(&self) -> f64 {
        (self.var() / self.n as f64).sqrt()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_match_two_pass() {
        let xs = [1.0, 4.0, -2.0, 7.5, 0.25];
        let mut s = Stats::default();
        xs.iter().for_each(|&x| s.push(x));
        let mean = xs.iter().sum::<f64>() / 5.0;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / 4.0;
        assert!((s.mean() - mean).abs() < 1e-12);
        assert!((s.var() - var).abs() < 1e-12);
        assert!((s.stderr() - (var / 5.0).sqrt()).abs() < 1e-12);
        let mut one = Stats::default();
        one.push(3.0);
        assert!(one.var().is_nan() && Stats::default().mean().is_nan());
    }
}
