//! The `gtap` binary end to end: exit codes and messages, caching across invocations, and
//! recovery from a run killed mid-stage, on the real MNIST files in ../shared/datasets.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    fn new(pipeline: &str) -> Project {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("p.toml"), pipeline).unwrap();
        Project { dir }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn command(&self, data: &Path, args: &[&str]) -> Command {
        common::gtap_command(self.dir.path(), data, args)
    }

    fn gtap(&self, data: &Path, args: &[&str]) -> Output {
        self.command(data, args).output().unwrap()
    }
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const SMALL: &str = r#"
[pipeline]
name = "small"
seeds = [0]

[stage.mnist]
kind = "mnist"

[stage.train]
kind = "train"
inputs = { data = "mnist" }
model = "lenet-300-100"
epochs = 1
batch_size = 256

[stage.eval]
kind = "evaluate"
inputs = { model = "train", data = "mnist" }
"#;

#[test]
fn bad_key_exits_2_naming_file_and_key() {
    let p = Project::new(&SMALL.replace("batch_size = 256", "batch_sise = 256"));
    let out = p.gtap(
        Path::new("/nonexistent"),
        &["run", p.path("p.toml").to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(2));
    let (_, stderr) = text(&out);
    assert!(
        stderr.contains("p.toml: `stage.train.batch_sise`: unknown field `batch_sise`"),
        "{stderr}"
    );
    assert!(
        !p.path("cache/entries").exists(),
        "a bad config must cache nothing"
    );
}

#[test]
fn missing_dataset_is_one_clear_error_and_caches_nothing() {
    let p = Project::new(SMALL);
    let empty = tempfile::tempdir().unwrap();
    let out = p.gtap(empty.path(), &["run", p.path("p.toml").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let (_, stderr) = text(&out);
    assert!(stderr.contains("train-images-idx3-ubyte.gz"), "{stderr}");
    assert!(stderr.contains("--data-dir"), "{stderr}");
    assert!(!p.path("cache/entries").exists());
}

#[test]
fn second_run_is_cached_and_a_training_change_reruns_train_and_eval_only() {
    let Some(data) = common::real_data() else {
        return;
    };
    let p = Project::new(SMALL);
    let pipeline = p.path("p.toml");
    let pipeline = pipeline.to_str().unwrap();
    let first = p.gtap(&data, &["run", pipeline]);
    let (stdout, stderr) = text(&first);
    assert!(first.status.success(), "{stderr}");
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("built")).count(),
        3,
        "{stdout}"
    );

    let started = Instant::now();
    let second = p.gtap(&data, &["run", pipeline]);
    let (stdout, _) = text(&second);
    assert!(second.status.success());
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("cached")).count(),
        3,
        "{stdout}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));

    let changed = p.gtap(&data, &["run", pipeline, "--set", "stage.train.lr=0.002"]);
    let (stdout, stderr) = text(&changed);
    assert!(changed.status.success(), "{stderr}");
    let built: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("built"))
        .map(|l| l.split_whitespace().nth(1).unwrap())
        .collect();
    assert_eq!(built, ["train[0]", "eval[0]"], "{stdout}");

    let why = p.gtap(&data, &["why", pipeline, "train"]);
    let (stdout, _) = text(&why);
    assert!(
        stdout.contains("train[0]: changed since the last run:"),
        "{stdout}"
    );
    assert!(stdout.contains("params.lr: 0.002 -> 0.001"), "{stdout}");

    // Both learning rates are cached now; a third is not, and evaluation waits on it.
    let status = p.gtap(
        &data,
        &["status", pipeline, "--set", "stage.train.lr=0.003"],
    );
    let (stdout, _) = text(&status);
    let state = |id: &str| {
        let line = stdout.lines().find(|l| l.starts_with(id));
        line.and_then(|l| l.split_whitespace().last())
            .map(str::to_owned)
    };
    assert_eq!(state("mnist").as_deref(), Some("cached"), "{stdout}");
    assert_eq!(state("train[0]").as_deref(), Some("missing"), "{stdout}");
    assert_eq!(state("eval[0]").as_deref(), Some("blocked"), "{stdout}");

    for table in ["training", "evaluation"] {
        assert!(p.path(&format!("results/small/{table}.parquet")).exists());
    }
}

