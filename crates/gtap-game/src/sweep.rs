//! [`crate::Estimator::Sweep`]: one walk per sample that toggles every free player once.

use rand::seq::SliceRandom;
use rand::Rng;

use crate::estimate::{PlayerEstimate, Setup};
use crate::eval::{draw_members, sample_rng, Stats};
use crate::walk::evaluate_walks;
use crate::Walk;

/// One visit of a sweep: which free slot, whether it was a member before its toggle, and whether
/// its fresh draw keeps the toggled state (otherwise the next step toggles it back).
struct Visit {
    slot: usize,
    was_member: bool,
    kept: bool,
}

impl Setup<'_> {
    /// Sweep `s`: its start coalition, its steps as a walk, and its visits in order. The start
    /// memberships, the order and the fresh draws all come from the sample's own stream.
    fn sweep_plan(&self, s: usize, d: f64) -> (Walk, Vec<Visit>) {
        let f = self.free.len();
        let mut rng = sample_rng(self.seed, s as u64);
        let mut member = vec![false; f];
        draw_members(&mut rng, f, None, d, |slot, m| member[slot] = m);
        let mut order: Vec<usize> = (0..f).collect();
        order.shuffle(&mut rng);
        let mut start = self.base.clone();
        for (slot, _) in member.iter().enumerate().filter(|(_, &m)| m) {
            start.insert(self.free[slot]);
        }
        let mut steps = Vec::with_capacity(f);
        let mut visits = Vec::with_capacity(f);
        let mut toggle_back: Option<usize> = None;
        for slot in order {
            let mut step: Vec<usize> = toggle_back.take().into_iter().collect();
            step.push(self.free[slot]);
            steps.push(step);
            let was_member = member[slot];
            let kept = rng.random_bool(d) != was_member;
            if kept {
                member[slot] = !was_member;
            } else {
                toggle_back = Some(self.free[slot]);
            }
            visits.push(Visit {
                slot,
                was_member,
                kept,
            });
        }
        (Walk { start, steps }, visits)
    }

    pub(crate) fn sweep_values(
        &self,
        d: f64,
        part: crate::Part,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Vec<f64> {
        let (f, k) = (self.free.len(), self.samples);
        let walks = |range: std::ops::Range<usize>, out: &mut Vec<Walk>| {
            out.extend(range.map(|s| self.sweep_plan(s, d).0));
        };
        evaluate_walks(self.game, k, f + 1, part, walks, progress)
    }

    pub(crate) fn sweep(&self, d: f64, vals: &[f64]) -> Vec<PlayerEstimate> {
        let (f, k) = (self.free.len(), self.samples);
        let mut stats = vec![Stats::default(); f];
        for (s, v) in vals.chunks_exact(f + 1).enumerate() {
            // ν of the current state: the walk's value after the last kept toggle.
            let mut current = v[0];
            for (visit, &toggled) in self.sweep_plan(s, d).1.iter().zip(&v[1..]) {
                let (with, without) = if visit.was_member {
                    (current, toggled)
                } else {
                    (toggled, current)
                };
                stats[visit.slot].push(with - without);
                if visit.kept {
                    current = toggled;
                }
            }
        }
        self.report(&stats, k)
    }
}
