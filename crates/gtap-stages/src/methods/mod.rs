//! Pruning methods: one file per family, each a [`Ranker`](crate::ranking::Ranker).

mod baselines;
mod gtap;
mod literature;

pub use baselines::{NoParams, Random, Wgmp, Wmp};
pub use gtap::{Gtap, GtapParams, Strategy};
pub use literature::{leave_one_out, LeaveOneOut, LeaveOneOutParams, Michel, MichelParams};
