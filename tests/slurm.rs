//! `gtap run --executor slurm` on a real single-node cluster (`scripts/slurm-cluster up`, which
//! `just test` runs first): the ci-scale cluster pipeline with its β_d Top-n estimate split in 3
//! jobs and its Iterated Pruning in 2 rounds of 2 parts, one job killed while it runs, the run
//! failing with that job named and its dependants cancelled, a second run submitting only what
//! is missing, and tables byte-identical to a local run that estimates in one piece.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn pipeline() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/cluster.toml")
}

/// The cluster's configuration; fails (does not skip) when no cluster answers.
fn slurm_conf() -> String {
    let conf = std::env::var("SLURM_CONF").unwrap_or_else(|_| "/tmp/gtap-slurm/slurm.conf".into());
    let up = Command::new("sinfo")
        .env("SLURM_CONF", &conf)
        .args(["-h", "-o", "%T"])
        .output()
        .map(|o| o.status.success() && !o.stdout.is_empty())
        .unwrap_or(false);
    assert!(
        up,
        "no Slurm cluster answers at SLURM_CONF={conf}: run `scripts/slurm-cluster up` (`just test` does)"
    );
    conf
}

/// `(job id, name, state, time limit)` of the jobs whose log lies under `root`.
fn jobs_under(root: &Path, conf: &str) -> Vec<(String, String, String, String)> {
    let out = Command::new("scontrol")
        .env("SLURM_CONF", conf)
        .args(["-o", "show", "job"])
        .output()
        .unwrap();
    let root = root.display().to_string();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|line| line.contains(&format!("StdOut={root}")))
        .map(|line| {
            let field = |key: &str| {
                line.split_whitespace()
                    .find_map(|t| t.strip_prefix(key))
                    .unwrap_or_default()
                    .to_owned()
            };
            (
                field("JobId="),
                field("JobName="),
                field("JobState="),
                field("TimeLimit="),
            )
        })
        .collect()
}

fn parquet_bytes(root: &Path) -> Vec<(String, Vec<u8>)> {
    let dir = root.join("results/cluster");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect()
}

