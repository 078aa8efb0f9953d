//! The Slurm executor: every stage instance that is not cached becomes one batch job that
//! builds exactly that instance (the caller's `build_command` + `--instance <id>`), submitted
//! with `afterok` dependencies on the jobs of its inputs, so Slurm does the scheduling. The
//! cache, on storage every node shares, is the only channel between jobs: a job computes its
//! instance's key from its inputs' entries when it starts, as the local executor does.
//!
//! Stages never know which executor runs them; the engine hands each job the same
//! `Runner::build_instance` the local executor's threads amount to.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::config::Pipeline;
use crate::error::JobFailure;
use crate::runner::{Check, Instance, Outcome, RunReport, Runner, State};
use crate::EngineError;

/// How `gtap run --executor slurm` submits and watches jobs.
#[derive(Debug, Clone)]
pub struct SlurmOptions {
    /// The job's command line up to the instance: e.g. `gtap --cache-dir C build P.toml
    /// --scale ci --fingerprint F`; each job appends `--instance <id>` (and `--force`).
    pub build_command: Vec<String>,
    /// `sbatch` arguments for every job (command line, `GTAP_SBATCH_ARGS`), after the stage's.
    pub sbatch_args: Vec<String>,
    /// Job scripts and logs go to `<log_dir>/<pipeline>/`; it must be on shared storage.
    pub log_dir: PathBuf,
    /// Watch the jobs until they finish (then write the tables); `false` submits and returns.
    pub wait: bool,
    /// How often the queue is read while watching.
    pub poll: Duration,
}

/// One instance handed to Slurm: a job this run submitted, or one already queued that it
/// adopted (same pipeline fingerprint and instance).
#[derive(Debug, Clone)]
pub struct Job {
    pub instance: Instance,
    pub id: String,
    pub log: PathBuf,
    pub adopted: bool,
}

/// What a Slurm run did: the jobs, and the report of the tables when it waited for them.
#[derive(Debug)]
pub struct SlurmRun {
    pub jobs: Vec<Job>,
    /// `None` with `wait = false`.
    pub report: Option<RunReport>,
}

/// Job states after which a job never runs again.
const FAILED_STATES: &[&str] = &[
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "NODE_FAIL",
    "PREEMPTED",
    "OUT_OF_MEMORY",
    "BOOT_FAIL",
    "DEADLINE",
];

