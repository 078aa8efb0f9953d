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
    /// A stage's own code panicked (a defect, reported as an error of its instance).
    #[error("stage `{instance}` panicked: {message}")]
    StagePanicked { instance: String, message: String },
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
    /// An instance named on the command line does not exist in the pipeline.
    #[error(
        "no instance `{instance}` in pipeline {pipeline} (instances are `stage` or `stage[seed]`)"
    )]
    UnknownInstance { instance: String, pipeline: String },
    /// A single-instance build found one of its inputs missing from the cache.
    #[error("cannot build `{instance}`: its input `{input}` is not built")]
    InputNotBuilt { instance: String, input: String },
    /// A job was started for a pipeline that no longer resolves to what was submitted.
    #[error("pipeline {path} changed since its jobs were submitted (fingerprint {found}, submitted {expected}); run `gtap run` again")]
    PipelineChanged {
        path: PathBuf,
        expected: String,
        found: String,
    },
    /// A cluster command (sbatch, scontrol, scancel) could not be run or failed.
    #[error("{command}: {message}")]
    Scheduler { command: String, message: String },
    /// Cluster jobs failed; their dependants were cancelled.
    #[error("{}", jobs_failed(.failures, *.cancelled))]
    JobsFailed {
        failures: Vec<JobFailure>,
        cancelled: usize,
    },
}

/// One failed cluster job: the instance it built, its id, final state and log file.
#[derive(Debug, Clone)]
pub struct JobFailure {
    pub instance: String,
    pub job: String,
    pub state: String,
    pub log: PathBuf,
}

fn jobs_failed(failures: &[JobFailure], cancelled: usize) -> String {
    let mut out = format!("{} job(s) failed", failures.len());
    for f in failures {
        out.push_str(&format!(
            "\n  stage `{}`: job {} {} (log: {})",
            f.instance,
            f.job,
            f.state,
            f.log.display()
        ));
    }
    if cancelled > 0 {
        out.push_str(&format!(
            "\n  {cancelled} dependent job(s) cancelled; `gtap run` again submits only what is missing"
        ));
    }
    out
}

/// `text` cut to at most `max` bytes (at a character boundary), saying how much was left out:
/// a message quoting its input stays readable whatever the input's size.
pub(crate) fn bounded(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}… ({} more bytes)", &text[..cut], text.len() - cut)
}
