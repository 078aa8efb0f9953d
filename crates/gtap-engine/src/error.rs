use std::path::PathBuf;

/// Errors of the stage engine. Configuration errors name the file and the key.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The pipeline file could not be read.
    #[error("cannot read pipeline file {path}")]
    ReadPipeline {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The pipeline file is not valid TOML.
    #[error("{path}: invalid TOML: {message}")]
    Toml { path: PathBuf, message: String },
    /// A key, type or value in the pipeline file (or a `--set` override) is not allowed.
    #[error("{path}: `{key}`: {message}")]
    Config {
        path: PathBuf,
        key: String,
        message: String,
    },
    /// A filesystem operation on the cache or results failed.
    #[error("I/O error on {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A stage's own code failed.
    #[error("stage `{instance}` failed")]
    StageFailed {
        instance: String,
        #[source]
        source: anyhow::Error,
    },
    /// A cache entry's manifest could not be parsed.
    #[error("corrupt cache manifest {path}: {message}")]
    CorruptManifest { path: PathBuf, message: String },
    /// A result table could not be read, concatenated or written.
    #[error("table `{table}` ({path}): {message}")]
    Table {
        table: String,
        path: PathBuf,
        message: String,
    },
    /// A stage named on the command line does not exist in the pipeline.
    #[error("no stage `{stage}` in pipeline {pipeline} (stages: {known})")]
    UnknownStage {
        stage: String,
        pipeline: String,
        known: String,
    },
}
