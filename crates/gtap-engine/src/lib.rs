//! The gtap stage engine: pipelines declared in TOML, every stage output cached under the
//! sha256 of a canonical pre-image, result tables materialised as parquet.
//!
//! Main types: [`Stage`] (a kind of stage with typed parameters), [`Registry`] (the kinds a
//! pipeline may name), [`Pipeline`] (a validated pipeline file with its scale preset and
//! overrides applied), [`Runner`] (runs, surveys and explains a pipeline against a [`Cache`]).
//!
//! Key design decision: a stage's key is `sha256(canonical JSON of {stage kind, code version,
//! resolved parameters, seed, content hashes of its upstream outputs, sha256 of its dataset
//! files})`. Upstream *content* hashes (not keys) enter the pre-image, so an upstream re-run that
//! produces identical bytes does not invalidate anything downstream. The stage's id in the
//! pipeline is not part of the key, so pipelines that declare the same stage share its entry.
//! The engine knows nothing about tensors or libtorch.
//!
//! ```no_run
//! # use gtap_engine::*;
//! # fn demo(registry: &Registry, env: &Env) -> Result<(), EngineError> {
//! let pipeline = Pipeline::load("pipelines/lenets.toml".as_ref(), &Overrides::default(), registry)?;
//! let report = Runner::new(registry, env).run(&pipeline, &[])?;
//! println!("built: {:?}", report.built());
//! # Ok(()) }
//! ```

mod cache;
mod config;
mod error;
pub mod hash;
mod panics;
mod runner;
mod slurm;
mod stage;
pub mod table;

pub use cache::{Cache, Corruption, Lookup, Manifest};
pub use config::{Overrides, Pipeline, SlurmResources, StageDecl, DEFAULT_SCALE};
pub use error::{EngineError, JobFailure};
pub use runner::{
    Instance, InstanceReport, InstanceStatus, Outcome, RunReport, Runner, State, Verified, Why,
    INJECT_PANIC,
};
pub use slurm::{Job, SlurmOptions, SlurmRun};
pub use stage::{ensure, Declared, Env, Inputs, Invalid, Registry, Stage, StageContext, Upstream};