#[test]
fn slurm_run_killed_mid_way_resumes_and_matches_a_local_run() {
    let Some(data) = common::real_data() else {
        return;
    };
    let conf = slurm_conf();
    let pipeline = pipeline();
    let pipeline = pipeline.to_str().unwrap();

    // The reference: one local process, every estimate in one piece.
    let local = tempfile::tempdir().unwrap();
    let out = common::gtap_command(
        local.path(),
        &data,
        &[
            "run",
            pipeline,
            "--scale",
            "ci",
            "--set",
            "stage.beta_topn.estimate.shards=1",
            "--set",
            "stage.beta_ip.estimate.shards=1",
        ],
    )
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let cluster = tempfile::tempdir().unwrap();
    let root = cluster.path();
    let slurm_run = |root: &Path| {
        let mut cmd = common::gtap_command(
            root,
            &data,
            &[
                "run",
                pipeline,
                "--scale",
                "ci",
                "--executor",
                "slurm",
                "--poll",
                "0.2",
            ],
        );
        cmd.env("SLURM_CONF", &conf)
            .env("GTAP_SBATCH_ARGS", "--time=00:10:00");
        cmd
    };
    let first = slurm_run(root)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Kill the training job while it runs, as a time limit or preemption would.
    let started = Instant::now();
    let killed = loop {
        let running = jobs_under(root, &conf)
            .into_iter()
            .find(|(_, name, state, _)| name == "gtap:train[0]" && state == "RUNNING");
        if let Some((id, _, _, _)) = running {
            let status = Command::new("scancel")
                .env("SLURM_CONF", &conf)
                .arg(&id)
                .status()
                .unwrap();
            assert!(status.success());
            break id;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the training job never ran: {:?}",
            jobs_under(root, &conf)
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = first.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the run must fail: {stderr}");
    assert!(
        stderr.contains(&format!("stage `train[0]`: job {killed} CANCELLED (log: ")),
        "{stderr}"
    );
    assert!(stderr.contains("dependent job(s) cancelled"), "{stderr}");
    // Nothing is left pending, and the killed instance left no entry.
    let states = jobs_under(root, &conf);
    assert!(
        states
            .iter()
            .all(|(_, _, s, _)| s == "COMPLETED" || s == "CANCELLED"),
        "{states:?}"
    );
    assert!(states
        .iter()
        .any(|(_, n, s, _)| n == "gtap:mnist" && s == "COMPLETED"));
    // Arguments for every job ($GTAP_SBATCH_ARGS) come after a stage's own `[stage.x.slurm]`.
    assert!(
        states.iter().all(|(_, _, _, limit)| limit == "00:10:00"),
        "{states:?}"
    );
    let status = common::gtap_command(root, &data, &["status", pipeline, "--scale", "ci"])
        .output()
        .unwrap();
    let status = String::from_utf8_lossy(&status.stdout);
    let line = |id: &str| {
        status
            .lines()
            .find(|l| l.starts_with(&format!("{id} ")))
            .unwrap_or_default()
            .to_owned()
    };
    assert!(line("mnist").ends_with("cached"), "{status}");
    assert!(line("train[0]").ends_with("missing"), "{status}");

    // The second run submits only what is missing (and leaves: --no-wait); a third watches the
    // queued jobs instead of submitting them again, and writes the local run's bytes.
    let out = slurm_run(root).arg("--no-wait").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("job(s) queued; `gtap run"), "{stdout}");
    let submitted: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("submitted "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(!submitted.contains(&"mnist"), "{stdout}");
    assert!(submitted.contains(&"train[0]"), "{stdout}");
    assert!(submitted.contains(&"curves[0]"), "{stdout}");
    for id in [
        "beta_topn[0].part1of3",
        "beta_topn[0].part3of3",
        "beta_ip[0].round1of2.part1of2",
        "beta_ip[0].round1of2",
        "beta_ip[0].round2of2.part2of2",
        "beta_ip[0]",
    ] {
        assert!(submitted.contains(&id), "{id}: {stdout}");
    }
    let out = slurm_run(root).output().unwrap();
    let watched = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{watched}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!watched.contains("submitted "), "{watched}");
    let local_tables = parquet_bytes(local.path());
    assert!(
        local_tables.len() >= 3,
        "{:?}",
        local_tables.iter().map(|t| &t.0).collect::<Vec<_>>()
    );
    assert_eq!(
        parquet_bytes(root)
            .iter()
            .map(|(n, b)| (n.clone(), b.len(), b.clone()))
            .collect::<Vec<_>>(),
        local_tables
            .iter()
            .map(|(n, b)| (n.clone(), b.len(), b.clone()))
            .collect::<Vec<_>>(),
        "Slurm and local tables differ"
    );
}

/// A job whose stage panics fails with its instance and cause in its log, its dependants are
/// cancelled and the run exits non-zero (no hang); the next run builds it; a corrupt cached
/// checkpoint is found before submitting and rebuilt by a job, to the same bytes.
#[test]
fn slurm_job_that_panics_fails_the_run_and_a_corrupt_entry_is_rebuilt_by_a_job() {
    let Some(data) = common::real_data() else {
        return;
    };
    let conf = slurm_conf();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let pipeline = root.join("small.toml");
    std::fs::write(&pipeline, common::SMALL_LENET300).unwrap();
    let run = || {
        let mut cmd = common::gtap_command(
            root,
            &data,
            &[
                "run",
                pipeline.to_str().unwrap(),
                "--executor",
                "slurm",
                "--poll",
                "0.2",
            ],
        );
        cmd.env("SLURM_CONF", &conf)
            .env("GTAP_SBATCH_ARGS", "--time=00:10:00");
        cmd
    };
    let started = Instant::now();
    let out = run()
        .env(gtap_engine::INJECT_PANIC, "train[0]")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(300));
    assert!(stderr.contains("stage `train[0]`: job"), "{stderr}");
    assert!(stderr.contains("FAILED (log: "), "{stderr}");
    assert!(stderr.contains("1 dependent job(s) cancelled"), "{stderr}");
    let log = stderr
        .split("(log: ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap();
    let log = std::fs::read_to_string(log).unwrap();
    assert!(
        log.contains("stage `train[0]` panicked: injected by GTAP_INJECT_PANIC"),
        "{log}"
    );

    let out = run().output().unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        logs(root)
    );
    let entry = std::fs::read_dir(root.join("cache/entries/train"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_dir())
        .unwrap();
    let checkpoint = entry.join("model.safetensors");
    let sound = std::fs::read(&checkpoint).unwrap();
    let mut rotten = sound.clone();
    rotten[100] ^= 0x01;
    std::fs::write(&checkpoint, rotten).unwrap();
    let out = run().output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        logs(root)
    );
    let submitted: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("submitted "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    // Evaluation's key waits on the rebuilt checkpoint's hash, so its job is submitted too;
    // the checkpoint's bytes are the same, so that job finds its entry cached.
    assert_eq!(submitted, ["train[0]", "eval[0]"], "{stdout}");
    assert_eq!(std::fs::read(&checkpoint).unwrap(), sound);
    let eval_log = stdout
        .lines()
        .find(|l| l.starts_with("submitted eval[0]"))
        .and_then(|l| l.split_whitespace().last())
        .unwrap();
    let eval_log = std::fs::read_to_string(eval_log).unwrap();
    assert!(eval_log.contains("cached  eval[0]"), "{eval_log}");
}

/// Every job log under `root`'s cache, for a failure message.
fn logs(root: &Path) -> String {
    let mut out = String::new();
    let dir = root.join("cache/slurm/small");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    paths.sort();
    for path in paths {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        out.push_str(&format!("\n== {}\n{text}", path.display()));
    }
    out
}