#[test]
fn a_run_killed_mid_training_leaves_no_entry_and_the_next_run_finishes() {
    let Some(data) = common::real_data() else {
        return;
    };
    let p = Project::new(&SMALL.replace("epochs = 1", "epochs = 3"));
    let pipeline = p.path("p.toml");
    let pipeline = pipeline.to_str().unwrap();
    let mut child = p.command(&data, &["run", pipeline]).spawn().unwrap();
    let train_dir = p.path("cache/entries/train");
    let started = Instant::now();
    let in_progress = |dir: &Path| {
        std::fs::read_dir(dir)
            .map(|it| {
                it.flatten()
                    .any(|e| e.file_name().to_string_lossy().contains(".tmp-"))
            })
            .unwrap_or(false)
    };
    while !in_progress(&train_dir) {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "training never started"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let finished = |dir: &Path| {
        std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .filter(|e| e.path().join("manifest.json").exists())
            .count()
    };
    assert_eq!(
        finished(&train_dir),
        0,
        "a killed stage must not leave a finished entry"
    );

    let out = p.gtap(&data, &["run", pipeline]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("built   train[0]"), "{stdout}");
    assert_eq!(finished(&train_dir), 1);
    assert!(
        !in_progress(&train_dir),
        "the leftover temporary directory was not removed"
    );
}

/// A small curves table: two methods at two size fractions, two seeds; `shift` moves the
/// `random` method's accuracy.
fn curves(shift: f64) -> polars::prelude::DataFrame {
    use polars::prelude::*;
    let mut rows = Vec::new();
    for method in ["power-index", "random"] {
        for size_fraction in [1.0, 0.5] {
            for seed in 0..2u64 {
                let acc = 0.9 * size_fraction + 0.01 * seed as f64;
                let acc = if method == "random" { acc + shift } else { acc };
                rows.push((method, size_fraction, seed, acc));
            }
        }
    }
    df!(
        "model" => vec!["lenet5"; rows.len()],
        "method" => rows.iter().map(|r| r.0).collect::<Vec<_>>(),
        "size_fraction" => rows.iter().map(|r| r.1).collect::<Vec<_>>(),
        "seed" => rows.iter().map(|r| r.2).collect::<Vec<_>>(),
        "test_accuracy" => rows.iter().map(|r| r.3).collect::<Vec<_>>(),
    )
    .unwrap()
}

#[test]
fn compare_writes_the_joined_table_and_exits_2_naming_columns_on_schema_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let path = |rel: &str| dir.path().join(rel);
    let write = |rel: &str, mut df: polars::prelude::DataFrame| {
        gtap_engine::table::write_parquet(&path(rel), &mut df).unwrap();
    };
    write("a/curves.parquet", curves(0.0));
    write("b.parquet", curves(-0.25));
    let gtap = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_gtap"))
            .args(args)
            .current_dir(dir.path())
            .env_remove("GTAP_RESULTS_DIR")
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    };

    // A result directory against a file; the default output is results/compare.parquet.
    let out = gtap(&["compare", "a", "b.parquet"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains(
            "4 keys (0 only in A, 0 only in B), 2 with |diff| > 1e-12 in some metric; max |diff| \
             2.500e-1 in test_accuracy at model=\"lenet5\", method=\"random\""
        ),
        "{stdout}"
    );
    let joined = gtap_engine::table::read_parquet(&path("results/compare.parquet")).unwrap();
    assert_eq!(joined.height(), 4);
    let diffs: Vec<f64> = joined
        .column("test_accuracy_diff")
        .unwrap()
        .f64()
        .unwrap()
        .into_no_null_iter()
        .collect();
    assert_eq!(diffs[..2], [0.0, 0.0]);
    assert!(
        diffs[2..].iter().all(|d| (d + 0.25).abs() < 1e-12),
        "{diffs:?}"
    );

    // --out, and the same bytes for the same inputs.
    let out = gtap(&["compare", "a", "b.parquet", "--out", "again.parquet"]);
    assert!(out.status.success(), "{}", text(&out).1);
    assert_eq!(
        std::fs::read(path("again.parquet")).unwrap(),
        std::fs::read(path("results/compare.parquet")).unwrap()
    );

    let mut extra = curves(0.0);
    extra
        .with_column(polars::prelude::Column::new(
            "loss".into(),
            vec![0.5; extra.height()],
        ))
        .unwrap();
    write("c.parquet", extra);
    let out = gtap(&["compare", "a", "c.parquet", "--out", "never.parquet"]);
    assert_eq!(out.status.code(), Some(2));
    let (_, stderr) = text(&out);
    assert!(
        stderr.contains("the tables' schemas differ: only in B: loss"),
        "{stderr}"
    );
    assert!(!path("never.parquet").exists());

    let out = gtap(&["compare", "a", "missing"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).1.contains("reading B: missing does not exist"),
        "{}",
        text(&out).1
    );
}

/// `SMALL` plus a WMP ranking of its model.
fn with_wmp() -> String {
    format!("{SMALL}\n[stage.wmp]\nkind = \"wmp\"\ninputs = {{ model = \"train\", data = \"mnist\" }}\n")
}

