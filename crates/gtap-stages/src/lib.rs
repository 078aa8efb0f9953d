//! The stages of gtap pipelines, registered by [`registry`].
//!
//! Each stage kind is one file implementing [`gtap_engine::Stage`]: typed parameters (with
//! `deny_unknown_fields` and documented defaults), a code version, and a `run` that writes its
//! outputs and tables. Adding a kind is that file plus one line in [`registry`].
//!
//! Stages hand data to each other through files in their cache entries: `mnist` and
//! `text-dataset` write prepared splits in one layout (`{train,probe,test}.split` +
//! `dataset.json`), `train` a safetensors checkpoint with `model.json`, `evaluate` only tables.

pub mod bench;
mod indices;
mod mcue;
mod mnist;
mod progress;
mod text;
mod train;

use gtap_engine::Registry;

pub use indices::{PowerIndexStage, RankAgreementStage};
pub use mcue::{McueBiasStage, McueFigureStage, McueStage};
pub use mnist::{DatasetInfo, MnistStage};
pub use text::TextDatasetStage;
pub use train::{EvaluateStage, TrainStage};

/// Every stage kind a pipeline may name.
pub fn registry() -> Registry {
    let mut registry = Registry::new();
    registry
        .register::<MnistStage>()
        .register::<TextDatasetStage>()
        .register::<TrainStage>()
        .register::<EvaluateStage>()
        .register::<McueStage>()
        .register::<McueBiasStage>()
        .register::<McueFigureStage>()
        .register::<PowerIndexStage>()
        .register::<RankAgreementStage>();
    registry
}
