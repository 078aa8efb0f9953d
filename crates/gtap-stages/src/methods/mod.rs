//! Pruning methods: one file per family, each a [`Ranker`](crate::ranking::Ranker).

mod baselines;
mod gtap;

pub use baselines::{NoParams, Random, Wgmp, Wmp};
pub use gtap::{Gtap, GtapParams, Strategy};