/// `gtap show big.parquet | head -1`: the reader closes the pipe before the table is written;
/// the binary ends quietly with success, as Unix tools do, instead of panicking.
#[test]
fn show_into_a_closed_pipe_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.parquet");
    let rows = 20_000;
    let mut df = polars::df!(
        "player" => (0..rows).collect::<Vec<u32>>(),
        "estimate" => (0..rows).map(|i| i as f64 / 7.0).collect::<Vec<f64>>(),
    )
    .unwrap();
    gtap_engine::table::write_parquet(&path, &mut df).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_gtap"))
        .args(["show", path.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Close the read end at once: well over a pipe buffer (64 KiB) is still to come.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn export_writes_a_smaller_model_with_the_masked_accuracy() {
    let Some(data) = common::real_data() else {
        return;
    };
    let p = Project::new(&with_wmp());
    let pipeline = p.path("p.toml");
    let pipeline = pipeline.to_str().unwrap();
    let run = p.gtap(&data, &["run", pipeline]);
    assert!(run.status.success(), "{}", text(&run).1);

    let out_dir = p.path("pruned");
    let args = [
        "export",
        pipeline,
        "--ranking",
        "wmp",
        "--size",
        "0.5",
        "--out",
        out_dir.to_str().unwrap(),
    ];
    let out = p.gtap(&data, &args);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("players kept   200 of 400"), "{stdout}");
    assert!(stdout.contains("parameters     266610 -> "), "{stdout}");
    let accuracy = stdout
        .lines()
        .find_map(|l| l.strip_prefix("test accuracy  "))
        .unwrap_or_else(|| panic!("no accuracy line: {stdout}"));
    let values: Vec<&str> = accuracy
        .split([' ', ','])
        .filter(|w| w.ends_with('%'))
        .collect();
    assert_eq!(values.len(), 3, "{accuracy}");
    assert_eq!(values[1], values[2], "masked and pruned differ: {accuracy}");
    assert!(accuracy.contains("agree on 10000 of 10000"), "{accuracy}");
    assert!(
        stdout.contains("CPU inference  10000 test images"),
        "{stdout}"
    );

    for file in ["model.safetensors", "model.json", "export.json"] {
        assert!(out_dir.join(file).exists(), "{file} missing");
    }
    let layout: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("model.json")).unwrap()).unwrap();
    let params = layout["parameters"].as_u64().unwrap();
    assert!(params < 266_610, "{params}");
    assert!(stdout.contains(&format!("266610 -> {params} ")), "{stdout}");
    let kept: usize = layout["kept"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["units"].as_array().unwrap().len())
        .sum();
    assert_eq!(kept, 200);
}

#[test]
fn export_of_an_unbuilt_or_non_ranking_stage_exits_2() {
    let Some(data) = common::real_data() else {
        return;
    };
    let p = Project::new(&with_wmp());
    let pipeline = p.path("p.toml");
    let pipeline = pipeline.to_str().unwrap();
    let out_dir = p.path("pruned");
    let export = |extra: &[&str]| {
        let mut args = vec!["export", pipeline, "--out", out_dir.to_str().unwrap()];
        args.extend_from_slice(extra);
        let out = p.gtap(&data, &args);
        assert_eq!(out.status.code(), Some(2), "{extra:?}");
        text(&out).1
    };
    let stderr = export(&["--ranking", "wmp", "--size", "0.5"]);
    assert!(
        stderr.contains(&format!(
            "stage wmp[0] is not built; run `gtap run {pipeline}` first"
        )),
        "{stderr}"
    );
    let stderr = export(&["--ranking", "wmp", "--size", "0.5", "--scale", "full"]);
    assert!(
        stderr.contains(&format!("run `gtap run {pipeline} --scale full` first")),
        "{stderr}"
    );
    let stderr = export(&["--ranking", "eval", "--size", "0.5"]);
    assert!(
        stderr.contains(
            "stage `eval` (kind `evaluate`) is not a ranking stage (ranking kinds: gtap, wmp, wgmp, random, michel, leave-one-out)"
        ),
        "{stderr}"
    );
    let stderr = export(&["--ranking", "wmp", "--size", "1.5"]);
    assert!(
        stderr.contains("--size must be a fraction in (0, 1] (got 1.5)"),
        "{stderr}"
    );
    let stderr = export(&["--ranking", "wmp", "--size", "0.5", "--seed", "3"]);
    assert!(
        stderr.contains("seed 3 is not one of the pipeline's seeds [0]"),
        "{stderr}"
    );
    assert!(!out_dir.exists(), "a failed export must write nothing");
    assert!(
        !p.path("cache/entries").exists(),
        "export must build nothing"
    );
}

/// Every shipped pipeline validates at both scales (`gtap status` loads, applies the preset and
/// checks every stage's parameters and inputs without running anything), so a pipeline that CI
/// does not run still cannot rot.
#[test]
fn every_shipped_pipeline_validates_at_every_scale() {
    let Some(data) = common::real_data() else {
        return;
    };
    let p = Project::new("");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|f| f.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 7, "{files:?}");
    for file in &files {
        for scale in ["full", "ci"] {
            let out = p.gtap(&data, &["status", file.to_str().unwrap(), "--scale", scale]);
            let (stdout, stderr) = text(&out);
            assert!(
                out.status.success(),
                "{} at scale {scale}: {stderr}",
                file.display()
            );
            assert!(stdout.contains(&format!("scale {scale}")), "{stdout}");
        }
    }
    assert!(!p.path("cache/entries").exists(), "status built something");
}
