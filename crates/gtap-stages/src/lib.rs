//! The stages of gtap pipelines, registered by [`registry`].
//!
//! Each stage kind is one file implementing [`gtap_engine::Stage`]: typed parameters (with
//! `deny_unknown_fields` and documented defaults), a code version, and a `run` that writes its
//! outputs and tables. Adding a kind is that file plus one line in [`registry`].
//!
//! Stages hand data to each other through files in their cache entries: `mnist` and
//! `text-dataset` write prepared splits in one layout (`{train,probe,test}.split` +
//! `dataset.json`), `train` a safetensors checkpoint with `model.json`, `evaluate` only tables.

mod agreement;
pub mod bench;
mod checks;
mod curves;
mod equilibrium;
mod figure_curves;
mod figure_grid;
mod figure_scatter;
mod indices;
mod mcue;
pub mod methods;
mod mnist;
mod negative;
mod players;
mod progress;
pub mod ranking;
mod retrain;
mod text;
mod tiny_imagenet;
mod train;

use gtap_engine::Registry;
use ranking::{Ranker, RankerStage};

pub use agreement::EstimatorAgreementStage;
pub use curves::{size_grid, CurvesStage, UnstructuredStage};
pub use equilibrium::{EquilibriumStage, FigureEquilibriumStage};
pub use figure_curves::FigureCurvesStage;
pub use figure_grid::FigureUnitGridStage;
pub use figure_scatter::FigureIndexVsWeightStage;
pub use indices::{PowerIndexStage, RankAgreementStage};
pub use mcue::{McueBiasStage, McueFigureStage, McueMaximaStage, McueStage};
pub use mnist::{DatasetInfo, MnistStage};
pub use negative::RemoveNegativeStage;
pub use players::PlayersStage;
pub use retrain::{RetrainFrom, RetrainStage};
pub use text::TextDatasetStage;
pub use tiny_imagenet::TinyImagenetStage;
pub use train::{load_model, load_split, EvaluateStage, TrainStage};

/// For `skip_serializing_if`: a parameter added later with its default left out of the cache key,
/// so configurations that do not set it keep their keys.
fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

/// `text` shortened for an error message that quotes a value from a pipeline file.
fn short(text: &str) -> String {
    match text.char_indices().nth(60) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// Every stage kind a pipeline may name.
pub fn registry() -> Registry {
    let mut registry = Registry::new();
    registry
        .register::<MnistStage>()
        .register::<TextDatasetStage>()
        .register::<TinyImagenetStage>()
        .register::<TrainStage>()
        .register::<EvaluateStage>()
        .register::<PlayersStage>()
        .register::<RemoveNegativeStage>()
        .register::<McueStage>()
        .register::<McueBiasStage>()
        .register::<McueFigureStage>()
        .register::<McueMaximaStage>()
        .register::<PowerIndexStage>()
        .register::<RankAgreementStage>()
        .register::<EstimatorAgreementStage>()
        .register::<RankerStage<methods::Gtap>>()
        .register::<RankerStage<methods::Wmp>>()
        .register::<RankerStage<methods::Wgmp>>()
        .register::<RankerStage<methods::Random>>()
        .register::<RankerStage<methods::Michel>>()
        .register::<RankerStage<methods::LeaveOneOut>>()
        .register::<CurvesStage>()
        .register::<UnstructuredStage>()
        .register::<FigureCurvesStage>()
        .register::<FigureIndexVsWeightStage>()
        .register::<FigureUnitGridStage>()
        .register::<RetrainStage>()
        .register::<EquilibriumStage>()
        .register::<FigureEquilibriumStage>();
    registry
}

/// The kinds registered as [`RankerStage`]s: their entries hold a [`ranking::Ranking`].
pub const RANKING_KINDS: [&str; 6] = [
    methods::Gtap::METHOD,
    methods::Wmp::METHOD,
    methods::Wgmp::METHOD,
    methods::Random::METHOD,
    methods::Michel::METHOD,
    methods::LeaveOneOut::METHOD,
];