impl Runner<'_> {
    /// Runs a pipeline on Slurm: submits a job per missing instance (and per instance of the
    /// stages in `force`), watches them, cancels the dependants of a failed job, and writes the
    /// result tables once every job has succeeded.
    pub fn run_on_slurm(
        &self,
        pipeline: &Pipeline,
        force: &[String],
        options: &SlurmOptions,
    ) -> Result<SlurmRun, EngineError> {
        for id in force {
            pipeline.stage(id)?;
        }
        let fingerprint = pipeline.fingerprint();
        let log_dir = options.log_dir.join(&pipeline.name);
        std::fs::create_dir_all(&log_dir).map_err(|source| EngineError::Io {
            path: log_dir.clone(),
            source,
        })?;
        let queued = queued_jobs()?;
        let mut jobs: Vec<Job> = Vec::new();
        let mut job_of: BTreeMap<String, String> = BTreeMap::new();
        // Corrupt entries are removed here, so that a job rebuilds them.
        for (status, _) in self.survey(pipeline, Check::Contents)? {
            let instance = status.instance;
            let forced = force.contains(&instance.stage);
            if status.state == State::Cached && !forced {
                continue;
            }
            let decl = pipeline.stage(&instance.stage)?;
            let dependencies: BTreeSet<&String> = self
                .upstream_of(pipeline, decl, &instance)
                .values()
                .flatten()
                .filter_map(|u| job_of.get(&u.id))
                .collect();
            let comment = format!("gtap:{}:{}", &fingerprint[..16], instance.id);
            let job = if let Some((id, log)) = queued.get(&comment) {
                tracing::info!("adopting queued job {id} for {}", instance.id);
                Job {
                    instance: instance.clone(),
                    id: id.clone(),
                    log: log.clone(),
                    adopted: true,
                }
            } else {
                let script = write_script(&log_dir, &instance, options, forced)?;
                let mut args = vec![
                    "--parsable".to_owned(),
                    format!("--job-name=gtap:{}", instance.id),
                    format!("--comment={comment}"),
                    format!("--output={}", log_dir.join(log_name(&instance)).display()),
                    "--kill-on-invalid-dep=yes".to_owned(),
                ];
                if !dependencies.is_empty() {
                    let ids: Vec<&str> = dependencies.iter().map(|s| s.as_str()).collect();
                    args.push(format!("--dependency=afterok:{}", ids.join(":")));
                }
                args.extend(decl.slurm.sbatch_args());
                args.extend(options.sbatch_args.iter().cloned());
                args.push(script.display().to_string());
                let out = scheduler("sbatch", &args)?;
                let id = out.trim().split(';').next().unwrap_or_default().to_owned();
                if id.is_empty() {
                    return Err(EngineError::Scheduler {
                        command: "sbatch".into(),
                        message: format!("printed no job id for {}", instance.id),
                    });
                }
                let log = log_dir.join(log_name(&instance).replace("%j", &id));
                tracing::info!("submitted {} as job {id}", instance.id);
                Job {
                    instance: instance.clone(),
                    id,
                    log,
                    adopted: false,
                }
            };
            job_of.insert(instance.id.clone(), job.id.clone());
            jobs.push(job);
        }
        if !options.wait {
            return Ok(SlurmRun { jobs, report: None });
        }
        self.watch(pipeline, &jobs, options.poll)?;
        let mut report = self.run(pipeline, &[])?;
        let by_jobs: BTreeSet<&str> = jobs.iter().map(|j| j.instance.id.as_str()).collect();
        for r in &mut report.instances {
            if by_jobs.contains(r.instance.id.as_str()) {
                let seconds = self
                    .cache
                    .lookup(&r.instance.kind, &r.key)?
                    .map_or(0.0, |m| m.seconds);
                r.outcome = Outcome::Built { seconds };
            }
        }
        Ok(SlurmRun {
            jobs,
            report: Some(report),
        })
    }

    /// Reads the queue until every job has ended. A failed job's dependants (transitively) are
    /// cancelled at once; the others run to the end, so their work is cached.
    fn watch(&self, pipeline: &Pipeline, jobs: &[Job], poll: Duration) -> Result<(), EngineError> {
        let mut last: BTreeMap<&str, String> = BTreeMap::new();
        let mut failures: Vec<JobFailure> = Vec::new();
        let mut cancelled: BTreeSet<String> = BTreeSet::new();
        let mut ended: BTreeSet<&str> = BTreeSet::new();
        let dependants = self.dependants(pipeline, jobs);
        loop {
            let states = job_states(jobs.iter().map(|j| j.id.as_str()))?;
            for job in jobs {
                if ended.contains(job.id.as_str()) {
                    continue;
                }
                let state = match states.get(&job.id) {
                    Some(state) => state.clone(),
                    // Purged from the controller's memory (MinJobAge): the cache says how it ended.
                    None if self.is_cached(pipeline, &job.instance)? => "COMPLETED".to_owned(),
                    None => "VANISHED".to_owned(),
                };
                if last.get(job.id.as_str()) != Some(&state) {
                    tracing::info!("job {} {}: {state}", job.id, job.instance.id);
                    last.insert(&job.id, state.clone());
                }
                let failed = FAILED_STATES.contains(&state.as_str()) || state == "VANISHED";
                if state == "COMPLETED" || failed {
                    ended.insert(&job.id);
                }
                if failed && !cancelled.contains(&job.id) {
                    failures.push(JobFailure {
                        instance: job.instance.id.clone(),
                        job: job.id.clone(),
                        state,
                        log: job.log.clone(),
                    });
                    let to_cancel: Vec<&str> = dependants[&job.id]
                        .iter()
                        .filter(|id| !ended.contains(id.as_str()) && !cancelled.contains(*id))
                        .map(String::as_str)
                        .collect();
                    if !to_cancel.is_empty() {
                        let mut args = vec!["--quiet".to_owned()];
                        args.extend(to_cancel.iter().map(|s| s.to_string()));
                        scheduler("scancel", &args)?;
                        cancelled.extend(to_cancel.iter().map(|s| s.to_string()));
                    }
                }
            }
            if ended.len() == jobs.len() {
                break;
            }
            let remaining = jobs.len() - ended.len();
            tracing::debug!("{remaining} job(s) still queued or running");
            std::thread::sleep(poll);
        }
        if failures.is_empty() {
            return Ok(());
        }
        Err(EngineError::JobsFailed {
            cancelled: cancelled.len(),
            failures,
        })
    }

    /// For each job, the jobs that depend on it directly or through other jobs.
    fn dependants(&self, pipeline: &Pipeline, jobs: &[Job]) -> BTreeMap<String, BTreeSet<String>> {
        let job_of: BTreeMap<&str, &str> = jobs
            .iter()
            .map(|j| (j.instance.id.as_str(), j.id.as_str()))
            .collect();
        let mut out: BTreeMap<String, BTreeSet<String>> = jobs
            .iter()
            .map(|j| (j.id.clone(), BTreeSet::new()))
            .collect();
        // Jobs are in dependency order, so a job's upstream sets are complete when it is reached.
        for job in jobs {
            let decl = pipeline
                .stage(&job.instance.stage)
                .expect("jobs come from the pipeline");
            for upstream in self
                .upstream_of(pipeline, decl, &job.instance)
                .values()
                .flatten()
            {
                let Some(up_job) = job_of.get(upstream.id.as_str()) else {
                    continue;
                };
                for (_, deps) in out
                    .iter_mut()
                    .filter(|(id, deps)| id.as_str() == *up_job || deps.contains(*up_job))
                {
                    deps.insert(job.id.clone());
                }
            }
        }
        out
    }

    fn is_cached(&self, pipeline: &Pipeline, instance: &Instance) -> Result<bool, EngineError> {
        Ok(self
            .survey(pipeline, Check::Manifest)?
            .into_iter()
            .any(|(s, _)| s.instance.id == instance.id && s.state == State::Cached))
    }
}

