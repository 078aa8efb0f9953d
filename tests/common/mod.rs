//! Helpers shared by the binary's integration tests.

#![allow(dead_code)] // each test binary uses its own subset of these helpers

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use polars::prelude::*;

/// The real datasets in ../shared/datasets, or `None` when absent and `GTAP_SKIP_REAL_DATA` is
/// set; absent without it is a failure, so CI never silently skips the real-data tests.
pub fn real_data() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/datasets");
    if dir.join("mnist").exists() {
        return Some(dir);
    }
    if std::env::var_os("GTAP_SKIP_REAL_DATA").is_some() {
        return None;
    }
    panic!(
        "real MNIST expected at {} (set GTAP_SKIP_REAL_DATA=1 to skip these tests)",
        dir.display()
    );
}

/// `gtap ARGS` with `data` as data directory and cache, results and figures under `root`;
/// offline, warnings only.
pub fn gtap_command(root: &Path, data: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gtap"));
    cmd.args(args)
        .arg("--data-dir")
        .arg(data)
        .arg("--cache-dir")
        .arg(root.join("cache"))
        .arg("--results-dir")
        .arg(root.join("results"))
        .arg("--figures-dir")
        .arg(root.join("figures"))
        .env("GTAP_OFFLINE", "1")
        .env("RUST_LOG", "warn");
    cmd
}

/// `gtap run PIPELINE --scale ci` in `root` (see [`gtap_command`]).
pub fn run_ci(root: &Path, data: &Path, pipeline: &Path) -> Output {
    let pipeline = pipeline.to_str().unwrap();
    gtap_command(root, data, &["run", pipeline, "--scale", "ci"])
        .output()
        .unwrap()
}

/// [`run_ci`] on the shipped `pipelines/<file>`, asserting that it succeeds.
pub fn run_shipped(root: &Path, data: &Path, file: &str) {
    let pipeline = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("pipelines")
        .join(file);
    let out = run_ci(root, data, &pipeline);
    assert!(
        out.status.success(),
        "{file}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `results/<pipeline>/<name>.parquet` under `root`.
pub fn table(root: &Path, pipeline: &str, name: &str) -> DataFrame {
    let file = std::fs::File::open(
        root.join("results")
            .join(pipeline)
            .join(format!("{name}.parquet")),
    )
    .unwrap();
    ParquetReader::new(file).finish().unwrap()
}

pub fn f64s(df: &DataFrame, column: &str) -> Vec<f64> {
    df.column(column)
        .unwrap()
        .f64()
        .unwrap()
        .into_no_null_iter()
        .collect()
}

pub fn u32s(df: &DataFrame, column: &str) -> Vec<u32> {
    df.column(column)
        .unwrap()
        .u32()
        .unwrap()
        .into_no_null_iter()
        .collect()
}

pub fn strs(df: &DataFrame, column: &str) -> Vec<String> {
    df.column(column)
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .map(|v| v.unwrap_or_default().to_owned())
        .collect()
}

/// MNIST, a LeNet-300-100 trained for one epoch on 2,000 images, its evaluation: the smallest
/// real pipeline, for tests of how runs fail and recover.
pub const SMALL_LENET300: &str = r#"
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
train_examples = 2000

[stage.eval]
kind = "evaluate"
inputs = { model = "train", data = "mnist" }
"#;