fn log_name(instance: &Instance) -> String {
    format!("{}-%j.log", file_safe(&instance.id))
}

/// `train[0]` → `train.seed0`: instance ids as file names.
fn file_safe(id: &str) -> String {
    crate::cache::sanitize(&id.replace('[', ".seed").replace(']', ""))
}

/// The job script: one `exec` of the build command, with the job's CPUs as worker threads.
fn write_script(
    dir: &Path,
    instance: &Instance,
    options: &SlurmOptions,
    force: bool,
) -> Result<PathBuf, EngineError> {
    let mut argv: Vec<String> = options.build_command.clone();
    argv.push("--instance".into());
    argv.push(instance.id.clone());
    if force {
        argv.push("--force".into());
    }
    let quoted: Vec<String> = argv.iter().map(|a| shell_quote(a)).collect();
    let text = format!(
        "#!/bin/sh\n# gtap: builds `{}` (written by gtap run --executor slurm)\n\
         export GTAP_THREADS=\"${{SLURM_CPUS_PER_TASK:-1}}\"\nexec {}\n",
        instance.id,
        quoted.join(" ")
    );
    let path = dir.join(format!("{}.sh", file_safe(&instance.id)));
    std::fs::write(&path, text).map_err(|source| EngineError::Io {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

fn shell_quote(arg: &str) -> String {
    if !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
    {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', "'\\''"))
    }
}

/// Runs a scheduler command and returns its standard output.
fn scheduler(command: &str, args: &[String]) -> Result<String, EngineError> {
    let out = Command::new(command)
        .args(args)
        .output()
        .map_err(|e| EngineError::Scheduler {
            command: command.into(),
            message: format!(
                "cannot run it ({e}); is this a Slurm login node with SLURM_CONF set?"
            ),
        })?;
    if !out.status.success() {
        return Err(EngineError::Scheduler {
            command: format!("{command} {}", args.join(" ")),
            message: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `key=value` fields of one `scontrol -o` line (values without spaces are all we read).
fn fields(line: &str) -> BTreeMap<&str, &str> {
    line.split_whitespace()
        .filter_map(|token| token.split_once('='))
        .collect()
}

/// Every job the controller still knows, as its `scontrol -o show job` fields.
fn show_jobs() -> Result<Vec<BTreeMap<String, String>>, EngineError> {
    let out = scheduler("scontrol", &["-o".into(), "show".into(), "job".into()])?;
    Ok(out
        .lines()
        .map(|line| {
            fields(line)
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect()
        })
        .collect())
}

/// The state of each of `ids` that the controller still knows.
fn job_states<'a>(
    ids: impl Iterator<Item = &'a str>,
) -> Result<BTreeMap<String, String>, EngineError> {
    let wanted: BTreeSet<&str> = ids.collect();
    Ok(show_jobs()?
        .into_iter()
        .filter_map(|mut f| Some((f.remove("JobId")?, f.remove("JobState")?)))
        .filter(|(id, _)| wanted.contains(id.as_str()))
        .collect())
}

/// Jobs still queued or running, by their `gtap:<fingerprint>:<instance>` comment, with their
/// log file: a later `gtap run` watches them instead of submitting the instance again.
fn queued_jobs() -> Result<BTreeMap<String, (String, PathBuf)>, EngineError> {
    let mut queued = BTreeMap::new();
    for f in show_jobs()? {
        let (Some(id), Some(state), Some(comment)) =
            (f.get("JobId"), f.get("JobState"), f.get("Comment"))
        else {
            continue;
        };
        let active = matches!(
            state.as_str(),
            "PENDING" | "RUNNING" | "CONFIGURING" | "COMPLETING"
        );
        if active && comment.starts_with("gtap:") {
            let log = PathBuf::from(f.get("StdOut").cloned().unwrap_or_default());
            queued.insert(comment.clone(), (id.clone(), log));
        }
    }
    Ok(queued)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scontrol_fields_are_read_by_key() {
        let line = "JobId=12 JobName=gtap:train[0] UserId=root(0) JobState=FAILED Reason=NonZeroExitCode Comment=gtap:ab:train[0] StdOut=/c/train_0_-12.log";
        let f = fields(line);
        assert_eq!(f["JobId"], "12");
        assert_eq!(f["JobState"], "FAILED");
        assert_eq!(f["Comment"], "gtap:ab:train[0]");
        assert_eq!(f["StdOut"], "/c/train_0_-12.log");
    }

    #[test]
    fn arguments_are_quoted_for_the_shell() {
        assert_eq!(shell_quote("train[0]"), "'train[0]'");
        assert_eq!(shell_quote("--cache-dir=/a/b"), "--cache-dir=/a/b");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
